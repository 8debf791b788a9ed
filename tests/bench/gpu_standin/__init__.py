"""A CPU stand-in for the slice of CuPy, KvikIO and NVML (nvidia-ml-py) that gpubench uses, so that
every GPU case can run end to end on a machine without a GPU: planning, buffers, copies, kernels,
timing plumbing, result shaping and cleanup.

What it is faithful to (see machine.py for the rules):
  - device memory is host memory and every copy and kernel moves or reads real bytes, so a wrong
    pointer, a wrong direction or a missing copy shows in the bytes a case checks;
  - CuPy's and the CUDA runtime's argument types (Cython's intptr_t, size_t, int, str) and error
    types and codes (CUDARuntimeError.status, CUDADriverError, OutOfMemoryError);
  - devices: the current device per thread, CUDA's device order against the PCI order, devices
    hidden from CUDA; streams and events belong to the device they were made on: `with stream`
    only on that device, an event recorded only on a stream of its device, elapsed time only
    between events of one device;
  - peer access is one-way and per device (deviceEnablePeerAccess on the device that reaches),
    "already enabled" is error 704, and a kernel reading a peer's memory without it faults;
  - a kernel runs on the current device; the two kernels gpubench has are emulated (the stand-in
    refuses a kernel whose source changed since, until the emulation is looked at again); a
    kernel reaching memory its device cannot (another GPU's without peer access, pageable memory
    without HMM) raises cudaErrorIllegalAddress, which is sticky for the process, as on a GPU;
  - managed memory is refused above the device's free memory; CuPy's pool keeps blocks until
    free_all_blocks, and memGetInfo counts them as used;
  - stream order: work runs when something waits for it, so host code (or KvikIO, whose I/O is
    not stream-ordered) that does not wait sees it unfinished.

What it cannot catch: races between streams (work runs in one legal order, never concurrently),
speeds (its timings are those of memmove on this CPU), anything in the CUDA kernels' own code
(their effect is emulated, not compiled), and driver behaviour it does not model (it is stricter
than CuPy where gpubench never means to rely on CuPy's leniency).

Use: StandIn(Config(...)).install(monkeypatch) puts the modules in sys.modules for this process
and makes child processes (gpubench's GPU workers) build the same machine: the Config travels in
the environment, and site/ holds `cupy`, `kvikio` and `pynvml` packages that load it.
"""

from __future__ import annotations

import mmap
import os
import sys
import types
import weakref
from pathlib import Path

import numpy as np

from . import cupy_api, kvikio_api, nvml_api
from .machine import (ERRORS, FRESH, H100_PCI, POISON, Block, Config, CUDADriverError, CUDARuntimeError,
                      HostMemoryFault, Machine, UseAfterFree)

ENV = "GPUBENCH_TEST_STANDIN"  # the Config (JSON) a child process builds its machine from
SITE = Path(__file__).resolve().parent / "site"
TRACKED_CALLERS = "gpubench.bench.gpu"  # whose NumPy arrays poison mode tracks

__all__ = ["Config", "StandIn", "Machine", "CUDARuntimeError", "CUDADriverError", "UseAfterFree", "HostMemoryFault",
           "ERRORS", "FRESH", "POISON", "H100_PCI", "ENV", "SITE", "from_environment"]


class StandIn:
    """One machine and the modules that show it."""

    def __init__(self, config: Config):
        self.config = config
        self.machine = Machine(config)
        self.modules: dict[str, types.ModuleType] = {
            **cupy_api.build(self.machine), **kvikio_api.build(self.machine), **nvml_api.build(self.machine),
        }

    @property
    def cupy(self) -> types.ModuleType:
        return self.modules["cupy"]

    def install(self, monkeypatch) -> StandIn:
        """For this test: here (sys.modules) and in the child processes it starts."""
        for name, module in self.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(np, "empty", tracked_empty(self.machine, np.empty))
        return self._reach_children(monkeypatch)

    def install_for_children(self, monkeypatch) -> StandIn:
        """For the child processes this test starts only (none of the modules imported here)."""
        for name in self.modules:
            monkeypatch.delitem(sys.modules, name, raising=False)
        return self._reach_children(monkeypatch)

    def _reach_children(self, monkeypatch) -> StandIn:
        """The Config in the environment, the site directory on the path (gpubench's GPU workers
        start with this process's sys.path)."""
        monkeypatch.setenv(ENV, self.config.to_json())
        monkeypatch.syspath_prepend(str(SITE))
        return self

    def install_here(self) -> None:
        """For the rest of this process (a child started by gpubench)."""
        sys.modules.update(self.modules)
        np.empty = tracked_empty(self.machine, np.empty)


def tracked_empty(machine: Machine, empty):
    """numpy.empty that, for gpubench's GPU benchmarks, hands out memory of a mapping of its own,
    remembered as freed (and poisoned) when the array and every view of it are gone: a copy to or
    from it afterwards is reported, where on a GPU machine it reads or corrupts the heap."""

    def empty_tracked(shape, dtype=float, order="C", **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not caller.startswith(TRACKED_CALLERS) or kwargs or order != "C":
            return empty(shape, dtype, order, **kwargs)
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        with machine.lock:
            block = machine.add(Block("host", count * dtype.itemsize, None, mmap.mmap(-1, max(count * dtype.itemsize, 1)),
                                      label="a NumPy array made by gpubench"))
        array = np.frombuffer(block.mapping, dtype=dtype, count=count).reshape(shape)
        weakref.finalize(array, _host_array_gone, machine, block)
        return array

    return empty_tracked


def _host_array_gone(machine: Machine, block: Block) -> None:
    with machine.lock:
        machine.release(block, "its NumPy array is gone")


_process: StandIn | None = None


def from_environment() -> StandIn:
    """The machine of a child process, from the Config its parent put in the environment."""
    global _process
    if _process is None:
        text = os.environ.get(ENV)
        if not text:
            raise ImportError(f"the GPU stand-in needs {ENV} (set by StandIn.install)")
        _process = StandIn(Config.from_json(text))
        _process.install_here()
    return _process
