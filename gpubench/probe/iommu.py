"""IOMMU: whether device DMA is translated, and what that means for GPU peer-to-peer and GPUDirect.

Read: /sys/kernel/iommu_groups/N/{type,devices} (Documentation/ABI/testing/sysfs-kernel-iommu_groups:
a group's type is its default domain: "identity" = DMA not translated, "DMA" = translated with strict
invalidation, "DMA-FQ" = translated with lazy (batched) invalidation; "unmanaged" or "blocked" while a
user such as VFIO owns the group), /sys/class/iommu (the IOMMU units: dmar*, ivhd*, smmu*, ...), the
IOMMU flags of /proc/cmdline, and the kernel's IOMMU configuration.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gpubench.probe.checks import KernelConfig, check, kernel_config, memo
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide
from gpubench.probe.source import Source

GROUPS = "/sys/kernel/iommu_groups"
UNITS = "/sys/class/iommu"
CMDLINE = "/proc/cmdline"
CONFIGS = (
    "CONFIG_IOMMU_SUPPORT",
    "CONFIG_INTEL_IOMMU",
    "CONFIG_INTEL_IOMMU_DEFAULT_ON",
    "CONFIG_AMD_IOMMU",
    "CONFIG_ARM_SMMU_V3",
    "CONFIG_VIRTIO_IOMMU",
    "CONFIG_IOMMU_DEFAULT_PASSTHROUGH",
    "CONFIG_IOMMU_DEFAULT_DMA_LAZY",
    "CONFIG_IOMMU_DEFAULT_DMA_STRICT",
)
IOMMU_DRIVERS = ("CONFIG_INTEL_IOMMU", "CONFIG_AMD_IOMMU", "CONFIG_ARM_SMMU", "CONFIG_ARM_SMMU_V3", "CONFIG_VIRTIO_IOMMU")
DEFAULT_TYPES = ("identity", "DMA", "DMA-FQ")  # what a group's default domain can be
OWNED_TYPES = ("unmanaged", "blocked")  # a user (VFIO, iommufd) has taken the group over
MODE_OF_TYPE = {"identity": "passthrough", "DMA": "translated", "DMA-FQ": "translated"}
TURNED_OFF = {"iommu=off", "intel_iommu=off", "amd_iommu=off"}

def cmdline_flags(cmdline: str) -> list[str]:
    """The IOMMU flags of a kernel command line (arguments after '--' go to init, not the kernel)."""
    flags = []
    for token in cmdline.split():
        if token == "--":
            break
        key = token.split("=", 1)[0]
        if key in ("iommu", "intel_iommu", "amd_iommu") or key.startswith(("iommu.", "intel_iommu.", "amd_iommu_")):
            flags.append(token)
    return flags


def _expected_default(flags: list[str], config: KernelConfig) -> str | None:
    """The default domain the kernel would pick from its command line, then its config."""
    for flag in reversed(flags):  # the last one given wins
        if flag in ("iommu=pt", "iommu.passthrough=1", "iommu.passthrough=on", "iommu.passthrough=y"):
            return "identity"
        if flag in ("iommu=nopt", "iommu.passthrough=0", "iommu.passthrough=off", "iommu.passthrough=n"):
            return "DMA-FQ" if config.enabled("CONFIG_IOMMU_DEFAULT_DMA_LAZY") else "DMA"
    if config.enabled("CONFIG_IOMMU_DEFAULT_PASSTHROUGH"):
        return "identity"
    if config.enabled("CONFIG_IOMMU_DEFAULT_DMA_LAZY"):
        return "DMA-FQ"
    if config.enabled("CONFIG_IOMMU_DEFAULT_DMA_STRICT"):
        return "DMA"
    return None


@dataclass(frozen=True)
class IommuFacts:
    cmdline: str | None
    cmdline_cut: bool  # /proc/cmdline was longer than the read limit: a flag after the cut is unseen
    flags: tuple[str, ...]
    config: KernelConfig
    units: tuple[str, ...]  # /sys/class/iommu entries
    group_types: dict[str, str | None]  # group id -> its type file (None: absent)
    device_domains: dict[str, str]  # PCI address -> its group's type
    units_dir: bool  # /sys/class/iommu exists
    groups_dir: bool  # /sys/kernel/iommu_groups exists
    sys_kernel: bool  # /sys/kernel exists

    @property
    def sysfs(self) -> bool:
        return self.units_dir or self.groups_dir or self.sys_kernel

    @property
    def counts(self) -> Counter[str]:
        return Counter(t for t in self.group_types.values() if t is not None)

    @property
    def strange(self) -> list[str]:
        return sorted(t for t in self.counts if t not in DEFAULT_TYPES + OWNED_TYPES)

    @property
    def default_domain(self) -> str | None:
        defaults = Counter({t: n for t, n in self.counts.items() if t in DEFAULT_TYPES})
        return defaults.most_common(1)[0][0] if defaults else None

    @property
    def expected(self) -> str | None:
        return _expected_default(list(self.flags), self.config)

    @property
    def turned_off(self) -> list[str]:
        return [flag for flag in self.flags if flag in TURNED_OFF]

    @property
    def drivers(self) -> list[str] | None:
        """The IOMMU drivers the kernel was built with; None when its config is unknown."""
        return None if self.config.origin is None else [k for k in IOMMU_DRIVERS if self.config.enabled(k)]

    @property
    def mode(self) -> str | None:
        if self.strange:
            return None
        if not self.group_types:
            return "off" if self.sysfs else None
        return MODE_OF_TYPE.get(self.default_domain or self.expected or "")

    @property
    def p2p_friendly(self) -> bool | None:
        if self.strange or self.default_domain is None:
            return True if self.mode == "off" else None
        return self.mode == "passthrough"

    def scope(self) -> str:
        spread = ", ".join(f"{t} x{n}" for t, n in self.counts.most_common())
        return f"{len(self.group_types)} groups ({spread})"


OFF_CONSEQUENCE = ("device DMA is not translated: fine for GPU peer-to-peer and GPUDirect, but devices are not isolated "
                   "from each other (no VFIO device assignment)")
# What turns each IOMMU driver on, for a fix that names only the drivers the kernel has
# (Documentation/admin-guide/kernel-parameters.txt: intel_iommu=on; the AMD IOMMU has no "on", it is used
# whenever the firmware's IVRS table describes it; arm64 SMMUs whenever IORT or the device tree does).
ENABLE = {
    "CONFIG_INTEL_IOMMU": "intel_iommu=on iommu=pt (Intel VT-d enabled in the firmware setup)",
    "CONFIG_AMD_IOMMU": "iommu=pt, with AMD-Vi / IOMMU enabled in the firmware setup",
    "CONFIG_ARM_SMMU": "iommu.passthrough=1, with the SMMU described by the firmware",
    "CONFIG_ARM_SMMU_V3": "iommu.passthrough=1, with the SMMU described by the firmware",
    "CONFIG_VIRTIO_IOMMU": "a virtio-iommu device from the hypervisor, and iommu.passthrough=1",
}


def _enable_fix(x: IommuFacts) -> str:
    drivers = x.drivers if x.drivers is not None else list(ENABLE)
    return "only if you need isolation or VFIO: " + "; or ".join(dict.fromkeys(ENABLE[d] for d in drivers))


def _passthrough_fix(x: IommuFacts) -> str:
    arm_only = x.drivers is not None and not {"CONFIG_INTEL_IOMMU", "CONFIG_AMD_IOMMU"} & set(x.drivers)
    flags = "iommu.passthrough=1" if arm_only else "iommu=pt (iommu.passthrough=1 on arm64)"
    return f"boot with {flags}; or for one group: unbind its driver, then echo identity > /sys/kernel/iommu_groups/N/type"


def _no_groups_why(x: IommuFacts) -> str:
    intel_off = x.config.enabled("CONFIG_INTEL_IOMMU") and not x.config.enabled("CONFIG_INTEL_IOMMU_DEFAULT_ON") and "intel_iommu=on" not in x.flags
    if intel_off:
        why = "no IOMMU groups: the Intel IOMMU is off by default in this kernel (CONFIG_INTEL_IOMMU_DEFAULT_ON not set), or the firmware has no DMAR table"
    else:
        why = "no IOMMU groups: no IOMMU in this machine, disabled in the firmware setup (VT-d / AMD-Vi), or no DMAR/IVRS table"
    return f"{why}; {OFF_CONSEQUENCE}"


def _translated_why(x: IommuFacts) -> str:
    lazy = "lazy invalidation" if x.default_domain == "DMA-FQ" else "strict invalidation"
    friendly = sorted(d for d, t in x.device_domains.items() if t == "identity")
    exceptions = f"; identity for {', '.join(friendly[:4])}{' ...' if len(friendly) > 4 else ''}" if friendly else ""
    return (f"IOMMU translates device DMA: default domain {x.default_domain} ({lazy}), {x.scope()}{exceptions}: peer-to-peer DMA between GPUs, "
            "or between a GPU and a NIC or NVMe drive, must be mapped through the IOMMU, and may be refused or slowed "
            "(GPUDirect RDMA and NVIDIA P2P usually want passthrough)")


def _unreadable_defaults_why(x: IommuFacts) -> str:
    owned = sum(x.counts[t] for t in OWNED_TYPES)
    if owned:
        reason = f"all {owned} group(s) with a type are owned by a user such as VFIO ({', '.join(x.counts)})"
    else:
        reason = f"the groups' default domain type could not be read ({GROUPS}/N/type needs Linux 5.11+)"
    hint = f"; the command line and config would give {x.expected}" if x.expected else ""
    return f"IOMMU active with {len(x.group_types)} groups, but {reason}{hint}"


IOMMU_RULES: tuple[Rule[IommuFacts], ...] = (
    Rule(lambda x: bool(x.strange), UNKNOWN, lambda x: f"unrecognised IOMMU group type(s): {', '.join(repr(t[:40]) for t in x.strange)}",
         "re-read on the live machine or re-record the snapshot"),
    Rule(lambda x: not x.group_types and not x.sysfs, UNKNOWN, "sysfs could not be read (no /sys/kernel, no /sys/class/iommu)", "is sysfs mounted at /sys?"),
    Rule(lambda x: not x.group_types and bool(x.turned_off), NO,
         lambda x: f"IOMMU turned off on the kernel command line ({' '.join(x.turned_off)}); {OFF_CONSEQUENCE}", _enable_fix),
    Rule(lambda x: not x.group_types and x.drivers == [], NO,
         f"the kernel has no IOMMU driver (CONFIG_INTEL_IOMMU, CONFIG_AMD_IOMMU, CONFIG_ARM_SMMU_V3, CONFIG_VIRTIO_IOMMU not set); {OFF_CONSEQUENCE}",
         "only if you need isolation or VFIO: a kernel built with the IOMMU driver of this machine (CONFIG_INTEL_IOMMU on Intel, "
         "CONFIG_AMD_IOMMU on AMD, CONFIG_ARM_SMMU_V3 on arm64, CONFIG_VIRTIO_IOMMU in a VM); no boot flag turns on a driver the kernel lacks"),
    Rule(lambda x: not x.group_types and x.cmdline_cut, UNKNOWN,
         lambda x: f"no IOMMU groups, and {CMDLINE} was cut at the read limit: an IOMMU flag after the cut would not be seen",
         "read /proc/cmdline whole on the machine; re-record the snapshot"),
    Rule(lambda x: not x.group_types, NO, _no_groups_why, _enable_fix),
    Rule(lambda x: x.default_domain is None, UNKNOWN, _unreadable_defaults_why, "check the kernel log: dmesg | grep -i iommu"),
    Rule(lambda x: x.mode == "passthrough", YES,
         lambda x: f"IOMMU on with identity (passthrough) default domains, {x.scope()}: device DMA is not translated, "
         "which is what GPU peer-to-peer and GPUDirect RDMA want; VFIO isolation is still available"),
    Rule(always, PARTIAL, _translated_why, _passthrough_fix),
)


def iommu_facts(src: Source) -> IommuFacts:
    """Read once per Source: the p2p area words its fix by the IOMMU's mode too."""
    return memo(src, "iommu.facts", lambda: _read_facts(src))  # type: ignore[return-value]


def _read_facts(src: Source) -> IommuFacts:
    first_cut = len(src.cuts)
    cmdline = src.value(CMDLINE)
    group_ids = sorted((g for g in src.listdir(GROUPS) if g.isdigit()), key=int)
    types: dict[str, str | None] = {}
    device_domains: dict[str, str] = {}
    for group in group_ids:
        types[group] = src.value(f"{GROUPS}/{group}/type")
        for device in src.listdir(f"{GROUPS}/{group}/devices"):
            device_domains[device] = types[group] or "unknown"
    units = tuple(src.listdir(UNITS))
    return IommuFacts(
        cmdline=cmdline, cmdline_cut=any(path == CMDLINE for path, _ in src.cuts[first_cut:]),
        flags=tuple(cmdline_flags(cmdline)) if cmdline is not None else (), config=kernel_config(src), units=units,
        group_types=types, device_domains=device_domains,
        units_dir=bool(units) or src.exists(UNITS), groups_dir=bool(group_ids) or src.exists(GROUPS), sys_kernel=src.exists("/sys/kernel"),
    )


def _options_set(config: KernelConfig) -> str:
    return ", ".join(f"{k}={config.get(k)}" for k in CONFIGS if config.enabled(k)) or "no IOMMU options set"


def _evidence(f: Findings, x: IommuFacts) -> None:
    f.saw(f"{CMDLINE} (IOMMU flags)", " ".join(x.flags) if x.flags else ("none" if x.cmdline is not None else "missing"))
    if x.config.origin is None:
        f.saw("kernel config", "not found")
    else:
        f.saw(f"kernel config ({x.config.origin})", _options_set(x.config))
    f.saw(UNITS, ", ".join(x.units) if x.units else ("empty" if x.units_dir else "missing"))
    f.saw(GROUPS, f"{len(x.group_types)} groups" if x.group_types else ("empty" if x.groups_dir else "missing"))
    if x.group_types:
        read = ", ".join(f"{t} x{n}" for t, n in x.counts.most_common())
        missing = sum(t is None for t in x.group_types.values())
        f.saw(f"{GROUPS}/*/type", read + (f", missing x{missing}" if missing else "") if read else "missing")


@check("iommu", "iommu")
def iommu(src: Source, f: Findings):
    x = iommu_facts(src)
    _evidence(f, x)
    f.details.update(
        groups=len(x.group_types), default_domain=x.default_domain, cmdline_flags=list(x.flags), units=list(x.units),
        domain_types=dict(x.counts), device_domains=x.device_domains, expected_default_domain=x.expected,
        config={k: x.config.get(k) for k in CONFIGS}, mode=x.mode, p2p_friendly=x.p2p_friendly,
    )
    return decide(f, x, IOMMU_RULES)


CHECKS = [iommu]
