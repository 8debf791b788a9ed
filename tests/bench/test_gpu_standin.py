"""The GPU stand-in (gpu_standin) itself: that it holds gpubench to the rules a GPU holds it to,
and, where CuPy, KvikIO and nvidia-ml-py are installed, that its functions take the arguments
theirs take."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from importlib.util import find_spec

import numpy as np
import pytest

from gpu_standin import POISON, Config, CUDARuntimeError, StandIn, UseAfterFree
from gpu_standin.machine import H100_PCI
from gpubench.bench.gpu import common as g


def machine(monkeypatch, **config):
    return StandIn(Config(**config)).install(monkeypatch)


def status(excinfo) -> int:
    return excinfo.value.status


def test_a_stream_is_used_only_on_its_device(monkeypatch):
    cp = machine(monkeypatch, gpus=2).cupy
    with cp.cuda.Device(1):
        stream = cp.cuda.Stream(non_blocking=True)
        event = cp.cuda.Event()
    with pytest.raises(RuntimeError, match=r"does not match with the current device \(0\)"):
        with stream:
            pass
    with cp.cuda.Device(1), stream:
        pass
    with pytest.raises(CUDARuntimeError) as e:  # cudaEventRecord: the event's device, not the current one
        event.record(cp.cuda.Stream(non_blocking=True))
    assert status(e) == 400


def test_events_time_only_what_has_run_and_only_on_one_device(monkeypatch):
    cp = machine(monkeypatch, gpus=2).cupy
    stream = cp.cuda.Stream(non_blocking=True)
    a, b = cp.cuda.Event(), cp.cuda.Event()
    a.record(stream)
    cp.zeros(1 << 16, dtype=cp.uint8)
    b.record(stream)
    with pytest.raises(CUDARuntimeError) as e:
        cp.cuda.get_elapsed_time(a, b)
    assert status(e) == 600  # not run yet: the stand-in runs work when something waits for it
    b.synchronize()
    assert cp.cuda.get_elapsed_time(a, b) > 0
    with cp.cuda.Device(1):
        other = cp.cuda.Event()
        other.record()
        other.synchronize()
    with pytest.raises(CUDARuntimeError) as e:
        cp.cuda.get_elapsed_time(a, other)
    assert status(e) == 400


def test_peer_access_is_one_way_and_enabled_once(monkeypatch):
    s = machine(monkeypatch, gpus=3, no_peer=((0, 2),))
    cp, rt = s.cupy, s.cupy.cuda.runtime
    assert (rt.deviceCanAccessPeer(0, 1), rt.deviceCanAccessPeer(0, 2), rt.deviceCanAccessPeer(1, 1)) == (1, 0, 0)
    for peer, code in ((0, 101), (2, 217)):
        with pytest.raises(CUDARuntimeError) as e:
            rt.deviceEnablePeerAccess(peer)
        assert status(e) == code
    rt.deviceEnablePeerAccess(1)
    with pytest.raises(CUDARuntimeError) as e:
        rt.deviceEnablePeerAccess(1)
    assert status(e) == g.ERROR_PEER_ACCESS_ALREADY_ENABLED
    with cp.cuda.Device(1), pytest.raises(CUDARuntimeError) as e:
        rt.deviceDisablePeerAccess(0)  # 0 may reach 1; 1 was never let reach 0
    assert status(e) == 705


def test_a_kernel_on_memory_its_device_cannot_reach_faults_for_good(monkeypatch):
    """GPU 1 reading GPU 0's memory before GPU 1 enabled peer access (enabling it on GPU 0 does not
    count): cudaErrorIllegalAddress at the next sync, then on every call that needs the context."""
    cp = machine(monkeypatch, gpus=2).cupy
    src = cp.zeros(4096, dtype=cp.uint8)
    cp.cuda.runtime.deviceEnablePeerAccess(1)
    with cp.cuda.Device(1):
        dst = cp.zeros(4096, dtype=cp.uint8)
        kernel = g.CopyKernel(cp, 1)
        remote = g.device_view(cp, src.data.ptr, 4096, 1, src)
        kernel(remote, dst, 4096)  # queued: the fault shows when something waits
        with pytest.raises(CUDARuntimeError) as e:
            cp.cuda.Device().synchronize()
        assert status(e) == 700
    for call in (cp.cuda.runtime.memGetInfo, lambda: cp.empty(16, dtype=cp.uint8), cp.cuda.Stream):
        with pytest.raises(CUDARuntimeError) as e:
            call()
        assert status(e) == 700
    assert cp.cuda.runtime.getDeviceCount() == 2  # asks the driver, not the context


def test_kernels_run_on_the_current_device_and_check_their_arguments(monkeypatch):
    s = machine(monkeypatch, gpus=2)
    cp = s.cupy
    src, dst = cp.zeros(4096, dtype=cp.uint8), cp.zeros(4096, dtype=cp.uint8)
    kernel = g.CopyKernel(cp, 0)
    with pytest.raises(TypeError, match="must be a 64-bit integer"):
        kernel.kernel((1,), (32,), (src, dst, np.uint32(256)))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        kernel.kernel((1,), (32,), (src, dst))
    with pytest.raises(NotImplementedError, match="unknown or its source changed"):
        cp.RawKernel(g.COPY_KERNEL.replace("dst[i] = src[i]", "dst[i] = src[0]"), "gpubench_copy16")((1,), (1,), (src, dst, np.uint64(1)))
    kernel(src, dst, 4096)
    cp.cuda.runtime.deviceEnablePeerAccess(1)
    with cp.cuda.Device(1):
        kernel(src, dst, 4096)  # the kernel object was made on device 0; it runs where it is launched
        with pytest.raises(CUDARuntimeError) as e:
            cp.cuda.Device().synchronize()  # device 1 may not reach device 0's memory
    assert status(e) == 700
    assert s.machine.launches == [("gpubench_copy16", 0), ("gpubench_copy16", 1)]


def test_cython_argument_types(monkeypatch):
    cp = machine(monkeypatch).cupy
    rt = cp.cuda.runtime
    buf = cp.zeros(4096, dtype=cp.uint8)
    with pytest.raises(TypeError):
        rt.memcpyAsync(buf, buf.data.ptr, 16, rt.memcpyDeviceToDevice, 0)  # an array, not its pointer
    with pytest.raises(TypeError):
        rt.memcpyAsync(buf.data.ptr, buf.data.ptr, 16.0, rt.memcpyDeviceToDevice, 0)
    with pytest.raises(OverflowError):
        rt.hostAlloc(-1, 0)
    with pytest.raises(TypeError, match="expected str"):
        rt.deviceGetByPCIBusId(0)
    with pytest.raises(CUDARuntimeError) as e:  # a device pointer named as the host side of a copy
        rt.memcpy(buf.data.ptr, buf.data.ptr, 16, rt.memcpyHostToDevice)
    assert status(e) == 1


def test_cuda_numbers_gpus_its_own_way_and_may_not_see_all(monkeypatch):
    rt = machine(monkeypatch, gpus=4, cuda_order=(2, 0, 3, 1), hidden=(3,)).cupy.cuda.runtime
    assert rt.getDeviceCount() == 3
    assert [rt.deviceGetByPCIBusId(p) for p in H100_PCI[:3]] == [1, 2, 0]
    assert rt.deviceGetByPCIBusId(H100_PCI[0].upper().replace("0000:", "00000000:")) == 1
    with pytest.raises(CUDARuntimeError) as e:
        rt.deviceGetByPCIBusId(H100_PCI[3])
    assert status(e) == 101


def test_no_gpu_and_a_driver_that_cannot_start(monkeypatch):
    rt = machine(monkeypatch, gpus=1, hidden=(0,)).cupy.cuda.runtime
    with pytest.raises(CUDARuntimeError) as e:
        rt.getDeviceCount()
    assert status(e) == 100
    rt = machine(monkeypatch, gpus=1, init_error=802).cupy.cuda.runtime
    with pytest.raises(CUDARuntimeError, match="cudaErrorSystemNotReady: system not yet initialized"):
        rt.deviceGetByPCIBusId(H100_PCI[0])


def test_memory_the_pool_holds_counts_as_used_until_it_is_freed(monkeypatch):
    cp = machine(monkeypatch, gpus=2, memory=1 << 20).cupy
    a = cp.empty(256 << 10, dtype=cp.uint8)
    assert cp.cuda.runtime.memGetInfo() == (768 << 10, 1 << 20)
    del a
    assert cp.cuda.runtime.memGetInfo()[0] == 768 << 10
    with cp.cuda.Device(1):
        cp.get_default_memory_pool().free_all_blocks()  # another device's pool
    assert cp.cuda.runtime.memGetInfo()[0] == 768 << 10
    cp.get_default_memory_pool().free_all_blocks()
    assert cp.cuda.runtime.memGetInfo()[0] == 1 << 20
    with pytest.raises(CUDARuntimeError) as e:
        cp.cuda.runtime.mallocManaged((1 << 20) + 4096)
    assert status(e) == 2
    with pytest.raises(cp.cuda.memory.OutOfMemoryError):
        cp.empty(2 << 20, dtype=cp.uint8)


def test_work_runs_when_something_waits_and_in_stream_order(monkeypatch):
    """A fill on the legacy default stream is not seen by a non-blocking stream that does not wait
    for it, and is seen by a blocking one (and after a device sync)."""
    cp = machine(monkeypatch).cupy
    rt = cp.cuda.runtime
    pinned = g.PinnedHost(cp, 4096)
    for non_blocking, seen in ((True, 0xCD), (False, 7)):
        buf = cp.empty(4096, dtype=cp.uint8)  # fresh device memory holds 0xCD
        buf.fill(7)
        stream = cp.cuda.Stream(non_blocking=non_blocking)
        rt.memcpyAsync(pinned.ptr, buf.data.ptr, 4096, rt.memcpyDeviceToHost, stream.ptr)
        stream.synchronize()
        assert pinned.numpy()[0] == seen
    cp.cuda.Device().synchronize()
    pinned.close()


def test_kvikio_io_is_not_stream_ordered(monkeypatch, tmp_path):
    s = machine(monkeypatch)
    cp, kvikio = s.cupy, s.modules["kvikio"]
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 16)
    buf = cp.zeros(4096, dtype=cp.uint8)  # the zero fill is still queued
    f = kvikio.CuFile(path, "r")
    assert f.read(buf) == 4096
    assert not cp.asnumpy(buf).any()  # the fill ran after the read
    g.wait_for_setup(cp)
    assert f.read(buf) == 4096 and cp.asnumpy(buf)[:4].tolist() == [0, 1, 2, 3]
    f.close()


def test_released_memory_is_poisoned(monkeypatch):
    cp = machine(monkeypatch, poison=True).cupy
    rt = cp.cuda.runtime
    a = cp.zeros(4096, dtype=cp.uint8)
    ptr = a.data.ptr
    pinned = g.PinnedHost(cp, 4096)
    cp.cuda.Device().synchronize()  # queued work holds the array until it has run
    del a
    with pytest.raises(UseAfterFree, match=r"device memory at .* went back to CuPy's pool|returned to CuPy's pool"):
        rt.memcpy(pinned.ptr, ptr, 4096, rt.memcpyDeviceToHost)
    view = pinned.numpy()
    pinned.close()
    assert view[0] == POISON


def test_nvml_numbers_gpus_in_pci_order_and_answers_p2p_from_the_same_table(monkeypatch):
    nv = machine(monkeypatch, gpus=3, cuda_order=(2, 1, 0), no_peer=((1, 2),), hmm=False).modules["pynvml"]
    nv.nvmlInit()
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
    assert [nv.nvmlDeviceGetPciInfo(h).busId for h in handles] == [b"00000000:1B:00.0", b"00000000:43:00.0", b"00000000:52:00.0"]
    assert nv.nvmlDeviceGetP2PStatus(handles[0], handles[1], 0) == 0
    assert nv.nvmlDeviceGetP2PStatus(handles[1], handles[2], 0) == 5
    assert nv.nvmlDeviceGetAddressingMode(handles[0]) == 0
    with pytest.raises(Exception, match="Don't know how to convert parameter 3"):
        nv.nvmlDeviceGetP2PStatus(handles[0], handles[1], nv.NVML_P2P_CAPS_INDEX_READ)
    nv.nvmlShutdown()


def test_child_processes_build_the_same_machine(monkeypatch):
    import subprocess
    import sys

    machine(monkeypatch, gpus=3, no_peer=((0, 1),))
    code = ("import cupy, kvikio.defaults, pynvml; rt = cupy.cuda.runtime; "
            "print(rt.getDeviceCount(), rt.deviceCanAccessPeer(0, 1), rt.deviceCanAccessPeer(1, 2), kvikio.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    assert out.split() == ["3", "0", "1", "26.10.00"]


# --- the stand-in against the real libraries ------------------------------------------------------

def _cython_parameters(fn) -> list[str] | None:
    """Parameter names of a CuPy function: its signature, or the one Cython embeds in __doc__."""
    try:
        return _standin_parameters(fn)
    except (TypeError, ValueError):
        pass
    first = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    m = re.match(r"[\w.]+\((.*)\)", first)
    if not m:
        return None
    names = []
    for arg in m.group(1).split(","):  # "intptr_t dst", "unsigned int flags=cudaMemAttachGlobal", "*", "**kwargs"
        arg = arg.split("=")[0].strip()
        if arg and arg != "*":
            names.append(arg.split()[-1])
    return [n for n in names if n != "self"]


def _standin_parameters(fn) -> list[str]:
    return [("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL else "") + p.name
            for p in inspect.signature(fn).parameters.values() if p.name != "self"]


CUPY_CALLS = [
    "cuda.runtime." + n for n in (
        "getDeviceCount", "deviceGetByPCIBusId", "getDeviceProperties", "deviceGetPCIBusId", "driverGetVersion",
        "runtimeGetVersion", "memGetInfo", "hostAlloc", "pointerGetAttributes", "freeHost", "memcpyAsync", "memcpy",
        "deviceSynchronize", "deviceCanAccessPeer", "deviceEnablePeerAccess", "deviceDisablePeerAccess",
        "memcpyPeerAsync", "deviceGetAttribute", "mallocManaged", "free", "memPrefetchAsync", "getDevice", "setDevice",
    )
] + ["cuda.Device", "cuda.Stream.__init__", "cuda.Stream.synchronize", "cuda.Stream.wait_event", "cuda.Event.__init__",
     "cuda.Event.record", "cuda.Event.synchronize", "cuda.get_elapsed_time", "cuda.Device.synchronize",
     "cuda.MemoryPool.free_all_blocks", "RawKernel.__call__", "asarray", "asnumpy", "empty", "zeros", "copyto",
     "ndarray.fill", "ndarray.get", "cuda.UnownedMemory", "cuda.MemoryPointer", "RawKernel", "cuda.memory.OutOfMemoryError.__init__"]
CUPY_CONSTANTS = ["memcpyHostToDevice", "memcpyDeviceToHost", "memcpyDeviceToDevice", "hostAllocPortable", "hostAllocMapped",
                  "cudaDevAttrPageableMemoryAccess", "cudaDevAttrConcurrentManagedAccess"]
KVIKIO_CALLS = ["CuFile.__init__", "CuFile.read", "CuFile.write", "CuFile.pread", "CuFile.pwrite", "CuFile.fileno",
                "CuFile.close", "CuFile.is_direct_io_supported", "defaults.get", "defaults.is_compat_mode_preferred"]
NVML_CALLS = ["nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion_v2",
              "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetPciInfo",
              "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetAddressingMode", "nvmlDeviceGetP2PStatus",
              "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperature",
              "nvmlDeviceGetClockInfo", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetFieldValues",
              "nvmlDeviceGetCurrentClocksEventReasons"]


def _lookup(module, dotted: str):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _real(name: str):
    """The real library; skipped (failed under GPUBENCH_REQUIRE_GPU) when it does not import."""
    why = f"{name} is not installed: the stand-in cannot be compared with it here" if find_spec(name) is None else None
    if why is None:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            why = f"{name} does not import ({e}): the stand-in cannot be compared with it here"
    if os.environ.get("GPUBENCH_REQUIRE_GPU") == "1":
        pytest.fail(f"GPUBENCH_REQUIRE_GPU=1, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.mark.gpu
@pytest.mark.parametrize("library, calls, constants", [
    ("cupy", CUPY_CALLS, CUPY_CONSTANTS), ("kvikio", KVIKIO_CALLS, []), ("pynvml", NVML_CALLS, []),
])
def test_the_standin_matches_the_installed_libraries(monkeypatch, library, calls, constants):
    """Every call gpubench makes, by parameter names and order, and the constants it reads. Runs
    wherever the libraries are installed (`pytest -m gpu`); no GPU needed."""
    real = _real(library)
    if library == "kvikio":
        importlib.import_module("kvikio.defaults")
    standin = StandIn(Config()).modules[library]
    mismatched = []
    for call in calls:
        theirs, ours = _cython_parameters(_lookup(real, call)), _standin_parameters(_lookup(standin, call))
        if theirs is not None and theirs != ours:
            mismatched.append(f"{call}: {library} takes {theirs}, the stand-in {ours}")
    for name in constants:
        if getattr(real.cuda.runtime, name) != getattr(standin.cuda.runtime, name):
            mismatched.append(f"{name}: {getattr(real.cuda.runtime, name)} != {getattr(standin.cuda.runtime, name)}")
    assert not mismatched, "\n".join(mismatched)
    if library == "cupy":
        assert str(real.cuda.runtime.CUDARuntimeError(700)) == str(CUDARuntimeError(700))
        assert not hasattr(real.cuda.runtime, "errorPeerAccessAlreadyEnabled")  # gpubench's fallback is the one used
