"""The slice of KvikIO 26.10 that gpubench uses, over a Machine: kvikio.CuFile, kvikio.defaults,
kvikio.cufile_driver. Like cuFile, the I/O is not ordered with CUDA streams: it reads and writes
the buffer's bytes when called, whatever work is still queued on them."""

from __future__ import annotations

import ctypes
import enum
import os
import pathlib
import time
import types
from typing import Any

from .cupy_api import _module
from .machine import Machine


class CompatMode(enum.Enum):
    OFF = 0
    ON = 1
    AUTO = 2


FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def build(machine: Machine) -> dict[str, types.ModuleType]:
    m = machine
    kvikio, defaults, driver = (_module(n) for n in ("kvikio", "kvikio.defaults", "kvikio.cufile_driver"))
    kvikio.defaults, kvikio.cufile_driver = defaults, driver
    kvikio.__version__ = "26.10.00"
    kvikio.CompatMode = CompatMode
    settings: dict[str, Any] = {"compat_mode": CompatMode.AUTO, "num_threads": 1, "task_size": 4 << 20,
                                "gds_threshold": 16 << 10, "bounce_buffer_size": 16 << 20}

    class ConfigContextManager:
        def __init__(self, config):
            unknown = set(config) - set(settings)
            if unknown:
                raise ValueError(f"unknown KvikIO settings {sorted(unknown)}")
            self.old = {k: settings[k] for k in config}
            settings.update(config)

        def __enter__(self):
            return None

        def __exit__(self, type_unused, value, traceback_unused):
            settings.update(self.old)

    def set_(*config):
        if len(config) == 1 and isinstance(config[0], dict):
            return ConfigContextManager(config[0])
        if len(config) == 2 and isinstance(config[0], str):
            return ConfigContextManager({config[0]: config[1]})
        raise ValueError("Valid arguments are kvikio.defaults.set(config: dict) or kvikio.defaults.set(key: str, value: Any)")

    def get(config_name):
        return settings[config_name]

    def is_compat_mode_preferred():
        return m.config.kvikio_compat or settings["compat_mode"] is CompatMode.ON

    defaults.set, defaults.get, defaults.is_compat_mode_preferred = set_, get, is_compat_mode_preferred
    defaults.ConfigContextManager = ConfigContextManager

    class DriverProperties:
        @property
        def is_gds_available(self):
            return m.config.gds_available

        allow_compat_mode = True
        major_version = 2
        minor_version = 24

    driver.DriverProperties = DriverProperties
    driver.properties = DriverProperties()
    driver.libcufile_version = lambda: (1, 14)

    class IOFuture:
        def __init__(self, nbytes: int):
            self.nbytes = nbytes

        def get(self):
            return self.nbytes

        def done(self):
            return True

    class CuFile:
        def __init__(self, file, flags="r"):
            if not isinstance(file, (str, pathlib.Path)):
                raise TypeError(f"expected a path, got {type(file).__name__}")
            if not flags or flags[0] not in FLAGS or set(flags) - set("rwa+"):
                raise ValueError(f"Unknown file open flag: {flags}")
            mode = FLAGS[flags[0]]
            if "+" in flags:
                mode = (mode & ~(os.O_RDONLY | os.O_WRONLY)) | os.O_RDWR
            with m.lock:
                m.check()
            self._path = os.fspath(file)
            self._fd = os.open(self._path, mode | os.O_CLOEXEC, 0o644)

        def close(self):
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

        @property
        def closed(self):
            return self._fd < 0

        def fileno(self):
            return self._fd

        def open_flags(self):
            import fcntl

            return fcntl.fcntl(self._fd, fcntl.F_GETFL)

        def __enter__(self):
            return self

        def __exit__(self, exc_type, exc_val, exc_tb):
            self.close()

        def is_direct_io_supported(self):
            try:
                os.close(os.open(self._path, os.O_RDONLY | os.O_DIRECT))
            except OSError:
                return False
            return True

        def _span(self, buf, size):
            """The address and length of a buffer: device memory through __cuda_array_interface__,
            host memory through the buffer protocol."""
            with m.lock:
                m.check()
                if hasattr(buf, "__cuda_array_interface__"):
                    cai = buf.__cuda_array_interface__
                    if cai.get("strides") is not None:
                        raise ValueError("Array must be contiguous")
                    nbytes = int(buf.nbytes)
                    ptr = cai["data"][0]
                    if m.resolve(ptr, nbytes, "kvikio.CuFile") is None:
                        raise RuntimeError(f"cuFile: {ptr:#x} is not CUDA memory")
                else:
                    view = memoryview(buf).cast("B")
                    nbytes, ptr = view.nbytes, ctypes.addressof(ctypes.c_char.from_buffer(view))
            size = nbytes if size is None else size
            if size > nbytes:
                raise ValueError(f"size {size} is larger than the buffer ({nbytes} bytes)")
            return ptr, size

        def _io(self, transfer, buf, size, file_offset) -> IOFuture:
            """The whole transfer, now (cuFile's I/O waits for no stream); short only at the file's end."""
            time.sleep(m.config.io_delay_s)
            ptr, size = self._span(buf, size)
            view = memoryview((ctypes.c_char * size).from_address(ptr))
            done = 0
            while done < size:
                n = transfer(self._fd, view[done:], file_offset + done)
                if n == 0:
                    break
                done += n
            return IOFuture(done)

        def pread(self, buf, size=None, file_offset=0, task_size=None):
            return self._io(lambda fd, view, at: os.preadv(fd, [view], at), buf, size, file_offset)

        def pwrite(self, buf, size=None, file_offset=0, task_size=None):
            return self._io(os.pwrite, buf, size, file_offset)

        def read(self, buf, size=None, file_offset=0, task_size=None):
            return self.pread(buf, size, file_offset, task_size).get()

        def write(self, buf, size=None, file_offset=0, task_size=None):
            return self.pwrite(buf, size, file_offset, task_size).get()

    kvikio.CuFile = CuFile
    return {"kvikio": kvikio, "kvikio.defaults": defaults, "kvikio.cufile_driver": driver}
