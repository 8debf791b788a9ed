"""The slice of CuPy 14 that gpubench uses, over a Machine: cupy, cupy.cuda, cupy.cuda.runtime,
cupy.cuda.memory and cupy.cuda.driver. Signatures, argument types and error types follow CuPy
14.2 (cuda12x and cuda13x, read from the wheels' embedded signatures); see
test_gpu_standin.test_the_standin_matches_the_installed_libraries.

Where CuPy would quietly do something gpubench never means to (an elementwise operation on an
array of another device: CuPy enables peer access for it), the stand-in refuses with an error.
"""

from __future__ import annotations

import ctypes
import operator
import types
import weakref
from importlib.machinery import ModuleSpec
from typing import Any

import numpy as np

from .cupy_arrays import build_arrays
from .machine import CUDADriverError, CUDARuntimeError, Block, Config, EventState, Machine, StreamState

# cudaMemcpyKind, cudaHostAlloc flags, cudaDeviceAttr: the values CuPy 14.2's runtime module exports
MEMCPY_KINDS = {"memcpyHostToHost": 0, "memcpyHostToDevice": 1, "memcpyDeviceToHost": 2, "memcpyDeviceToDevice": 3, "memcpyDefault": 4}
HOST_ALLOC = {"hostAllocDefault": 0, "hostAllocPortable": 1, "hostAllocMapped": 2, "hostAllocWriteCombined": 4}
ATTRIBUTES = {  # cudaDevAttr*: value, and the name Device.attributes gives it
    16: "MultiProcessorCount", 75: "ComputeCapabilityMajor", 76: "ComputeCapabilityMinor",
    41: "UnifiedAddressing", 88: "PageableMemoryAccess", 89: "ConcurrentManagedAccess",
}
MEMORY_TYPE = {"host": 0, "pinned": 1, "device": 2, "managed": 3}  # cudaMemoryType (0: unregistered)
INTPTR_MAX = (1 << 63) - 1


# --- Cython's argument conversions ------------------------------------------------------------------

def _intptr(value: Any) -> int:
    value = operator.index(value)
    if not -INTPTR_MAX - 1 <= value <= INTPTR_MAX:
        raise OverflowError("value too large to convert to intptr_t")
    return value


def _size_t(value: Any) -> int:
    value = operator.index(value)
    if value < 0:
        raise OverflowError("can't convert negative value to size_t")
    return value


def _int(value: Any) -> int:
    value = operator.index(value)
    if not -(1 << 31) <= value < (1 << 31):
        raise OverflowError("value too large to convert to int")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"Argument '{name}' has incorrect type (expected str, got {type(value).__name__})")
    return value


def _module(name: str, doc: str = "") -> types.ModuleType:
    module = types.ModuleType(name, doc)
    module.__spec__ = ModuleSpec(name, None)
    return module


def build(machine: Machine) -> dict[str, types.ModuleType]:
    """The cupy module tree for one machine, by module name."""
    m = machine
    cupy, cuda, runtime, memory, driver = (_module(n) for n in ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.memory", "cupy.cuda.driver"))
    cupy.cuda, cuda.runtime, cuda.memory, cuda.driver = cuda, runtime, memory, driver
    cupy.__version__ = "14.2.0"
    cupy.uint8, cupy.uint32, cupy.uint64 = np.uint8, np.uint32, np.uint64

    # --- errors, constants
    runtime.CUDARuntimeError = CUDARuntimeError
    driver.CUDADriverError = CUDADriverError
    for table in (MEMCPY_KINDS, HOST_ALLOC):
        for name, value in table.items():
            setattr(runtime, name, value)
    for value, name in ATTRIBUTES.items():
        setattr(runtime, f"cudaDevAttr{name}", value)
    runtime.cudaMemAttachGlobal, runtime.cudaMemAttachHost = 1, 2
    runtime.cudaCpuDeviceId = -1

    class OutOfMemoryError(MemoryError):
        def __init__(self, size, total, limit=0):
            super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes).")

    memory.OutOfMemoryError = OutOfMemoryError

    class PointerAttributes:
        def __init__(self, device, devicePointer, hostPointer, type=-1):
            self.device, self.devicePointer, self.hostPointer, self.type = device, devicePointer, hostPointer, type

    runtime.PointerAttributes = PointerAttributes

    # --- runtime functions (cupy_backends.cuda.api.runtime)
    def getDeviceCount():
        with m.lock:
            m.check(sticky=False)
            if not m.gpus:
                raise CUDARuntimeError(100)
            return len(m.gpus)

    def getDevice():
        with m.lock:
            m.check(sticky=False)
            return m.current

    def setDevice(device):
        with m.lock:
            m.check()
            m.gpu(_int(device))
            m.current = device

    def driverGetVersion():
        return m.config.driver_version

    def runtimeGetVersion():
        return m.config.runtime_version

    def deviceGetByPCIBusId(pci_bus_id):
        text = _str(pci_bus_id, "pci_bus_id").strip().lower()
        with m.lock:
            m.check(sticky=False)
            parts = text.split(":")
            if len(parts) != 3 or "." not in parts[2]:
                raise CUDARuntimeError(1)
            wanted = (int(parts[0], 16), parts[1], parts[2])
            for gpu in m.gpus:
                domain, bus, rest = gpu.pci.split(":")
                if (int(domain, 16), bus, rest) == wanted:
                    return gpu.ordinal
            raise CUDARuntimeError(101)

    def deviceGetPCIBusId(device):
        with m.lock:
            m.check(sticky=False)
            return m.gpu(_int(device)).pci.upper()

    def getDeviceProperties(device):
        with m.lock:
            m.check(sticky=False)
            gpu = m.gpu(_int(device))
            domain, bus, rest = gpu.pci.split(":")
            return {
                "name": m.config.name.encode(), "totalGlobalMem": gpu.memory, "multiProcessorCount": m.config.sms,
                "major": 9, "minor": 0, "pciDomainID": int(domain, 16), "pciBusID": int(bus, 16),
                "pciDeviceID": int(rest.split(".")[0], 16), "unifiedAddressing": 1,
                "pageableMemoryAccess": int(m.config.hmm), "concurrentManagedAccess": int(m.config.managed_concurrent),
            }

    def _attribute(attrib: int, device: int) -> int:
        m.gpu(device)
        values = {16: m.config.sms, 75: 9, 76: 0, 41: 1, 88: int(m.config.hmm), 89: int(m.config.managed_concurrent)}
        if attrib not in values:
            raise NotImplementedError(f"the stand-in does not know cudaDeviceAttr {attrib}")
        return values[attrib]

    def deviceGetAttribute(attrib, device):
        with m.lock:
            m.check(sticky=False)
            return _attribute(_int(attrib), _int(device))

    def deviceSynchronize():
        with m.lock:
            m.check()
            m.drain_device(m.current)

    def memGetInfo():
        with m.lock:
            m.check()
            gpu = m.gpu(m.current)
            return m.free_bytes(gpu.ordinal), gpu.memory

    def deviceCanAccessPeer(device, peerDevice):
        with m.lock:
            m.check(sticky=False)
            device, peerDevice = _int(device), _int(peerDevice)
            m.gpu(device), m.gpu(peerDevice)
            return int(m.can_access(device, peerDevice))

    def deviceEnablePeerAccess(peerDevice):
        with m.lock:
            m.check()
            peer, here = m.gpu(_int(peerDevice)), m.gpu(m.current)
            if peer is here:
                raise CUDARuntimeError(101)
            if not m.can_access(here.ordinal, peer.ordinal):
                raise CUDARuntimeError(217)
            if peer.ordinal in here.peers:
                raise CUDARuntimeError(704)
            here.peers.add(peer.ordinal)

    def deviceDisablePeerAccess(peerDevice):
        with m.lock:
            m.check()
            peer, here = m.gpu(_int(peerDevice)), m.gpu(m.current)
            if peer.ordinal not in here.peers:
                raise CUDARuntimeError(705)
            here.peers.discard(peer.ordinal)

    def hostAlloc(size, flags):
        size, flags = _size_t(size), operator.index(flags)
        with m.lock:
            m.check()
            if size == 0 or flags & ~7:
                raise CUDARuntimeError(1)
            return m.allocate("pinned", size, m.current).start

    def _free(ptr: Any, kinds: tuple[str, ...], call: str) -> None:
        """cudaFree, cudaFreeHost: the start of a live allocation of those kinds; waits for all work."""
        ptr = _intptr(ptr)
        with m.lock:
            m.check()
            block = m.find(ptr)
            if block is None or block.kind not in kinds or block.start != ptr or block.state == "freed":
                raise CUDARuntimeError(1)
            m.drain_all()
            m.release(block, f"freed by {call}")

    def freeHost(ptr):
        _free(ptr, ("pinned",), "cudaFreeHost")

    def mallocManaged(size, flags=1):
        size, flags = _size_t(size), operator.index(flags)
        with m.lock:
            m.check()
            if size == 0 or flags not in (1, 2):
                raise CUDARuntimeError(1)
            if size > m.free_bytes(m.current):  # the stand-in's GPUs do not oversubscribe managed memory
                raise CUDARuntimeError(2)
            return m.allocate("managed", size, m.current).start

    def free(ptr):
        _free(ptr, ("managed", "device"), "cudaFree")

    def pointerGetAttributes(ptr):
        ptr = _intptr(ptr)
        with m.lock:
            m.check()
            block = m.find(ptr)
            if block is None or block.state == "freed":
                return PointerAttributes(-2, 0, 0, 0)
            device = block.device if block.device is not None else -1
            host = ptr if block.kind != "device" else 0
            return PointerAttributes(device, ptr, host, MEMORY_TYPE[block.kind])

    def _classify(ptr: int, nbytes: int, what: str) -> tuple[str, Block | None]:
        block = m.resolve(ptr, nbytes, what)
        if block is None:
            m.host_range(ptr, nbytes, what)
            return "host", None
        return block.kind, block

    def _copy_op(dst: int, src: int, size: int, kind: int, what: str):
        """Validate a cudaMemcpy's pointers against its kind; returns (op, host_dst) where host_dst
        says the copy writes pageable memory (the call then waits for it, as CUDA's does)."""
        if kind not in MEMCPY_KINDS.values():
            raise CUDARuntimeError(1)
        dst_kind, _ = _classify(dst, size, f"{what} destination")
        src_kind, _ = _classify(src, size, f"{what} source")
        devicey, hosty = {"device", "managed"}, {"host", "pinned", "managed"}
        wanted = {0: (hosty, hosty), 1: (devicey, hosty), 2: (hosty, devicey), 3: (devicey, devicey)}.get(kind)
        if wanted is not None and (dst_kind not in wanted[0] or src_kind not in wanted[1]):
            raise CUDARuntimeError(1)
        if src_kind == "host":  # a pageable source is staged by the driver before the call returns
            staged = ctypes.string_at(src, size)
            return (lambda: ctypes.memmove(dst, staged, size)), dst_kind == "host"
        return (lambda: ctypes.memmove(dst, src, size)), dst_kind == "host"

    def memcpyAsync(dst, src, size, kind, stream):
        dst, src, size, kind, stream = _intptr(dst), _intptr(src), _size_t(size), _int(kind), _intptr(stream)
        with m.lock:
            m.check()
            s = m.stream_by_handle(stream)
            op, to_pageable = _copy_op(dst, src, size, kind, "cudaMemcpyAsync")
            mark = m.enqueue(s, op)
            if to_pageable:
                m.run_until(s, mark)
                m.check()

    def memcpy(dst, src, size, kind):
        dst, src, size, kind = _intptr(dst), _intptr(src), _size_t(size), _int(kind)
        with m.lock:
            m.check()
            s = m.gpu(m.current).null
            op, _ = _copy_op(dst, src, size, kind, "cudaMemcpy")
            m.run_until(s, m.enqueue(s, op))
            m.check()

    def memcpyPeerAsync(dst, dstDevice, src, srcDevice, size, stream):
        dst, dstDevice, src, srcDevice = _intptr(dst), _int(dstDevice), _intptr(src), _int(srcDevice)
        size, stream = _size_t(size), _intptr(stream)
        with m.lock:
            m.check()
            m.gpu(dstDevice), m.gpu(srcDevice)
            s = m.stream_by_handle(stream)
            for ptr, device, what in ((dst, dstDevice, "destination"), (src, srcDevice, "source")):
                block = m.resolve(ptr, size, f"cudaMemcpyPeerAsync {what}")
                if block is None or block.kind != "device" or block.device != device:
                    raise CUDARuntimeError(1)
            m.enqueue(s, lambda: ctypes.memmove(dst, src, size))

    def memPrefetchAsync(devPtr, count, dstDevice, stream):
        devPtr, count, dstDevice, stream = _intptr(devPtr), _size_t(count), _int(dstDevice), _intptr(stream)
        with m.lock:
            m.check()
            if dstDevice != -1:
                m.gpu(dstDevice)
            if not m.config.managed_concurrent:
                raise CUDARuntimeError(101)
            block = m.resolve(devPtr, count, "cudaMemPrefetchAsync")
            if block is None or block.kind != "managed":
                raise CUDARuntimeError(1)
            m.enqueue(m.stream_by_handle(stream), lambda: None)

    for fn in (getDeviceCount, getDevice, setDevice, driverGetVersion, runtimeGetVersion, deviceGetByPCIBusId,
               deviceGetPCIBusId, getDeviceProperties, deviceGetAttribute, deviceSynchronize, memGetInfo,
               deviceCanAccessPeer, deviceEnablePeerAccess, deviceDisablePeerAccess, hostAlloc, freeHost, mallocManaged,
               free, pointerGetAttributes, memcpyAsync, memcpy, memcpyPeerAsync, memPrefetchAsync):
        setattr(runtime, fn.__name__, fn)

    # --- devices
    class Device:
        def __init__(self, device=None):
            if isinstance(device, Device):
                device = device.id
            self.id = m.current if device is None else _int(device)
            self._previous: list[int] = []

        def __int__(self):
            return self.id

        def __repr__(self):
            return f"<CUDA Device {self.id}>"

        def __enter__(self):
            with m.lock:
                previous = m.current
                setDevice(self.id)
                self._previous.append(previous)
            return self

        def __exit__(self, *args):
            m.current = self._previous.pop()

        def synchronize(self):
            with self:
                deviceSynchronize()

        def use(self):
            setDevice(self.id)

        @property
        def attributes(self):
            with m.lock:
                m.check(sticky=False)
                return {name: _attribute(value, self.id) for value, name in ATTRIBUTES.items()}

        @property
        def compute_capability(self):
            return "90"

        @property
        def pci_bus_id(self):
            return deviceGetPCIBusId(self.id)

        @property
        def mem_info(self):
            with self:
                return memGetInfo()

    cuda.Device = Device

    # --- streams and events
    def _state_of(stream: Any) -> StreamState:
        if stream is None or isinstance(stream, Stream) and stream._null:
            return m.gpu(m.current).null
        return stream._state

    class Stream:
        null: Stream

        def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
            self._null = bool(null)
            if self._null:
                self.ptr, self.device_id = 0, -1
                return
            with m.lock:
                m.check()
                self._state = m.new_stream(m.current, blocking=not non_blocking)
                m.gpu(m.current).streams.append(self._state)
                self.ptr, self.device_id = self._state.handle, m.current
            weakref.finalize(self, _destroy_stream, self._state)

        def __repr__(self):
            return f"<Stream {self.ptr} (device {self.device_id})>"

        @classmethod
        def _of(cls, state: StreamState) -> Stream:
            """The Stream object of a stream that is current (what get_current_stream returns)."""
            if state.null:
                return cls.null
            stream = cls.__new__(cls)
            stream._null, stream._state, stream.ptr, stream.device_id = False, state, state.handle, state.device
            return stream

        def __enter__(self):
            if self.device_id >= 0 and self.device_id != m.current:
                raise RuntimeError(f"{self!r} does not match with the current device ({m.current})")
            self._entered = getattr(self, "_entered", []) + [m.current]
            m.stream_stack(m.current).append(_state_of(self))
            return self

        def __exit__(self, *args):
            m.stream_stack(self._entered.pop()).pop()

        def use(self):
            raise NotImplementedError("the stand-in supports `with stream:` only")

        def synchronize(self):
            with m.lock:
                m.check()
                m.drain(_state_of(self))

        def wait_event(self, event):
            with m.lock:
                m.check()
                state = _state_of(self)
                if event._state.stream is not None:  # later work on this stream waits for the event
                    m.enqueue(state, lambda: None)
                    state.queue[-1].after.append((event._state.stream, event._state.mark))

        @property
        def done(self):
            state = _state_of(self)
            return not state.pending

    def _destroy_stream(state: StreamState) -> None:
        """cudaStreamDestroy: the work already queued still completes."""
        with m.lock:
            try:
                m.run_until(state, state.queued)
            except Exception:
                pass
            streams = m.gpu(state.device).streams
            if state in streams:
                streams.remove(state)

    Stream.null = Stream(null=True)
    cuda.Stream = Stream

    def get_current_stream(device_id=-1):
        return Stream._of(m.current_stream(m.current if device_id == -1 else device_id))

    cuda.get_current_stream = get_current_stream

    class Event:
        def __init__(self, block=False, disable_timing=False, interprocess=False):
            with m.lock:
                m.check()
                self._state = EventState(m.current, timing=not disable_timing)
            self.ptr = id(self._state)

        def record(self, stream=None):
            with m.lock:
                m.check()
                state = _state_of(get_current_stream() if stream is None else stream)
                if state.device != self._state.device:
                    raise CUDARuntimeError(400)
                event = self._state
                event.stamp = None

                def stamp() -> None:
                    event.stamp = m.stamp()

                event.stream, event.mark = state, m.enqueue(state, stamp)

        def synchronize(self):
            with m.lock:
                m.check()
                if self._state.stream is not None:
                    m.run_until(self._state.stream, self._state.mark)
                    m.check()

        @property
        def done(self):
            s = self._state.stream
            return s is None or s.done >= self._state.mark

    def get_elapsed_time(start_event, end_event):
        with m.lock:
            m.check()
            a, b = start_event._state, end_event._state
            if a.device != b.device or not (a.timing and b.timing) or a.stream is None or b.stream is None:
                raise CUDARuntimeError(400)
            if a.stamp is None or b.stamp is None:
                raise CUDARuntimeError(600)
            return (b.stamp - a.stamp) * 1e3

    cuda.Event, cuda.get_elapsed_time = Event, get_elapsed_time

    # --- memory
    class BaseMemory:
        ptr: int
        size: int
        device_id: int

        @property
        def device(self):
            return Device(self.device_id)

    class Memory(BaseMemory):
        """A block of CuPy's pool: back to the pool when the last array using it is gone."""

        def __init__(self, block: Block):
            self.block, self.ptr, self.size, self.device_id = block, block.start, block.size, block.device
            weakref.finalize(self, _give_back, block)

    class UnownedMemory(BaseMemory):
        def __init__(self, ptr, size, owner, device_id=-1):
            self.ptr, self.size, self.owner = _intptr(ptr), _size_t(size), owner
            self.device_id = pointerGetAttributes(self.ptr).device if device_id < 0 else _int(device_id)

    class MemoryPointer:
        def __init__(self, mem, offset):
            if not isinstance(mem, BaseMemory):
                raise TypeError(f"Argument 'mem' has incorrect type (expected cupy.cuda.memory.BaseMemory, got {type(mem).__name__})")
            self.mem, self.ptr, self.device_id = mem, mem.ptr + operator.index(offset), mem.device_id

        @property
        def device(self):
            return Device(self.device_id)

        def __add__(self, offset):
            return MemoryPointer(self.mem, self.ptr - self.mem.ptr + offset)

    def _give_back(block: Block) -> None:
        with m.lock:
            if m.config.poison:
                block.state = "freed"
                block.label = "returned to CuPy's pool"
                host = block.host
                try:
                    m.enqueue(m.current_stream(block.device), lambda: host.fill(0xDB))
                except Exception:
                    host.fill(0xDB)
            elif block.state == "live":
                block.state = "pooled"
                m.gpu(block.device).pool.setdefault(block.size, []).append(block)

    class MemoryPool:
        def __init__(self, allocator=None):
            pass

        def malloc(self, size):
            size = -(-max(_size_t(size), 1) // 512) * 512
            with m.lock:
                m.check()
                gpu = m.gpu(m.current)
                cached = gpu.pool.get(size)
                if cached:
                    block = cached.pop()
                    block.state = "live"
                else:
                    if size > m.free_bytes(gpu.ordinal):
                        self.free_all_blocks()
                    if size > m.free_bytes(gpu.ordinal):
                        raise OutOfMemoryError(size, m.device_used(gpu.ordinal))
                    block = m.allocate("device", size, gpu.ordinal)
                return MemoryPointer(Memory(block), 0)

        def free_all_blocks(self, stream=None):
            with m.lock:
                m.check()
                gpu = m.gpu(m.current)
                m.drain_device(gpu.ordinal)  # cudaFree synchronizes
                for blocks in gpu.pool.values():
                    for block in blocks:
                        block.state = "freed"
                        m.forget(block)
                gpu.pool.clear()

        def used_bytes(self):
            with m.lock:
                return sum(b.size for b in m.blocks.values() if b.kind == "device" and b.device == m.current and b.state == "live")

        def total_bytes(self):
            with m.lock:
                return m.device_used(m.current)

    pool = MemoryPool()
    cupy.get_default_memory_pool = lambda: pool
    for name, value in (("BaseMemory", BaseMemory), ("Memory", Memory), ("UnownedMemory", UnownedMemory),
                        ("MemoryPointer", MemoryPointer), ("MemoryPool", MemoryPool)):
        setattr(memory, name, value)
        setattr(cuda, name, value)

    build_arrays(m, cupy, cuda)
    return {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime, "cupy.cuda.memory": memory, "cupy.cuda.driver": driver}


__all__ = ["build", "Config"]
