"""The PCI functions the GPU area counts, read once: display controllers (class 0x03xxxx: GPUs,
also those no driver has bound) and processing accelerators (class 0x12xxxx: NPUs, Gaudi).

Files: Documentation/ABI/testing/sysfs-bus-pci (class, vendor, device, the driver link, uevent).
The uevent file carries DRIVER=, PCI_CLASS=, PCI_ID=VVVV:DDDD and PCI_SLOT_NAME= (the kernel's
pci_uevent(), drivers/pci/pci-driver.c): where a vendor or device file is missing, PCI_ID says it.
Class codes: PCI Code and ID Assignment Specification (base class 03h display, 12h processing
accelerators).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpubench.probe.checks import memo
from gpubench.probe.source import Source, SourceError

PCI_DEVICES = "/sys/bus/pci/devices"
DISPLAY = "0x03"
ACCELERATOR = "0x12"
_PCI_ID = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")


@dataclass(frozen=True)
class PciFunction:
    address: str  # 0000:01:00.0
    pci_class: str  # 0x030200
    vendor_id: str | None  # 0x10de
    device_id: str | None
    driver: str | None  # the bound driver's name; None when none is bound


@dataclass(frozen=True)
class PciScan:
    functions: tuple[PciFunction, ...]
    problems: tuple[str, ...]  # reads that failed

    def of_class(self, prefix: str) -> tuple[PciFunction, ...]:
        return tuple(fn for fn in self.functions if fn.pci_class.startswith(prefix))


def uevent(src: Source, device_dir: str) -> dict[str, str]:
    text = src.text(f"{device_dir}/uevent") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def driver_name(src: Source, device_dir: str, event: dict[str, str] | None = None) -> str | None:
    """The bound driver: the basename of the `driver` link, else DRIVER= of the uevent file
    (a replayed snapshot refuses links that point above its root)."""
    link = src.readlink(f"{device_dir}/driver")
    if link:
        return link.rstrip("/").rsplit("/", 1)[-1]
    if event is None:
        event = uevent(src, device_dir)
    return event.get("DRIVER") or None


def hex_id(value: str | None) -> str | None:
    """'0x8086' as sysfs writes it; anything else is garbage."""
    if value and re.fullmatch(r"0x[0-9a-fA-F]{4}", value):
        return value.lower()
    return None


def ids(src: Source, device_dir: str, event: dict[str, str]) -> tuple[str | None, str | None]:
    """(vendor, device) from the vendor and device files, else from the uevent's PCI_ID."""
    vendor, device = hex_id(src.value(f"{device_dir}/vendor")), hex_id(src.value(f"{device_dir}/device"))
    m = _PCI_ID.fullmatch(event.get("PCI_ID", ""))
    if m:
        vendor = vendor or f"0x{m.group(1).lower()}"
        device = device or f"0x{m.group(2).lower()}"
    return vendor, device


def scan(src: Source) -> PciScan:
    return memo(src, "pci.scan", lambda: _scan(src))  # type: ignore[return-value]


def _scan(src: Source) -> PciScan:
    try:
        names = src.listdir(PCI_DEVICES)
    except SourceError as e:
        return PciScan((), (str(e),))
    functions, problems = [], []
    for name in names:
        base = f"{PCI_DEVICES}/{name}"
        try:
            cls = (src.value(f"{base}/class") or "").lower()
            if not cls.startswith((DISPLAY, ACCELERATOR)):
                continue
            event = uevent(src, base)  # read even when the link answers, so that a recording replays
            vendor, device = ids(src, base, event)
            functions.append(PciFunction(name, cls, vendor, device, driver_name(src, base, event)))
        except SourceError as e:
            problems.append(str(e))
    return PciScan(tuple(functions), tuple(problems))
