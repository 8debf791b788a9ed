"""The slice of nvidia-ml-py (pynvml, 13.x) that gpubench's probe and telemetry use, over a
Machine: NVML numbers the GPUs in PCI order, whatever CUDA's order; P2P answers come from the same
peer table as CUDA's deviceCanAccessPeer; the addressing mode says "hmm" when pageable memory is
reachable. NVML_P2P_CAPS_INDEX_READ is the tuple (0,), as nvidia-ml-py defines it (ctypes refuses
it as an argument)."""

from __future__ import annotations

import ctypes
import time
import types
from dataclasses import dataclass

from .cupy_api import _module
from .machine import Machine

ERROR_STRINGS = {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 13: "Function Not Found"}
FIELD_NOT_SUPPORTED = 3


class NVMLError(Exception):
    def __new__(cls, value):
        obj = Exception.__new__(SUBCLASSES.get(value, cls) if cls is NVMLError else cls)
        obj.value = value
        return obj

    def __init__(self, value):
        super().__init__(value)

    def __str__(self):
        return ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")


SUBCLASSES = {
    value: type(f"NVMLError_{text.replace(' ', '')}", (NVMLError,), {})
    for value, text in ERROR_STRINGS.items()
}


@dataclass
class PciInfo:
    busId: bytes


@dataclass
class MemoryInfo:
    total: int
    free: int
    used: int


class _Value(ctypes.Union):
    _fields_ = [("dVal", ctypes.c_double), ("uiVal", ctypes.c_uint), ("ulVal", ctypes.c_ulong),
                ("ullVal", ctypes.c_ulonglong), ("sllVal", ctypes.c_longlong)]


class FieldValue(ctypes.Structure):
    _fields_ = [("fieldId", ctypes.c_uint32), ("scopeId", ctypes.c_uint32), ("timestamp", ctypes.c_int64),
                ("latencyUsec", ctypes.c_int64), ("valueType", ctypes.c_uint32), ("nvmlReturn", ctypes.c_uint32),
                ("value", _Value)]


def build(machine: Machine) -> dict[str, types.ModuleType]:
    m = machine
    nv = _module("pynvml")
    nv.NVMLError = NVMLError
    for value, cls in SUBCLASSES.items():
        setattr(nv, cls.__name__, cls)
    nv.NVML_P2P_CAPS_INDEX_READ, nv.NVML_P2P_CAPS_INDEX_WRITE, nv.NVML_P2P_CAPS_INDEX_NVLINK = (0,), 1, 2
    nv.NVML_P2P_STATUS_OK, nv.NVML_P2P_STATUS_NOT_SUPPORTED = 0, 5
    nv.NVML_TEMPERATURE_GPU, nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM = 0, 1, 2
    nv.NVML_FI_DEV_POWER_INSTANT, nv.NVML_FI_DEV_POWER_AVERAGE, nv.NVML_FI_DEV_MEMORY_TEMP = 186, 185, 82
    state = {"init": 0, "t0": time.monotonic()}
    gpus = list(range(m.config.gpus))  # NVML sees every GPU, in PCI order

    def initialised() -> None:
        if not state["init"]:
            raise NVMLError(1)

    def handle_index(handle) -> int:
        initialised()
        if not isinstance(handle, _Handle):
            raise NVMLError(2)
        return handle.index

    class _Handle:
        def __init__(self, index: int):
            self.index = index

    def nvmlInit():
        state["init"] += 1

    def nvmlShutdown():
        initialised()
        state["init"] -= 1

    def nvmlSystemGetDriverVersion():
        initialised()
        return "570.124.06"

    def nvmlSystemGetCudaDriverVersion_v2():
        initialised()
        return m.config.driver_version

    def nvmlDeviceGetCount():
        initialised()
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index):
        initialised()
        if not 0 <= int(index) < len(gpus):
            raise NVMLError(2)
        return _Handle(int(index))

    def nvmlDeviceGetName(handle):
        handle_index(handle)
        return m.config.name

    def nvmlDeviceGetPciInfo(handle):
        domain, rest = m.config.pci(handle_index(handle)).split(":", 1)
        return PciInfo(f"{int(domain, 16):08X}:{rest.upper()}".encode())

    def nvmlDeviceGetMemoryInfo(handle, version=None):
        handle_index(handle)
        return MemoryInfo(m.config.memory, m.config.memory, 0)

    def nvmlDeviceGetAddressingMode(device):
        handle_index(device)
        return 1 if m.config.hmm else 0

    def nvmlDeviceGetP2PStatus(device1, device2, p2pIndex):
        a, b = handle_index(device1), handle_index(device2)
        if not isinstance(p2pIndex, int):
            raise ctypes.ArgumentError("argument 3: TypeError: Don't know how to convert parameter 3")
        return 0 if a != b and m.config.peer(a, b) else 5

    def nvmlDeviceGetPowerUsage(handle):
        handle_index(handle)
        return 300_000

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        handle_index(handle)
        return int((time.monotonic() - state["t0"]) * 300_000)  # mJ at 300 W

    def nvmlDeviceGetTemperature(handle, sensor):
        handle_index(handle)
        return 40

    def nvmlDeviceGetClockInfo(handle, type):  # noqa: A002 - nvidia-ml-py's name
        handle_index(handle)
        return 1980 if type == 1 else 2619

    def nvmlDeviceGetEnforcedPowerLimit(handle):
        handle_index(handle)
        return 700_000

    def nvmlDeviceGetCurrentClocksEventReasons(handle):
        handle_index(handle)
        return 0

    def nvmlDeviceGetFieldValues(handle, fieldIds):
        handle_index(handle)
        values = (FieldValue * len(fieldIds))()
        for value, field_id in zip(values, fieldIds):
            value.fieldId = field_id[0] if isinstance(field_id, tuple) else field_id
            value.nvmlReturn = FIELD_NOT_SUPPORTED
        return values

    for fn in (nvmlInit, nvmlShutdown, nvmlSystemGetDriverVersion, nvmlSystemGetCudaDriverVersion_v2, nvmlDeviceGetCount,
               nvmlDeviceGetHandleByIndex, nvmlDeviceGetName, nvmlDeviceGetPciInfo, nvmlDeviceGetMemoryInfo,
               nvmlDeviceGetAddressingMode, nvmlDeviceGetP2PStatus, nvmlDeviceGetPowerUsage,
               nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetTemperature, nvmlDeviceGetClockInfo,
               nvmlDeviceGetEnforcedPowerLimit, nvmlDeviceGetCurrentClocksEventReasons, nvmlDeviceGetFieldValues):
        setattr(nv, fn.__name__, fn)
    return {"pynvml": nv}
