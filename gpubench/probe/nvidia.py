"""What the NVIDIA driver tells about itself: procfs files, and NVML when the library loads.

Shared by the gpu, hmm, p2p and gds areas. NVML is asked only when /proc/driver/nvidia exists,
so a machine without the NVIDIA driver never pays for importing pynvml or loading libnvidia-ml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpubench.probe.checks import memo
from gpubench.probe.source import Source

VERSION_FILE = "/proc/driver/nvidia/version"
GPUS_DIR = "/proc/driver/nvidia/gpus"
NVML_COMMAND = "nvml"

# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build ..."
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023"
_NVRM = re.compile(r"NVRM version:\s*(?P<banner>.*?Kernel Module.*?)\s+(?P<version>\d+\.\d+(?:\.\d+)?)\b")

P2P_STATUS = {
    0: "ok",
    1: "chipset not supported",
    2: "GPU not supported",
    3: "IOH topology not supported",
    4: "disabled by regkey",
    5: "not supported",
    6: "unknown",
}
ADDRESSING_MODE = {0: "none", 1: "hmm", 2: "ats"}
# nvmlGpuP2PCapsIndex_t (nvml.h). Not pynvml's constants: nvidia-ml-py defines
# NVML_P2P_CAPS_INDEX_READ as the tuple (0,), which ctypes refuses as an argument.
P2P_CAPS_INDEX = {"read": 0, "write": 1, "nvlink": 2}


@dataclass(frozen=True)
class NvidiaDriver:
    loaded: bool  # /proc/driver/nvidia/version exists
    version: str | None
    kernel_module: str | None  # "open" | "proprietary" | None
    banner: str | None  # the NVRM line as read
    problem: str = ""  # why version/kernel_module are None although the file exists


def driver(src: Source) -> NvidiaDriver:
    return memo(src, "nvidia.driver", lambda: _read_driver(src))  # type: ignore[return-value]


def _read_driver(src: Source) -> NvidiaDriver:
    text = src.text(VERSION_FILE)
    if text is None:
        return NvidiaDriver(False, None, None, None)
    line = next((ln.strip() for ln in text.splitlines() if ln.startswith("NVRM version:")), None)
    if line is None:
        return NvidiaDriver(True, None, None, None, f"no 'NVRM version:' line in {VERSION_FILE}")
    m = _NVRM.search(line)
    if not m:
        return NvidiaDriver(True, None, None, line, f"unrecognised NVRM line in {VERSION_FILE}")
    module = "open" if "Open Kernel Module" in m.group("banner") else "proprietary"
    return NvidiaDriver(True, m.group("version"), module, line)


def parse_information(text: str) -> dict[str, str]:
    """`Key: value` lines of /proc/driver/nvidia/gpus/*/information, keys lower-cased."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip().lower()] = value.strip()
    return out


def procfs_gpus(src: Source) -> list[dict[str, Any]]:
    """One entry per /proc/driver/nvidia/gpus/<pci>/ directory: pci, model, minor."""
    return memo(src, "nvidia.gpus", lambda: _read_procfs_gpus(src))  # type: ignore[return-value]


def _read_procfs_gpus(src: Source) -> list[dict[str, Any]]:
    gpus = []
    for name in src.listdir(GPUS_DIR):
        info_text = src.text(f"{GPUS_DIR}/{name}/information")
        info = parse_information(info_text) if info_text else {}
        gpus.append(
            {
                "pci": normalize_pci(info.get("bus location") or name),
                "model": info.get("model") or None,
                "minor": info.get("device minor"),
            }
        )
    return gpus


def normalize_pci(bus_id: str) -> str:
    """'00000000:1B:00.0' (NVML) or '0000:1b:00.0' (sysfs) -> '0000:1b:00.0'."""
    bus_id = bus_id.strip().lower()
    m = re.fullmatch(r"([0-9a-f]+):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", bus_id)
    if not m:
        return bus_id
    return f"{int(m.group(1), 16):04x}:{m.group(2)}:{m.group(3)}.{m.group(4)}"


def nvml(src: Source) -> dict[str, Any] | None:
    """NVML's answers (see query_nvml), recorded as a command; None when the driver is absent
    or a replayed snapshot did not record them."""

    def ask() -> dict[str, Any] | None:
        if not driver(src).loaded:
            return None
        return src.command(NVML_COMMAND, query_nvml)

    return memo(src, "nvidia.nvml", ask)  # type: ignore[return-value]


def query_nvml() -> dict[str, Any]:
    """Ask NVML in-process, through nvidia-ml-py. Every field that fails records its error."""
    from importlib.util import find_spec

    if find_spec("pynvml") is None:
        return {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed"}
    try:
        import pynvml
    except Exception as e:  # a broken install must not end the probe
        return {"available": False, "reason": f"importing pynvml failed: {e}"}
    try:
        pynvml.nvmlInit()
    except Exception as e:
        return {"available": False, "reason": f"nvmlInit failed: {e}"}
    try:
        return _query_initialised(pynvml)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _attempt(errors: dict[str, str], key: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:
        errors[key] = str(e) or type(e).__name__
        return None


def _query_initialised(nv: Any) -> dict[str, Any]:
    from gpubench.probe.links import query_nvlinks

    errors: dict[str, str] = {}
    out: dict[str, Any] = {"available": True, "errors": errors}
    version = _attempt(errors, "driver_version", nv.nvmlSystemGetDriverVersion)
    out["driver_version"] = _text(version) if version is not None else None
    cuda = _attempt(errors, "cuda_driver_version", nv.nvmlSystemGetCudaDriverVersion_v2)
    out["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
    count = _attempt(errors, "device_count", nv.nvmlDeviceGetCount) or 0
    handles, devices = [], []
    for i in range(count):
        h = _attempt(errors, f"handle {i}", nv.nvmlDeviceGetHandleByIndex, i)
        handles.append(h)
        if h is None:
            devices.append({"index": i})
            continue
        name = _attempt(errors, f"name {i}", nv.nvmlDeviceGetName, h)
        pci = _attempt(errors, f"pci {i}", nv.nvmlDeviceGetPciInfo, h)
        mem = _attempt(errors, f"memory {i}", nv.nvmlDeviceGetMemoryInfo, h)
        mode = _attempt(errors, f"addressing_mode {i}", nv.nvmlDeviceGetAddressingMode, h)
        devices.append(
            {
                "index": i,
                "name": _text(name) if name is not None else None,
                "pci": normalize_pci(_text(pci.busId)) if pci is not None else None,
                "memory_total": int(mem.total) if mem is not None else None,
                "addressing_mode": ADDRESSING_MODE.get(mode, str(mode)) if mode is not None else None,
                "nvlinks": query_nvlinks(nv, h),
            }
        )
    out["devices"] = devices
    pairs: dict[str, dict[str, str]] = {}
    for a in range(count):
        for b in range(a + 1, count):
            if handles[a] is None or handles[b] is None:
                continue
            pair = {}
            for cap, index in P2P_CAPS_INDEX.items():
                status = _attempt(errors, f"p2p {a}-{b} {cap}", nv.nvmlDeviceGetP2PStatus, handles[a], handles[b], index)
                pair[cap] = P2P_STATUS.get(status, str(status)) if status is not None else "error"
            pairs[f"{a}-{b}"] = pair
    out["p2p"] = pairs
    return out


def release_triple(rel: str | None) -> tuple[int, int, int] | None:
    """'6.1.24-foo' -> (6, 1, 24); '6.8.0-45-generic' -> (6, 8, 0)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", rel or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
