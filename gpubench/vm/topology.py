"""The machine a guest gets: NUMA nodes with and without CPUs, distances, HMAT figures and a CXL
type-3 memory device, as QEMU options.

From HMAT's latency and bandwidth figures the kernel (6.1 and later) computes each memory node's
abstract distance and so its memory tier: a CPU-less node with slower figures than DRAM's lands in
a lower tier (on 6.12; 6.1 keeps a CPU-less node present at boot in the DRAM tier whatever HMAT
says). QEMU 7.2 emulates a persistent CXL type-3 device only (volatile ones need a newer QEMU).

Built in: `two-nodes`, `lower-tier`, `cxl`; `host` mirrors the NUMA nodes a probe found (CPU
counts capped, memory scaled down); a JSON file describes any other (see `from_file`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpubench.errors import UserError
from gpubench.probe.checks import compact_ranges
from gpubench.probe.model import Profile
from gpubench.probe.views import NumaNode, NumaView

LOCAL_DISTANCE = 10
MIRROR_MEMORY_MIB = 1024  # per node of a mirrored host: the probe sees structure, not capacity
MIRROR_MAX_CPUS = 8  # vCPUs in all, under emulation each one costs boot time
CXL_WINDOW = "4G"  # the host bridge's fixed memory window, larger than any device here


@dataclass(frozen=True)
class VmNode:
    cpus: int  # vCPUs on the node; 0 for a memory-only node
    memory_mib: int
    initiator: int | None = None  # a CPU-less node: the node whose CPUs reach it best (HMAT needs one)


@dataclass(frozen=True)
class HmatLink:
    """What firmware advertises for `initiator`'s CPUs reaching `target`'s memory (access0)."""

    initiator: int
    target: int
    latency_ns: int
    bandwidth_mbps: int  # as the kernel prints it: MiB/s


@dataclass(frozen=True)
class VmTopology:
    name: str
    description: str
    nodes: tuple[VmNode, ...]
    distances: tuple[tuple[int, int, int], ...] = ()  # (node, node, distance), each pair once
    hmat: tuple[HmatLink, ...] = ()
    cxl_mib: int | None = None  # a persistent CXL type-3 device of this size behind a CXL host bridge
    notes: tuple[str, ...] = field(default=())

    @property
    def cpus(self) -> int:
        return sum(n.cpus for n in self.nodes)

    @property
    def memory_mib(self) -> int:
        return sum(n.memory_mib for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def qemu_args(self) -> list[str]:
        machine = "q35" + (",hmat=on" if self.hmat else "") + (",cxl=on" if self.cxl_mib else "")
        args = ["-machine", machine]
        first_cpu = 0
        for i, node in enumerate(self.nodes):
            spec = f"node,nodeid={i},memdev=m{i}"
            if node.cpus:
                spec += f",cpus={first_cpu}-{first_cpu + node.cpus - 1}"
                first_cpu += node.cpus
            if node.initiator is not None:
                spec += f",initiator={node.initiator}"
            args += ["-object", f"memory-backend-ram,id=m{i},size={node.memory_mib}M", "-numa", spec]
        for a, b, distance in self.distances:
            args += ["-numa", f"dist,src={a},dst={b},val={distance}"]
        for link in self.hmat:
            lb = f"hmat-lb,initiator={link.initiator},target={link.target},hierarchy=memory"
            args += ["-numa", f"{lb},data-type=access-latency,latency={link.latency_ns}",
                     "-numa", f"{lb},data-type=access-bandwidth,bandwidth={link.bandwidth_mbps}M"]
        if self.cxl_mib:
            args += [
                "-object", f"memory-backend-ram,id=cxl-mem0,size={self.cxl_mib}M",
                "-object", "memory-backend-ram,id=cxl-lsa0,size=1M",
                "-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1",
                "-device", "cxl-rp,port=0,bus=cxl.1,id=cxl-rp0,chassis=0,slot=2",
                "-device", "cxl-type3,bus=cxl-rp0,memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0",
                "-M", f"cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size={CXL_WINDOW}",
            ]
        return args


TWO_NODES = VmTopology(
    "two-nodes", "two nodes, each with one CPU and 2 GiB, distance 10/20",
    (VmNode(1, 2048), VmNode(1, 2048)), distances=((0, 1, 20),),
)
LOWER_TIER = VmTopology(
    "lower-tier",
    "node 0: 2 CPUs, 2 GiB, HMAT 90 ns 40960 MB/s; node 1: no CPUs, 2 GiB, HMAT 300 ns 8192 MB/s (a slower, lower-tier memory)",
    (VmNode(2, 2048), VmNode(0, 2048, initiator=0)), distances=((0, 1, 20),),
    hmat=(HmatLink(0, 0, 90, 40960), HmatLink(0, 1, 300, 8192)),
)
CXL = VmTopology(
    "cxl", "node 0: 2 CPUs, 2 GiB; a 512 MiB persistent CXL type-3 device behind a CXL host bridge (pxb-cxl, cxl-rp)",
    (VmNode(2, 2048),), cxl_mib=512,
)
BUILT_IN = {t.name: t for t in (TWO_NODES, LOWER_TIER, CXL)}


def mirror(profile: Profile, max_cpus: int | None = None) -> VmTopology:
    """The NUMA nodes `profile` found, each with up to its share of `max_cpus` vCPUs and
    MIRROR_MEMORY_MIB of memory, their distances and HMAT figures. A node's place in id order is
    its number in the guest, and its column in every node's distances."""
    max_cpus = max_cpus or min(os.cpu_count() or 1, MIRROR_MAX_CPUS)
    nodes = sorted(NumaView.from_profile(profile).nodes, key=lambda n: n.id)
    if not nodes:
        return VmTopology("host", f"one node with {max_cpus} CPU(s) (the probe found no NUMA nodes)", (VmNode(max_cpus, 2048),))
    with_cpus = [i for i, n in enumerate(nodes) if n.has_cpu and n.cpus]
    share = max(1, max_cpus // max(1, len(with_cpus)))
    vm_nodes = tuple(_mirrored(i, nodes, with_cpus, share) for i in range(len(nodes)))
    hmat = tuple(link for i, (n, vm) in enumerate(zip(nodes, vm_nodes)) if (link := _hmat_link(n, i if vm.cpus else vm.initiator, i)))
    distances = tuple((i, j, a.distances[j]) for i, a in enumerate(nodes) for j in range(i + 1, min(len(nodes), len(a.distances))))
    described = "; ".join(f"node{n.id}: " + (f"{vm.cpus} of CPUs {compact_ranges(list(n.cpus))}" if vm.cpus else "no CPUs")
                          for n, vm in zip(nodes, vm_nodes))
    notes = ("node ids renumbered from 0",) if [n.id for n in nodes] != list(range(len(nodes))) else ()
    return VmTopology("host", f"this host's nodes ({described}), {MIRROR_MEMORY_MIB} MiB each", vm_nodes, distances, hmat, None, notes)


def _mirrored(i: int, nodes: list[NumaNode], with_cpus: list[int], share: int) -> VmNode:
    """Node i with up to `share` vCPUs; a CPU-less one with the initiator firmware names for it, or
    else the nearest node with CPUs."""
    node = nodes[i]
    if i in with_cpus:
        return VmNode(min(len(node.cpus), share), MIRROR_MEMORY_MIB)
    if node.hmat and node.hmat.initiators:
        near = next((j for j, n in enumerate(nodes) if n.id == node.hmat.initiators[0]), None)
    else:
        near = min(with_cpus, key=lambda j: node.distances[j] if j < len(node.distances) else 255, default=None)
    return VmNode(0, MIRROR_MEMORY_MIB, near)


def _hmat_link(node: NumaNode, initiator: int | None, target: int) -> HmatLink | None:
    """The firmware's read figures for `node`, as seen from the guest node `initiator`."""
    figures = node.hmat
    if figures is None or initiator is None or not (figures.read_latency_ns and figures.read_bandwidth_mbps):
        return None
    return HmatLink(initiator, target, figures.read_latency_ns, figures.read_bandwidth_mbps)


def from_file(path: Path) -> VmTopology:
    """A topology described in JSON, e.g.
    {"nodes": [{"cpus": 2, "memory_mib": 2048}, {"cpus": 0, "memory_mib": 2048, "initiator": 0}],
     "distances": [[0, 1, 20]],
     "hmat": [{"initiator": 0, "target": 1, "latency_ns": 300, "bandwidth_mbps": 8192}],
     "cxl_mib": 512}"""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"--topology {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"--topology {path}: not JSON ({e})") from None
    try:
        return _validated(_parsed(data), path)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"--topology {path}: {e.args[0] if isinstance(e, ValueError) else f'missing or malformed {e}'}") from None


def _parsed(data: dict[str, Any]) -> VmTopology:
    nodes = tuple(VmNode(int(n["cpus"]), int(n["memory_mib"]), None if n.get("initiator") is None else int(n["initiator"])) for n in data["nodes"])
    distances = tuple((int(a), int(b), int(d)) for a, b, d in data.get("distances", ()))
    hmat = tuple(HmatLink(int(h["initiator"]), int(h["target"]), int(h["latency_ns"]), int(h["bandwidth_mbps"])) for h in data.get("hmat", ()))
    cxl = data.get("cxl_mib")
    return VmTopology("file", str(data.get("description", "")), nodes, distances, hmat, None if cxl is None else int(cxl))


def _validated(topo: VmTopology, path: Path) -> VmTopology:
    count = len(topo.nodes)
    if not count or topo.cpus < 1:
        raise ValueError("needs at least one node and one CPU")
    for i, node in enumerate(topo.nodes):
        if node.cpus < 0 or node.memory_mib < 64:
            raise ValueError(f"node {i}: cpus must be 0 or more and memory_mib at least 64")
        if node.initiator is not None and not (0 <= node.initiator < count and topo.nodes[node.initiator].cpus):
            raise ValueError(f"node {i}: initiator {node.initiator} is not a node with CPUs")
    _check_links(topo, count)
    description = topo.description or f"described in {path.name}"
    return VmTopology(topo.name, description, topo.nodes, topo.distances, topo.hmat, topo.cxl_mib)


def _check_links(topo: VmTopology, count: int) -> None:
    for a, b, d in topo.distances:
        if not (0 <= a < count and 0 <= b < count and a != b and LOCAL_DISTANCE < d <= 255):
            raise ValueError(f"distance {a}-{b}={d}: needs two different nodes and a distance of 11 to 255")
    for h in topo.hmat:
        if not (0 <= h.initiator < count and 0 <= h.target < count and h.latency_ns > 0 and h.bandwidth_mbps > 0):
            raise ValueError(f"hmat {h.initiator}->{h.target}: needs existing nodes and positive figures")
    if topo.cxl_mib is not None and not 256 <= topo.cxl_mib <= 4096:
        raise ValueError("cxl_mib must be 256 to 4096")


def topology_from_option(value: str, running: Profile) -> VmTopology:
    if value == "host":
        return mirror(running)
    if value in BUILT_IN:
        return BUILT_IN[value]
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--topology {value}: neither host, {', '.join(BUILT_IN)}, nor a JSON file")
    return from_file(path)
