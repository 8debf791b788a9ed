"""p2p: copies between every pair of GPUs, straight through peer access where the GPUs allow it.

For each ordered GPU pair (source -> destination):
  uni-ce      cudaMemcpyPeerAsync on a stream of the source GPU, with peer access enabled both ways
  uni-sm      a copy kernel on the destination GPU reading the source GPU's memory (peer reads)
  latency-ce  small copies (latency_bytes, default 8) in batches of 100 between two CUDA events:
              microseconds per copy
and for each unordered pair (a < b):
  bidir-ce    a->b and b->a at the same time, each on a stream of its source GPU
  bidir-sm    both GPUs pulling from each other at the same time

Peer access or not: a pair the probe ("gpu p2p", from NVML) reports P2P-capable is copied through
peer access; a pair it reports otherwise is copied through the host: the whole buffer to pinned
host memory, then on to the other GPU, timed by the host clock; such results carry "via": "host"
in their parameters and extras. Where the probe could not tell, CUDA's deviceCanAccessPeer
decides when the case runs. SM copies need peer access and are waived for pairs without it.
Every case checks the head and tail of what arrived before it measures.

The GB/s of one repetition is the median over `iterations` copies (bidir: both directions' bytes
over the time until both finished).

Parameters (--param p2p.NAME=VALUE):
  sizes          buffer sizes, multiples of 4 KiB (default 256M; quick 32M; full 64M,256M,1G)
  iterations     copies timed per repetition (default 10; quick 5; full 20)
  pairs          SRC-DST pairs in the probe's GPU numbering, e.g. 0-1,1-0, or all (default all;
                 quick: 0-1 and 1-0)
  kinds          any of uni-ce,uni-sm,bidir-ce,bidir-sm,latency-ce (default all)
  latency_bytes  bytes of one latency transfer (default 8)
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import permutations
from typing import Any, Callable, ClassVar, Iterator

from gpubench.bench.core.params import check_options, format_size, parse_choices, parse_int
from gpubench.bench.gpu import common as g
from gpubench.bench.gpu.worker import GpuBenchmark
from gpubench.bench.core.interface import Case, Context, Sample, Waived
from gpubench.errors import UserError
from gpubench.probe.model import Profile
from gpubench.probe.views import GpuDevice, GpuView

BENCH = "p2p"
OPTIONS = ("sizes", "iterations", "pairs", "kinds", "latency_bytes")
KINDS = ("uni-ce", "uni-sm", "bidir-ce", "bidir-sm", "latency-ce")
LATENCY_BATCH = 100
LATENCY_INTERVALS = {"quick": 20, "default": 50, "full": 100}
MAX_LATENCY_BYTES = 1 << 20


def probe_pair_status(profile: Profile, a: int, b: int) -> str | None:
    """What the probe's "gpu p2p" says of a pair ("ok", "not supported", ...), None if nothing."""
    return GpuView.from_profile(profile).p2p_status(a, b)


def route(status: str | None) -> str:
    """peer (the probe says P2P works), host (it says it does not), auto (CUDA decides at run time)."""
    if status is None:
        return "auto"
    return "peer" if status == "ok" else "host"


def parse_pairs(text: str, count: int) -> list[tuple[int, int]]:
    if text.strip().lower() == "all":
        return list(permutations(range(count), 2))
    out = []
    for item in [x.strip() for x in text.replace(" ", ",").split(",") if x.strip()]:
        src, sep, dst = item.partition("-")
        if not sep or not src.isdigit() or not dst.isdigit():
            raise UserError(f"{BENCH}: pairs: {item!r} is not SRC-DST (e.g. 0-1)")
        a, b = int(src), int(dst)
        for index in (a, b):
            if index >= count:
                raise UserError(f"{BENCH}: GPU {index} does not exist (the probe found {count} NVIDIA GPU(s): 0..{count - 1})")
        if a == b:
            raise UserError(f"{BENCH}: pairs: {item!r} names the same GPU twice")
        out.append((a, b))
    if not out:
        raise UserError(f"{BENCH}: pairs is empty")
    return list(dict.fromkeys(out))


def plan(profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
    check_options(BENCH, options, OPTIONS)
    gpus = g.nvidia_gpus(profile)
    if len(gpus) < 2:
        raise UserError(f"{BENCH}: needs >= 2 GPUs (probe: {len(gpus)})")
    sizes, iterations = g.sizes_and_iterations(BENCH, options, size, g.COPY_SIZES, g.COPY_ITERATIONS)
    if "pairs" in options:
        pairs = parse_pairs(options["pairs"], len(gpus))
    else:
        pairs = [(0, 1), (1, 0)] if size == "quick" else list(permutations(range(len(gpus)), 2))
    kinds = parse_choices(BENCH, "kinds", options["kinds"], KINDS) if "kinds" in options else list(KINDS)
    latency_bytes = parse_int(BENCH, "latency_bytes", options["latency_bytes"], 1, MAX_LATENCY_BYTES) if "latency_bytes" in options else 8

    directed = [k for k in kinds if not k.startswith("bidir")]
    both_ways = [k for k in kinds if k.startswith("bidir")]
    unordered = list(dict.fromkeys((min(a, b), max(a, b)) for a, b in pairs))
    cases = []
    for src, dst in pairs:
        for kind in directed:
            cases += _pair_cases(profile, gpus, src, dst, kind, sizes, iterations, latency_bytes, size)
    for a, b in unordered:
        for kind in both_ways:
            cases += _pair_cases(profile, gpus, a, b, kind, sizes, iterations, latency_bytes, size)
    return cases


def _pair_cases(profile: Profile, gpus: list[GpuDevice], src: int, dst: int, kind: str, sizes: list[int],
                iterations: int, latency_bytes: int, size: str) -> list[Case]:
    status = probe_pair_status(profile, src, dst)
    common = {
        "src": src, "dst": dst, "src_pci": gpus[src].pci, "dst_pci": gpus[dst].pci,
        "src_model": gpus[src].model, "dst_model": gpus[dst].model,
        "probe_p2p": status, "via": route(status), "kind": kind,
    }
    if kind == "latency-ce":
        params = {**common, "size": latency_bytes, "batch": LATENCY_BATCH, "iterations": LATENCY_INTERVALS[size]}
        return [Case(f"latency-ce-{src}to{dst}-{format_size(latency_bytes)}", params, "us", higher_is_better=False)]
    label = f"{src}and{dst}" if kind.startswith("bidir") else f"{src}to{dst}"
    factor = 2 if kind.startswith("bidir") else 1
    return [
        Case(f"{kind}-{label}-{format_size(n)}", {**common, "size": n, "iterations": iterations, "bytes_per_iteration": factor * n}, "GB/s")
        for n in sizes
    ]


@dataclass(frozen=True)
class PairParams:
    """What a p2p result says about its GPU pair, typed for readers outside this family (the
    report's matrices): built from the parameters _pair_cases writes and the extras a measurement
    records."""

    src: int
    dst: int
    kind: str  # one of KINDS
    size: int | None  # bytes per copy
    via: str  # the path that ran (peer or host), else the planned route (peer, host or auto)
    src_model: str = ""
    dst_model: str = ""

    @property
    def both_ways(self) -> bool:
        """A bidirectional kind measures the unordered pair."""
        return self.kind.startswith("bidir")

    @classmethod
    def from_params(cls, params: dict[str, Any], extra: dict[str, Any] | None = None) -> PairParams | None:
        """None where the parameters name no pair of GPUs (another benchmark's result)."""
        src, dst = params.get("src"), params.get("dst")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in (src, dst)):
            return None
        size = params.get("size")
        return cls(
            src=src, dst=dst, kind=str(params.get("kind") or ""),
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            via=str((extra or {}).get("via") or params.get("via") or ""),
            src_model=str(params.get("src_model") or ""), dst_model=str(params.get("dst_model") or ""),
        )


class P2P(GpuBenchmark):
    key: ClassVar[str] = "p2p"
    options: ClassVar[tuple[str, ...]] = OPTIONS
    description: ClassVar[str] = (
        "GPU-to-GPU copies for every pair: peer access, unidirectional and bidirectional bandwidth by copy "
        "engine and SM kernel, small-copy latency; pairs without P2P measured through the host and marked"
    )

    def requires(self, profile: Profile) -> str | None:
        return g.gpu_waiver(profile, 2)

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
        return plan(profile, size, options)

    def waiver(self, case: Case, ctx: Context) -> str | None:
        p = case.params
        if p["kind"].endswith("-sm") and p["via"] == "host":
            return (f"SM copies need peer access; the probe reports GPUs {p['src']} and {p['dst']} "
                    f"without P2P (gpu p2p {min(p['src'], p['dst'])}-{max(p['src'], p['dst'])} = {p['probe_p2p']})")
        return None

    @contextmanager
    def prepare_here(self, case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
        p = case.params
        cp = g.load_cupy()
        a = g.cuda_ordinal(cp, p["src_pci"], p["src"])
        b = g.cuda_ordinal(cp, p["dst_pci"], p["dst"])
        with ExitStack() as stack:
            can_ab = bool(cp.cuda.runtime.deviceCanAccessPeer(a, b))
            can_ba = bool(cp.cuda.runtime.deviceCanAccessPeer(b, a))
            via = p["via"]
            if via == "auto":
                via = "peer" if can_ab and can_ba else "host"
            if via == "peer" and not (can_ab and can_ba):
                raise Waived(
                    f"the probe reports P2P between GPUs {p['src']} and {p['dst']}, but CUDA says "
                    f"canAccessPeer {a}->{b} = {int(can_ab)}, {b}->{a} = {int(can_ba)}"
                )
            if p["kind"].endswith("-sm") and via != "peer":
                raise Waived(f"SM copies need peer access; CUDA says GPUs {a} and {b} cannot reach each other's memory")
            if via == "peer":
                _enable_peer_access(cp, a, b, stack)
                _enable_peer_access(cp, b, a, stack)
            for pool_device in (a, b):
                stack.callback(_free_pool, cp, pool_device)
            extra = {
                "via": via,
                "can_access_peer": {f"{a}->{b}": can_ab, f"{b}->{a}": can_ba},
                "src": g.device_facts(cp, a),
                "dst": g.device_facts(cp, b),
            }
            yield _measurement(cp, a, b, via, p, extra, stack)


def _free_pool(cp: Any, device: int) -> None:
    with cp.cuda.Device(device):
        cp.get_default_memory_pool().free_all_blocks()


def _enable_peer_access(cp: Any, device: int, peer: int, stack: ExitStack) -> None:
    """Let `device` reach `peer`'s memory; undone on exit unless it was already enabled."""
    with cp.cuda.Device(device):
        try:
            cp.cuda.runtime.deviceEnablePeerAccess(peer)
        except cp.cuda.runtime.CUDARuntimeError as e:
            if getattr(e, "status", None) == g.runtime_constant(cp, "errorPeerAccessAlreadyEnabled", g.ERROR_PEER_ACCESS_ALREADY_ENABLED):
                return
            raise
    stack.callback(_disable_peer_access, cp, device, peer)


def _disable_peer_access(cp: Any, device: int, peer: int) -> None:
    with cp.cuda.Device(device):
        cp.cuda.runtime.deviceDisablePeerAccess(peer)


def _peer_view(cp: Any, buf: Any, nbytes: int, reader: int) -> Any:
    """Another GPU's buffer as an argument for a kernel on `reader` (peer access is enabled, and
    with unified addressing the pointer is valid there)."""
    return g.device_view(cp, buf.data.ptr, nbytes, reader, buf)


def _measurement(cp: Any, a: int, b: int, via: str, p: dict[str, Any], extra: dict[str, Any], stack: ExitStack) -> Callable[[], Sample]:
    import numpy as np

    kind, nbytes, iterations = p["kind"], int(p["size"]), int(p["iterations"])
    runtime = cp.cuda.runtime
    h2d = g.runtime_constant(cp, "memcpyHostToDevice", g.MEMCPY_HOST_TO_DEVICE)
    d2h = g.runtime_constant(cp, "memcpyDeviceToHost", g.MEMCPY_DEVICE_TO_HOST)
    extra = {**extra, "timer": "cuda-event" if via == "peer" else "wall"}
    name = f"{kind} {a}->{b}"
    bidir = kind.startswith("bidir")
    alloc_bytes = nbytes
    for device in (a, b):
        with cp.cuda.Device(device):
            free = g.free_device_memory(cp)
        needed = alloc_bytes * (2 if bidir else 1)
        if needed > free:
            raise Waived(f"needs {needed / g.MIB:.0f} MiB on CUDA device {device}, {free / g.MIB:.0f} MiB free")

    def buffer(device: int, filled: bool) -> Any:
        with cp.cuda.Device(device):
            buf = cp.zeros(alloc_bytes, dtype=cp.uint8)
            if filled and alloc_bytes % g.PATTERN_BYTES == 0:
                buf.reshape(-1, g.PATTERN_BYTES)[:] = cp.asarray(g.pattern(np))
            elif filled:
                buf.fill(1)
            g.wait_for_setup(cp)
            return buf

    def stream_on(device: int) -> Any:
        with cp.cuda.Device(device):
            return cp.cuda.Stream(non_blocking=True)

    def staged(src_buf: Any, src_dev: int, dst_buf: Any, dst_dev: int) -> Callable[[], None]:
        """A copy through pinned host memory, complete when it returns."""
        staging = g.PinnedHost(cp, alloc_bytes)
        stack.callback(staging.close)
        s_src, s_dst = stream_on(src_dev), stream_on(dst_dev)

        def op() -> None:
            with cp.cuda.Device(src_dev):
                runtime.memcpyAsync(staging.ptr, src_buf.data.ptr, nbytes, d2h, s_src.ptr)
                s_src.synchronize()
            with cp.cuda.Device(dst_dev):
                runtime.memcpyAsync(dst_buf.data.ptr, staging.ptr, nbytes, h2d, s_dst.ptr)
                s_dst.synchronize()

        return op

    def peer_ce(src_buf: Any, src_dev: int, dst_buf: Any, dst_dev: int, stream: Any) -> Callable[[], None]:
        return lambda: runtime.memcpyPeerAsync(dst_buf.data.ptr, dst_dev, src_buf.data.ptr, src_dev, nbytes, stream.ptr)

    def check(dst_buf: Any, dst_dev: int, label: str) -> None:
        if nbytes % g.PATTERN_BYTES:
            return  # latency transfers are too small to hold the pattern
        with cp.cuda.Device(dst_dev):
            g.check_copy(np, label, cp.asnumpy(dst_buf[: g.PATTERN_BYTES]), cp.asnumpy(dst_buf[nbytes - g.PATTERN_BYTES: nbytes]))

    src_buf, dst_buf = buffer(a, True), buffer(b, False)

    if kind == "latency-ce":
        if via == "peer":
            stream = stream_on(a)
            op = peer_ce(src_buf, a, dst_buf, b, stream)

            def latency() -> Sample:
                with cp.cuda.Device(a):
                    seconds = g.event_intervals(cp, stream, op, iterations, LATENCY_BATCH)
                return g.latency_sample(seconds, LATENCY_BATCH, nbytes, extra)
        else:
            op = staged(src_buf, a, dst_buf, b)

            def latency() -> Sample:
                seconds = [statistics.median(g.wall_intervals(op, LATENCY_BATCH)) for _ in range(iterations)]
                return g.latency_sample(seconds, LATENCY_BATCH, nbytes, extra)
        op()
        return latency

    if not bidir:
        if via == "host":
            op = staged(src_buf, a, dst_buf, b)
            op()
            check(dst_buf, b, name)
            return lambda: g.bandwidth_sample(nbytes, g.wall_intervals(op, iterations), extra)
        if kind == "uni-ce":
            timing_device, stream = a, stream_on(a)
            op = peer_ce(src_buf, a, dst_buf, b, stream)
        else:  # uni-sm: the destination pulls
            timing_device, stream = b, stream_on(b)
            kernel = g.CopyKernel(cp, b)
            remote = _peer_view(cp, src_buf, nbytes, b)
            op = lambda: kernel(remote, dst_buf, nbytes)

        def uni() -> Sample:
            with cp.cuda.Device(timing_device):
                return g.bandwidth_sample(nbytes, g.event_intervals(cp, stream, op, iterations), extra)

        with cp.cuda.Device(timing_device):
            g.event_intervals(cp, stream, op, 1)
        check(dst_buf, b, name)
        return uni

    # bidir: a->b and b->a at once
    back_src, back_dst = buffer(b, True), buffer(a, False)
    if via == "host":
        ops = [staged(src_buf, a, dst_buf, b), staged(back_src, b, back_dst, a)]
        import threading

        def both() -> None:
            threads = [threading.Thread(target=op) for op in ops]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        both()
        check(dst_buf, b, f"{name} forward")
        check(back_dst, a, f"{name} back")
        return lambda: g.bandwidth_sample(2 * nbytes, g.wall_intervals(both, iterations), extra)
    streams = [stream_on(a), stream_on(b)]
    if kind == "bidir-ce":
        ops = [peer_ce(src_buf, a, dst_buf, b, streams[0]), peer_ce(back_src, b, back_dst, a, streams[1])]
    else:  # each GPU pulls from the other
        pull_b, pull_a = g.CopyKernel(cp, b), g.CopyKernel(cp, a)
        streams = [stream_on(b), stream_on(a)]
        remote_a, remote_b = _peer_view(cp, src_buf, nbytes, b), _peer_view(cp, back_src, nbytes, a)
        ops = [lambda: pull_b(remote_a, dst_buf, nbytes), lambda: pull_a(remote_b, back_dst, nbytes)]
    devices = [a, b] if kind == "bidir-ce" else [b, a]
    g.concurrent_intervals(cp, devices, streams, ops, 1)
    check(dst_buf, b, f"{name} forward")
    check(back_dst, a, f"{name} back")
    return lambda: g.bandwidth_sample(2 * nbytes, g.concurrent_intervals(cp, devices, streams, ops, iterations)[0], extra)
