"""Links area: what the machine states its data links can carry, the limits a report sets each
measured path against.

- The PCIe link of every GPU, NVMe drive and NIC: `current_link_speed`, `current_link_width`,
  `max_link_speed` and `max_link_width` of /sys/bus/pci/devices/ADDR, and the same of the bridges
  above it up to the root port (a bridge's `secondary_bus_number` is the bus of the functions
  below it). drivers/pci/pci-sysfs.c writes them: the speed as pci_speed_string()
  names it ("16.0 GT/s PCIe"; "16 GT/s" before Linux 4.19; "Unknown"), the width as a number of
  lanes; only for PCIe devices (pcie_dev_attrs_are_visible), and a read fails with EINVAL when the
  link status cannot be read. The device's link trained below what both its ends can do is the
  classic fault (a card in a slot wired for fewer lanes, a bad riser); an NVIDIA GPU also lowers
  its link speed when idle, so a GPU's speed below the maximum is noted, not called a fault.
- NVLink between NVIDIA GPUs, from NVML where the probe asks it anyway (gpubench.probe.nvidia):
  each link's state and remote PCI address, and the per-link speed (NVML field 90,
  NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON, MB/s per direction).
- The firmware's bandwidth and latency of memory tiers (HMAT) are read by the cxl area, per NUMA
  node; gpubench.probe.views.NumaView carries them, so nothing is read twice.

Each check gathers facts, then the first rule of its table that holds gives the verdict
(gpubench.probe.rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gpubench.probe import nvidia
from gpubench.probe.checks import check
from gpubench.probe.gpu import DISPLAY_ONLY_VENDORS
from gpubench.probe.model import Capability, Findings
from gpubench.probe.pci import PCI_DEVICES
from gpubench.probe.rules import NO, PARTIAL, RERECORD, UNKNOWN, YES, Rule, always, decide
from gpubench.probe.source import Source, SourceError

LINK_FILES = ("current_link_speed", "current_link_width", "max_link_speed", "max_link_width")
# PCI class code (class, subclass, prog-if as sysfs prints it) prefix -> what the device is to a data path
DEVICE_KINDS = (("0x0300", "gpu"), ("0x0302", "gpu"), ("0x0380", "gpu"), ("0x010802", "nvme"),
                ("0x0200", "nic"), ("0x0207", "nic"))
# GT/s -> bits of data per transferred bit: 8b/10b up to 5 GT/s, 128b/130b for 8-32 GT/s, FLIT mode at 64
ENCODING = {2.5: 8 / 10, 5.0: 8 / 10, 8.0: 128 / 130, 16.0: 128 / 130, 32.0: 128 / 130, 64.0: 242 / 256}
GENERATION = {2.5: "1.0", 5.0: "2.0", 8.0: "3.0", 16.0: "4.0", 32.0: "5.0", 64.0: "6.0"}
BRIDGE_CLASS = "0x0604"
_SPEED = re.compile(r"(\d+(?:\.\d+)?) GT/s(?: PCIe)?")
_ADDRESS = re.compile(r"[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def parse_speed(text: str | None) -> float | None:
    """GT/s from a link speed as sysfs writes it ("8.0 GT/s PCIe", "8 GT/s"); None for "Unknown"."""
    m = _SPEED.fullmatch((text or "").strip())
    return float(m.group(1)) if m else None


def parse_width(text: str | None) -> int | None:
    value = (text or "").strip().lstrip("x")
    return int(value) if value.isdigit() else None


def lane_gbps(speed_gts: float) -> float | None:
    """GB/s (1e9 bytes) one lane carries per direction at this speed, after line encoding."""
    efficiency = ENCODING.get(speed_gts)
    return None if efficiency is None else speed_gts * efficiency / 8


def pcie_name(speed_gts: float | None, width: int | None) -> str:
    """'PCIe 4.0 x16' (or '16 GT/s x16' for a speed no generation names)."""
    speed = f"PCIe {GENERATION[speed_gts]}" if speed_gts in GENERATION else f"{speed_gts:g} GT/s" if speed_gts else "unknown speed"
    return f"{speed} x{width}" if width else speed


# --- facts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkEnd:
    """What one PCI function says of its link: speed in GT/s and width in lanes, now and at most."""

    address: str
    speed: float | None
    width: int | None
    max_speed: float | None
    max_width: int | None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class DeviceLink:
    kind: str  # "gpu", "nvme", "nic"
    names: tuple[str, ...]  # nvme0, eth0: the kernel's names of what the device carries
    device: LinkEnd
    port: LinkEnd | None  # the bridge above it, None when the link into /sys/devices is not there
    upstream: tuple[LinkEnd, ...]  # the links further up towards the root port, nearest first

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names), **self.device.to_dict(),
                "port": self.port.to_dict() if self.port else None, "upstream": [u.to_dict() for u in self.upstream]}


@dataclass
class PcieFacts:
    functions: list[str] = field(default_factory=list)  # every PCI function listed
    links: list[DeviceLink] = field(default_factory=list)
    without_link: list[str] = field(default_factory=list)  # "0000:00:03.0 (nic)": no PCIe link attributes
    unreadable: list[str] = field(default_factory=list)
    trained_low: list[str] = field(default_factory=list)  # faults: narrower, or slower (not a GPU), than both ends allow
    idle_slow: list[str] = field(default_factory=list)  # GPUs at a lower speed, as they are when idle


def _read_end(src: Source, address: str) -> LinkEnd | None:
    """None when the function has no PCIe link attributes (conventional PCI, virtio, a host bridge)."""
    base = f"{PCI_DEVICES}/{address}"
    values = {name: src.value(f"{base}/{name}") for name in LINK_FILES}
    if all(v is None for v in values.values()):
        return None
    return LinkEnd(address, parse_speed(values["current_link_speed"]), parse_width(values["current_link_width"]),
                   parse_speed(values["max_link_speed"]), parse_width(values["max_link_width"]))


def _bridges(src: Source, functions: list[str]) -> dict[tuple[str, int], str]:
    """(PCI domain, secondary bus number) -> the bridge whose secondary bus it is, from each
    bridge's secondary_bus_number (written beside the link attributes, in decimal)."""
    out = {}
    for address in functions:
        if (src.value(f"{PCI_DEVICES}/{address}/class") or "").lower().startswith(BRIDGE_CLASS):
            number = src.value(f"{PCI_DEVICES}/{address}/secondary_bus_number")
            if number and number.isdigit():
                out[(address.rsplit(":", 2)[0], int(number))] = address
    return out


def _ancestors(address: str, bridges: dict[tuple[str, int], str]) -> list[str]:
    """The bridges above a function, nearest first: the one whose secondary bus the function's
    bus is, then the one above that bridge, and so on."""
    chain: list[str] = []
    while True:
        domain, bus, _ = address.rsplit(":", 2)
        above = bridges.get((domain, int(bus, 16)))
        if above is None or above in chain or above == address:
            return chain
        chain.append(above)
        address = above


def _kind(src: Source, address: str) -> str | None:
    cls = (src.value(f"{PCI_DEVICES}/{address}/class") or "").lower()
    kind = next((k for prefix, k in DEVICE_KINDS if cls.startswith(prefix)), None)
    if kind == "gpu" and (src.value(f"{PCI_DEVICES}/{address}/vendor") or "").lower() in DISPLAY_ONLY_VENDORS:
        return None  # a BMC's or an emulated display: no data path
    return kind


def _names(src: Source, address: str, kind: str) -> tuple[str, ...]:
    sub = {"nvme": "nvme", "nic": "net"}.get(kind)
    return tuple(src.listdir(f"{PCI_DEVICES}/{address}/{sub}")) if sub else ()


def read_pcie(src: Source) -> PcieFacts:
    facts = PcieFacts()
    facts.functions = src.listdir(PCI_DEVICES)
    bridges = _bridges(src, facts.functions)
    for address in facts.functions:
        try:
            kind = _kind(src, address)
            if kind is None:
                continue
            end = _read_end(src, address)
            if end is None:
                facts.without_link.append(f"{address} ({kind})")
                continue
            chain = [e for a in _ancestors(address, bridges) if (e := _read_end(src, a)) is not None]
            facts.links.append(DeviceLink(kind, _names(src, address, kind), end, chain[0] if chain else None, tuple(chain[1:])))
        except SourceError as e:
            facts.unreadable.append(str(e))
    for link in facts.links:
        _judge_training(facts, link)
    return facts


def capable(link: DeviceLink) -> tuple[float | None, int | None]:
    """The speed and width both ends of the device's link allow (the device's own maxima where the
    port above is not known)."""
    ends = [link.device] + ([link.port] if link.port else [])
    speeds = [e.max_speed for e in ends if e.max_speed]
    widths = [e.max_width for e in ends if e.max_width]
    return (min(speeds) if speeds else None), (min(widths) if widths else None)


def _judge_training(facts: PcieFacts, link: DeviceLink) -> None:
    speed, width = capable(link)
    dev = link.device
    where = f"{dev.address} ({link.kind}{', ' + ', '.join(link.names) if link.names else ''})"
    if width and dev.width is not None and dev.width < width:
        facts.trained_low.append(f"{where} trained at x{dev.width} of x{width}")
    if speed and dev.speed and dev.speed < speed:
        text = f"{where} runs at {dev.speed:g} of {speed:g} GT/s"
        (facts.idle_slow if link.kind == "gpu" else facts.trained_low).append(text)


# --- rules -----------------------------------------------------------------------------------


def _described(facts: PcieFacts) -> str:
    parts = []
    for link in facts.links:
        speed, _ = capable(link)
        names = f" {', '.join(link.names)}" if link.names else ""
        parts.append(f"{link.kind}{names} {link.device.address}: {pcie_name(speed, link.device.width)}")
    text = "; ".join(parts)
    if facts.idle_slow:
        text += "; " + "; ".join(facts.idle_slow) + " (a GPU lowers its link speed when idle: read it under load)"
    return text


PCIE_RULES: list[Rule[PcieFacts]] = [
    Rule(lambda x: bool(x.unreadable) and not x.links, UNKNOWN, lambda x: "; ".join(x.unreadable),
         "run as a user who can read sysfs, or re-record the snapshot"),
    Rule(lambda x: bool(x.trained_low), PARTIAL, lambda x: "a link trained below what both its ends allow: " + "; ".join(x.trained_low),
         "reseat the card in a slot wired for its full width and speed (check risers and the firmware's PCIe "
         "generation setting); `lspci -vv -s ADDRESS` shows LnkCap and LnkSta"),
    Rule(lambda x: not x.links, NO,
         lambda x: "no GPU, NVMe drive or NIC here reports a PCIe link" + (f" (none in {', '.join(x.without_link)}: conventional PCI or "
                                                                           f"virtual devices, or a snapshot recorded without them)" if x.without_link else ""),
         "nothing to fix on a virtual machine; on a physical one, each GPU, NVMe drive and NIC shows its link here"),
    Rule(lambda x: bool(x.unreadable), PARTIAL, lambda x: _described(x) + "; not readable: " + "; ".join(x.unreadable),
         "run as a user who can read sysfs"),
    Rule(always, YES, _described),
]


@check("links", "pcie links")
def pcie_links(src: Source, f: Findings) -> Capability:
    facts = read_pcie(src)
    f.saw(PCI_DEVICES, f"{len(facts.functions)} PCI functions, {len(facts.links) + len(facts.without_link)} of them GPUs, NVMe drives or NICs")
    for link in facts.links:
        speed, width = capable(link)
        dev = link.device
        f.saw(f"{PCI_DEVICES}/{dev.address}", f"{link.kind}: now {dev.speed or '?'} GT/s x{dev.width or '?'}, "
                                              f"at most {speed or '?'} GT/s x{width or '?'}")
    if facts.without_link:
        f.saw("no link attributes", ", ".join(facts.without_link))
    f.details["links"] = [link.to_dict() for link in facts.links]
    return decide(f, facts, PCIE_RULES)


# --- NVLink ----------------------------------------------------------------------------------


@dataclass
class NvLinkFacts:
    driver_loaded: bool
    nvml: dict[str, Any] | None  # None: not asked (no driver) or not recorded
    gpus: list[dict[str, Any]] = field(default_factory=list)  # index, pci, links, speed_mbps, error

    @property
    def recorded(self) -> bool:
        return any("nvlinks" in d for d in (self.nvml or {}).get("devices") or [] if isinstance(d, dict))

    @property
    def active(self) -> list[dict[str, Any]]:
        return [g for g in self.gpus if any(link["active"] for link in g["links"])]

    @property
    def down(self) -> list[str]:
        return [f"GPU {g['index']} link {link['link']}" for g in self.active for link in g["links"] if not link["active"]]


def _nvlink_summary(x: NvLinkFacts) -> str:
    parts = []
    for g in x.active:
        count = sum(1 for link in g["links"] if link["active"])
        speed = f" x {g['speed_mbps'] / 1000:g} GB/s" if g["speed_mbps"] else ""
        parts.append(f"GPU {g['index']}: {count} link(s){speed}")
    return "; ".join(parts)


NVLINK_RULES: list[Rule[NvLinkFacts]] = [
    Rule(lambda x: not x.driver_loaded, NO, "no NVIDIA driver is loaded: no NVLink to ask about", "only NVIDIA GPUs have NVLink"),
    Rule(lambda x: x.nvml is None, UNKNOWN, "NVML was not asked (a snapshot recorded without it)", RERECORD),
    Rule(lambda x: not x.nvml.get("available"), UNKNOWN, lambda x: f"NVML unavailable: {x.nvml.get('reason')}",
         "install nvidia-ml-py (the gpu extra) so the probe can ask NVML"),
    Rule(lambda x: not x.recorded, UNKNOWN, "this snapshot's NVML answers hold no NVLink state", RERECORD),
    Rule(lambda x: bool(x.down), PARTIAL, lambda x: f"{_nvlink_summary(x)}; down: {', '.join(x.down)}",
         "check `nvidia-smi nvlink -s` and the NVLink bridges or NVSwitch fabric (nvidia-fabricmanager on HGX systems)"),
    Rule(lambda x: bool(x.active), YES, _nvlink_summary),
    Rule(lambda x: any(g["error"] for g in x.gpus), UNKNOWN, lambda x: "; ".join(f"GPU {g['index']}: {g['error']}" for g in x.gpus if g["error"])),
    Rule(always, NO, "no GPU has an active NVLink: GPU pairs talk over PCIe", "NVLink needs GPUs built for it (SXM, or PCIe cards with bridges)"),
]


@check("links", "nvlink")
def nvlink(src: Source, f: Findings) -> Capability:
    info = nvidia.nvml(src)
    facts = NvLinkFacts(nvidia.driver(src).loaded, info)
    f.saw("NVML", "not asked: no NVIDIA driver" if not facts.driver_loaded else "not recorded" if info is None
          else "available" if info.get("available") else f"unavailable: {info.get('reason')}")
    for device in (info or {}).get("devices") or []:
        if isinstance(device, dict) and isinstance(device.get("nvlinks"), dict):
            links = [dict(link) for link in device["nvlinks"].get("links") or [] if isinstance(link, dict)]
            facts.gpus.append({"index": device.get("index"), "pci": device.get("pci"), "links": links,
                               "speed_mbps": device["nvlinks"].get("speed_mbps"), "error": device["nvlinks"].get("error")})
    for g in facts.gpus:
        f.saw(f"NVML device {g['index']}", f"{sum(1 for link in g['links'] if link['active'])} of {len(g['links'])} NVLink(s) active"
              + (f", {g['speed_mbps']} MB/s each" if g["speed_mbps"] else ""))
    f.details["gpus"] = facts.gpus
    return decide(f, facts, NVLINK_RULES)


CHECKS = [pcie_links, nvlink]
