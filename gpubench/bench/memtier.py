"""memtier: bandwidth and idle latency for every (CPU node, memory node) pair, with the tier view.

For each CPU node and each memory node (CPU-less CXL nodes included) it runs the STREAM kernels
copy, scale, add and triad, parallel over the CPU node's cores, and a dependent-load pointer chase
through a random cyclic permutation of cache lines (one line per hop) for idle latency. Buffers
are bound to the memory node with mbind before the first touch, every thread of the process is
pinned to the CPU node, and the pages are checked after every repetition (move_pages, then
/proc/self/numa_maps). Each case carries the memory node's tier, whether it has CPUs and the
firmware's HMAT access0 numbers, so a report shows measured beside advertised.

One repetition of a STREAM case is the best of `best_of` passes over the arrays, as STREAM
reports its best time; a chase repetition is one walk of `hops` loads on one CPU of the node,
continuing from where the previous walk stopped.

Parameters (--param memtier.NAME=VALUE):
  size        bytes of each STREAM array (MiB, or 512K/64M/1G); default: the larger of 256 MiB and
              4x the CPU node's last-level caches (quick: 64 MiB / 2x, full: 1 GiB / 8x)
  chase_size  bytes of the chase buffer; default: the larger of 512 MiB and 16x the last-level
              cache one core sees (quick: 128 MiB / 4x, full: 1 GiB / 32x)
  threads     STREAM threads per CPU node (default: all of the node's CPUs)
  kernels     any of copy,scale,add,triad,chase (default: all)
  nodes       memory nodes to measure (default: every node with memory, CPU-less ones included)
  cpu_nodes   CPU nodes to measure from (default: every node with CPUs)
  hops        dependent loads per chase repetition (quick 1M, default 5M, full 20M)
  stores      streaming (non-temporal, STREAM's ceiling; default) or plain
  best_of     passes per STREAM repetition (quick 3, default 5, full 10)
  hugepages   madvise(MADV_HUGEPAGE) on every buffer (default true)
"""

from __future__ import annotations

import os
import re
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from gpubench.bench.engines import numa
from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.bench.core.params import check_options, parse_bool, parse_choices, parse_int, parse_size, record_from_params, split_items
from gpubench.errors import UserError
from gpubench.probe.checks import compact_ranges
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
    free_kb = _live_node_free_kb(0)
    node0 = NumaNode(0, tuple(sorted(os.sched_getaffinity(0))), True, None, free_kb, None, None)
    return Topology((node0,), f"fallback: {why}; measuring node 0 with this process's CPUs")


def _live_node_free_kb(node: int) -> int | None:
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


class MemTier:
    key: ClassVar[str] = "memtier"
    options: ClassVar[tuple[str, ...]] = OPTIONS
    description: ClassVar[str] = (
        "STREAM copy/scale/add/triad bandwidth and pointer-chase latency for every (CPU node, memory node) "
        "pair, CPU-less CXL nodes included, with pages bound, threads pinned and placement verified"
    )

    def requires(self, profile: Profile) -> str | None:
        return None  # a single-node machine still measures node 0

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
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

    @contextmanager
    def prepare(self, case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
        p = case.params
        allowed = os.sched_getaffinity(0)
        cpus = [c for c in p["cpus"] if c in allowed]
        if not cpus:
            raise Waived(f"none of node {p['cpu_node']}'s CPUs are in this process's CPU set ({compact_ranges(sorted(allowed))})")
        threads = int(p["threads"])
        if threads > len(cpus):
            raise Waived(f"{threads} threads asked, but only {len(cpus)} of node {p['cpu_node']}'s CPUs are in this process's CPU set")
        with ExitStack() as stack:
            binder = _Binder(int(p["mem_node"]), single_node=len(topology(ctx.profile).nodes) == 1)
            if p["kernel"] == "chase":
                stack.enter_context(numa.pinned(cpus[:1]))
                yield stack.enter_context(_chase_case(p, binder, cpus[:1], ctx))
            else:
                stack.enter_context(numa.pinned(cpus))
                yield stack.enter_context(_stream_case(p, binder, cpus, threads, ctx))


class _Binder:
    """Allocates buffers on one memory node and says how sure the placement is."""

    def __init__(self, node: int, single_node: bool):
        self.node = node
        self.unverified = ""
        if not numa.calls().available:
            self.unverified = "no libnuma and no known mbind system call on this CPU"
        else:
            try:
                allowed = numa.allowed_nodes()
            except numa.NumaError as e:
                allowed = None
                self.unverified = f"the kernel offers no memory policies ({e})"
            if allowed is not None and node not in allowed:
                raise BenchFailure(f"memory node {node} is not online or not in this process's cpuset (allowed: {compact_ranges(allowed)})")
        if self.unverified and not single_node:
            raise Waived(f"cannot place memory on node {node}: {self.unverified}")

    def allocate(self, nbytes: int, hugepages: bool) -> numa.NodeBuffer:
        live_free = _live_node_free_kb(self.node)
        if live_free is not None and nbytes > live_free * 1024:
            raise Waived(f"node {self.node} has {live_free * 1024 / MIB:.0f} MiB free now; this case needs {nbytes / MIB:.0f} MiB more")
        if self.unverified:
            return numa.NodeBuffer(nbytes, None, hugepages)
        try:
            return numa.NodeBuffer(nbytes, self.node, hugepages)
        except numa.NumaError as e:
            raise BenchFailure(f"binding {nbytes / MIB:.0f} MiB to node {self.node} failed: {e}") from e

    def check(self, buffers: list[numa.NodeBuffer]) -> tuple[dict[str, float], dict[str, Any]]:
        """Metrics and facts about where the buffers' pages are, read now."""
        if self.unverified:
            return {"placement_verified": 0.0}, {"placement": f"unverified: {self.unverified}"}
        checked = on_node = 0
        described = []
        maps_fractions = []
        policies = set()
        for buf in buffers:
            placed = numa.placement(buf.address, buf.nbytes, self.node, max_samples=4096)
            checked += placed.pages_checked
            on_node += placed.on_node
            described.append(placed.describe())
            mode, nodes = numa.policy_at(buf.address)
            policies.add(f"{mode}:{','.join(map(str, nodes))}" if nodes else mode)  # as numa_maps writes it
            entry = numa.numa_maps_entry(buf.address)
            if entry is not None:
                maps_fractions.append(entry.fraction_on(self.node))
                policies.add(entry.policy)
        fraction = on_node / checked if checked else 0.0
        # get_mempolicy and numa_maps both name the policy ("bind:1"); every page must be on the node
        maps_ok = all(f == 1.0 for f in maps_fractions) and policies == {f"bind:{self.node}"}
        verified = checked > 0 and on_node == checked and maps_ok
        metrics = {"placement_verified": 1.0 if verified else 0.0, "pages_on_node_fraction": fraction}
        if maps_fractions:
            metrics["numa_maps_on_node_fraction"] = min(maps_fractions)
        if verified:
            placement = "mbind verified via move_pages" + (" and numa_maps" if maps_fractions else "")
        else:
            placement = f"unverified: {'; '.join(described)}; policy {', '.join(sorted(policies))}"
        return metrics, {"placement": placement, "pages": "; ".join(described), "policy": sorted(policies)}


@contextmanager
def _stream_case(p: dict[str, Any], binder: _Binder, cpus: list[int], threads: int, ctx: Context) -> Iterator[Callable[[], Sample]]:
    import numpy as np

    from gpubench.bench.engines import memkernels as mk

    if threads > mk.max_threads():
        raise Waived(f"numba allows at most {mk.max_threads()} threads here (NUMBA_NUM_THREADS); {threads} asked")
    n = int(p["array_bytes"]) // 8
    kernel = mk.stream_kernel(p["kernel"], p["stores"])
    moved = int(p["bytes_per_element"]) * n
    best_of = int(p["best_of"])
    buffers: list[numa.NodeBuffer] = []
    arrays: list[Any] = []
    previous_threads = mk.get_threads()
    try:
        ctx.progress(f"binding 3 x {n * 8 / MIB:.0f} MiB to node {binder.node}, first touch from {threads} thread(s)")
        for _ in range(3):
            buffers.append(binder.allocate(n * 8, bool(p["hugepages"])))
            arrays.append(np.frombuffer(buffers[-1].map, dtype=np.float64, count=n))
        mk.set_threads(threads)
        mk.first_touch(*arrays)
        kernel(*arrays)  # compile (or load from the cache) and warm at this thread count

        def measure() -> Sample:
            a, b, c = arrays
            mk.set_threads(threads)
            best = float("inf")
            # Pinned again here: another case prepared later in the same process (the calibration
            # holds several at once) may have pinned every thread to its own, narrower CPU set.
            with numa.pinned(cpus):
                for _ in range(best_of):
                    t0 = time.perf_counter()
                    kernel(a, b, c)
                    best = min(best, time.perf_counter() - t0)
                thread_cpus = numa.thread_cpus()
            del a, b, c
            metrics, facts = binder.check(buffers)
            metrics.update(seconds=best, bytes=float(moved * best_of))
            extra = {**facts, "threads": threads, "cpus": cpus, "thread_cpus": thread_cpus, "stores": p["stores"], "best_of": best_of,
                     "hugepages": all(buf.hugepages for buf in buffers), "numa_calls": numa.calls().source,
                     "threading_layer": mk.threading_layer(), "numba_cache": mk.CACHE.note}
            return Sample(moved / best / 1e9, metrics, extra)

        yield measure
    finally:
        mk.set_threads(previous_threads)
        del arrays[:]
        for buf in buffers:
            buf.close()


@contextmanager
def _chase_case(p: dict[str, Any], binder: _Binder, cpus: list[int], ctx: Context) -> Iterator[Callable[[], Sample]]:
    import numpy as np

    from gpubench.bench.engines import memkernels as mk

    hops = int(p["hops"])
    buffer = None
    chain: list[Any] = []
    try:
        ctx.progress(f"binding a {int(p['chase_bytes']) / MIB:.0f} MiB chase buffer to node {binder.node}")
        buffer = binder.allocate(int(p["chase_bytes"]), bool(p["hugepages"]))
        chain.append(np.frombuffer(buffer.map, dtype=np.uint64))
        chain[0][:] = 0  # first touch, in address order
        position = [mk.build_chase(chain[0], int(p["seed"]))]
        position[0] = mk.chase(chain[0], position[0], min(hops, 10_000))  # compile and warm

        def measure() -> Sample:
            with numa.pinned(cpus):
                t0 = time.perf_counter()
                position[0] = mk.chase(chain[0], position[0], hops)
                seconds = time.perf_counter() - t0
                thread_cpus = numa.thread_cpus()
            metrics, facts = binder.check([buffer])
            metrics.update(seconds=seconds, hops=float(hops))
            extra = {**facts, "threads": 1, "cpus": cpus, "thread_cpus": thread_cpus, "hugepages": buffer.hugepages, "numa_calls": numa.calls().source,
                     "numba_cache": mk.CACHE.note}
            return Sample(seconds / hops * 1e9, metrics, extra)

        yield measure
    finally:
        del chain[:]
        if buffer is not None:
            buffer.close()
