"""CuPy's arrays and RawKernel, as the stand-in has them (see cupy_api): ndarray over device memory
(C-contiguous, the slicing, reshaping, filling and copying gpubench does), asarray, asnumpy,
empty, zeros, copyto; and the two kernels gpubench launches, emulated."""

from __future__ import annotations

import ctypes
import operator
import os
import signal
import types

import numpy as np

from .machine import CUDADriverError, CUDARuntimeError, KERNELS, Machine, kernel_signature, source_digest


def build_arrays(m: Machine, cupy: types.ModuleType, cuda: types.ModuleType) -> None:
    """Add the arrays and kernels to a cupy module built by cupy_api.build."""
    Device, MemoryPointer, pool = cuda.Device, cuda.MemoryPointer, cupy.get_default_memory_pool()

    def _stream_state(stream):
        return m.current_stream(m.current) if stream is None or stream.ptr == 0 else stream._state

    # --- arrays
    def _elementwise_device(*arrays: ndarray) -> int:
        for a in arrays:
            if a.data.device_id != m.current:
                raise ValueError(f"Array device must be same as the current device: array device = {a.data.device_id} while current = {m.current}")
        return m.current

    class ndarray:
        def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
            self.shape = (operator.index(shape),) if not isinstance(shape, tuple) else tuple(operator.index(n) for n in shape)
            self.dtype = np.dtype(dtype)
            if strides is not None or order != "C":
                raise NotImplementedError("the stand-in models C-contiguous arrays only")
            self.data = pool.malloc(self.nbytes) if memptr is None else memptr

        @property
        def size(self):
            return int(np.prod(self.shape, dtype=np.int64))

        @property
        def nbytes(self):
            return self.size * self.dtype.itemsize

        @property
        def ndim(self):
            return len(self.shape)

        @property
        def device(self):
            return Device(self.data.device_id)

        def __len__(self):
            return self.shape[0]

        def _host(self) -> np.ndarray:
            """The bytes, as the GPU sees them (used only by queued work)."""
            if self.nbytes == 0:
                return np.empty(self.shape, self.dtype)
            raw = (ctypes.c_uint8 * self.nbytes).from_address(self.data.ptr)
            return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape)

        def _view(self, offset: int, shape: tuple[int, ...]) -> ndarray:
            return ndarray(shape, self.dtype, MemoryPointer(self.data.mem, self.data.ptr - self.data.mem.ptr + offset))

        def reshape(self, *shape, order="C", copy=None):
            shape = tuple(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)
            known = int(np.prod([n for n in shape if n != -1], dtype=np.int64))
            if shape.count(-1) > 1 or (shape.count(-1) and (known == 0 or self.size % known)) or (-1 not in shape and known != self.size):
                raise ValueError(f"cannot reshape array of size {self.size} into shape {shape}")
            return self._view(0, tuple(self.size // known if n == -1 else n for n in shape))

        def __getitem__(self, key):
            if isinstance(key, slice) and self.ndim == 1:
                start, stop, step = key.indices(self.shape[0])
                if step != 1:
                    raise NotImplementedError("the stand-in models contiguous slices only")
                return self._view(start * self.dtype.itemsize, (max(0, stop - start),))
            if key == slice(None) or key is Ellipsis:
                return self
            raise NotImplementedError(f"the stand-in does not model indexing with {key!r}")

        def __setitem__(self, key, value):
            target = self[key]
            if isinstance(value, ndarray):
                _elementwise_device(target, value)
                with m.lock:
                    m.check()
                    _touch(target, value)
                    m.enqueue(m.current_stream(m.current), lambda: np.copyto(target._host(), value._host()))
            else:
                target.fill(value) if np.ndim(value) == 0 else target.__setitem__(slice(None), asarray(np.asarray(value)))

        def fill(self, value):
            _elementwise_device(self)
            with m.lock:
                m.check()
                _touch(self)
                m.enqueue(m.current_stream(m.current), lambda: self._host().fill(value))

        def get(self, stream=None, order="C", out=None, blocking=True):
            with Device(self.data.device_id), m.lock:
                m.check()
                _touch(self)
                result = np.empty(self.shape, self.dtype)
                s = _stream_state(stream)
                mark = m.enqueue(s, lambda: np.copyto(result, self._host()))
                if blocking:
                    m.run_until(s, mark)
                    m.check()
                return result

        @property
        def __cuda_array_interface__(self):
            return {"shape": self.shape, "typestr": self.dtype.str, "descr": [("", self.dtype.str)],
                    "data": (self.data.ptr, False), "strides": None, "version": 3,
                    "stream": m.current_stream(m.current).handle or 1}

    def _touch(*arrays: ndarray) -> None:
        """An operation on the current device reads or writes these arrays."""
        for a in arrays:
            m.reach(m.current, a.data.ptr, a.nbytes, "an elementwise kernel")

    def empty(shape, dtype=float, order="C"):
        return ndarray(shape if isinstance(shape, tuple) else (shape,), dtype, order=order)

    def zeros(shape, dtype=float, order="C"):
        a = empty(shape, dtype, order)
        with m.lock:
            m.enqueue(m.current_stream(m.current), lambda: a._host().fill(0))
        return a

    def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
        if isinstance(a, ndarray):
            return a
        host = np.ascontiguousarray(a, dtype=dtype)
        out = empty(host.shape, host.dtype)
        staged = host.copy()
        with m.lock:
            mark = m.enqueue(m.current_stream(m.current), lambda: np.copyto(out._host(), staged))
            if blocking:
                m.run_until(m.current_stream(m.current), mark)
        return out

    def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
        return a.get(stream=stream, blocking=blocking) if isinstance(a, ndarray) else np.asarray(a)

    def copyto(dst, src, casting="same_kind", where=None):
        if where is not None or not isinstance(src, ndarray):
            raise NotImplementedError("the stand-in models copyto between two CuPy arrays only")
        dst[...] = src

    for fn in (empty, zeros, asarray, asnumpy, copyto):
        setattr(cupy, fn.__name__, fn)
    cupy.ndarray = ndarray

    # --- kernels
    class RawKernel:
        def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, *,
                     enable_cooperative_groups=False, jitify=None):
            if not isinstance(code, str) or not isinstance(name, str):
                raise TypeError("Argument 'code' and 'name' must be str")
            self.code, self.name = code, name
            self.options, self.backend = tuple(options), backend

        def __call__(self, grid, block, args, **kwargs):  # kwargs: shared_mem, enable_cooperative_groups
            model = KERNELS.get(self.name)
            if model is None or source_digest(self.code) != model.source_sha256:
                raise NotImplementedError(f"the stand-in emulates {', '.join(KERNELS)} as written when it was made; "
                                          f"{self.name!r} is unknown or its source changed: update gpu_standin.machine.KERNELS")
            if tuple(kernel_signature(self.code, self.name)) != model.params:
                raise NotImplementedError(f"{self.name}: parameters differ from the emulated ones")
            grid, block = tuple(grid), tuple(block)
            if not grid or not block or min(grid + block) < 1 or int(np.prod(block)) > 1024 or not isinstance(args, tuple):
                raise CUDADriverError(1)
            if self.name == m.config.crash_kernel:
                os.kill(os.getpid(), signal.SIGSEGV)
            if m.config.chatty:
                print(f"stand-in: compiling {self.name} for device {m.current}", flush=True)
            with m.lock:
                m.check()
                stream = m.current_stream(m.current)
                if stream.device != m.current:
                    raise CUDADriverError(400)
                work = _kernel_work(self.name, model.params, args)
                m.launches.append((self.name, m.current))
                m.enqueue(stream, work)

    def _kernel_work(name: str, params: tuple[str, ...], args: tuple):
        """Check the arguments against the kernel's C parameters; returns the kernel's effect, which
        faults (cudaErrorIllegalAddress, when the queue runs it) on memory its device cannot reach."""
        if len(args) != len(params):
            raise TypeError(f"{name} takes {len(params)} arguments, got {len(args)}")
        values = []
        for i, (param, arg) in enumerate(zip(params, args)):
            if param.endswith("*"):
                if not isinstance(arg, ndarray):
                    raise TypeError(f"{name}: argument {i + 1} ({param}) must be a CuPy array, got {type(arg).__name__}")
                values.append(arg)
            else:
                if isinstance(arg, bool) or not isinstance(arg, (int, np.integer)) or (isinstance(arg, np.integer) and arg.dtype.itemsize != 8):
                    raise TypeError(f"{name}: argument {i + 1} ({param}) must be a 64-bit integer, got {arg!r}")
                values.append(int(arg))
        device = m.current
        if name == "gpubench_copy16":
            src, dst, n16 = values
            spans = [(src, n16 * 16), (dst, n16 * 16)]
        else:
            src, n16, out = values
            spans = [(src, n16 * 16), (out, 8)]
        try:
            for array, nbytes in spans:
                m.reach(device, array.data.ptr, nbytes, name)
        except CUDARuntimeError as e:
            fault = e

            def faulted() -> None:
                raise fault

            return faulted
        if name == "gpubench_copy16":
            return lambda: ctypes.memmove(dst.data.ptr, src.data.ptr, n16 * 16)

        def read_sum() -> None:
            words = np.frombuffer((ctypes.c_uint8 * (n16 * 16)).from_address(src.data.ptr), dtype=np.uint32)
            total = ctypes.c_uint64.from_address(out.data.ptr)
            total.value += int(words.sum(dtype=np.uint64))

        return read_sum

    cupy.RawKernel = RawKernel
