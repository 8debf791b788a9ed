"""memtier's plan: the NUMA topology the probe found, the cases for each (CPU node, memory node)
pair and the parameters each case stores (the memory node's tier, distance and HMAT figures)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubench.bench.core.interface import Case
from gpubench.bench.core.params import check_options, parse_bool, parse_choices, parse_int, parse_size, record_from_params, split_items
from gpubench.errors import UserError
from gpubench.probe.model import Profile
from gpubench.probe.views import HmatFigures, NumaNode, NumaView

MIB = 1 << 20
STREAM_KERNELS = ("copy", "scale", "add", "triad")
BYTES_PER_ELEMENT = {"copy": 16, "scale": 16, "add": 24, "triad": 24}  # as STREAM counts them
KERNELS = STREAM_KERNELS + ("chase",)
STORES = ("streaming", "plain")
BENCH = "memtier"
OPTIONS = ("size", "chase_size", "threads", "kernels", "nodes", "cpu_nodes", "hops", "stores", "best_of", "hugepages")

# size -> (floor of one STREAM array, multiple of the node's last-level caches); the larger wins
ARRAY_SIZE = {"quick": (64 * MIB, 2), "default": (256 * MIB, 4), "full": (1024 * MIB, 8)}
# size -> (floor of the chase buffer, multiple of the last-level cache one core sees)
CHASE_SIZE = {"quick": (128 * MIB, 4), "default": (512 * MIB, 16), "full": (1024 * MIB, 32)}
HOPS = {"quick": 1_000_000, "default": 5_000_000, "full": 20_000_000}
BEST_OF = {"quick": 3, "default": 5, "full": 10}
CHASE_SEED = 0x6D656D74  # fixed, so every run walks the same permutation


@dataclass(frozen=True)
class Topology:
    nodes: tuple[NumaNode, ...]
    source: str  # "probe" or "fallback: <why>"
    demotion_enabled: bool | None = None

    def node(self, node_id: int) -> NumaNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    @property
    def cpu_nodes(self) -> list[NumaNode]:
        return [n for n in self.nodes if n.has_cpu and n.cpus]

    @property
    def memory_nodes(self) -> list[NumaNode]:
        return [n for n in self.nodes if n.has_memory]

    def describe_ids(self) -> str:
        return ", ".join(str(n.id) for n in self.nodes)


def topology(profile: Profile) -> Topology:
    """The NUMA nodes from the probe's "numa nodes" capability; node 0 with this process's CPUs when
    the probe could not tell."""
    view = NumaView.from_profile(profile)
    if view.nodes:
        return Topology(view.nodes, "probe", view.demotion_enabled)
    cap = view.verdict
    why = "the probe found no NUMA nodes" if cap is None else f"the probe could not read the NUMA nodes ({cap.why or cap.status.value})"
    free_kb = live_node_free_kb(0)
    node0 = NumaNode(0, tuple(sorted(os.sched_getaffinity(0))), True, None, free_kb, None, None)
    return Topology((node0,), f"fallback: {why}; measuring node 0 with this process's CPUs")


def live_node_free_kb(node: int) -> int | None:
    try:
        text = Path(f"/sys/devices/system/node/node{node}/meminfo").read_text()
        m = re.search(r"MemFree:\s+(\d+)\s*kB", text)
        if m:
            return int(m.group(1))
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available // 1024)
    except Exception:
        return None


def last_level_caches(cpus: tuple[int, ...]) -> tuple[int, int]:
    """(bytes of the last-level cache one of `cpus` sees, bytes of all distinct ones they share),
    from this machine's sysfs; (0, 0) when it cannot be read."""
    per_cpu, seen, total = 0, set(), 0
    for cpu in cpus:
        best: tuple[int, int, str] | None = None
        for index in Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*"):
            try:
                if (index / "type").read_text().strip() == "Instruction":
                    continue
                level = int((index / "level").read_text())
                size = _cache_bytes((index / "size").read_text())
                shared = (index / "shared_cpu_list").read_text().strip()
            except (OSError, ValueError):
                continue
            if best is None or level > best[0]:
                best = (level, size, shared)
        if best is None:
            continue
        per_cpu = max(per_cpu, best[1])
        if (best[0], best[2]) not in seen:
            seen.add((best[0], best[2]))
            total += best[1]
    return per_cpu, total


def _cache_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def _parse_nodes(option: str, text: str, topo: Topology) -> list[int]:
    ids = []
    for item in split_items(text):
        if not item.isdigit():
            raise UserError(f"memtier: {option}={text!r}: {item!r} is not a node number")
        node = int(item)
        if topo.node(node) is None:
            raise UserError(f"memtier: node {node} does not exist (nodes here: {topo.describe_ids()})")
        ids.append(node)
    if not ids:
        raise UserError(f"memtier: {option} is empty")
    return list(dict.fromkeys(ids))


@dataclass(frozen=True)
class Plan:
    """The validated choices shared by every case of one run."""

    kernels: tuple[str, ...]
    cpu_nodes: tuple[int, ...]
    mem_nodes: tuple[int, ...]
    threads: int | None  # None: each CPU node's CPU count
    array_bytes: int | None  # None: the size's default for the CPU node's caches
    chase_bytes: int | None
    hops: int
    stores: str
    best_of: int
    hugepages: bool


def _cpu_nodes(topo: Topology, options: dict[str, str]) -> list[int]:
    ids = _parse_nodes("cpu_nodes", options["cpu_nodes"], topo) if "cpu_nodes" in options else [n.id for n in topo.cpu_nodes]
    for node_id in ids:
        node = topo.node(node_id)
        if node is None or not (node.has_cpu and node.cpus):
            raise UserError(f"memtier: node {node_id} has no CPUs to run threads on (CPU nodes here: {', '.join(str(n.id) for n in topo.cpu_nodes) or 'none'})")
    if not ids:
        raise UserError("memtier: the probe found no NUMA node with CPUs")
    return ids


def _mem_nodes(topo: Topology, options: dict[str, str]) -> list[int]:
    ids = _parse_nodes("nodes", options["nodes"], topo) if "nodes" in options else [n.id for n in topo.memory_nodes]
    for node_id in ids:
        node = topo.node(node_id)
        if node is not None and not node.has_memory:
            raise UserError(f"memtier: node {node_id} has no memory to bind to")
    return ids


def _threads(topo: Topology, cpu_nodes: list[int], options: dict[str, str]) -> int | None:
    if "threads" not in options:
        return None
    threads = parse_int(BENCH, "threads", options["threads"], 1)
    for node_id in cpu_nodes:
        ncpus = len(topo.node(node_id).cpus)  # type: ignore[union-attr]
        if threads > ncpus:
            raise UserError(f"memtier: threads={threads} is more than node {node_id}'s {ncpus} CPUs")
    return threads


def _plan(topo: Topology, size: str, options: dict[str, str]) -> Plan:
    check_options("memtier", options, OPTIONS)
    if size not in ARRAY_SIZE:
        raise UserError(f"memtier: unknown size {size!r}; choose from {', '.join(ARRAY_SIZE)}")
    kernels = parse_choices(BENCH, "kernels", options["kernels"], KERNELS) if "kernels" in options else list(KERNELS)
    cpu_nodes = _cpu_nodes(topo, options)
    stores = options.get("stores", "streaming").strip()
    if stores not in STORES:
        raise UserError(f"memtier: stores={stores!r}; choose from {', '.join(STORES)}")
    return Plan(
        kernels=tuple(kernels),
        cpu_nodes=tuple(cpu_nodes),
        mem_nodes=tuple(_mem_nodes(topo, options)),
        threads=_threads(topo, cpu_nodes, options),
        array_bytes=parse_size(BENCH, "size", options["size"]) if "size" in options else None,
        chase_bytes=parse_size(BENCH, "chase_size", options["chase_size"]) if "chase_size" in options else None,
        hops=parse_int(BENCH, "hops", options["hops"], 1) if "hops" in options else HOPS[size],
        stores=stores,
        best_of=parse_int(BENCH, "best_of", options["best_of"], 1) if "best_of" in options else BEST_OF[size],
        hugepages=parse_bool(BENCH, "hugepages", options["hugepages"]) if "hugepages" in options else True,
    )


def _check_fits(option: str, given: bool, needed: int, node: NumaNode, what: str) -> None:
    if node.mem_free_kb is None or needed <= node.mem_free_kb * 1024:
        return
    hint = f"lower {option}" if given else f"set a smaller --param memtier.{option}"
    raise UserError(
        f"memtier: node {node.id} has {node.mem_free_kb // 1024} MiB free, too little for {what} ({needed / MIB:.0f} MiB); {hint}"
    )


def _tier_params(topo: Topology, mem: NumaNode, cpu: NumaNode, kernel: str) -> dict[str, Any]:
    hmat = mem.hmat or HmatFigures()
    column = sorted(n.id for n in topo.nodes).index(cpu.id)  # a node's distance file lists the online nodes in order
    out: dict[str, Any] = {
        "mem_tier": mem.tier,
        "mem_has_cpu": mem.has_cpu,
        "distance": mem.distances[column] if column < len(mem.distances) else None,
        "hmat_read_bandwidth_mbps": hmat.read_bandwidth_mbps,
        "hmat_write_bandwidth_mbps": hmat.write_bandwidth_mbps,
        "hmat_read_latency_ns": hmat.read_latency_ns,
        "hmat_write_latency_ns": hmat.write_latency_ns,
        "hmat_initiators": list(hmat.initiators) or None,
    }
    if kernel == "chase":
        advertised = hmat.read_latency_ns
        out["advertised"] = float(advertised) if advertised is not None else None
        out["advertised_what"] = "HMAT access0 read latency (ns)" if advertised is not None else None
    else:
        advertised = hmat.read_bandwidth_mbps
        out["advertised"] = advertised / 1000.0 if advertised is not None else None
        out["advertised_what"] = "HMAT access0 read bandwidth (GB/s)" if advertised is not None else None
    out["topology"] = topo.source
    return out


@dataclass(frozen=True)
class TierParams:
    """A stored memtier case (see MemTier.cases): which kernel ran on which CPU node against which memory node."""

    kernel: str  # one of KERNELS: STREAM's four in GB/s, "chase" in ns
    cpu_node: int
    mem_node: int
    threads: int
    mem_tier: int | None = None
    mem_has_cpu: bool | None = None
    advertised: float | None = None  # the firmware's figure for this case, in its unit (HMAT)
    advertised_what: str | None = None

    @property
    def local(self) -> bool:
        return self.cpu_node == self.mem_node

    from_params = classmethod(record_from_params)  # the record of a stored result's parameters; None for another version's




def plan_cases(profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
    """Every (CPU node, memory node, kernel) case to run, with --param overrides validated."""
    topo = topology(profile)
    plan = _plan(topo, size, options)
    cases = []
    for cpu_id in plan.cpu_nodes:
        cpu = topo.node(cpu_id)
        assert cpu is not None
        threads = plan.threads or len(cpu.cpus)
        per_cpu_llc, node_llc = last_level_caches(cpu.cpus)
        array_floor, array_multiple = ARRAY_SIZE[size]
        chase_floor, chase_multiple = CHASE_SIZE[size]
        array_bytes = plan.array_bytes or max(array_floor, array_multiple * node_llc)
        chase_bytes = plan.chase_bytes or max(chase_floor, chase_multiple * per_cpu_llc)
        array_bytes -= array_bytes % 64
        chase_bytes -= chase_bytes % 64
        if chase_bytes < 128:
            raise UserError("memtier: chase_size must be at least 128 bytes (two cache lines)")
        for mem_id in plan.mem_nodes:
            mem = topo.node(mem_id)
            assert mem is not None
            if any(k in STREAM_KERNELS for k in plan.kernels):
                _check_fits("size", plan.array_bytes is not None, 3 * array_bytes, mem, f"3 arrays of {array_bytes / MIB:g} MiB")
            if "chase" in plan.kernels:
                _check_fits("chase_size", plan.chase_bytes is not None, chase_bytes, mem, f"a {chase_bytes / MIB:g} MiB chase buffer")
            for kernel in plan.kernels:
                params: dict[str, Any] = {
                    "kernel": kernel,
                    "cpu_node": cpu_id,
                    "mem_node": mem_id,
                    "cpus": list(cpu.cpus),
                    "hugepages": plan.hugepages,
                }
                if kernel == "chase":
                    params.update(threads=1, chase_bytes=chase_bytes, hops=plan.hops, seed=CHASE_SEED)
                else:
                    params.update(
                        threads=threads,
                        array_bytes=array_bytes,
                        bytes_per_element=BYTES_PER_ELEMENT[kernel],
                        stores=plan.stores,
                        best_of=plan.best_of,
                    )
                params.update(_tier_params(topo, mem, cpu, kernel))
                if kernel == "chase":
                    cases.append(Case(f"chase-cpu{cpu_id}-mem{mem_id}", params, "ns", higher_is_better=False))
                else:
                    cases.append(Case(f"{kernel}-cpu{cpu_id}-mem{mem_id}", params, "GB/s"))
    return cases
