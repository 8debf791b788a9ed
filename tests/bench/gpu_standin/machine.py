"""The state of the GPUs the stand-in pretends to have: devices, their memory, streams, events,
peer access and the sticky error of a faulted CUDA context. The cupy, kvikio and pynvml modules
(cupy_api, kvikio_api, nvml_api) are views of one Machine.

Memory: every allocation (device, pinned, managed) is an anonymous host mapping of its own, so its
address is a real address and a copy moves real bytes. What a pointer is, and whether a device may
touch it, is looked up in the allocation table, never assumed:
  device   a CuPy pool block or a runtime allocation on one device; reachable from that device,
           and from another one only after deviceEnablePeerAccess on that other device
  pinned   cudaHostAlloc: reachable from every device (unified addressing)
  managed  cudaMallocManaged: reachable from every device and from the host
  host     anything else: pageable memory; a kernel reaches it only with pageableMemoryAccess
           (HMM/ATS), a copy only if it is mapped
A kernel touching what its device may not reach faults with cudaErrorIllegalAddress, and that
error is sticky, as on a GPU: every later call that needs the context fails with it.

Streams: work queued on a stream runs when something waits for it (a synchronize, an event's
synchronize, a synchronous copy, freeing memory), in order, after the work it depends on: the
legacy default stream waits for the device's blocking streams and they for it; non-blocking
streams wait for nothing but the events they are told to wait for. This is the latest moment CUDA
allows, so host code that uses memory before waiting for the work on it sees that work unfinished.

Freed memory: a NumPy array a benchmark made lives in a mapping of its own; once the array is
gone, its memory is filled with POISON and any later use of its address is an error naming it
(on a GPU machine the copy reads or corrupts the heap, or faults). With Config.poison, device
memory that CuPy's pool gets back is treated the same way, where real CUDA would carry on with
whatever the pool hands out next.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import re
import threading
import time
from bisect import bisect_right
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

POISON = 0xDB  # what released memory is filled with in poison mode
FRESH = 0xCD  # what new device memory holds before anything writes it
H100_PCI = ("0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0")

# cudaError_t: names and texts as the CUDA 12 runtime (and CuPy 14.2's CUDARuntimeError) word them
ERRORS = {
    1: ("cudaErrorInvalidValue", "invalid argument"),
    2: ("cudaErrorMemoryAllocation", "out of memory"),
    3: ("cudaErrorInitializationError", "initialization error"),
    35: ("cudaErrorInsufficientDriver", "CUDA driver version is insufficient for CUDA runtime version"),
    100: ("cudaErrorNoDevice", "no CUDA-capable device is detected"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    217: ("cudaErrorPeerAccessUnsupported", "peer access is not supported between these two devices"),
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    600: ("cudaErrorNotReady", "device not ready"),
    700: ("cudaErrorIllegalAddress", "an illegal memory access was encountered"),
    704: ("cudaErrorPeerAccessAlreadyEnabled", "peer access is already enabled"),
    705: ("cudaErrorPeerAccessNotEnabled", "peer access has not been enabled"),
    719: ("cudaErrorLaunchFailure", "unspecified launch failure"),
    802: ("cudaErrorSystemNotReady", "system not yet initialized"),
}
STICKY = {700, 719}
# driver API (cuLaunchKernel) names for the same codes
DRIVER_ERRORS = {1: "CUDA_ERROR_INVALID_VALUE", 400: "CUDA_ERROR_INVALID_HANDLE", 700: "CUDA_ERROR_ILLEGAL_ADDRESS"}


class CUDARuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError: `status` is the cudaError_t."""

    def __init__(self, status: int):
        self.status = status
        name, text = ERRORS[status]
        super().__init__(f"{name}: {text}")

    def __reduce__(self):
        return (type(self), (self.status,))


class CUDADriverError(RuntimeError):
    """cupy_backends.cuda.api.driver.CUDADriverError (kernel launches go through the driver API)."""

    def __init__(self, status: int):
        self.status = status
        super().__init__(f"{DRIVER_ERRORS[status]}: {ERRORS[status][1]}")

    def __reduce__(self):
        return (type(self), (self.status,))


class UseAfterFree(RuntimeError):
    """Memory was used after its owner released it (reported where CUDA would go on silently)."""


class HostMemoryFault(RuntimeError):
    """A copy named host memory that is not mapped: on a GPU machine, a segmentation fault."""


@dataclass(frozen=True)
class Config:
    """What machine to pretend to be. GPU indices are in PCI order (the probe's and NVML's)."""

    gpus: int = 1
    memory: int = 256 << 20  # bytes per GPU
    sms: int = 4
    name: str = "NVIDIA H100 80GB HBM3"
    no_peer: tuple[tuple[int, int], ...] = ()  # GPU pairs (either order) that cannot reach each other
    hmm: bool = True  # pageableMemoryAccess; NVML's addressing mode says "hmm" (else "none")
    managed_concurrent: bool = True  # concurrentManagedAccess
    cuda_order: tuple[int, ...] = ()  # CUDA ordinal -> GPU index (CUDA_DEVICE_ORDER=FASTEST_FIRST); () = PCI order
    hidden: tuple[int, ...] = ()  # GPU indices CUDA does not see (CUDA_VISIBLE_DEVICES)
    init_error: int = 0  # a cudaError_t every CUDA call fails with (35: driver too old, 802: fabric manager down)
    system_memory_faults: bool = False  # kernels fault on pageable memory although pageableMemoryAccess = 1
    poison: bool = False
    crash_kernel: str = ""  # launching this kernel kills the process (SIGSEGV), as a driver bug would
    chatty: bool = False  # kernels print to stdout as they compile, as JIT and driver warnings do
    io_delay_s: float = 0.0  # each KvikIO read or write takes at least this long
    kvikio_compat: bool = False  # KvikIO prefers its POSIX compat mode
    gds_available: bool = True  # cuFile's driver properties: nvidia-fs loaded
    driver_version: int = 12080
    runtime_version: int = 12080

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        data["no_peer"] = tuple(tuple(p) for p in data["no_peer"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def pci(self, gpu: int) -> str:
        return H100_PCI[gpu] if gpu < len(H100_PCI) else f"0000:{0x70 + gpu:02x}:00.0"

    def peer(self, a: int, b: int) -> bool:
        return (a, b) not in self.no_peer and (b, a) not in self.no_peer


# --- memory ---------------------------------------------------------------------------------------

@dataclass(eq=False)
class Block:
    kind: str  # device | pinned | managed | host (a NumPy array tracked in poison mode)
    size: int
    device: int | None  # CUDA ordinal of device memory; for pinned and managed, where it was allocated
    mapping: mmap.mmap
    start: int = 0
    state: str = "live"  # live | pooled (CuPy's pool holds it) | freed
    label: str = ""

    def __post_init__(self) -> None:
        self.host = np.frombuffer(self.mapping, dtype=np.uint8, count=self.size)
        self.start = int(self.host.ctypes.data)

    @property
    def end(self) -> int:
        return self.start + self.size

    def describe(self) -> str:
        where = f" on device {self.device}" if self.kind == "device" else ""
        return f"{self.kind} memory at {self.start:#x} ({self.size} bytes{where}{', ' + self.label if self.label else ''})"


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


def host_mapped(ptr: int, nbytes: int) -> bool:
    """Whether every page of [ptr, ptr + nbytes) is mapped in this process (mincore fails otherwise)."""
    page = mmap.PAGESIZE
    start = ptr - ptr % page
    length = ptr + max(nbytes, 1) - start
    vec = ctypes.create_string_buffer((length + page - 1) // page)
    return _libc.mincore(start, length, vec) == 0


# --- streams and events ---------------------------------------------------------------------------

@dataclass(eq=False)
class Op:
    run: Callable[[], None]
    after: list[tuple[StreamState, int]]  # (stream, count): that stream's work up to count first


@dataclass(eq=False)
class StreamState:
    device: int
    handle: int
    blocking: bool
    null: bool = False
    queue: deque = field(default_factory=deque)
    queued: int = 0
    done: int = 0

    @property
    def pending(self) -> bool:
        return self.done < self.queued


@dataclass(eq=False)
class EventState:
    device: int
    timing: bool
    stream: StreamState | None = None
    mark: int = 0
    stamp: float | None = None


# --- the two kernels gpubench has -----------------------------------------------------------------

KERNEL_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


def kernel_signature(source: str, name: str) -> list[str]:
    """The C types of a kernel's parameters, from its source."""
    for m in KERNEL_SIGNATURE.finditer(source):
        if m.group(1) == name:
            params = [p.strip() for p in m.group(2).split(",") if p.strip()]
            return [re.sub(r"\s*\b\w+$", "", p.replace("__restrict__", "")).strip() for p in params]
    raise ValueError(f"no kernel {name!r} in the source")


@dataclass(frozen=True)
class KernelModel:
    """What the stand-in knows of one kernel: its parameters and the source it was written for (a
    changed source must be looked at again: the emulation below may no longer say what it does)."""

    params: tuple[str, ...]
    source_sha256: str


KERNELS = {
    # dst[i] = src[i] for 16-byte words i < n16
    "gpubench_copy16": KernelModel(("const uint4*", "uint4*", "unsigned long long"),
                                   "23802d0ff23c65b20dede7d3750d5ecb486bf93733d57ec43b2777e42246ee2f"),
    # *out += sum of the 32-bit words of src[0..n16)
    "gpubench_read_sum": KernelModel(("const uint4*", "unsigned long long", "unsigned long long*"),
                                     "a400d26b458f8f1aa87cb49c334a8c7abbd94871259871f9aafcdba56cde73ad"),
}


def source_digest(source: str) -> str:
    return hashlib.sha256(source.strip().encode()).hexdigest()


# --- the machine ----------------------------------------------------------------------------------

@dataclass(eq=False)
class Gpu:
    index: int  # PCI order
    ordinal: int  # CUDA's number for it
    pci: str
    memory: int
    peers: set[int] = field(default_factory=set)  # ordinals this device may reach (peer access enabled)
    streams: list[StreamState] = field(default_factory=list)
    pool: dict[int, list[Block]] = field(default_factory=dict)  # rounded size -> blocks CuPy's pool holds

    @property
    def null(self) -> StreamState:
        return self.streams[0]


class Machine:
    """One pretend machine; every public method takes the lock (the host-staged p2p copies call
    from two threads)."""

    def __init__(self, config: Config):
        self.config = config
        self.lock = threading.RLock()
        order = list(config.cuda_order) or list(range(config.gpus))
        visible = [i for i in order if i not in config.hidden]
        self.gpus = [Gpu(index, ordinal, config.pci(index), config.memory) for ordinal, index in enumerate(visible)]
        self.handles = 0x1000
        for gpu in self.gpus:
            gpu.streams.append(self.new_stream(gpu.ordinal, blocking=True, null=True))
        self.blocks: dict[int, Block] = {}
        self.starts: list[int] = []
        self.graveyard: list[Block] = []  # freed host-reachable memory, kept mapped so stale views read poison
        self.sticky = 0
        self.local = threading.local()
        self.clock = 0.0
        self.launches: list[tuple[str, int]] = []  # (kernel, device) of every launch

    # --- errors and devices
    def check(self, sticky: bool = True) -> None:
        """Raise the init error, or the sticky error of a faulted context."""
        if self.config.init_error:
            raise CUDARuntimeError(self.config.init_error)
        if sticky and self.sticky:
            raise CUDARuntimeError(self.sticky)

    def gpu(self, ordinal: Any) -> Gpu:
        ordinal = int(ordinal)
        if not 0 <= ordinal < len(self.gpus):
            raise CUDARuntimeError(101)
        return self.gpus[ordinal]

    @property
    def current(self) -> int:
        return getattr(self.local, "device", 0)

    @current.setter
    def current(self, ordinal: int) -> None:
        self.local.device = ordinal

    def stream_stack(self, ordinal: int) -> list:
        stacks = self.local.__dict__.setdefault("streams", {})
        return stacks.setdefault(ordinal, [])

    def can_access(self, device: int, peer: int) -> bool:
        return device != peer and self.config.peer(self.gpu(device).index, self.gpu(peer).index)

    # --- memory table
    def add(self, block: Block) -> Block:
        self.blocks[block.start] = block
        self.starts = sorted(self.blocks)
        return block

    def forget(self, block: Block) -> None:
        self.blocks.pop(block.start, None)
        self.starts = sorted(self.blocks)

    def find(self, ptr: int) -> Block | None:
        i = bisect_right(self.starts, ptr) - 1
        if i >= 0:
            block = self.blocks[self.starts[i]]
            if block.start <= ptr < block.end:
                return block
        return None

    def allocate(self, kind: str, size: int, device: int | None, label: str = "") -> Block:
        block = Block(kind, size, device, mmap.mmap(-1, max(size, 1)), label=label)
        if kind == "device":
            block.host[:] = FRESH
        return self.add(block)

    def device_used(self, ordinal: int) -> int:
        return sum(b.size for b in self.blocks.values() if b.kind == "device" and b.device == ordinal and b.state != "freed")

    def free_bytes(self, ordinal: int) -> int:
        return self.gpu(ordinal).memory - self.device_used(ordinal)

    def release(self, block: Block, poisoned_by: str) -> None:
        """An owner let go of memory: poison mode marks it freed and fills it with POISON."""
        block.state = "freed"
        block.label = poisoned_by
        block.host[:] = POISON
        if block.kind != "device":
            self.graveyard.append(block)

    def resolve(self, ptr: int, nbytes: int, what: str) -> Block | None:
        """The allocation [ptr, ptr + nbytes) lies in (None for untracked host memory); an address
        inside a freed allocation or past its end is an error."""
        block = self.find(ptr)
        if block is None:
            return None
        if ptr + nbytes > block.end:
            raise CUDARuntimeError(1)
        if block.state == "freed":
            raise UseAfterFree(f"{what}: {block.describe()} was released before this use")
        if block.state == "pooled" and self.config.poison:
            raise UseAfterFree(f"{what}: {block.describe()} went back to CuPy's pool (the array that owned it is gone) before this use")
        return block

    def host_range(self, ptr: int, nbytes: int, what: str) -> None:
        """Pageable host memory a copy reads or writes: it must be mapped."""
        if ptr == 0 or not host_mapped(ptr, nbytes):
            raise HostMemoryFault(f"{what}: host memory at {ptr:#x} ({nbytes} bytes) is not mapped (freed?)")

    # --- streams
    def new_stream(self, ordinal: int, blocking: bool, null: bool = False) -> StreamState:
        self.handles += 0x10
        return StreamState(ordinal, 0 if null else self.handles, blocking, null)

    def stream_by_handle(self, handle: int) -> StreamState:
        """A cudaStream_t: 0 (and 1, cudaStreamLegacy) is the current device's legacy stream."""
        if handle in (0, 1):
            return self.gpu(self.current).null
        for gpu in self.gpus:
            for s in gpu.streams:
                if s.handle == handle:
                    return s
        raise CUDARuntimeError(400)

    def enqueue(self, stream: StreamState, run: Callable[[], None]) -> int:
        """Queue work; returns its position (for events and waits)."""
        gpu = self.gpu(stream.device)
        if stream.null:
            after = [(s, s.queued) for s in gpu.streams if s.blocking and not s.null and s.pending]
        elif stream.blocking and gpu.null.pending:
            after = [(gpu.null, gpu.null.queued)]
        else:
            after = []
        stream.queue.append(Op(run, after))
        stream.queued += 1
        return stream.queued

    def run_until(self, stream: StreamState, mark: int) -> None:
        """Let the GPU do `stream`'s work up to `mark` (and what that work waits for)."""
        while stream.done < mark:
            op = stream.queue[0]
            for other, upto in op.after:
                self.run_until(other, upto)
            stream.queue.popleft()
            stream.done += 1
            if self.sticky:
                continue  # a faulted context does no more work
            try:
                op.run()
            except CUDARuntimeError as e:
                if e.status in STICKY:
                    self.sticky = e.status
                raise

    def drain(self, stream: StreamState) -> None:
        self.run_until(stream, stream.queued)
        self.check()

    def drain_device(self, ordinal: int) -> None:
        for s in list(self.gpu(ordinal).streams):
            self.run_until(s, s.queued)
        self.check()

    def drain_all(self) -> None:
        for gpu in self.gpus:
            for s in list(gpu.streams):
                self.run_until(s, s.queued)
        self.check()

    def stamp(self) -> float:
        self.clock = max(time.perf_counter(), self.clock + 1e-7)
        return self.clock

    def current_stream(self, ordinal: int) -> StreamState:
        stack = self.stream_stack(ordinal)
        return stack[-1] if stack else self.gpu(ordinal).null

    # --- kernels
    def reach(self, device: int, ptr: int, nbytes: int, what: str) -> None:
        """A kernel on `device` touches [ptr, ptr + nbytes): fault unless it may."""
        block = self.find(ptr)
        if block is not None and block.state != "live" and self.config.poison:
            raise UseAfterFree(f"{what}: {block.describe()} was released before this use")
        if block is None or block.kind == "host":
            reachable = self.config.hmm and not self.config.system_memory_faults and host_mapped(ptr, nbytes)
        elif ptr + nbytes > block.end or block.state == "freed":
            reachable = False
        elif block.kind == "device":
            reachable = block.device == device or block.device in self.gpu(device).peers
        else:
            reachable = True
        if not reachable:
            raise CUDARuntimeError(700)
