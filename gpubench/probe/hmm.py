"""HMM area: can an NVIDIA GPU access ordinary (malloc'd) host memory through HMM or ATS?

The floors come from the CUDA C++ Programming Guide (Unified Memory, system requirements for
full support through HMM): the NVIDIA open GPU kernel modules from release 535 (CUDA 12.2) on,
and Linux 6.1.24+, 6.2.11+ or 6.3+. The kernel must be built with CONFIG_HMM_MIRROR and
CONFIG_DEVICE_PRIVATE. nvidia_uvm turns HMM off when loaded with uvm_disable_hmm=1.
On ATS systems (e.g. Grace Hopper) the GPU reaches host memory through ATS instead.
"""

from __future__ import annotations

import re

from gpubench.probe import nvidia
from gpubench.probe.checks import check, kernel_config, release
from gpubench.probe.model import Findings
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


@check("hmm", "hmm")
def hmm(src: Source, f: Findings):
    f.details.update(active=None, mode=None)
    cfg = kernel_config(src)
    mirror, private = cfg.enabled("CONFIG_HMM_MIRROR"), cfg.enabled("CONFIG_DEVICE_PRIVATE")
    f.saw("CONFIG_HMM_MIRROR", cfg.describe("CONFIG_HMM_MIRROR"))
    f.saw("CONFIG_DEVICE_PRIVATE", cfg.describe("CONFIG_DEVICE_PRIVATE"))
    rel = release(src)
    version, version_source = upstream_version(src, rel) if rel else (None, "")
    kernel_ok = kernel_meets_floor(version) if version else None
    upstream = f" (upstream {'.'.join(map(str, version))} per {version_source})" if version and version_source != "/proc/sys/kernel/osrelease" else ""
    f.saw("kernel release", f"{rel or 'unreadable'}{upstream}; HMM needs {FLOOR_TEXT}")
    drv = nvidia.driver(src)
    f.saw(nvidia.VERSION_FILE, f"{drv.version} ({drv.kernel_module} kernel module)" if drv.version else ("absent" if not drv.loaded else drv.problem))
    driver_major = int(drv.version.split(".")[0]) if drv.version else None
    disable = src.value(UVM_DISABLE_HMM)
    f.saw(UVM_DISABLE_HMM, disable if disable is not None else "absent (nvidia_uvm not loaded)")
    modes = [d.get("addressing_mode") for d in ((nvidia.nvml(src) or {}).get("devices") or []) if isinstance(d, dict)]
    known_modes = [m for m in modes if m]
    if known_modes:
        f.saw("NVML addressing mode", ", ".join(known_modes))
    f.details.update(
        hmm_mirror=mirror, device_private=private, kernel_floor=FLOOR_TEXT, kernel_meets_floor=kernel_ok,
        uvm_disable_hmm=disable, kernel_module=drv.kernel_module,
    )

    if "ats" in known_modes:
        f.details.update(active=True, mode="ats")
        return f.yes("the GPU reaches host memory through ATS (address translation services), HMM is not needed")
    if "hmm" in known_modes:
        f.details.update(active=True, mode="hmm")
        return f.yes("NVML reports HMM addressing")

    # Nothing confirmed it: name the first missing prerequisite.
    if not drv.loaded:
        f.details["active"] = False
        return f.no("no NVIDIA driver is loaded; HMM for CUDA needs the NVIDIA open kernel modules", "only relevant on machines with an NVIDIA GPU (Turing or newer)")
    if drv.version is None:
        return f.unknown(f"the NVIDIA driver version could not be read: {drv.problem}")
    if drv.kernel_module != "open":
        f.details["active"] = False
        return f.no("the proprietary NVIDIA kernel module does not support HMM", "install the open kernel modules (e.g. nvidia-open) of release 535 or later")
    if driver_major is not None and driver_major < DRIVER_FLOOR:
        f.details["active"] = False
        return f.no(f"driver {drv.version} predates HMM support (release {DRIVER_FLOOR})", f"upgrade to the open kernel modules of release {DRIVER_FLOOR} or later")
    if mirror is False or private is False:
        f.details["active"] = False
        missing = [k for k, v in (("CONFIG_HMM_MIRROR", mirror), ("CONFIG_DEVICE_PRIVATE", private)) if v is False]
        return f.no(f"the kernel is built without {' and '.join(missing)}", "use a kernel built with CONFIG_HMM_MIRROR=y and CONFIG_DEVICE_PRIVATE=y (most distribution kernels are)")
    if kernel_ok is False:
        f.details["active"] = False
        return f.no(f"kernel {rel} is older than HMM needs ({FLOOR_TEXT})", "upgrade the kernel")
    if disable is not None and disable.upper() in ("Y", "1"):
        f.details["active"] = False
        return f.no(f"nvidia_uvm was loaded with uvm_disable_hmm={disable}", "remove uvm_disable_hmm from /etc/modprobe.d/, then reload nvidia_uvm (modprobe -r nvidia_uvm; modprobe nvidia_uvm)")
    if "none" in modes:
        f.details["active"] = False
        return f.no("NVML reports no HMM/ATS addressing although the prerequisites look met", "check dmesg for nvidia_uvm messages about HMM")
    if mirror is None or kernel_ok is None:
        return f.unknown(
            "no kernel config found" if mirror is None else "the kernel version could not be read",
            "modprobe configs, or install /boot/config-$(uname -r)",
        )
    if disable is None:
        return f.partial(
            "all prerequisites are met, but nvidia_uvm is not loaded, so HMM cannot be confirmed",
            "nvidia_uvm loads on first CUDA use (or: modprobe nvidia_uvm); probe again afterwards",
        )
    if disable.upper() not in ("N", "0"):
        return f.unknown(f"unrecognised uvm_disable_hmm value {disable!r}")
    f.details.update(active=True, mode="hmm")
    return f.yes("open kernel modules, kernel and config meet HMM's needs, and nvidia_uvm has HMM enabled")


CHECKS = [hmm]
