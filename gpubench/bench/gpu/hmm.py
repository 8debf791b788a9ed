"""hmm: one GPU kernel reading the same array from each place the data can live.

The kernel (a CuPy RawKernel) reads every byte of the array once in 16-byte words and sums them,
so the result can be checked (the array holds 32-bit ones: the sum is size / 4). Placements:
  device-from-pageable  explicit cudaMemcpy from NumPy (pageable) memory, then the kernel
  device-from-pinned    explicit cudaMemcpy from pinned host memory, then the kernel
  mapped-pinned         the kernel reads pinned host memory directly (zero-copy, over PCIe/C2C)
  managed               cudaMallocManaged, written by the CPU, read by the kernel (page faults
                        migrate it on demand)
  managed-prefetch      the same, with cudaMemPrefetchAsync to the GPU before the kernel
  system-first-touch    plain NumPy (malloc) memory the CPU just wrote, read by the kernel
                        through HMM or ATS: the first GPU access of every page
  system-second-pass    the same array read again right after a first pass
The two system cases run only when the probe says HMM or ATS is active (capability "hmm",
details active and mode); otherwise they are WAIVED with the probe's reason. CUDA's own
pageableMemoryAccess attribute is checked as well before they run.

One iteration puts the data back where the placement starts (a fresh NumPy array, the managed
array rewritten by the CPU) without timing it, then times, by the host clock, everything from the
first byte moved to the kernel's end: copy plus kernel, prefetch plus kernel, or the kernel alone.
The value of a repetition is the median GB/s (size / time) over `iterations`; the copy, prefetch
and kernel parts are kept as metrics.

Parameters (--param hmm.NAME=VALUE):
  sizes       array sizes, multiples of 4 KiB (default 256M; quick 64M; full 256M,1G)
  iterations  timed passes per repetition (default 5; quick 3; full 10)
  gpu         the GPU in the probe's PCI order (default 0)
  placements  any of the placements above (default all)
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, ClassVar, Iterator

from gpubench.bench.core.params import check_options, format_size, parse_choices
from gpubench.bench.gpu import common as g
from gpubench.bench.gpu.worker import GpuBenchmark
from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.errors import UserError
from gpubench.probe.model import Profile
from gpubench.probe.views import HmmView

BENCH = "hmm"
OPTIONS = ("sizes", "iterations", "gpu", "placements")
PLACEMENTS = (
    "device-from-pageable", "device-from-pinned", "mapped-pinned", "managed", "managed-prefetch",
    "system-first-touch", "system-second-pass",
)
SYSTEM_PLACEMENTS = ("system-first-touch", "system-second-pass")
DEFAULT_SIZES = {"quick": [64 * g.MIB], "default": [256 * g.MIB], "full": [256 * g.MIB, g.GIB]}
DEFAULT_ITERATIONS = {"quick": 3, "default": 5, "full": 10}

READ_KERNEL = r"""
extern "C" __global__ void gpubench_read_sum(const uint4* __restrict__ src, unsigned long long n16, unsigned long long* out)
{
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    unsigned long long acc = 0;
    for (; i < n16; i += stride) {
        const uint4 v = src[i];
        acc += (unsigned long long)v.x + v.y + v.z + v.w;
    }
    atomicAdd(out, acc);
}
"""


def system_memory_waiver(profile: Profile) -> str | None:
    """None when the probe found HMM or ATS active; otherwise why plain system memory is not tried."""
    view = HmmView.from_profile(profile)
    if view.verdict is None:
        return "plain system memory needs HMM or ATS, and the probe did not check for them (probe area hmm)"
    if view.mode is not None:
        return None
    why = f": {view.verdict.why}" if view.verdict.why else ""
    return f"plain system memory needs HMM or ATS, which the probe did not find active (probe: hmm = {view.verdict.status.value}{why})"


def plan(profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
    check_options(BENCH, options, OPTIONS)
    gpus = g.nvidia_gpus(profile)
    sizes, iterations = g.sizes_and_iterations(BENCH, options, size, DEFAULT_SIZES, DEFAULT_ITERATIONS)
    if not gpus:
        raise UserError(f"{BENCH}: the probe found no NVIDIA GPU")
    gpu = g.parse_gpus(BENCH, "gpu", options["gpu"], gpus)[0] if "gpu" in options else 0
    placements = parse_choices(BENCH, "placements", options["placements"], PLACEMENTS) if "placements" in options else list(PLACEMENTS)
    hmm_mode = HmmView.from_profile(profile).mode
    cases = []
    for nbytes in sizes:
        for placement in placements:
            params = {
                **g.gpu_params(gpus[gpu]), "placement": placement, "size": nbytes, "iterations": iterations,
                "timer": "wall", "hmm_mode": hmm_mode,
            }
            cases.append(Case(f"{placement}-{format_size(nbytes)}", params, "GB/s"))
    return cases


class Hmm(GpuBenchmark):
    key: ClassVar[str] = "hmm"
    options: ClassVar[tuple[str, ...]] = OPTIONS
    description: ClassVar[str] = (
        "One GPU kernel reading the same array from device memory (after a copy from pageable or pinned memory), "
        "mapped pinned memory, managed memory with and without prefetch, and plain system memory through HMM/ATS"
    )

    def requires(self, profile: Profile) -> str | None:
        return g.gpu_waiver(profile, 1)

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
        return plan(profile, size, options)

    def waiver(self, case: Case, ctx: Context) -> str | None:
        return system_memory_waiver(ctx.profile) if case.params["placement"] in SYSTEM_PLACEMENTS else None

    @contextmanager
    def prepare_here(self, case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
        p = case.params
        cp = g.load_cupy()
        ordinal = g.cuda_ordinal(cp, p["gpu_pci"], p["gpu"])
        with ExitStack() as stack:
            stack.enter_context(cp.cuda.Device(ordinal))
            stack.callback(cp.get_default_memory_pool().free_all_blocks)
            yield _measurement(cp, ordinal, p, stack)


def _attribute(cp: Any, name: str, fallback: int, ordinal: int) -> int:
    return int(cp.cuda.runtime.deviceGetAttribute(g.runtime_constant(cp, name, fallback), ordinal))


def _measurement(cp: Any, ordinal: int, p: dict[str, Any], stack: ExitStack) -> Callable[[], Sample]:
    import numpy as np

    placement, nbytes, iterations = p["placement"], int(p["size"]), int(p["iterations"])
    runtime = cp.cuda.runtime
    pageable_access = _attribute(cp, "cudaDevAttrPageableMemoryAccess", g.DEV_ATTR_PAGEABLE_MEMORY_ACCESS, ordinal)
    managed_access = _attribute(cp, "cudaDevAttrConcurrentManagedAccess", g.DEV_ATTR_CONCURRENT_MANAGED_ACCESS, ordinal)
    if placement in SYSTEM_PLACEMENTS and not pageable_access:
        raise Waived(f"CUDA reports pageableMemoryAccess = 0 on device {ordinal}, though the probe says HMM/ATS ({p['hmm_mode']}) is active")
    if placement == "managed-prefetch" and not managed_access:
        raise Waived(f"CUDA reports concurrentManagedAccess = 0 on device {ordinal}: managed memory cannot be prefetched here")
    free = g.free_device_memory(cp)
    if nbytes > free:
        raise Waived(f"needs {nbytes / g.MIB:.0f} MiB of GPU memory, {free / g.MIB:.0f} MiB free")

    extra = {
        **g.device_facts(cp, ordinal), "timer": "wall", "placement": placement, "hmm_mode": p["hmm_mode"],
        "pageable_memory_access": pageable_access, "concurrent_managed_access": managed_access,
    }
    kernel = cp.RawKernel(READ_KERNEL, "gpubench_read_sum")
    blocks = g.sm_count(cp, ordinal) * g.COPY_BLOCKS_PER_SM
    stream = cp.cuda.Stream(non_blocking=True)
    total = cp.empty(1, dtype=cp.uint64)  # zeroed on `stream` before every pass
    expected = nbytes // 4
    h2d = g.runtime_constant(cp, "memcpyHostToDevice", g.MEMCPY_HOST_TO_DEVICE)

    def read(array: Any) -> None:
        """The kernel over `array` (a CuPy view), finished and checked when this returns."""
        with stream:
            total.fill(0)
            kernel((blocks,), (g.COPY_THREADS,), (array, np.uint64(nbytes // 16), total))
        stream.synchronize()

    def check() -> None:
        got = int(total.get()[0])
        if got != expected:
            raise BenchFailure(f"{placement}: the kernel summed {got}, expected {expected}: it did not read the array it was given")

    def ones(view: Any) -> None:
        view.view(np.uint32)[:] = 1

    phases: dict[str, list[float]] = {}

    def timed(label: str, fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        phases.setdefault(label, []).append(seconds)
        return seconds

    # Each placement: (reset before an iteration, untimed) and (the timed part, returning seconds).
    if placement in ("device-from-pageable", "device-from-pinned", "mapped-pinned"):
        if placement == "device-from-pageable":
            host = np.empty(nbytes, dtype=np.uint8)
            g.own(stack, host)  # the timed copy knows it by address only
            host_ptr = int(host.ctypes.data)
        else:
            pinned = g.PinnedHost(cp, nbytes)
            stack.callback(pinned.close)
            host, host_ptr = pinned.numpy(), pinned.ptr
        ones(host)
        if placement == "mapped-pinned":
            mapped = g.device_view(cp, pinned.device_ptr, nbytes, ordinal, pinned)
            reset, run = None, lambda: timed("kernel_s", lambda: read(mapped))
        else:
            dev = cp.empty(nbytes, dtype=cp.uint8)

            def copy() -> None:
                runtime.memcpyAsync(dev.data.ptr, host_ptr, nbytes, h2d, stream.ptr)
                stream.synchronize()

            def reset() -> None:
                with stream:  # the copy's stream: a fill on the default one could land after the copy
                    dev.fill(0)
                stream.synchronize()

            run = lambda: timed("copy_s", copy) + timed("kernel_s", lambda: read(dev))
    elif placement in ("managed", "managed-prefetch"):
        ptr = int(runtime.mallocManaged(nbytes))
        stack.callback(runtime.free, ptr)
        import ctypes

        host_view = np.frombuffer((ctypes.c_uint8 * nbytes).from_address(ptr), dtype=np.uint8)
        managed = g.device_view(cp, ptr, nbytes, ordinal, None)
        reset = lambda: ones(host_view)  # the CPU writes every page: they live in host memory again

        def prefetch() -> None:
            runtime.memPrefetchAsync(ptr, nbytes, ordinal, stream.ptr)
            stream.synchronize()

        if placement == "managed":
            run = lambda: timed("kernel_s", lambda: read(managed))
        else:
            run = lambda: timed("prefetch_s", prefetch) + timed("kernel_s", lambda: read(managed))
    else:
        state: dict[str, Any] = {}

        def fresh() -> None:
            state.pop("array", None)
            array = np.empty(nbytes, dtype=np.uint8)
            ones(array)  # first touch by the CPU: the pages exist in host memory
            state["array"] = array
            state["view"] = g.device_view(cp, int(array.ctypes.data), nbytes, ordinal, array)
            if placement == "system-second-pass":
                read(state["view"])
                check()

        reset = fresh
        run = lambda: timed("kernel_s", lambda: read(state["view"]))

    def iteration() -> float:
        if reset is not None:
            reset()
        seconds = run()
        check()
        return seconds

    iteration()  # builds the kernel and proves the path before anything is timed

    def measure() -> Sample:
        phases.clear()
        seconds = [iteration() for _ in range(iterations)]
        metrics = {f"{label}_median": statistics.median(values) for label, values in phases.items()}
        return g.bandwidth_sample(nbytes, seconds, extra, metrics)

    return measure
