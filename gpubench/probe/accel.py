"""Compute accelerators (NPUs, AI accelerators): DRM accel devices, and PCI processing
accelerators (class 0x12xxxx) whether or not a driver has bound them.

Read: /sys/class/accel/accelN and /dev/accel/accelN (Documentation/accel/introduction.rst), and
the class 0x12 functions probe/pci.py finds. The driver each vendor's devices need is the module
its kernel driver builds (drivers/accel/: ivpu -> intel_vpu.ko, habanalabs, qaic, amdxdna).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpubench.probe import pci
from gpubench.probe.checks import check, recorded
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, PARTIAL, YES, Rule, always, decide, not_recorded
from gpubench.probe.source import Source

ACCEL_CLASS = "/sys/class/accel"
ACCEL_DEV = "/dev/accel"
VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x1022": "amd", "0x8086": "intel", "0x1da3": "habana", "0x17cb": "qualcomm"}
# vendor -> (module, kernel option) of the upstream accel driver for its processing accelerators
DRIVER_OF_VENDOR = {
    "0x8086": ("intel_vpu", "CONFIG_DRM_ACCEL_IVPU"),
    "0x1da3": ("habanalabs", "CONFIG_DRM_ACCEL_HABANALABS"),
    "0x17cb": ("qaic", "CONFIG_DRM_ACCEL_QAIC"),
    "0x1022": ("amdxdna", "CONFIG_DRM_ACCEL_AMDXDNA"),
}
_ACCEL = re.compile(r"accel\d+$")


@dataclass(frozen=True)
class AccelFacts:
    recorded: bool
    devices: tuple[dict[str, Any], ...]

    @property
    def unbound(self) -> list[dict[str, Any]]:
        """PCI accelerators no driver holds (a /dev/accel node alone shows a driver made it)."""
        return [d for d in self.devices if d["found_in"] == pci.PCI_DEVICES and not d["driver"]]

    @property
    def without_node(self) -> list[str]:
        return [d["name"] for d in self.devices if d["name"] and not d["dev_node"]]

    def unbound_why(self) -> str:
        return "no driver bound to " + ", ".join(f"{d['pci']} ({d['vendor'] or '?'} processing accelerator)" for d in self.unbound)

    def unbound_fix(self) -> str:
        fixes = []
        for d in self.unbound:
            module, option = DRIVER_OF_VENDOR.get(d["vendor_id"] or "", (None, None))
            fixes.append(f"modprobe {module} (a kernel with {option})" if module else "install the driver its vendor provides")
        return "; ".join(dict.fromkeys(fixes))


ACCEL_RULES: tuple[Rule[AccelFacts], ...] = (
    not_recorded(f"{ACCEL_CLASS}, {ACCEL_DEV} or {pci.PCI_DEVICES}"),
    Rule(lambda x: not x.devices, NO, "no compute accelerator (DRM accel device or PCI processing accelerator) found",
         "only NPUs and AI accelerators appear here (intel_vpu, habanalabs, qaic, amdxdna); they need CONFIG_DRM_ACCEL"),
    Rule(lambda x: bool(x.unbound), PARTIAL, AccelFacts.unbound_why, AccelFacts.unbound_fix),
    Rule(lambda x: bool(x.without_node), PARTIAL, lambda x: f"no /dev/accel node for {', '.join(x.without_node)}",
         "in a container, pass the device through (--device /dev/accel/...)"),
    Rule(always, YES, lambda x: f"{len(x.devices)} accelerator(s): " + ", ".join(
        f"{d['name'] or d['pci']} ({d['driver'] or 'driver not shown: ' + ACCEL_DEV + ' only'})" for d in x.devices)),
)


def _entry(name: str | None, address: str | None, vendor_id: str | None, device_id: str | None, driver: str | None,
           dev_node: bool, found_in: str) -> dict[str, Any]:
    vendor = VENDORS.get(vendor_id or "", vendor_id)
    return {"name": name, "pci": address, "vendor": vendor, "vendor_id": vendor_id, "device_id": device_id,
            "driver": driver, "dev_node": dev_node, "found_in": found_in}


def _read_devices(src: Source, names: list[str], nodes: list[str]) -> list[dict[str, Any]]:
    """accel class devices, then the PCI accelerators they do not already cover, then /dev/accel
    nodes no sysfs entry explains (a container given the node, not the class folder)."""
    devices = []
    for name in names:
        dev = f"{ACCEL_CLASS}/{name}/device"
        event = pci.uevent(src, dev)
        vendor_id, device_id = pci.ids(src, dev, event)
        devices.append(_entry(name, event.get("PCI_SLOT_NAME"), vendor_id, device_id, pci.driver_name(src, dev, event), name in nodes, ACCEL_CLASS))
    covered = {d["pci"] for d in devices}
    for fn in pci.scan(src).of_class(pci.ACCELERATOR):
        if fn.address not in covered:
            devices.append(_entry(None, fn.address, fn.vendor_id, fn.device_id, fn.driver, False, pci.PCI_DEVICES))
    for node in nodes:
        if _ACCEL.match(node) and node not in names:
            devices.append(_entry(node, None, None, None, None, True, ACCEL_DEV))
    return devices


@check("gpu", "accelerators")
def accelerators(src: Source, f: Findings):
    names = [n for n in src.listdir(ACCEL_CLASS) if _ACCEL.match(n)]
    nodes = src.listdir(ACCEL_DEV)
    f.saw(ACCEL_CLASS, ", ".join(names) or "absent or empty")
    f.saw(ACCEL_DEV, ", ".join(nodes) or "absent or empty")
    devices = _read_devices(src, names, nodes)
    for d in devices:
        f.saw(f"{d['found_in']}/{d['name'] or d['pci']}",
              f"driver={d['driver'] or ('not shown' if d['found_in'] == ACCEL_DEV else 'none')} pci={d['pci'] or '?'} "
              f"vendor={d['vendor'] or '?'} device={d['device_id'] or '?'}")
    f.details.update(count=len(devices), devices=devices, dev_nodes=nodes)
    facts = AccelFacts(recorded(src, "/sys/class", "/sys/bus", ACCEL_DEV), tuple(devices))
    return decide(f, facts, ACCEL_RULES)
