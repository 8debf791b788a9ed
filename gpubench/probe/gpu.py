"""GPU area: the NVIDIA driver, every GPU of any vendor, compute accelerators, the DRM scheduler.

GPUs are found three ways and merged by PCI address: display-class PCI functions
(/sys/bus/pci/devices/*/class 0x03xxxx, which also finds a GPU no driver has bound),
DRM cards (/sys/class/drm/card*, which also finds GPUs that are not PCI devices), and the
NVIDIA driver's /proc/driver/nvidia/gpus (which finds NVIDIA GPUs without nvidia-drm).
Sysfs layout: Documentation/ABI/testing/sysfs-bus-pci, Documentation/ABI/testing/sysfs-class-drm
(not all attributes are listed there), Documentation/accel/introduction.rst.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gpubench.probe import nvidia
from gpubench.probe.checks import check, kernel_config, memo
from gpubench.probe.model import Findings
from gpubench.probe.source import Source, SourceError

PCI_DEVICES = "/sys/bus/pci/devices"
DRM_CLASS = "/sys/class/drm"
ACCEL_CLASS = "/sys/class/accel"
ACCEL_DEV = "/dev/accel"

VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}
# Display controllers that are framebuffers, not compute GPUs: BMCs and emulated VGA.
DISPLAY_ONLY_VENDORS = {
    "0x1a03": "ASPEED BMC",
    "0x102b": "Matrox",
    "0x1234": "QEMU/Bochs VGA",
    "0x1013": "Cirrus Logic",
    "0x1b36": "QEMU QXL",
    "0x15ad": "VMware SVGA",
    "0x1af4": "virtio GPU",
    "0x1414": "Hyper-V video",
}
FOUND_BY = {"pci": PCI_DEVICES, "drm": DRM_CLASS, "nvidia procfs": nvidia.GPUS_DIR}
_CARD = re.compile(r"card\d+$")
_ACCEL = re.compile(r"accel\d+$")


@dataclass
class Inventory:
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)  # key: PCI address or card name
    display_only: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reads that failed


def _driver_name(src: Source, device_dir: str, uevent: dict[str, str] | None = None) -> str | None:
    """The bound driver: the basename of the `driver` link, else DRIVER= of the uevent file
    (a replayed snapshot refuses links that point above its root)."""
    link = src.readlink(f"{device_dir}/driver")
    if link:
        return link.rstrip("/").rsplit("/", 1)[-1]
    if uevent is None:
        uevent = _uevent(src, device_dir)
    return uevent.get("DRIVER") or None


def _uevent(src: Source, device_dir: str) -> dict[str, str]:
    text = src.text(f"{device_dir}/uevent") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _hex_id(value: str | None) -> str | None:
    """'0x8086' as sysfs writes it; anything else is garbage."""
    if value and re.fullmatch(r"0x[0-9a-fA-F]{4}", value):
        return value.lower()
    return None


def _add(inv: Inventory, key: str, vendor_id: str | None, device_id: str | None, driver: str | None, source: str) -> None:
    if vendor_id in DISPLAY_ONLY_VENDORS:
        if not any(d["pci"] == key for d in inv.display_only):
            inv.display_only.append({"pci": key, "what": DISPLAY_ONLY_VENDORS[vendor_id], "driver": driver})
        return
    entry = inv.gpus.setdefault(key, {"pci": key, "vendor": None, "device_id": None, "driver": None, "model": None, "found_by": []})
    if vendor_id and not entry["vendor"]:
        entry["vendor"] = VENDORS.get(vendor_id, vendor_id)
    entry["device_id"] = entry["device_id"] or device_id
    entry["driver"] = entry["driver"] or driver
    if source not in entry["found_by"]:
        entry["found_by"].append(source)


def inventory(src: Source) -> Inventory:
    return memo(src, "gpu.inventory", lambda: _take_inventory(src))  # type: ignore[return-value]


def _take_inventory(src: Source) -> Inventory:
    inv = Inventory()
    _scan_pci(src, inv)
    _scan_drm(src, inv)
    _scan_nvidia(src, inv)
    return inv


def _scan_pci(src: Source, inv: Inventory) -> None:
    try:
        names = src.listdir(PCI_DEVICES)
    except SourceError as e:
        inv.problems.append(str(e))
        return
    for name in names:
        base = f"{PCI_DEVICES}/{name}"
        try:
            cls = src.value(f"{base}/class")
            if not cls or not cls.lower().startswith("0x03"):
                continue
            vendor_id, device_id = _hex_id(src.value(f"{base}/vendor")), _hex_id(src.value(f"{base}/device"))
            # read even when the link answers, so that a recorded snapshot can replay it
            driver = _driver_name(src, base, _uevent(src, base))
        except SourceError as e:
            inv.problems.append(str(e))
            continue
        _add(inv, nvidia.normalize_pci(name), vendor_id, device_id, driver, "pci")


def _scan_drm(src: Source, inv: Inventory) -> None:
    try:
        cards = [c for c in src.listdir(DRM_CLASS) if _CARD.match(c)]
    except SourceError as e:
        inv.problems.append(str(e))
        return
    for card in cards:
        dev = f"{DRM_CLASS}/{card}/device"
        try:
            uevent = _uevent(src, dev)
            vendor_id, device_id = _hex_id(src.value(f"{dev}/vendor")), _hex_id(src.value(f"{dev}/device"))
            driver = _driver_name(src, dev, uevent)
        except SourceError as e:
            inv.problems.append(str(e))
            continue
        slot = uevent.get("PCI_SLOT_NAME")
        key = nvidia.normalize_pci(slot) if slot else f"{card} (not PCI)"
        _add(inv, key, vendor_id, device_id, driver, "drm")


def _scan_nvidia(src: Source, inv: Inventory) -> None:
    try:
        gpus = nvidia.procfs_gpus(src)
    except SourceError as e:
        inv.problems.append(str(e))
        return
    for g in gpus:
        _add(inv, g["pci"], "0x10de", None, "nvidia", "nvidia procfs")
        inv.gpus[g["pci"]]["model"] = g["model"]
    names = {d.get("pci"): d.get("name") for d in ((nvidia.nvml(src) or {}).get("devices") or []) if isinstance(d, dict)}
    for pci, name in names.items():
        if pci in inv.gpus and name and not inv.gpus[pci]["model"]:
            inv.gpus[pci]["model"] = name


def gpu_list(src: Source) -> list[dict[str, Any]]:
    """The GPUs, sorted by PCI address, in the shape benchmarks read from details['devices']."""
    return [
        {k: g[k] for k in ("pci", "vendor", "driver", "model", "device_id")}
        for _, g in sorted(inventory(src).gpus.items())
    ]


# --- checks ---------------------------------------------------------------------------------

@check("gpu", "nvidia driver")
def nvidia_driver(src: Source, f: Findings):
    drv = nvidia.driver(src)
    f.details.update(version=drv.version, kernel_module=drv.kernel_module, gpus=[])
    if not drv.loaded:
        f.saw(nvidia.VERSION_FILE, "absent")
        nvidia_on_pci = [g for g in inventory(src).gpus.values() if g["vendor"] == "nvidia"]
        if nvidia_on_pci:
            f.saw("NVIDIA GPUs on PCI", ", ".join(g["pci"] for g in nvidia_on_pci))
            return f.no(
                "an NVIDIA GPU is present but the NVIDIA kernel driver is not loaded",
                "install the NVIDIA driver (open kernel modules, e.g. nvidia-open) and load it: modprobe nvidia",
            )
        return f.no("the NVIDIA kernel driver is not loaded (no NVIDIA GPU found)", "only needed for NVIDIA GPUs")
    f.saw(nvidia.VERSION_FILE, drv.banner or "unreadable banner")
    if drv.version is None:
        return f.unknown(drv.problem, "reinstall the NVIDIA driver, or re-record the snapshot")
    gpus = [{"pci": g["pci"], "model": g["model"]} for g in nvidia.procfs_gpus(src)]
    f.details["gpus"] = gpus
    f.saw(nvidia.GPUS_DIR, "; ".join(f"{g['pci']} {g['model'] or '?'}" for g in gpus) or "no GPU directories")
    info = nvidia.nvml(src)
    if info is None:
        f.saw("NVML", "not recorded in this snapshot" if not src.live else "not asked")
    elif not info.get("available"):
        f.saw("NVML", f"unavailable: {info.get('reason')}")
        f.details["nvml"] = False
    else:
        f.details.update(nvml=True, cuda_driver_version=info.get("cuda_driver_version"))
        f.details["nvml_devices"] = [
            {k: d.get(k) for k in ("index", "pci", "name", "memory_total")} for d in info.get("devices") or []
        ]
        f.saw("NVML", f"driver {info.get('driver_version')}, CUDA {info.get('cuda_driver_version')}, {len(info.get('devices') or [])} device(s)")
        for d in info.get("devices") or []:
            mem = d.get("memory_total")
            f.saw(f"NVML device {d.get('index')}", f"{d.get('name')} {d.get('pci')} {mem // 2**20 if isinstance(mem, int) else '?'} MiB")
    module = "open kernel module" if drv.kernel_module == "open" else "proprietary kernel module"
    if not gpus:
        return f.partial(f"driver {drv.version} ({module}) is loaded but lists no GPU", "check `nvidia-smi` and dmesg for GPU initialisation errors")
    return f.yes(f"driver {drv.version}, {module}, {len(gpus)} GPU(s)")


@check("gpu", "gpus")
def gpus(src: Source, f: Findings):
    inv = inventory(src)
    devices = gpu_list(src)
    f.details.update(count=len(devices), devices=devices, display_only=inv.display_only)
    for d in inv.display_only:
        f.saw("display only (not counted)", f"{d['pci']} {d['what']} driver={d['driver'] or 'none'}")
    if not devices:
        if inv.problems:
            return f.unknown("; ".join(inv.problems), "run as a user who can read sysfs, or re-record the snapshot")
        f.saw(PCI_DEVICES, "no display-class (0x03) PCI function")
        f.saw(DRM_CLASS, "no card*")
        return f.no(
            "no GPU found",
            "on a GPU machine check `lspci -nn | grep -iE 'vga|3d|display'` and install its driver (nvidia-open, amdgpu, i915/xe); "
            "in a VM, pass a GPU through with VFIO",
        )
    for d in devices:
        found_by = ", ".join(FOUND_BY[s] for s in inv.gpus[d["pci"]]["found_by"])
        f.saw(f"GPU {d['pci']}", f"{d['vendor'] or '?'} {d['model'] or d['device_id'] or '?'}, driver {d['driver'] or 'none'} (in {found_by})")
    unbound = [d["pci"] for d in devices if not d["driver"]]
    if unbound:
        return f.partial(f"no driver bound to {', '.join(unbound)}", "install and load the GPU's kernel driver (nvidia-open, amdgpu, i915/xe)")
    if inv.problems:
        return f.partial(f"{len(devices)} GPU(s) found, but some reads failed: {'; '.join(inv.problems)}")
    return f.yes(f"{len(devices)} GPU(s)")


@check("gpu", "accelerators")
def accelerators(src: Source, f: Findings):
    names = [n for n in src.listdir(ACCEL_CLASS) if _ACCEL.match(n)]
    nodes = src.listdir(ACCEL_DEV)
    f.saw(ACCEL_CLASS, ", ".join(names) or "absent or empty")
    f.saw(ACCEL_DEV, ", ".join(nodes) or "absent or empty")
    devices = []
    for name in names:
        dev = f"{ACCEL_CLASS}/{name}/device"
        uevent = _uevent(src, dev)
        vendor_id = _hex_id(src.value(f"{dev}/vendor"))
        entry = {
            "name": name,
            "pci": uevent.get("PCI_SLOT_NAME"),
            "vendor": VENDORS.get(vendor_id or "", vendor_id),
            "device_id": _hex_id(src.value(f"{dev}/device")),
            "driver": _driver_name(src, dev, uevent),
            "dev_node": name in nodes,
        }
        devices.append(entry)
        f.saw(f"{ACCEL_CLASS}/{name}", f"driver={entry['driver'] or 'none'} pci={entry['pci'] or '?'} vendor={entry['vendor'] or '?'}")
    f.details.update(count=len(devices), devices=devices, dev_nodes=nodes)
    if not devices:
        return f.no(
            "no compute accelerator (DRM accel device) found",
            "only NPUs and AI accelerators appear here (intel_vpu, habanalabs, qaic, amdxdna); they need CONFIG_DRM_ACCEL",
        )
    missing = [d["name"] for d in devices if not d["dev_node"]]
    if missing:
        return f.partial(f"no /dev/accel node for {', '.join(missing)}", "in a container, pass the device through (--device /dev/accel/...)")
    return f.yes(f"{len(devices)} accelerator(s): {', '.join(sorted({d['driver'] or '?' for d in devices}))}")


@check("gpu", "drm scheduler")
def drm_scheduler(src: Source, f: Findings):
    cfg = kernel_config(src)
    sched, accel = cfg.get("CONFIG_DRM_SCHED"), cfg.get("CONFIG_DRM_ACCEL")
    f.saw("CONFIG_DRM_SCHED", cfg.describe("CONFIG_DRM_SCHED"))
    f.saw("CONFIG_DRM_ACCEL", cfg.describe("CONFIG_DRM_ACCEL"))
    loaded = src.exists("/sys/module/gpu_sched")
    f.saw("/sys/module/gpu_sched", "present" if loaded else "absent")
    f.details.update(drm_sched=sched, drm_accel=accel, gpu_sched_loaded=loaded)
    if sched is None:
        if loaded:
            return f.yes("the gpu_sched module is loaded (no kernel config to confirm the build option)")
        return f.unknown("no kernel config found", "modprobe configs, or install /boot/config-$(uname -r)")
    if sched in ("y", "m"):
        return f.yes("built in" if sched == "y" else "built as module gpu_sched" + (" (loaded)" if loaded else " (not loaded)"))
    return f.no(
        "CONFIG_DRM_SCHED is not set: no driver that schedules GPU jobs through it (amdgpu, xe, nouveau, ...) is built",
        "use a kernel built with the GPU driver you need; its Kconfig selects DRM_SCHED",
    )


CHECKS = [nvidia_driver, gpus, accelerators, drm_scheduler]
