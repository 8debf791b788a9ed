"""memcpy: host<->device and device<->device copy bandwidth of each GPU, as nvbandwidth measures it.

Cases per GPU and size:
  h2d / d2h   from or to pageable (NumPy) and pinned (cudaHostAlloc, mapped) host memory
  d2d         between two buffers in the GPU's memory
  bidir       h2d and d2h at the same time on two streams (pinned memory)
and per engine:
  ce          the copy engines (cudaMemcpyAsync)
  sm          a copy kernel on the GPU's SMs, 16-byte words in a grid-stride loop; for host
              memory the kernel reads or writes the mapped pinned buffer directly (zero-copy);
              in bidir each direction's kernel gets half the SMs, so both run at once.
              Pageable memory cannot be reached by a kernel without HMM (see the hmm benchmark).
plus `d2d-cupy-reference`: the same device copy done by CuPy's own cupy.copyto, so a report can
set the d2d figures against a reference copy from the same run.

Timing: pinned and device copies are timed with CUDA events recorded around each copy on the
copy's stream; pageable copies with the host clock around cudaMemcpy plus a device sync, since a
pageable copy is staged by the driver on the host. One repetition is `iterations` copies; its
value is the median of their GB/s (1e9 bytes/s), as nvbandwidth reports. For d2d the bytes are the
buffer size (each byte is read once and written once). bidir counts both directions.

Every case first makes one copy and checks the head and tail of the destination against the
source's pattern, so a broken path fails instead of reporting a speed.

Parameters (--param memcpy.NAME=VALUE):
  sizes       buffer sizes, multiples of 4 KiB (default 256M; quick 32M; full 64M,256M,1G)
  iterations  copies timed per repetition (default 10; quick 5; full 20)
  gpus        GPU numbers in the probe's PCI order (default: every NVIDIA GPU; quick: GPU 0)
  directions  any of h2d,d2h,d2d,bidir (default: all)
  memory      host memory kinds: pageable,pinned (default: both)
  engines     ce,sm (default: both)
  reference   also run d2d-cupy-reference (default true)
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

from gpubench.bench.core.params import check_options, format_size, parse_bool, parse_choices
from gpubench.bench.gpu import common as g
from gpubench.bench.gpu.worker import GpuBenchmark
from gpubench.bench.core.interface import Case, Context, Sample, Waived
from gpubench.errors import UserError
from gpubench.probe.model import Profile

BENCH = "memcpy"
OPTIONS = ("sizes", "iterations", "gpus", "directions", "memory", "engines", "reference")
DIRECTIONS = ("h2d", "d2h", "d2d", "bidir")
MEMORY = ("pageable", "pinned")
ENGINES = ("ce", "sm")


@dataclass(frozen=True)
class CopyCase:
    """One copy to measure; `host_memory` is None for d2d."""

    direction: str
    host_memory: str | None
    engine: str  # "ce", "sm" or "cupy"

    @property
    def timer(self) -> str:
        return "wall" if self.host_memory == "pageable" else "cuda-event"

    def name(self, size: int, gpu: int) -> str:
        if self.engine == "cupy":
            return f"d2d-cupy-reference-{format_size(size)}-gpu{gpu}"
        parts = [self.direction] + ([self.host_memory] if self.host_memory else []) + [self.engine]
        return "-".join(parts + [format_size(size), f"gpu{gpu}"])


def copy_matrix(directions: list[str], memory: list[str], engines: list[str], reference: bool) -> list[CopyCase]:
    """The copies for the chosen directions, memory kinds and engines; a kernel cannot reach
    pageable memory, and bidir pageable cannot overlap (a pageable d2h copy blocks the host)."""
    out = []
    for direction in directions:
        if direction == "d2d":
            out += [CopyCase("d2d", None, e) for e in engines]
            if reference:
                out.append(CopyCase("d2d", None, "cupy"))
            continue
        for mem in memory:
            for engine in engines:
                if mem == "pageable" and (engine == "sm" or direction == "bidir"):
                    continue
                out.append(CopyCase(direction, mem, engine))
    return out


def plan(profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
    check_options(BENCH, options, OPTIONS)
    gpus = g.nvidia_gpus(profile)
    sizes, iterations = g.sizes_and_iterations(BENCH, options, size, g.COPY_SIZES, g.COPY_ITERATIONS)
    if "gpus" in options:
        chosen = g.parse_gpus(BENCH, "gpus", options["gpus"], gpus)
    else:
        chosen = [gpu.index for gpu in gpus[: 1 if size == "quick" else None]]
    directions = parse_choices(BENCH, "directions", options["directions"], DIRECTIONS) if "directions" in options else list(DIRECTIONS)
    memory = parse_choices(BENCH, "memory", options["memory"], MEMORY) if "memory" in options else list(MEMORY)
    engines = parse_choices(BENCH, "engines", options["engines"], ENGINES) if "engines" in options else list(ENGINES)
    reference = parse_bool(BENCH, "reference", options["reference"]) if "reference" in options else True
    copies = copy_matrix(directions, memory, engines, reference)
    if not copies:
        raise UserError(f"{BENCH}: nothing to measure for directions={','.join(directions)} memory={','.join(memory)} engines={','.join(engines)}")
    cases = []
    for index in chosen:
        for nbytes in sizes:
            for copy in copies:
                params: dict[str, Any] = {
                    **g.gpu_params(gpus[index]),
                    "direction": copy.direction,
                    "host_memory": copy.host_memory,
                    "engine": copy.engine,
                    "size": nbytes,
                    "iterations": iterations,
                    "timer": copy.timer,
                    "bytes_per_iteration": nbytes * (2 if copy.direction == "bidir" else 1),
                }
                cases.append(Case(copy.name(nbytes, index), params, "GB/s"))
    return cases


class Memcpy(GpuBenchmark):
    key: ClassVar[str] = "memcpy"
    options: ClassVar[tuple[str, ...]] = OPTIONS
    description: ClassVar[str] = (
        "Host-to-device, device-to-host (pageable and pinned), device-to-device and bidirectional copy "
        "bandwidth per GPU, by copy engine and by SM copy kernel, CUDA-event timed, median of N like nvbandwidth"
    )

    def requires(self, profile: Profile) -> str | None:
        return g.gpu_waiver(profile, 1)

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
        return plan(profile, size, options)

    @contextmanager
    def prepare_here(self, case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
        cp = g.load_cupy()
        p = case.params
        ordinal = g.cuda_ordinal(cp, p["gpu_pci"], p["gpu"])
        with ExitStack() as stack:
            stack.enter_context(cp.cuda.Device(ordinal))
            stack.callback(cp.get_default_memory_pool().free_all_blocks)
            yield _measurement(cp, ordinal, p, stack)


def _measurement(cp: Any, ordinal: int, p: dict[str, Any], stack: ExitStack) -> Callable[[], Sample]:
    import numpy as np

    nbytes, iterations = int(p["size"]), int(p["iterations"])
    direction, host_memory, engine = p["direction"], p["host_memory"], p["engine"]
    free = g.free_device_memory(cp)
    device_buffers = 2 if direction in ("d2d", "bidir") else 1
    if device_buffers * nbytes > free:
        raise Waived(f"needs {device_buffers * nbytes / g.MIB:.0f} MiB of GPU memory, {free / g.MIB:.0f} MiB free")

    h2d = g.runtime_constant(cp, "memcpyHostToDevice", g.MEMCPY_HOST_TO_DEVICE)
    d2h = g.runtime_constant(cp, "memcpyDeviceToHost", g.MEMCPY_DEVICE_TO_HOST)
    d2d = g.runtime_constant(cp, "memcpyDeviceToDevice", g.MEMCPY_DEVICE_TO_DEVICE)
    runtime = cp.cuda.runtime
    stream = cp.cuda.Stream(non_blocking=True)
    pattern = cp.asarray(g.pattern(np))

    def device_buffer(filled: bool) -> Any:
        buf = cp.empty(nbytes, dtype=cp.uint8)
        g.own(stack, buf)  # the copies know it by address only
        if filled:
            buf.reshape(-1, g.PATTERN_BYTES)[:] = pattern
        else:
            buf.fill(0)
        g.wait_for_setup(cp)
        return buf

    def host_buffer(filled: bool) -> tuple[int, Any, Any]:
        """(host address, NumPy view, device view or None) of a host buffer of the case's kind."""
        if host_memory == "pinned":
            pinned = g.PinnedHost(cp, nbytes)
            stack.callback(pinned.close)
            view = pinned.numpy()
            array = g.device_view(cp, pinned.device_ptr, nbytes, ordinal, pinned) if engine == "sm" else None
            host = (pinned.ptr, view, array)
        else:
            view = np.empty(nbytes, dtype=np.uint8)
            g.own(stack, view)
            host = (int(view.ctypes.data), view, None)
        if filled:
            g.fill_pattern(np, host[1])
        else:
            host[1].fill(0)
        return host

    kernel = None
    if engine == "sm":
        # Two kernels that each fill every SM would run one after the other: bidir gives each half.
        sms = max(1, g.sm_count(cp, ordinal) // 2) if direction == "bidir" else None
        kernel = g.CopyKernel(cp, ordinal, sms)
    facts = {**g.device_facts(cp, ordinal), "timer": p["timer"], "engine": engine, "host_memory": host_memory}
    name = f"{direction}-{host_memory or 'device'}-{engine}"

    def ce(dst: int, src: int, kind: int, on: Any) -> Callable[[], None]:
        return lambda: runtime.memcpyAsync(dst, src, nbytes, kind, on.ptr)

    if direction in ("h2d", "d2h"):
        dev = device_buffer(filled=direction == "d2h")
        host_ptr, host_view, host_dev = host_buffer(filled=direction == "h2d")
        if host_memory == "pageable":
            src, dst, kind = (host_ptr, dev.data.ptr, h2d) if direction == "h2d" else (dev.data.ptr, host_ptr, d2h)

            def blocking_copy() -> None:
                runtime.memcpy(dst, src, nbytes, kind)
                runtime.deviceSynchronize()

            blocking_copy()
            measure = lambda: g.bandwidth_sample(nbytes, g.wall_intervals(blocking_copy, iterations), facts)
        else:
            if engine == "sm":
                src_arr, dst_arr = (host_dev, dev) if direction == "h2d" else (dev, host_dev)
                op = lambda: kernel(src_arr, dst_arr, nbytes)  # type: ignore[misc]
            elif direction == "h2d":
                op = ce(dev.data.ptr, host_ptr, h2d, stream)
            else:
                op = ce(host_ptr, dev.data.ptr, d2h, stream)
            g.event_intervals(cp, stream, op, 1)
            measure = lambda: g.bandwidth_sample(nbytes, g.event_intervals(cp, stream, op, iterations), facts)
        if direction == "h2d":
            g.check_copy(np, name, cp.asnumpy(dev[:g.PATTERN_BYTES]), cp.asnumpy(dev[-g.PATTERN_BYTES:]))
        else:
            g.check_copy(np, name, host_view[:g.PATTERN_BYTES].copy(), host_view[-g.PATTERN_BYTES:].copy())
        return measure

    if direction == "d2d":
        src_dev, dst_dev = device_buffer(True), device_buffer(False)
        if engine == "ce":
            op = ce(dst_dev.data.ptr, src_dev.data.ptr, d2d, stream)
        elif engine == "sm":
            op = lambda: kernel(src_dev, dst_dev, nbytes)  # type: ignore[misc]
        else:
            op = lambda: cp.copyto(dst_dev, src_dev)
        g.event_intervals(cp, stream, op, 1)
        g.check_copy(np, name, cp.asnumpy(dst_dev[:g.PATTERN_BYTES]), cp.asnumpy(dst_dev[-g.PATTERN_BYTES:]))
        return lambda: g.bandwidth_sample(nbytes, g.event_intervals(cp, stream, op, iterations), facts)

    # bidir: h2d into one device buffer while d2h drains another, each on its own stream
    up_dev, down_dev = device_buffer(False), device_buffer(True)
    up_ptr, _up_view, up_host_dev = host_buffer(filled=True)
    down_ptr, down_view, down_host_dev = host_buffer(filled=False)
    other = cp.cuda.Stream(non_blocking=True)
    if engine == "sm":
        ops = [lambda: kernel(up_host_dev, up_dev, nbytes), lambda: kernel(down_dev, down_host_dev, nbytes)]  # type: ignore[misc]
    else:
        ops = [ce(up_dev.data.ptr, up_ptr, h2d, stream), ce(down_ptr, down_dev.data.ptr, d2h, other)]
    g.concurrent_intervals(cp, [ordinal, ordinal], [stream, other], ops, 1)
    g.check_copy(np, f"{name} h2d", cp.asnumpy(up_dev[:g.PATTERN_BYTES]), cp.asnumpy(up_dev[-g.PATTERN_BYTES:]))
    g.check_copy(np, f"{name} d2h", down_view[:g.PATTERN_BYTES].copy(), down_view[-g.PATTERN_BYTES:].copy())

    def bidir() -> Sample:
        total, each = g.concurrent_intervals(cp, [ordinal, ordinal], [stream, other], ops, iterations)
        per_direction = {}
        if each is not None:
            import statistics

            per_direction = {
                "h2d_gbps_median": statistics.median(nbytes / s / 1e9 for s in each[0]),
                "d2h_gbps_median": statistics.median(nbytes / s / 1e9 for s in each[1]),
            }
        return g.bandwidth_sample(2 * nbytes, total, facts, per_direction)

    return bidir
