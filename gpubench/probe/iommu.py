"""IOMMU: whether device DMA is translated, and what that means for GPU peer-to-peer and GPUDirect.

Read: /sys/kernel/iommu_groups/N/{type,devices} (Documentation/ABI/testing/sysfs-kernel-iommu_groups:
a group's type is its default domain: "identity" = DMA not translated, "DMA" = translated with strict
invalidation, "DMA-FQ" = translated with lazy (batched) invalidation; "unmanaged" or "blocked" while a
user such as VFIO owns the group), /sys/class/iommu (the IOMMU units: dmar*, ivhd*, smmu*, ...), the
IOMMU flags of /proc/cmdline, and the kernel's IOMMU configuration.
"""

from __future__ import annotations

from collections import Counter

from gpubench.probe.checks import check, kernel_config
from gpubench.probe.model import Findings
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

PASSTHROUGH_FIX = (
    "boot with iommu=pt (with intel_iommu=on on Intel, amd_iommu=on on AMD) or iommu.passthrough=1 on arm64; "
    "or for one group: unbind its driver, then echo identity > /sys/kernel/iommu_groups/N/type"
)


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


def _expected_default(flags: list[str], config) -> str | None:
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


@check("iommu", "iommu")
def iommu(src: Source, f: Findings):
    cmdline = src.value(CMDLINE)
    flags = cmdline_flags(cmdline) if cmdline is not None else []
    f.saw(f"{CMDLINE} (IOMMU flags)", " ".join(flags) if flags else ("none" if cmdline is not None else "missing"))
    config = kernel_config(src)
    if config.origin is None:
        f.saw("kernel config", "not found")
    else:
        f.saw(f"kernel config ({config.origin})", ", ".join(f"{k}={config.get(k)}" for k in CONFIGS if config.enabled(k)) or "no IOMMU options set")

    units = src.listdir(UNITS)
    f.saw(UNITS, ", ".join(units) if units else ("empty" if src.exists(UNITS) else "missing"))
    group_ids = sorted((g for g in src.listdir(GROUPS) if g.isdigit()), key=int)
    f.saw(GROUPS, f"{len(group_ids)} groups" if group_ids else ("empty" if src.exists(GROUPS) else "missing"))

    types: dict[str, str | None] = {}
    device_domains: dict[str, str] = {}
    for group in group_ids:
        kind = src.value(f"{GROUPS}/{group}/type")
        types[group] = kind
        for device in src.listdir(f"{GROUPS}/{group}/devices"):
            device_domains[device] = kind or "unknown"
    counts = Counter(t for t in types.values() if t is not None)
    if types:
        read = ", ".join(f"{t} x{n}" for t, n in counts.most_common())
        missing = sum(t is None for t in types.values())
        f.saw(f"{GROUPS}/*/type", read + (f", missing x{missing}" if missing else "") if read else "missing")

    defaults = Counter({t: n for t, n in counts.items() if t in DEFAULT_TYPES})
    default_domain = defaults.most_common(1)[0][0] if defaults else None
    expected = _expected_default(flags, config)
    f.details.update(
        groups=len(group_ids),
        default_domain=default_domain,
        cmdline_flags=flags,
        units=units,
        domain_types=dict(counts),
        device_domains=device_domains,
        expected_default_domain=expected,
        config={k: config.get(k) for k in CONFIGS},
    )
    strange = sorted(t for t in counts if t not in DEFAULT_TYPES + OWNED_TYPES)
    if strange:
        f.details.update(mode=None, p2p_friendly=None)
        return f.unknown(
            f"unrecognised IOMMU group type(s): {', '.join(repr(t[:40]) for t in strange)}",
            "re-read on the live machine or re-record the snapshot",
        )

    if not group_ids:
        return _no_groups(src, f, flags, config)

    if default_domain is None:
        inferred = expected
        f.details.update(mode=MODE_OF_TYPE.get(inferred or ""), p2p_friendly=None)
        owned = sum(counts[t] for t in OWNED_TYPES)
        if owned:
            reason = f"all {owned} group(s) with a type are owned by a user such as VFIO ({', '.join(counts)})"
        else:
            reason = f"the groups' default domain type could not be read ({GROUPS}/N/type needs Linux 5.11+)"
        hint = f"; the command line and config would give {inferred}" if inferred else ""
        return f.unknown(f"IOMMU active with {len(group_ids)} groups, but {reason}{hint}", "check the kernel log: dmesg | grep -i iommu")

    mode = MODE_OF_TYPE[default_domain]
    f.details.update(mode=mode, p2p_friendly=mode == "passthrough")
    spread = ", ".join(f"{t} x{n}" for t, n in counts.most_common())
    scope = f"{len(group_ids)} groups ({spread})"
    if mode == "passthrough":
        return f.yes(
            f"IOMMU on with identity (passthrough) default domains, {scope}: device DMA is not translated, "
            "which is what GPU peer-to-peer and GPUDirect RDMA want; VFIO isolation is still available"
        )
    lazy = "lazy invalidation" if default_domain == "DMA-FQ" else "strict invalidation"
    friendly = sorted(d for d, t in device_domains.items() if t == "identity")
    exceptions = f"; identity for {', '.join(friendly[:4])}{' ...' if len(friendly) > 4 else ''}" if friendly else ""
    return f.partial(
        f"IOMMU translates device DMA: default domain {default_domain} ({lazy}), {scope}{exceptions}: peer-to-peer DMA between GPUs, or between a "
        "GPU and a NIC or NVMe drive, must be mapped through the IOMMU, and may be refused or slowed "
        "(GPUDirect RDMA and NVIDIA P2P usually want passthrough)",
        PASSTHROUGH_FIX,
    )


def _no_groups(src: Source, f: Findings, flags: list[str], config):
    f.details.update(mode="off", p2p_friendly=True)
    consequence = (
        "device DMA is not translated: fine for GPU peer-to-peer and GPUDirect, but devices are not isolated "
        "from each other (no VFIO device assignment)"
    )
    fix = "only if you need isolation or VFIO: boot with intel_iommu=on iommu=pt (Intel) or amd_iommu=on iommu=pt (AMD)"
    if not src.exists(GROUPS) and not src.exists("/sys/kernel") and not src.exists(UNITS):
        f.details.update(mode=None, p2p_friendly=None)
        return f.unknown("sysfs could not be read (no /sys/kernel, no /sys/class/iommu)", "is sysfs mounted at /sys?")
    off = [flag for flag in flags if flag in TURNED_OFF]
    if off:
        return f.no(f"IOMMU turned off on the kernel command line ({' '.join(off)}); {consequence}", fix)
    drivers = [config.enabled(k) for k in IOMMU_DRIVERS]
    if config.origin is not None and not any(drivers):
        return f.no(f"the kernel has no IOMMU driver (CONFIG_INTEL_IOMMU, CONFIG_AMD_IOMMU, CONFIG_ARM_SMMU_V3, CONFIG_VIRTIO_IOMMU not set); {consequence}", fix)
    if config.enabled("CONFIG_INTEL_IOMMU") and not config.enabled("CONFIG_INTEL_IOMMU_DEFAULT_ON") and "intel_iommu=on" not in flags:
        why = "no IOMMU groups: the Intel IOMMU is off by default in this kernel (CONFIG_INTEL_IOMMU_DEFAULT_ON not set), or the firmware has no DMAR table"
    else:
        why = "no IOMMU groups: no IOMMU in this machine, disabled in the firmware setup (VT-d / AMD-Vi), or no DMAR/IVRS table"
    return f.no(f"{why}; {consequence}", fix)


CHECKS = [iommu]
