"""memtier's measurement: buffers bound to the memory node, threads pinned to the CPU node, the
STREAM kernels and the pointer chase timed, and the pages' placement checked after every repetition."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator

from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.bench.engines import numa
from gpubench.bench.memtier.plan import MIB, live_node_free_kb, topology
from gpubench.probe.checks import compact_ranges


@contextmanager
def prepare(case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
    """Pin the threads to the CPU node, bind the buffers to the memory node, and measure."""
    p = case.params
    allowed = os.sched_getaffinity(0)
    cpus = [c for c in p["cpus"] if c in allowed]
    if not cpus:
        raise Waived(f"none of node {p['cpu_node']}'s CPUs are in this process's CPU set ({compact_ranges(sorted(allowed))})")
    threads = int(p["threads"])
    if threads > len(cpus):
        raise Waived(f"{threads} threads asked, but only {len(cpus)} of node {p['cpu_node']}'s CPUs are in this process's CPU set")
    # numba fixes its thread pool's size from this process's CPU set when it is first imported:
    # before any pinning, or a chase case (pinned to one CPU) run first would leave every later
    # STREAM case one thread
    from gpubench.bench.engines import memkernels  # noqa: F401

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
        live_free = live_node_free_kb(self.node)
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
