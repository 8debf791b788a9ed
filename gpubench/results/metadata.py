"""Machine facts captured once per run, as pyperf does: what a comparison needs to be fair."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpubench import __version__
from gpubench.probe.model import Profile
from gpubench.probe.views import GpuView, KernelView

if TYPE_CHECKING:
    from gpubench.results.model import Run

PACKAGES = ("numpy", "numba", "scipy", "liburing", "cupy-cuda12x", "cupy-cuda13x", "kvikio-cu12", "kvikio-cu13",
            "nvidia-ml-py", "psutil", "typer", "rich")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _bracketed(value: str | None) -> str | None:
    """'always [madvise] never' -> 'madvise'."""
    if value and "[" in value:
        return value.split("[", 1)[1].split("]", 1)[0]
    return value


def _cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _distro() -> str | None:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return None


def _packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return found


def capture(profile: Profile, label: str) -> dict[str, Any]:
    import psutil

    gpus = GpuView.from_profile(profile)
    kernel = KernelView.from_profile(profile)
    return {
        "label": label,
        "hostname": socket.gethostname(),
        "kernel": kernel.release or platform.release(),
        "cmdline": kernel.cmdline,
        "distro": _distro(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "smt": _read("/sys/devices/system/cpu/smt/control"),
        "isolated_cpus": _read("/sys/devices/system/cpu/isolated") or "",
        "memory_bytes": psutil.virtual_memory().total,
        "thp": _bracketed(_read("/sys/kernel/mm/transparent_hugepage/enabled")),
        "numa_nodes": _read("/sys/devices/system/node/online"),
        "gpus": [g.model or g.pci for g in gpus.others],
        "nvidia_driver": gpus.driver_version,
        "cuda_driver": gpus.cuda_driver_version,
        "python": sys.version.split()[0],
        "packages": _packages(),
        "gpubench": __version__,
    }


def stored_profile(run: Run) -> Profile | None:
    """The probe a run was planned from, as it stored it; None where it stored none that can be read."""
    try:
        profile = Profile.from_dict(run.profile)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return profile if profile.capabilities else None
