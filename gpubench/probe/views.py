"""What the probe hands the later layers (benchmarks, run metadata, telemetry): small frozen
views built from a Profile. Each reads one capability's details, the JSON stored with every
run, so that no later layer names a capability or a detail key of its own.

A view built from a profile that lacks the capability says so (`probed` is False, or its status
is UNKNOWN) rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from gpubench.probe.model import Capability, Profile, Status

if TYPE_CHECKING:
    from gpubench.probe.links import LinkEnd


def _details(cap: Capability | None) -> Mapping[str, Any]:
    return cap.details if cap is not None else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class Verdict:
    """A capability's verdict, without its evidence: what a waiver quotes."""

    name: str
    status: Status
    why: str = ""
    fix: str = ""

    @property
    def probed(self) -> bool:
        return self.status is not Status.UNKNOWN

    @classmethod
    def of(cls, profile: Profile, name: str) -> Verdict | None:
        cap = profile.get(name)
        return None if cap is None else cls(cap.name, cap.status, cap.why, cap.fix)


# --- kernel -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelView:
    release: str | None
    cmdline: str | None
    config_origin: str | None

    @classmethod
    def from_profile(cls, profile: Profile) -> KernelView:
        d = _details(profile.get("kernel"))
        return cls(_str(d.get("release")), _str(d.get("cmdline")), _str(d.get("config_origin")))


# --- io_uring -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IoUringView:
    """The kernel's io_uring support and the Python binding's state, as the probe found them."""

    kernel: Verdict | None  # capability "io_uring"; None when the area was not probed
    config: str | None  # CONFIG_IO_URING: "y", "n", or None when no config was found
    disabled: int | None  # kernel.io_uring_disabled: 0, 1, 2; None where the sysctl is absent
    binding: Verdict | None  # capability "io_uring binding"
    binding_loaded: bool
    binding_ring: bool  # a ring could be created
    binding_error: str | None
    binding_errno: int | None
    binding_version: str | None
    opcodes: tuple[int, ...]

    @classmethod
    def from_profile(cls, profile: Profile) -> IoUringView:
        kd = _details(profile.get("io_uring"))
        bd = _details(profile.get("io_uring binding"))
        disabled = _int(kd.get("disabled"))
        return cls(
            kernel=Verdict.of(profile, "io_uring"),
            config=_str(kd.get("config")),
            disabled=disabled if disabled in (0, 1, 2) else None,
            binding=Verdict.of(profile, "io_uring binding"),
            binding_loaded=bd.get("loaded") is True,
            binding_ring=bd.get("ring") is True,
            binding_error=_str(bd.get("error")),
            binding_errno=_int(bd.get("errno")),
            binding_version=_str(bd.get("version")),
            opcodes=tuple(op for op in bd.get("opcodes") or () if _int(op) is not None),
        )


# --- GPUs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuDevice:
    index: int  # place among the probe's NVIDIA GPUs, in PCI address order: the numbering benchmarks use
    pci: str | None
    model: str | None


@dataclass(frozen=True)
class OtherGpu:
    pci: str | None
    vendor: str | None
    driver: str | None
    model: str | None


def _pairs(raw: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """{"0-1": "ok"} -> {(0, 1): "ok"}; keys that are not two GPU numbers are left out."""
    pairs: dict[tuple[int, int], str] = {}
    for key, status in raw.items():
        a, sep, b = str(key).partition("-")
        if sep and a.isdigit() and b.isdigit():
            pairs[(min(int(a), int(b)), max(int(a), int(b)))] = str(status)
    return pairs


@dataclass(frozen=True)
class GpuView:
    """The GPUs the probe found, the NVIDIA driver's state and what it says of GPU pairs."""

    inventory: Verdict | None  # capability "gpus"
    nvidia: tuple[GpuDevice, ...]
    others: tuple[OtherGpu, ...]  # every GPU the inventory lists, NVIDIA ones included
    driver: Verdict | None  # capability "nvidia driver"
    driver_version: str | None
    cuda_driver_version: str | None
    pair_status: Mapping[tuple[int, int], str]  # (low, high) -> NVML's P2P read status ("ok", "not supported", ...)
    gpu_driver: str | None = None  # the module driving the NVIDIA GPUs: "nvidia", or "nvgpu" on older Jetsons
    l4t_release: str | None = None  # Jetson Linux release on a Jetson/Tegra board (driver_version is then None)

    @classmethod
    def from_profile(cls, profile: Profile) -> GpuView:
        devices = [d for d in _details(profile.get("gpus")).get("devices") or () if isinstance(d, dict)]
        nvidia = [d for d in devices if d.get("vendor") == "nvidia"]
        driver = _details(profile.get("nvidia driver"))
        if not nvidia:  # an inventory that could not read PCI: the driver's own list
            nvidia = sorted((d for d in driver.get("gpus") or () if isinstance(d, dict)), key=lambda d: str(d.get("pci") or ""))
        return cls(
            inventory=Verdict.of(profile, "gpus"),
            nvidia=tuple(GpuDevice(i, _str(d.get("pci")), _str(d.get("model"))) for i, d in enumerate(nvidia)),
            others=tuple(OtherGpu(_str(d.get("pci")), _str(d.get("vendor")), _str(d.get("driver")), _str(d.get("model"))) for d in devices),
            driver=Verdict.of(profile, "nvidia driver"),
            driver_version=_str(driver.get("version")),
            cuda_driver_version=_str(driver.get("cuda_driver_version")),
            pair_status=_pairs(_details(profile.get("gpu p2p")).get("pairs") or {}),
            gpu_driver=_str(driver.get("gpu_driver")),
            l4t_release=_str(driver.get("l4t_release")),
        )

    def p2p_status(self, a: int, b: int) -> str | None:
        """What the probe says of GPUs a and b ("ok", "not supported", ...); None when nothing."""
        return self.pair_status.get((min(a, b), max(a, b)))


@dataclass(frozen=True)
class HmmView:
    verdict: Verdict | None  # capability "hmm"
    active: bool | None  # HMM or ATS confirmed (True), ruled out (False), or not known
    mode: str | None  # "hmm" or "ats" when active

    @classmethod
    def from_profile(cls, profile: Profile) -> HmmView:
        d = _details(profile.get("hmm"))
        active = _bool(d.get("active"))
        mode = _str(d.get("mode"))
        return cls(Verdict.of(profile, "hmm"), active, mode if active and mode in ("hmm", "ats") else None)


@dataclass(frozen=True)
class GdsView:
    verdict: Verdict | None  # capability "gpudirect storage"
    path: str | None  # "gds" (nvidia-fs), "compat", or None
    kvikio: bool | None  # importable (True), absent or broken (False), not known (None)
    nvidia_fs_version: str | None = None
    nvidia_fs_io: bool | None = None  # reads or writes went through nvidia-fs since it loaded; None: not shown
    nvidia_fs_counters: Mapping[str, int] = field(default_factory=dict)  # reads, writes, read_errors, ...

    @classmethod
    def from_profile(cls, profile: Profile) -> GdsView:
        d = _details(profile.get("gpudirect storage"))
        counters = d.get("nvidia_fs_counters") if isinstance(d.get("nvidia_fs_counters"), Mapping) else {}
        return cls(
            Verdict.of(profile, "gpudirect storage"), _str(d.get("path")), _bool(d.get("kvikio")),
            nvidia_fs_version=_str(d.get("nvidia_fs_version")), nvidia_fs_io=_bool(d.get("nvidia_fs_io")),
            nvidia_fs_counters={str(k): v for k, v in counters.items() if _int(v) is not None},
        )


# --- memory nodes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class HmatFigures:
    """The firmware's advertised access figures for one memory node from its nearest initiator."""

    read_bandwidth_mbps: int | None = None
    write_bandwidth_mbps: int | None = None
    read_latency_ns: int | None = None
    write_latency_ns: int | None = None
    initiators: tuple[int, ...] = ()  # the nodes these figures are from

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HmatFigures:
        figures = (_int(d.get(k)) for k in ("read_bandwidth_mbps", "write_bandwidth_mbps", "read_latency_ns", "write_latency_ns"))
        return cls(*figures, initiators=tuple(i for i in d.get("initiators") or () if _int(i) is not None))


@dataclass(frozen=True)
class NumaNode:
    id: int
    cpus: tuple[int, ...]
    has_cpu: bool
    mem_total_kb: int | None
    mem_free_kb: int | None
    tier: int | None  # the memory tier the kernel put the node in
    hmat: HmatFigures | None
    distances: tuple[int, ...] = ()  # to each online node, in node id order

    @property
    def has_memory(self) -> bool:
        return self.mem_total_kb is None or self.mem_total_kb > 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumaNode:
        cpus = tuple(int(c) for c in d.get("cpus") or ())
        hmat = d.get("hmat")
        return cls(
            id=int(d["id"]),
            cpus=cpus,
            has_cpu=bool(d.get("has_cpu", bool(cpus))),
            mem_total_kb=_int(d.get("mem_total_kb")),
            mem_free_kb=_int(d.get("mem_free_kb")),
            tier=_int(d.get("tier")),
            hmat=HmatFigures.from_dict(hmat) if isinstance(hmat, Mapping) and hmat else None,
            distances=tuple(int(x) for x in d.get("distances") or ()),
        )


@dataclass(frozen=True)
class NumaView:
    verdict: Verdict | None  # capability "numa nodes"
    nodes: tuple[NumaNode, ...]  # empty when the probe could not read them
    demotion_enabled: bool | None

    @classmethod
    def from_profile(cls, profile: Profile) -> NumaView:
        cap = profile.get("numa nodes")
        d = _details(cap)
        raw = d.get("nodes") if cap is not None and cap.status is not Status.UNKNOWN else None
        nodes = tuple(NumaNode.from_dict(n) for n in raw or () if isinstance(n, Mapping))
        return cls(Verdict.of(profile, "numa nodes"), nodes, _bool(d.get("demotion_enabled")))


# --- links ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PcieLink:
    """The PCIe link of one GPU, NVMe drive or NIC: speeds in GT/s, widths in lanes."""

    address: str
    kind: str  # "gpu", "nvme", "nic"
    names: tuple[str, ...]  # nvme0, eth0
    speed: float | None  # now
    width: int | None
    capable_speed: float | None  # what both ends of the link allow
    capable_width: int | None
    upstream_gbps: float | None  # the narrowest link further up towards the root port, GB/s per direction

    @property
    def trained_low(self) -> bool:
        """Narrower than both ends allow, or slower where the device is not a GPU (GPUs slow
        their link when idle)."""
        narrow = bool(self.capable_width and self.width is not None and self.width < self.capable_width)
        slow = bool(self.kind != "gpu" and self.capable_speed and self.speed and self.speed < self.capable_speed)
        return narrow or slow

    @property
    def gbps(self) -> float | None:
        """GB/s per direction: the trained width at the speed both ends allow (a GPU's link speed
        rises back to it under load), no more than a narrower link further up."""
        from gpubench.probe.links import lane_gbps

        speed, width = self.capable_speed or self.speed, self.width or self.capable_width
        lane = lane_gbps(speed) if speed else None
        if lane is None or not width:
            return None
        return min(lane * width, self.upstream_gbps or float("inf"))

    def describe(self) -> str:
        """'PCIe 5.0 x16, 63.0 GB/s per direction' with what limits it."""
        from gpubench.probe.links import pcie_name

        text = pcie_name(self.capable_speed or self.speed, self.width or self.capable_width)
        if self.capable_width and self.width is not None and self.width < self.capable_width:
            text += f" (trained below x{self.capable_width})"
        if self.speed and self.capable_speed and self.speed < self.capable_speed:
            text += f" (at {self.speed:g} GT/s when probed{': idle' if self.kind == 'gpu' else ''})"
        gbps = self.gbps
        if gbps is not None and self.upstream_gbps is not None and gbps >= self.upstream_gbps:
            text += ", limited by a narrower link upstream"
        return text

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PcieLink | None:
        """A link as the links area stores it (DeviceLink.to_dict); None without an address."""
        from gpubench.probe.links import DeviceLink, capable, lane_gbps

        address = _str(d.get("address"))
        if address is None:
            return None
        upstream = tuple(end for u in d.get("upstream") or () if (end := _link_end(u)) is not None)
        link = DeviceLink(_str(d.get("kind")) or "?", tuple(n for n in d.get("names") or () if isinstance(n, str)),
                          _link_end(d), _link_end(d.get("port")), upstream)
        capable_speed, capable_width = capable(link)
        carried = [lane * end.width for end in upstream if end.speed and end.width and (lane := lane_gbps(end.speed))]
        return cls(address, link.kind, link.names, link.device.speed, link.device.width, capable_speed, capable_width,
                   min(carried, default=None))


def _gts(value: Any) -> float | None:
    """A stored link speed in GT/s; anything but a positive number is None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _link_end(d: Any) -> LinkEnd | None:
    """One end of a stored link (LinkEnd.to_dict) as a LinkEnd; None where it is not a mapping."""
    from gpubench.probe.links import LinkEnd

    if not isinstance(d, Mapping):
        return None
    return LinkEnd(_str(d.get("address")) or "", _gts(d.get("speed")), _int(d.get("width")), _gts(d.get("max_speed")), _int(d.get("max_width")))


@dataclass(frozen=True)
class GpuNvLinks:
    index: int | None
    pci: str | None
    active: int  # links up
    present: int
    link_gbps: float | None  # GB/s per link and direction
    remotes: tuple[str, ...]  # the PCI address at the far end of each active link

    def to(self, other: GpuNvLinks) -> float | None:
        """GB/s per direction from this GPU to `other`: its direct links to it, or, where the links
        go to a switch fabric (NVSwitch), the fewer links of the two."""
        if not self.link_gbps or not self.active or not other.active:
            return None
        direct = sum(1 for r in self.remotes if r == other.pci)
        if direct:
            return direct * self.link_gbps
        gpus = {self.pci, other.pci}
        if self.remotes and all(r not in gpus for r in self.remotes) and other.remotes and all(r not in gpus for r in other.remotes):
            return min(self.active, other.active) * self.link_gbps
        return None


@dataclass(frozen=True)
class LinksView:
    """The link limits the probe read: PCIe links and NVLinks. `recorded` is False for a profile
    made before the links area existed (a run stored then): its limits are not recorded, not absent."""

    recorded: bool
    pcie_verdict: Verdict | None  # capability "pcie links"
    pcie: tuple[PcieLink, ...]
    nvlink_verdict: Verdict | None  # capability "nvlink"
    nvlinks: tuple[GpuNvLinks, ...]

    def link_of(self, address: str | None) -> PcieLink | None:
        return next((link for link in self.pcie if address and link.address == address), None)

    def nvlink_of(self, address: str | None) -> GpuNvLinks | None:
        return next((g for g in self.nvlinks if address and g.pci == address), None)

    @classmethod
    def from_profile(cls, profile: Profile) -> LinksView:
        pcie_cap, nvlink_cap = profile.get("pcie links"), profile.get("nvlink")
        pcie = [PcieLink.from_dict(d) for d in _details(pcie_cap).get("links") or () if isinstance(d, Mapping)]
        nvlinks = []
        for g in _details(nvlink_cap).get("gpus") or ():
            if not isinstance(g, Mapping):
                continue
            links = [link for link in g.get("links") or () if isinstance(link, Mapping)]
            active = [link for link in links if link.get("active") is True]
            speed = _int(g.get("speed_mbps"))
            nvlinks.append(GpuNvLinks(_int(g.get("index")), _str(g.get("pci")), len(active), len(links),
                                      speed / 1000 if speed else None, tuple(str(link.get("remote_pci")) for link in active if link.get("remote_pci"))))
        return cls(pcie_cap is not None or nvlink_cap is not None, Verdict.of(profile, "pcie links"),
                   tuple(link for link in pcie if link is not None), Verdict.of(profile, "nvlink"), tuple(nvlinks))
