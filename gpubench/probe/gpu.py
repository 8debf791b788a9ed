"""GPU area: the NVIDIA driver, every GPU of any vendor, compute accelerators, the DRM scheduler.

GPUs are found four ways and merged by address: display-class PCI functions (probe/pci.py, which
also finds a GPU no driver has bound), DRM cards (/sys/class/drm/card*, which also finds GPUs
that are not PCI devices), the NVIDIA driver's /proc/driver/nvidia/gpus (which finds NVIDIA GPUs
without nvidia-drm), and the platform devices of Jetson's nvgpu module.
Sysfs layout: Documentation/ABI/testing/sysfs-class-drm (not all attributes are listed there):
/sys/class/drm/cardN is a link into the device's folder, .../0000:00:02.0/drm/cardN;
/sys/module/M/drivers/BUS:NAME links each driver a module registers (drivers/base/module.c).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from gpubench.probe import nvidia, pci
from gpubench.probe.accel import VENDORS, accelerators
from gpubench.probe.checks import check, kernel_config, memo
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, PARTIAL, UNKNOWN, YES, Rule, always, decide, not_recorded
from gpubench.probe.source import Source, SourceError

DRM_CLASS = "/sys/class/drm"
NVGPU_DRIVERS = f"{nvidia.NVGPU_MODULE}/drivers"

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
FOUND_BY = {"pci": pci.PCI_DEVICES, "drm": DRM_CLASS, "nvidia procfs": nvidia.GPUS_DIR, "nvgpu": NVGPU_DRIVERS}
_CARD = re.compile(r"card\d+$")
_PCI_FOLDER = re.compile(r"(.*/([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]))(?:/|$)")  # the last PCI address in a path


@dataclass
class Inventory:
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)  # key: PCI address or card name
    display_only: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reads that failed


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
    found = pci.scan(src)
    inv.problems.extend(found.problems)
    for fn in found.of_class(pci.DISPLAY):
        _add(inv, nvidia.normalize_pci(fn.address), fn.vendor_id, fn.device_id, fn.driver, "pci")
    _scan_drm(src, inv)
    _scan_nvidia(src, inv)
    _scan_nvgpu(src, inv)
    return inv


def _scan_drm(src: Source, inv: Inventory) -> None:
    try:
        cards = [c for c in src.listdir(DRM_CLASS) if _CARD.match(c)]
    except SourceError as e:
        inv.problems.append(str(e))
        return
    for card in cards:
        try:
            key, vendor_id, device_id, driver = _read_card(src, card)
        except SourceError as e:
            inv.problems.append(str(e))
            continue
        _add(inv, key, vendor_id, device_id, driver, "drm")


def _read_card(src: Source, card: str) -> tuple[str, str | None, str | None, str | None]:
    """(key, vendor, device, driver) of one card: from its device/ folder, or, where that is
    missing, from the PCI function folder its class link points into."""
    dev = f"{DRM_CLASS}/{card}/device"
    event = pci.uevent(src, dev)
    slot = event.get("PCI_SLOT_NAME")
    if not event and not src.exists(dev):  # the link is read only then: a recording keeps card/ a folder
        where = posixpath.normpath(posixpath.join(DRM_CLASS, src.readlink(f"{DRM_CLASS}/{card}") or ""))
        m = _PCI_FOLDER.match(where)  # /sys/devices/pci0000:00/0000:00:02.0/drm/card1
        if m:
            dev, slot = m.group(1), m.group(2)
            event = pci.uevent(src, dev)
    vendor_id, device_id = pci.ids(src, dev, event)
    key = nvidia.normalize_pci(slot) if slot else f"{card} (not PCI)"
    return key, vendor_id, device_id, pci.driver_name(src, dev, event)


def _scan_nvidia(src: Source, inv: Inventory) -> None:
    try:
        gpus = nvidia.procfs_gpus(src)
    except SourceError as e:
        inv.problems.append(str(e))
        return
    on_pci = any(g["vendor"] == "nvidia" for g in inv.gpus.values())
    for n, g in enumerate(gpus):
        if g["pci"] is None and on_pci:  # an old cards/N file without an address: already seen on PCI
            continue
        key = g["pci"] or f"nvidia card {n} (no address)"
        _add(inv, key, "0x10de", None, "nvidia", "nvidia procfs")
        inv.gpus[key]["model"] = g["model"]
    names = {d.get("pci"): d.get("name") for d in ((nvidia.nvml(src) or {}).get("devices") or []) if isinstance(d, dict)}
    for address, name in names.items():
        if address in inv.gpus and name and not inv.gpus[address]["model"]:
            inv.gpus[address]["model"] = name


def _scan_nvgpu(src: Source, inv: Inventory) -> None:
    """Jetson's integrated GPU: a platform device (17000000.gv11b) of the nvgpu module's driver."""
    for link in src.listdir(NVGPU_DRIVERS):  # "platform:gv11b"
        bus, _, name = link.partition(":")
        for device in src.listdir(f"/sys/bus/{bus}/drivers/{name}"):
            if "." in device:  # the devices; bind, unbind, uevent and module are the driver's files
                key = f"{device} ({bus})"
                _add(inv, key, "0x10de", None, "nvgpu", "nvgpu")
                inv.gpus[key]["model"] = inv.gpus[key]["model"] or name


def gpu_list(src: Source) -> list[dict[str, Any]]:
    """The GPUs, sorted by PCI address, in the shape benchmarks read from details['devices']."""
    return [
        {k: g[k] for k in ("pci", "vendor", "driver", "model", "device_id")}
        for _, g in sorted(inventory(src).gpus.items())
    ]


# --- nvidia driver ------------------------------------------------------------------------------

HOLDER_FIX = {
    "nouveau": "blacklist nouveau (`blacklist nouveau` and `options nouveau modeset=0` in a file under /etc/modprobe.d), "
    "rebuild the initramfs and reboot, then load the NVIDIA driver: modprobe nvidia",
    "vfio-pci": "vfio-pci keeps a GPU for a VM; to use it here: echo ADDRESS > /sys/bus/pci/drivers/vfio-pci/unbind "
    "(and drop its ID from vfio-pci.ids=), then modprobe nvidia",
    None: "install the NVIDIA driver (open kernel modules, e.g. nvidia-open) and load it: modprobe nvidia",
}
HOLDER_SAYS = {"nouveau": "driven by nouveau", "vfio-pci": "bound to vfio-pci (set aside for a VM)", None: "without a driver"}


@dataclass(frozen=True)
class DriverFacts:
    driver: nvidia.NvidiaDriver
    gpus: tuple[dict[str, Any], ...]  # the driver's own list (procfs), or Jetson's platform GPUs
    held: tuple[tuple[str, str | None], ...]  # NVIDIA GPUs on PCI that another driver (or none) holds: (address, driver)

    @property
    def recorded(self) -> bool:
        return self.driver.recorded

    def _by_holder(self) -> dict[str | None, list[str]]:
        held: dict[str | None, list[str]] = {}
        for address, drv in self.held:
            held.setdefault(drv, []).append(address)
        return held

    def holders(self) -> str:
        return "; ".join(f"{', '.join(addresses)} {HOLDER_SAYS.get(drv, f'bound to {drv}')}" for drv, addresses in self._by_holder().items())

    def holder_fixes(self) -> str:
        return "; ".join(HOLDER_FIX.get(drv, f"unbind it from {drv}, then modprobe nvidia") for drv in self._by_holder())

    def describe(self) -> str:
        module = {"open": "open kernel module", "proprietary": "proprietary kernel module"}.get(self.driver.kernel_module or "", "kernel module kind not shown")
        version = self.driver.version or f"(version not shown: no {nvidia.VERSION_FILE})"
        return f"driver {version}, {module}, {len(self.gpus)} GPU(s)"

    def describe_tegra(self) -> str:
        release = f", Jetson Linux (L4T) {self.driver.l4t_release}" if self.driver.l4t_release else ""
        return f"Jetson/Tegra GPU driver {self.driver.gpu_driver}{release}, {len(self.gpus)} GPU(s)"


DRIVER_RULES: tuple[Rule[DriverFacts], ...] = (
    not_recorded(nvidia.INPUTS_SAID),
    Rule(lambda x: not x.driver.loaded and bool(x.held), NO,
         lambda x: f"NVIDIA GPU(s) present, but the NVIDIA kernel driver is not loaded: {x.holders()}", DriverFacts.holder_fixes),
    Rule(lambda x: not x.driver.loaded, NO, "the NVIDIA kernel driver is not loaded (no NVIDIA GPU found)", "only needed for NVIDIA GPUs"),
    Rule(lambda x: x.driver.tegra, YES, DriverFacts.describe_tegra),
    Rule(lambda x: bool(x.driver.problem), UNKNOWN, lambda x: x.driver.problem, "reinstall the NVIDIA driver, or re-record the snapshot"),
    Rule(lambda x: bool(x.held), PARTIAL, lambda x: f"{x.describe()}, but {x.holders()}", DriverFacts.holder_fixes),
    Rule(lambda x: not x.gpus, PARTIAL, lambda x: f"{x.describe()}: it is loaded but lists no GPU",
         "check `nvidia-smi` and dmesg for GPU initialisation errors"),
    Rule(always, YES, DriverFacts.describe),
)


def _nvml_evidence(src: Source, f: Findings) -> None:
    info = nvidia.nvml(src)
    if info is None:
        f.saw("NVML", "not recorded in this snapshot" if not src.live else "not asked")
    elif not info.get("available"):
        f.saw("NVML", f"unavailable: {info.get('reason')}")
        f.details["nvml"] = False
    else:
        devices = info.get("devices") or []
        f.details.update(nvml=True, cuda_driver_version=info.get("cuda_driver_version"))
        f.details["nvml_devices"] = [{k: d.get(k) for k in ("index", "pci", "name", "memory_total")} for d in devices]
        f.saw("NVML", f"driver {info.get('driver_version')}, CUDA {info.get('cuda_driver_version')}, {len(devices)} device(s)")
        for d in devices:
            mem = d.get("memory_total")
            f.saw(f"NVML device {d.get('index')}", f"{d.get('name')} {d.get('pci')} {mem // 2**20 if isinstance(mem, int) else '?'} MiB")


def _driver_facts(src: Source) -> DriverFacts:
    drv = nvidia.driver(src)
    inv = inventory(src)
    held = tuple((g["pci"], g["driver"]) for g in inv.gpus.values() if g["vendor"] == "nvidia" and "pci" in g["found_by"] and g["driver"] != "nvidia")
    if drv.gpu_driver == "nvgpu":  # Jetson before L4T 36: its GPU is a platform device, not in procfs
        gpus = tuple({"pci": g["pci"], "model": g["model"]} for g in inv.gpus.values() if g["driver"] == "nvgpu")
    else:
        gpus = tuple({"pci": g["pci"], "model": g["model"]} for g in nvidia.procfs_gpus(src))
    return DriverFacts(drv, gpus, held)


def _driver_evidence(f: Findings, facts: DriverFacts) -> None:
    drv = facts.driver
    f.saw(nvidia.VERSION_FILE, drv.banner or ("unreadable banner" if drv.problem else "absent"))
    if drv.loaded:
        f.saw("NVIDIA driver loaded, seen in", ", ".join(drv.seen_in))
    if drv.l4t_release:
        f.saw("Jetson Linux (L4T) release", drv.l4t_release)
    if facts.held:
        f.saw("NVIDIA GPUs not driven by nvidia", ", ".join(f"{a} ({d or 'no driver'})" for a, d in facts.held))
    if drv.loaded:
        listed = "; ".join(f"{g['pci']} {g['model'] or '?'}" for g in facts.gpus)
        f.saw(NVGPU_DRIVERS if drv.gpu_driver == "nvgpu" else nvidia.GPUS_DIR, listed or "no GPU listed")


@check("gpu", "nvidia driver")
def nvidia_driver(src: Source, f: Findings):
    facts = _driver_facts(src)
    drv = facts.driver
    _driver_evidence(f, facts)
    f.details.update(version=drv.version, kernel_module=drv.kernel_module, gpus=list(facts.gpus),
                     l4t_release=drv.l4t_release, gpu_driver=drv.gpu_driver if drv.loaded else None)
    if drv.desktop and not drv.problem:
        _nvml_evidence(src, f)
    return decide(f, facts, DRIVER_RULES)


# --- gpus ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuFacts:
    recorded: bool
    devices: tuple[dict[str, Any], ...]
    problems: tuple[str, ...]

    @property
    def unbound(self) -> list[str]:
        return [d["pci"] for d in self.devices if not d["driver"]]


GPU_RULES: tuple[Rule[GpuFacts], ...] = (
    not_recorded(nvidia.INPUTS_SAID),
    Rule(lambda x: not x.devices and bool(x.problems), UNKNOWN, lambda x: "; ".join(x.problems),
         "run as a user who can read sysfs, or re-record the snapshot"),
    Rule(lambda x: not x.devices, NO, "no GPU found",
         "on a GPU machine check `lspci -nn | grep -iE 'vga|3d|display'` and install its driver (nvidia-open, amdgpu, i915/xe); "
         "in a VM, pass a GPU through with VFIO"),
    Rule(lambda x: bool(x.unbound), PARTIAL, lambda x: f"no driver bound to {', '.join(x.unbound)}",
         "install and load the GPU's kernel driver (nvidia-open, amdgpu, i915/xe)"),
    Rule(lambda x: bool(x.problems), PARTIAL, lambda x: f"{len(x.devices)} GPU(s) found, but some reads failed: {'; '.join(x.problems)}"),
    Rule(always, YES, lambda x: f"{len(x.devices)} GPU(s)"),
)


@check("gpu", "gpus")
def gpus(src: Source, f: Findings):
    inv = inventory(src)
    devices = gpu_list(src)
    f.details.update(count=len(devices), devices=devices, display_only=inv.display_only)
    for d in inv.display_only:
        f.saw("display only (not counted)", f"{d['pci']} {d['what']} driver={d['driver'] or 'none'}")
    if not devices:
        f.saw(pci.PCI_DEVICES, "no display-class (0x03) PCI function")
        f.saw(DRM_CLASS, "no card*")
    for d in devices:
        found_by = ", ".join(FOUND_BY[s] for s in inv.gpus[d["pci"]]["found_by"])
        f.saw(f"GPU {d['pci']}", f"{d['vendor'] or '?'} {d['model'] or d['device_id'] or '?'}, driver {d['driver'] or 'none'} (in {found_by})")
    return decide(f, GpuFacts(nvidia.driver(src).recorded, tuple(devices), tuple(inv.problems)), GPU_RULES)


# --- drm scheduler ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SchedulerFacts:
    sched: str | None  # CONFIG_DRM_SCHED
    loaded: bool  # the gpu_sched module is loaded


SCHEDULER_RULES: tuple[Rule[SchedulerFacts], ...] = (
    Rule(lambda x: x.sched is None and x.loaded, YES, "the gpu_sched module is loaded (no kernel config to confirm the build option)"),
    Rule(lambda x: x.sched is None, UNKNOWN, "no kernel config found", "modprobe configs, or install /boot/config-$(uname -r)"),
    Rule(lambda x: x.sched == "y", YES, "built in"),
    Rule(lambda x: x.sched == "m", YES, lambda x: "built as module gpu_sched" + (" (loaded)" if x.loaded else " (not loaded)")),
    Rule(always, NO, "CONFIG_DRM_SCHED is not set: no driver that schedules GPU jobs through it (amdgpu, xe, nouveau, ...) is built",
         "use a kernel built with the GPU driver you need; its Kconfig selects DRM_SCHED"),
)


@check("gpu", "drm scheduler")
def drm_scheduler(src: Source, f: Findings):
    cfg = kernel_config(src)
    sched, accel = cfg.get("CONFIG_DRM_SCHED"), cfg.get("CONFIG_DRM_ACCEL")
    f.saw("CONFIG_DRM_SCHED", cfg.describe("CONFIG_DRM_SCHED"))
    f.saw("CONFIG_DRM_ACCEL", cfg.describe("CONFIG_DRM_ACCEL"))
    loaded = src.exists("/sys/module/gpu_sched")
    f.saw("/sys/module/gpu_sched", "present" if loaded else "absent")
    f.details.update(drm_sched=sched, drm_accel=accel, gpu_sched_loaded=loaded)
    return decide(f, SchedulerFacts(sched, loaded), SCHEDULER_RULES)


CHECKS = [nvidia_driver, gpus, accelerators, drm_scheduler]
