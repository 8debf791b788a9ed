"""What the NVIDIA driver tells about itself: procfs files, and NVML when the library loads.

Shared by the gpu, hmm, p2p and gds areas. NVML is asked only when the desktop driver is loaded,
so a machine without the NVIDIA driver never pays for importing pynvml or loading libnvidia-ml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpubench.probe import pci
from gpubench.probe.checks import memo, recorded
from gpubench.probe.source import Source

VERSION_FILE = "/proc/driver/nvidia/version"
GPUS_DIR = "/proc/driver/nvidia/gpus"
CARDS_DIR = "/proc/driver/nvidia/cards"  # what drivers before the gpus/ folder (the 96.43 and older series) show
MODULE_DIR = "/sys/module/nvidia"
PCI_DRIVER_DIR = "/sys/bus/pci/drivers/nvidia"
TEGRA_RELEASE = "/etc/nv_tegra_release"  # Jetson Linux (L4T): "# R35 (release), REVISION: 3.1, ..."
NVGPU_MODULE = "/sys/module/nvgpu"  # the Jetson GPU driver of the L4T releases before 36
NVML_COMMAND = "nvml"
# Where the GPU area's inputs live: a snapshot holding none of them did not record the area.
GPU_INPUTS = ("/proc/driver", "/sys/bus", "/sys/class", "/sys/module")
INPUTS_SAID = "/proc/driver, /sys/bus, /sys/class or /sys/module"

# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build ..."
# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023"
_NVRM = re.compile(r"NVRM version:\s*(?P<banner>.*?Kernel Module.*?)\s+(?P<version>\d+\.\d+(?:\.\d+)?)\b")
_L4T = re.compile(r"#\s*R(?P<major>\d+)\s*\(release\),\s*REVISION:\s*(?P<revision>\d+(?:\.\d+)*)")
DESKTOP_FIRST_MAJOR = 100  # desktop driver lines are 3-digit; a Jetson nvidia.ko carries its L4T release (35.3.1)

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
    loaded: bool  # any trace of a loaded NVIDIA GPU driver (see seen_in)
    version: str | None  # the desktop driver's release (570.124.06); None on Jetson, whose number is l4t_release
    kernel_module: str | None  # "open" | "proprietary" | None
    banner: str | None  # the NVRM line as read
    problem: str = ""  # why version/kernel_module are None although the version file exists
    seen_in: tuple[str, ...] = ()  # the files and folders that show it loaded
    l4t_release: str | None = None  # Jetson Linux release (35.3.1): the board is a Jetson/Tegra
    gpu_driver: str = "nvidia"  # the module driving the GPU: nvidia, or nvgpu on Jetson before L4T 36
    recorded: bool = True  # False: a snapshot that holds none of the GPU area's inputs

    @property
    def tegra(self) -> bool:
        return self.l4t_release is not None or self.gpu_driver == "nvgpu"

    @property
    def desktop(self) -> bool:
        """nvidia.ko of the desktop/server driver line is loaded: NVML and the HMM floors apply."""
        return self.loaded and not self.tegra


def driver(src: Source) -> NvidiaDriver:
    return memo(src, "nvidia.driver", lambda: _read_driver(src))  # type: ignore[return-value]


def _read_driver(src: Source) -> NvidiaDriver:
    """Every trace nvidia.ko leaves while loaded counts (its procfs folder exists only then, and
    /sys/module/nvidia too), so that the GPU list and the driver verdict never disagree."""
    text = src.text(VERSION_FILE)
    bound = [fn.address for fn in pci.scan(src).of_class(pci.DISPLAY) if fn.driver == "nvidia"]
    seen = [path for path, there in (
        (VERSION_FILE, text is not None),
        (f"{pci.PCI_DEVICES}/{bound[0] if bound else ''}/driver", bool(bound)),
        (GPUS_DIR, bool(src.listdir(GPUS_DIR))),
        (CARDS_DIR, bool(src.listdir(CARDS_DIR))),
        (MODULE_DIR, src.exists(MODULE_DIR)),
        (PCI_DRIVER_DIR, src.exists(PCI_DRIVER_DIR)),
        (NVGPU_MODULE, src.exists(NVGPU_MODULE)),
    ) if there]
    version, module, banner, problem = _parse_banner(text) if text is not None else (src.value(f"{MODULE_DIR}/version"), None, None, "")
    l4t = _l4t_release(src.text(TEGRA_RELEASE))
    if version and int(version.split(".")[0]) < DESKTOP_FIRST_MAJOR and "aarch64" in (banner or ""):
        l4t, version = l4t or version, None
    return NvidiaDriver(
        loaded=bool(seen), version=version, kernel_module=module, banner=banner, problem=problem,
        seen_in=tuple(seen), l4t_release=l4t, gpu_driver="nvgpu" if NVGPU_MODULE in seen else "nvidia",
        recorded=recorded(src, *GPU_INPUTS),
    )


def _parse_banner(text: str) -> tuple[str | None, str | None, str | None, str]:
    """(version, kernel module kind, NVRM line, problem) of /proc/driver/nvidia/version."""
    line = next((ln.strip() for ln in text.splitlines() if ln.startswith("NVRM version:")), None)
    if line is None:
        return None, None, None, f"no 'NVRM version:' line in {VERSION_FILE}"
    m = _NVRM.search(line)
    if not m:
        return None, None, line, f"unrecognised NVRM line in {VERSION_FILE}"
    return m.group("version"), "open" if "Open Kernel Module" in m.group("banner") else "proprietary", line, ""


def _l4t_release(text: str | None) -> str | None:
    """'# R35 (release), REVISION: 3.1, GCID: ...' -> '35.3.1'."""
    m = _L4T.search(text or "")
    return f"{m.group('major')}.{m.group('revision')}" if m else None


def parse_information(text: str) -> dict[str, str]:
    """`Key: value` lines of /proc/driver/nvidia/gpus/*/information, keys lower-cased."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip().lower()] = value.strip()
    return out


def procfs_gpus(src: Source) -> list[dict[str, Any]]:
    """One entry per /proc/driver/nvidia/gpus/<pci>/ folder (pci, model, minor), or per old
    /proc/driver/nvidia/cards/N file (pci None where it does not say)."""
    return memo(src, "nvidia.gpus", lambda: _read_procfs_gpus(src))  # type: ignore[return-value]


def _read_procfs_gpus(src: Source) -> list[dict[str, Any]]:
    gpus = []
    folders = [(name, f"{GPUS_DIR}/{name}/information") for name in src.listdir(GPUS_DIR)]
    cards = [(None, f"{CARDS_DIR}/{name}") for name in src.listdir(CARDS_DIR) if name.isdigit()]
    for name, path in folders or cards:
        info_text = src.text(path)
        info = parse_information(info_text) if info_text else {}
        bus = info.get("bus location") or name
        gpus.append({"pci": normalize_pci(bus) if bus else None, "model": info.get("model") or None, "minor": info.get("device minor")})
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
        if not driver(src).desktop:
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


# --- NVLink, asked with the rest of NVML's answers ----------------------------------------------

NVLINK_SPEED_FIELD = 90  # NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON
NVLINK_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS
NVML_NO_SUCH_LINK = (2, 3)  # NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED: past the device's links


def query_nvlinks(nv: Any, handle: Any) -> dict[str, Any]:
    """One GPU's NVLinks through an initialised pynvml: each link's state and, when active, the PCI
    address at its other end; the per-link speed. Called from query_nvml; the links area reads what it found."""
    links: list[dict[str, Any]] = []
    out: dict[str, Any] = {"links": links, "speed_mbps": None, "error": None}
    for link in range(NVLINK_MAX_LINKS):
        try:
            active = nv.nvmlDeviceGetNvLinkState(handle, link) == 1
        except Exception as e:
            if getattr(e, "value", None) not in NVML_NO_SUCH_LINK:
                out["error"] = f"link {link}: {e}"
            break
        entry: dict[str, Any] = {"link": link, "active": active, "remote_pci": None}
        if active:
            try:
                bus_id = nv.nvmlDeviceGetNvLinkRemotePciInfo_v2(handle, link).busId
                entry["remote_pci"] = normalize_pci(bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id))
            except Exception:
                pass
        links.append(entry)
    try:
        value = nv.nvmlDeviceGetFieldValues(handle, [NVLINK_SPEED_FIELD])[0]
        if value.nvmlReturn == 0 and value.value.uiVal:
            out["speed_mbps"] = int(value.value.uiVal)
    except Exception:
        pass
    return out
