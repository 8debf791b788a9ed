"""HMM area: can an NVIDIA GPU access ordinary (malloc'd) host memory through HMM or ATS?

The floors come from the CUDA C++ Programming Guide (Unified Memory, system requirements for
full support through HMM): the NVIDIA open GPU kernel modules from release 535 (CUDA 12.2) on,
and Linux 6.1.24+, 6.2.11+ or 6.3+. The kernel must be built with CONFIG_HMM_MIRROR and
CONFIG_DEVICE_PRIVATE. nvidia_uvm turns HMM off when loaded with uvm_disable_hmm=1.
On ATS systems (e.g. Grace Hopper) the GPU reaches host memory through ATS instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpubench.probe import nvidia
from gpubench.probe.checks import check, kernel_config, release
from gpubench.probe.model import Findings, Status
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide, not_recorded
from gpubench.probe.source import Source

UVM_DISABLE_HMM = "/sys/module/nvidia_uvm/parameters/uvm_disable_hmm"
DRIVER_FLOOR = 535
KERNEL_FLOORS = ((6, 1, 24), (6, 2, 11), (6, 3, 0))  # the first release of each line that suffices
FLOOR_TEXT = "6.1.24+, 6.2.11+ or 6.3+"


def kernel_meets_floor(version: tuple[int, int, int]) -> bool:
    major_minor = version[:2]
    for floor in KERNEL_FLOORS:
        if major_minor == floor[:2]:
            return version >= floor
    return version >= KERNEL_FLOORS[-1]


def upstream_version(src: Source, rel: str) -> tuple[tuple[int, int, int] | None, str]:
    """The upstream kernel version and where it came from. Distribution kernels often write
    x.y.0 in the release string (Debian 6.1.0-18-amd64 is 6.1.76), so /proc/version and
    /proc/version_signature are asked when the sublevel matters."""
    parsed = nvidia.release_triple(rel)
    if parsed is None or parsed[:2] not in ((6, 1), (6, 2)) or kernel_meets_floor(parsed):
        return parsed, "/proc/sys/kernel/osrelease"
    signature = src.value("/proc/version_signature")  # Ubuntu: "Ubuntu 6.8.0-45.45-generic 6.8.12"
    if signature:
        better = nvidia.release_triple(signature.split()[-1])
        if better and better[:2] == parsed[:2]:
            return better, "/proc/version_signature"
    banner = src.value("/proc/version") or ""
    m = re.search(r"Debian (\d+\.\d+\.\d+)", banner)
    if m:
        better = nvidia.release_triple(m.group(1))
        if better and better[:2] == parsed[:2]:
            return better, "/proc/version"
    return parsed, "/proc/sys/kernel/osrelease"


@dataclass(frozen=True)
class HmmFacts:
    driver: nvidia.NvidiaDriver
    mirror: bool | None  # CONFIG_HMM_MIRROR; None: no kernel config
    private: bool | None  # CONFIG_DEVICE_PRIVATE
    release: str | None
    kernel_ok: bool | None  # the upstream version meets the floor; None: not known
    disable: str | None  # nvidia_uvm's uvm_disable_hmm; None: nvidia_uvm not loaded
    modes: tuple[str | None, ...]  # NVML's addressing mode of each GPU

    @property
    def recorded(self) -> bool:
        return self.driver.recorded

    @property
    def driver_major(self) -> int | None:
        return int(self.driver.version.split(".")[0]) if self.driver.version else None

    def config_missing(self) -> str:
        missing = [k for k, v in (("CONFIG_HMM_MIRROR", self.mirror), ("CONFIG_DEVICE_PRIVATE", self.private)) if v is False]
        return f"the kernel is built without {' and '.join(missing)}"


OPEN_MODULES = f"install the open kernel modules (e.g. nvidia-open) of release {DRIVER_FLOOR} or later"
HMM_RULES: tuple[Rule[HmmFacts], ...] = (
    Rule(lambda x: "ats" in x.modes, YES, "the GPU reaches host memory through ATS (address translation services), HMM is not needed"),
    Rule(lambda x: "hmm" in x.modes, YES, "NVML reports HMM addressing"),
    not_recorded(nvidia.INPUTS_SAID),
    Rule(lambda x: not x.driver.loaded, NO, "no NVIDIA driver is loaded; HMM for CUDA needs the NVIDIA open kernel modules",
         "only relevant on machines with an NVIDIA GPU (Turing or newer)"),
    # Jetson's numbers are L4T releases, and its driver is not the desktop line: no floor here applies.
    Rule(lambda x: x.driver.tegra, UNKNOWN,
         lambda x: f"a Jetson/Tegra GPU (driver {x.driver.gpu_driver}, L4T {x.driver.l4t_release or 'release not shown'}): "
         f"the desktop driver's HMM requirements (open kernel modules {DRIVER_FLOOR}+) do not apply",
         "ask CUDA on the board: cudaDeviceGetAttribute(cudaDevAttrPageableMemoryAccess)"),
    Rule(lambda x: x.driver.version is None, UNKNOWN,
         lambda x: f"the NVIDIA driver version could not be read: {x.driver.problem or f'no {nvidia.VERSION_FILE}'}"),
    Rule(lambda x: x.driver.kernel_module is None, UNKNOWN,
         f"whether the NVIDIA kernel module is the open one (which HMM needs) is not shown without {nvidia.VERSION_FILE}"),
    Rule(lambda x: x.driver.kernel_module != "open", NO, "the proprietary NVIDIA kernel module does not support HMM", OPEN_MODULES),
    Rule(lambda x: x.driver_major is not None and x.driver_major < DRIVER_FLOOR, NO,
         lambda x: f"driver {x.driver.version} predates HMM support (release {DRIVER_FLOOR})", f"upgrade to the open kernel modules of release {DRIVER_FLOOR} or later"),
    Rule(lambda x: x.mirror is False or x.private is False, NO, HmmFacts.config_missing,
         "use a kernel built with CONFIG_HMM_MIRROR=y and CONFIG_DEVICE_PRIVATE=y (most distribution kernels are)"),
    Rule(lambda x: x.kernel_ok is False, NO, lambda x: f"kernel {x.release} is older than HMM needs ({FLOOR_TEXT})", "upgrade the kernel"),
    Rule(lambda x: (x.disable or "").upper() in ("Y", "1"), NO, lambda x: f"nvidia_uvm was loaded with uvm_disable_hmm={x.disable}",
         "remove uvm_disable_hmm from /etc/modprobe.d/, then reload nvidia_uvm (modprobe -r nvidia_uvm; modprobe nvidia_uvm)"),
    # Nothing below may say "prerequisites met" while the config or the kernel version is unknown.
    Rule(lambda x: x.mirror is None or x.private is None or x.kernel_ok is None, UNKNOWN,
         lambda x: "no kernel config found" if x.mirror is None or x.private is None else "the kernel version could not be read",
         "modprobe configs, or install /boot/config-$(uname -r)"),
    Rule(lambda x: "none" in x.modes, NO, "NVML reports no HMM/ATS addressing although the prerequisites look met",
         "check dmesg for nvidia_uvm messages about HMM"),
    Rule(lambda x: x.disable is None, PARTIAL, "all prerequisites are met, but nvidia_uvm is not loaded, so HMM cannot be confirmed",
         "nvidia_uvm loads on first CUDA use (or: modprobe nvidia_uvm); probe again afterwards"),
    Rule(lambda x: (x.disable or "").upper() not in ("N", "0"), UNKNOWN, lambda x: f"unrecognised uvm_disable_hmm value {x.disable!r}"),
    Rule(always, YES, "open kernel modules, kernel and config meet HMM's needs, and nvidia_uvm has HMM enabled"),
)


def _driver_evidence(f: Findings, drv: nvidia.NvidiaDriver) -> None:
    if drv.tegra:
        f.saw("Jetson/Tegra GPU driver", f"{drv.gpu_driver}, L4T {drv.l4t_release or 'release not shown'}")
    elif drv.version:
        f.saw(nvidia.VERSION_FILE, f"{drv.version} ({drv.kernel_module or 'kind not shown'} kernel module)")
    else:
        f.saw(nvidia.VERSION_FILE, drv.problem or "absent")


def _read_facts(src: Source, f: Findings) -> HmmFacts:
    cfg = kernel_config(src)
    f.saw("CONFIG_HMM_MIRROR", cfg.describe("CONFIG_HMM_MIRROR"))
    f.saw("CONFIG_DEVICE_PRIVATE", cfg.describe("CONFIG_DEVICE_PRIVATE"))
    rel = release(src)
    version, version_source = upstream_version(src, rel) if rel else (None, "")
    upstream = f" (upstream {'.'.join(map(str, version))} per {version_source})" if version and version_source != "/proc/sys/kernel/osrelease" else ""
    f.saw("kernel release", f"{rel or 'unreadable'}{upstream}; HMM needs {FLOOR_TEXT}")
    drv = nvidia.driver(src)
    _driver_evidence(f, drv)
    disable = src.value(UVM_DISABLE_HMM)
    f.saw(UVM_DISABLE_HMM, disable if disable is not None else "absent (nvidia_uvm not loaded)")
    modes = tuple(d.get("addressing_mode") for d in ((nvidia.nvml(src) or {}).get("devices") or []) if isinstance(d, dict))
    if any(modes):
        f.saw("NVML addressing mode", ", ".join(m for m in modes if m))
    return HmmFacts(drv, cfg.enabled("CONFIG_HMM_MIRROR"), cfg.enabled("CONFIG_DEVICE_PRIVATE"), rel,
                    kernel_meets_floor(version) if version else None, disable, modes)


@check("hmm", "hmm")
def hmm(src: Source, f: Findings):
    facts = _read_facts(src, f)
    f.details.update(
        hmm_mirror=facts.mirror, device_private=facts.private, kernel_floor=FLOOR_TEXT, kernel_meets_floor=facts.kernel_ok,
        uvm_disable_hmm=facts.disable, kernel_module=facts.driver.kernel_module,
    )
    cap = decide(f, facts, HMM_RULES)
    active = {Status.YES: True, Status.NO: False}.get(cap.status)
    cap.details.update(active=active, mode=("ats" if "ats" in facts.modes else "hmm") if active else None)
    return cap


CHECKS = [hmm]
