"""What the GPU data-path benchmarks (memcpy, p2p, gds, hmm) share: which NVIDIA GPUs the probe
found and why a benchmark is waived, lazy CuPy access, timing with CUDA events or the wall clock,
the copy kernel, parameter parsing, and turning per-iteration timings into one Sample.

CuPy, KvikIO and NumPy-over-pinned-memory are imported inside functions only: `import gpubench`
and planning must work on machines without them.

GPU numbering: a benchmark's GPU index is the position of that NVIDIA GPU in the probe's list,
which is sorted by PCI address (the order NVML numbers GPUs, and so the order of the probe's
"gpu p2p" pairs). CUDA may number them differently (CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES), so
a case is resolved to a CUDA ordinal by PCI address before it runs.

Waived or failed: a case is WAIVED only when what it needs is not there: an NVIDIA GPU and its
driver (the probe), CuPy or KvikIO (or a library they load), a GPU CUDA can see, enough free GPU
memory, a capability CUDA reports absent (peer access, pageable or concurrent managed memory
access). Any CUDA error is a fault of the machine or of the case: FAILED, with the error.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import ExitStack
from importlib.util import find_spec
from typing import Any, Callable

from gpubench.bench.core.interface import BenchFailure, Sample, Waived
from gpubench.bench.core.params import parse_int, parse_sizes, split_items
from gpubench.errors import UserError
from gpubench.probe.model import Profile, Status, probed_verdict
from gpubench.probe.views import GpuDevice, GpuView

MIB, GIB = 1 << 20, 1 << 30
# the packages of the gpu and gpu-cu13 extras (pyproject.toml), named: PyPI's "gpubench" is another project
INSTALL_HINT = ("pip install cupy-cuda12x kvikio-cu12 nvidia-ml-py (CUDA 12) or cupy-cuda13x kvikio-cu13 nvidia-ml-py "
                "(CUDA 13); from a gpubench checkout: pip install '.[gpu]' or '.[gpu-cu13]'")
MAX_ITERATIONS = 10_000
# memcpy and p2p time the same kinds of copies: the same sizes and counts for both
COPY_SIZES = {"quick": [32 * MIB], "default": [256 * MIB], "full": [64 * MIB, 256 * MIB, GIB]}
COPY_ITERATIONS = {"quick": 5, "default": 10, "full": 20}

# CUDA runtime enumerators (cuda_runtime_api.h); CuPy exports most of them, these are fallbacks.
MEMCPY_HOST_TO_DEVICE = 1
MEMCPY_DEVICE_TO_HOST = 2
MEMCPY_DEVICE_TO_DEVICE = 3
HOST_ALLOC_PORTABLE = 1
HOST_ALLOC_MAPPED = 2
ERROR_NO_DEVICE = 100
ERROR_INVALID_DEVICE = 101
ERROR_PEER_ACCESS_ALREADY_ENABLED = 704
CUDA_FAULT_HINTS = {
    35: "the NVIDIA driver is older than the CUDA runtime CuPy was built for, or its libcuda.so.1 is not installed: "
        "install the gpubench extra that matches the driver's CUDA version (gpu for 12, gpu-cu13 for 13)",
    802: "on NVSwitch systems, start nvidia-fabricmanager",
}
DEV_ATTR_PAGEABLE_MEMORY_ACCESS = 88
DEV_ATTR_CONCURRENT_MANAGED_ACCESS = 89


# --- what the probe says ---------------------------------------------------------------------

def nvidia_gpus(profile: Profile) -> list[GpuDevice]:
    """The NVIDIA GPUs the probe found, in PCI address order: the numbering every GPU benchmark uses."""
    return list(GpuView.from_profile(profile).nvidia)


def cupy_missing() -> str | None:
    """Why CuPy cannot be used, judged without importing it (None when it is installed)."""
    if find_spec("cupy") is None:
        return f"CuPy is not installed: {INSTALL_HINT}"
    return None


def kvikio_missing() -> str | None:
    if find_spec("kvikio") is None:
        return f"KvikIO is not installed: {INSTALL_HINT}"
    return None


def gpu_waiver(profile: Profile, minimum: int = 1) -> str | None:
    """None when the probed machine has `minimum` NVIDIA GPUs with a loaded driver and CuPy is
    installed; otherwise why a GPU benchmark cannot run."""
    view = GpuView.from_profile(profile)
    gpus = view.nvidia
    if not gpus:
        state = probed_verdict(view.inventory.status if view.inventory is not None else None)
        seen = f"; found only {', '.join(o.vendor or '?' for o in view.others)}" if view.others else ""
        return f"no NVIDIA GPU found (probe: gpus = {state}{seen})"
    if view.driver is not None and view.driver.status is Status.NO:
        return f"the NVIDIA driver is not loaded (probe: nvidia driver = no: {view.driver.why})"
    if len(gpus) < minimum:
        return f"needs >= {minimum} GPUs (probe: {len(gpus)} NVIDIA GPU{'s' if len(gpus) != 1 else ''})"
    return cupy_missing()


def parse_gpus(bench: str, option: str, text: str, gpus: list[GpuDevice]) -> list[int]:
    """GPU indices (probe order), each checked against the GPUs the probe found."""
    out = []
    for item in split_items(text):
        if not item.isdigit():
            raise UserError(f"{bench}: {option}={text!r}: {item!r} is not a GPU number")
        index = int(item)
        if index >= len(gpus):
            raise UserError(f"{bench}: GPU {index} does not exist (the probe found {len(gpus)} NVIDIA GPU(s): 0..{len(gpus) - 1})")
        out.append(index)
    if not out:
        raise UserError(f"{bench}: {option} is empty")
    return list(dict.fromkeys(out))


def gpu_params(gpu: GpuDevice) -> dict[str, Any]:
    return {"gpu": gpu.index, "gpu_pci": gpu.pci, "gpu_model": gpu.model}


# --- results -----------------------------------------------------------------------------------

def bandwidth_sample(bytes_per_iteration: int, seconds: list[float], extra: dict[str, Any] | None = None,
                     metrics: dict[str, float] | None = None) -> Sample:
    """One repetition of a bandwidth case: the median over its inner iterations, in GB/s (1e9 B/s)."""
    if not seconds or any(s <= 0 for s in seconds):
        raise ValueError(f"timings must be positive, got {seconds}")
    rates = [bytes_per_iteration / s / 1e9 for s in seconds]
    return Sample(
        value=statistics.median(rates),
        metrics={
            "bytes": float(bytes_per_iteration * len(seconds)),
            "iterations": float(len(seconds)),
            "gbps_min": min(rates),
            "gbps_max": max(rates),
            "seconds_median": statistics.median(seconds),
            **(metrics or {}),
        },
        extra=dict(extra or {}),
    )


def latency_sample(seconds_per_transfer: list[float], transfers_per_interval: int, bytes_per_transfer: int,
                   extra: dict[str, Any] | None = None) -> Sample:
    """One repetition of a latency case: the median time of one transfer, in microseconds."""
    if not seconds_per_transfer or any(s <= 0 for s in seconds_per_transfer):
        raise ValueError(f"timings must be positive, got {seconds_per_transfer}")
    us = [s * 1e6 for s in seconds_per_transfer]
    return Sample(
        value=statistics.median(us),
        metrics={
            "us_min": min(us),
            "us_max": max(us),
            "transfers": float(transfers_per_interval * len(us)),
            "bytes": float(bytes_per_transfer * transfers_per_interval * len(us)),
        },
        extra=dict(extra or {}),
    )


# --- CuPy ----------------------------------------------------------------------------------------

def load_cupy() -> Any:
    """The cupy module; Waived when it is not installed or a library it needs is missing (an
    ImportError), BenchFailure when it is there but breaks on import."""
    try:
        import cupy
    except ImportError as e:
        if cupy_missing():
            raise Waived(cupy_missing()) from None
        raise Waived(f"CuPy does not import: {e} ({INSTALL_HINT})") from None
    except Exception as e:  # a broken installation: a fault, not a missing package
        raise BenchFailure(f"CuPy does not load: {type(e).__name__}: {e}") from None
    return cupy


def runtime_constant(cp: Any, name: str, fallback: int) -> int:
    return int(getattr(cp.cuda.runtime, name, fallback))


def cuda_status(error: BaseException) -> int | None:
    """The cudaError_t of a CuPy CUDARuntimeError, None for anything else."""
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def cuda_failure(error: BaseException) -> BenchFailure:
    """A CUDA error that is a fault of the machine (FAILED), with what usually causes it."""
    hint = CUDA_FAULT_HINTS.get(cuda_status(error) or 0)
    return BenchFailure(f"CUDA cannot be used: {error}" + (f" ({hint})" if hint else ""))


def cuda_device_count(cp: Any) -> int:
    """How many GPUs CUDA sees. None at all (cudaErrorNoDevice: CUDA_VISIBLE_DEVICES hides them)
    waives the case; any other error (a driver older than CuPy's CUDA, no libcuda, a fabric
    manager that is down, a broken context) fails it."""
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception as e:
        if cuda_status(e) == ERROR_NO_DEVICE:
            raise Waived(f"CUDA sees no GPU here ({e}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})") from None
        raise cuda_failure(e) from None


def cuda_ordinal(cp: Any, pci: str | None, index: int) -> int:
    """The CUDA device number of a probed GPU, found by its PCI address. A GPU CUDA does not see
    (cudaErrorInvalidDevice) waives the case; any other error fails it."""
    count = cuda_device_count(cp)
    if pci:
        try:
            return int(cp.cuda.runtime.deviceGetByPCIBusId(pci))
        except Exception as e:
            if cuda_status(e) == ERROR_INVALID_DEVICE:
                raise Waived(f"GPU {index} ({pci}) is not visible to CUDA here ({count} visible; check CUDA_VISIBLE_DEVICES)") from None
            raise cuda_failure(e) from None
    if index >= count:
        raise Waived(f"GPU {index} is not visible to CUDA here ({count} visible; check CUDA_VISIBLE_DEVICES)")
    return index


def device_facts(cp: Any, ordinal: int) -> dict[str, Any]:
    """What a result should say about the GPU that ran it."""
    props = cp.cuda.runtime.getDeviceProperties(ordinal)
    name = props.get("name", b"")
    return {
        "cuda_device": ordinal,
        "device_name": name.decode(errors="replace") if isinstance(name, bytes) else str(name),
        "pci_bus_id": cp.cuda.runtime.deviceGetPCIBusId(ordinal),
        "compute_capability": f"{props.get('major')}.{props.get('minor')}",
        "cuda_driver_version": cp.cuda.runtime.driverGetVersion(),
        "cuda_runtime_version": cp.cuda.runtime.runtimeGetVersion(),
        "cupy_version": getattr(cp, "__version__", None),
    }


def gpu_usable() -> str | None:
    """None when CuPy imports and CUDA sees at least one GPU; otherwise why not (for test skips)."""
    try:
        cp = load_cupy()
        count = cuda_device_count(cp)
    except (Waived, BenchFailure) as e:
        return str(e)
    return None if count > 0 else "CUDA sees no GPU"


def free_device_memory(cp: Any) -> int:
    """Free bytes on the current device once CuPy's pool has let go of its cached blocks: an
    earlier case's buffers land there when their last reference goes, after that case's cleanup."""
    cp.get_default_memory_pool().free_all_blocks()
    return int(cp.cuda.runtime.memGetInfo()[0])


def sm_count(cp: Any, ordinal: int) -> int:
    return int(cp.cuda.Device(ordinal).attributes["MultiProcessorCount"])


class PinnedHost:
    """Page-locked host memory, portable and mapped (cudaHostAlloc), with its device-side address
    for kernels that read or write it directly (zero-copy)."""

    def __init__(self, cp: Any, nbytes: int):
        flags = runtime_constant(cp, "hostAllocPortable", HOST_ALLOC_PORTABLE) | runtime_constant(cp, "hostAllocMapped", HOST_ALLOC_MAPPED)
        self.cp, self.nbytes = cp, nbytes
        self.ptr = int(cp.cuda.runtime.hostAlloc(nbytes, flags))
        try:
            self.device_ptr = int(cp.cuda.runtime.pointerGetAttributes(self.ptr).devicePointer)
        except BaseException:
            self.close()
            raise

    def numpy(self):
        import ctypes

        import numpy as np

        return np.frombuffer((ctypes.c_uint8 * self.nbytes).from_address(self.ptr), dtype=np.uint8)

    def close(self) -> None:
        if self.ptr:
            self.cp.cuda.runtime.freeHost(self.ptr)
            self.ptr = 0


def own(stack: ExitStack, *buffers: Any) -> None:
    """Keep buffers alive until the case's stack closes. A timed copy that knows a buffer only by
    its address must not outlive the buffer: a NumPy array is freed (a large one unmapped) when its
    last reference goes, a CuPy array goes back to the pool, where the next allocation takes it."""
    stack.callback(list.clear, list(buffers))


def wait_for_setup(cp: Any) -> None:
    """Wait until the current device has run what CuPy queued on its default stream (filling
    buffers): the benchmarks' streams are non-blocking, so their copies would not wait for it."""
    cp.cuda.Device().synchronize()


def device_view(cp: Any, ptr: int, nbytes: int, device: int, owner: Any) -> Any:
    """A CuPy uint8 array over memory CuPy did not allocate (mapped host, managed, system memory),
    so kernels can take it as an argument."""
    memory = cp.cuda.UnownedMemory(ptr, nbytes, owner, device)
    return cp.ndarray((nbytes,), dtype=cp.uint8, memptr=cp.cuda.MemoryPointer(memory, 0))


COPY_KERNEL = r"""
extern "C" __global__ void gpubench_copy16(const uint4* __restrict__ src, uint4* __restrict__ dst, unsigned long long n16)
{
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (; i < n16; i += stride) {
        dst[i] = src[i];
    }
}
"""
COPY_THREADS = 512
COPY_BLOCKS_PER_SM = 4
COPY_ALIGNMENT = 16  # the copy kernel moves 16-byte words


class CopyKernel:
    """An SM copy: every thread moves 16-byte words in a grid-stride loop, like nvbandwidth's SM
    copies; the grid fills the GPU (blocks_per_sm blocks of 512 threads per SM)."""

    def __init__(self, cp: Any, ordinal: int, sms: int | None = None):
        import numpy as np

        self.cp, self.np = cp, np
        with cp.cuda.Device(ordinal):
            self.kernel = cp.RawKernel(COPY_KERNEL, "gpubench_copy16")
            self.blocks = (sms or sm_count(cp, ordinal)) * COPY_BLOCKS_PER_SM

    def __call__(self, src: Any, dst: Any, nbytes: int) -> None:
        """Launch on the current stream; src and dst are CuPy arrays (device, mapped or peer)."""
        if nbytes % COPY_ALIGNMENT:
            raise ValueError(f"SM copies move 16-byte words; {nbytes} bytes is not a multiple of 16")
        self.kernel((self.blocks,), (COPY_THREADS,), (src, dst, self.np.uint64(nbytes // COPY_ALIGNMENT)))


def event_intervals(cp: Any, stream: Any, op: Callable[[], None], iterations: int, batch: int = 1) -> list[float]:
    """Seconds per operation, measured with CUDA events recorded on `stream` between batches of
    `batch` calls of op (which must enqueue its work on `stream`); one host sync at the end."""
    events = [cp.cuda.Event() for _ in range(iterations + 1)]
    with stream:
        events[0].record(stream)
        for i in range(iterations):
            for _ in range(batch):
                op()
            events[i + 1].record(stream)
    events[-1].synchronize()
    return [cp.cuda.get_elapsed_time(events[i], events[i + 1]) / 1e3 / batch for i in range(iterations)]


def concurrent_intervals(cp: Any, devices: list[int], streams: list[Any], ops: list[Callable[[], None]],
                         iterations: int) -> tuple[list[float], list[list[float]] | None]:
    """Run ops[k] on streams[k] (a stream of CUDA device devices[k]) at the same time, `iterations`
    times. Returns the seconds from the common start until every stream finished, per iteration,
    and each stream's own seconds when all streams are on one device (CUDA times two events only
    when both belong to the same device; otherwise None)."""
    same_device = len(set(devices)) == 1
    total: list[float] = []
    each: list[list[float]] = [[] for _ in streams]
    for _ in range(iterations):
        events = []
        for device in devices:
            with cp.cuda.Device(device):
                events.append(cp.cuda.Event())
        with cp.cuda.Device(devices[0]):
            start, final = cp.cuda.Event(), cp.cuda.Event()
            start.record(streams[0])
        for k, (device, stream, op) in enumerate(zip(devices, streams, ops)):
            with cp.cuda.Device(device):
                if k:
                    stream.wait_event(start)
                with stream:
                    op()
                events[k].record(stream)
        with cp.cuda.Device(devices[0]):
            for event in events[1:]:
                streams[0].wait_event(event)
            final.record(streams[0])
            final.synchronize()
            total.append(cp.cuda.get_elapsed_time(start, final) / 1e3)
            if same_device:
                for k, event in enumerate(events):
                    each[k].append(cp.cuda.get_elapsed_time(start, event) / 1e3)
    return total, each if same_device else None


def wall_intervals(op: Callable[[], None], iterations: int, before: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call of op by the host clock; op must return only when its work is complete.
    `before` runs untimed ahead of each call (dropping caches, re-placing pages)."""
    out = []
    for _ in range(iterations):
        if before is not None:
            before()
        t0 = time.perf_counter()
        op()
        out.append(time.perf_counter() - t0)
    return out


PATTERN_BYTES = 4096  # buffers are whole numbers of this pattern, so any copy can be checked


def pattern(np: Any) -> Any:
    """The bytes every source buffer repeats (not a constant, so a shifted copy shows)."""
    return (np.arange(PATTERN_BYTES, dtype=np.uint32) * 7 % 251).astype(np.uint8)


def fill_pattern(np: Any, array: Any) -> None:
    array.reshape(-1, PATTERN_BYTES)[:] = pattern(np)


def check_copy(np: Any, name: str, head: Any, tail: Any) -> None:
    """Raise BenchFailure unless the first and last PATTERN_BYTES of a destination hold the pattern."""
    expected = pattern(np)
    if not (np.array_equal(head, expected) and np.array_equal(tail, expected)):
        raise BenchFailure(f"{name}: the copied buffer does not hold the source's bytes")


def sizes_and_iterations(bench: str, options: dict[str, str], size: str, sizes: dict[str, list[int]],
                         iterations: dict[str, int]) -> tuple[list[int], int]:
    """The transfer sizes and the timed transfers per repetition: the options', else the run
    size's defaults. Sizes are whole multiples of the 4 KiB check pattern."""
    return (
        parse_sizes(bench, "sizes", options["sizes"], PATTERN_BYTES) if "sizes" in options else sizes[size],
        parse_int(bench, "iterations", options["iterations"], 1, MAX_ITERATIONS) if "iterations" in options else iterations[size],
    )
