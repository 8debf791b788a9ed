"""NVIDIA GPUs through NVML (nvidia-ml-py, imported as `pynvml`)."""

from __future__ import annotations

from typing import Any, Callable

from gpubench.telemetry.samplers.base import SamplerUnavailable, Values, initialised, quiet
from gpubench.telemetry.series import Quantity, SeriesKey

# NVML clocks-event (formerly "throttle") reasons, bit -> name (nvml.h nvmlClocksEventReason*).
NVML_CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_clock_event_reasons(mask: int) -> tuple[str, ...]:
    names = [name for bit, name in NVML_CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(NVML_CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return tuple(names)


# NVML field ids (nvml.h); pynvml exports most, older releases lack some.
_FI_DEV_MEMORY_TEMP = 82
_FI_DEV_POWER_AVERAGE = 185
_FI_DEV_POWER_INSTANT = 186
_POWER_SCOPE_MEMORY = 2


def _field_number(fv: Any) -> float:
    """The value of one nvmlFieldValue_t, by its valueType (double, uint, ulong, ulonglong, slonglong, sint, ushort)."""
    members = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return float(getattr(fv.value, members.get(int(fv.valueType), "uiVal")))


class NvmlSampler:
    """Per device i, under SeriesKey.gpu(i, ...): power_w (instant power where the field exists, else
    nvmlDeviceGetPowerUsage, then kept as power_usage_w), power_avg_w, energy_j (total energy
    counter), temp_c, mem_temp_c, sm_clock_mhz, mem_clock_mhz, power_limit_w (enforced),
    mem_power_w, clocks_event_mask; reasons: the decoded clocks-event bitmask of every device."""

    name = "nvml"

    def __init__(self, nvml: Any, handles: list[Any], devices: list[dict[str, Any]]):
        self._nvml = nvml
        self._handles = handles
        self._devices = devices
        self._calls: list[list[tuple[Quantity, Callable[[], float]]]] = [[] for _ in handles]
        self._fields: list[list[tuple[Quantity, Any, float]]] = [[] for _ in handles]
        self._reasons: list[Callable[[], int] | None] = [None for _ in handles]
        reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        for i, handle in enumerate(handles):
            self._discover(i, handle, reasons_fn)

    @classmethod
    def open(cls) -> NvmlSampler:
        try:
            import pynvml  # type: ignore[import-not-found]
        except Exception as e:  # noqa: BLE001 - a broken install must not stop a run
            raise SamplerUnavailable(f"nvidia-ml-py is not importable ({type(e).__name__}); install it: pip install nvidia-ml-py") from None

        def query() -> NvmlSampler:
            count = int(pynvml.nvmlDeviceGetCount())
            if count == 0:
                raise SamplerUnavailable("NVML sees no NVIDIA GPU")
            handles, devices = [], []
            for i in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(handle)
                handles.append(handle)
                devices.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name)})
            return cls(pynvml, handles, devices)

        return initialised("NVML", pynvml.nvmlInit, pynvml.nvmlShutdown, query)

    def _discover(self, i: int, handle: Any, reasons_fn: Callable[[Any], int] | None) -> None:
        """Find out once which readings this device supports, so read() asks only for those."""
        nvml = self._nvml
        calls: dict[Quantity, Callable[[], float]] = {
            # read as power_usage_w; it becomes power_w where the instant field is missing
            Quantity.POWER_USAGE_W: lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            Quantity.ENERGY_J: lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0,
            Quantity.TEMP_C: lambda: float(nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))),
            Quantity.SM_CLOCK_MHZ: lambda: float(nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_SM", 1))),
            Quantity.MEM_CLOCK_MHZ: lambda: float(nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_MEM", 2))),
            Quantity.POWER_LIMIT_W: lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
        }
        self._calls[i] = [(q, call) for q, call in calls.items() if _works(call)]
        if reasons_fn is not None and _works(lambda: reasons_fn(handle)):
            self._reasons[i] = lambda: int(reasons_fn(handle))
        self._fields[i] = self._supported_fields(handle)
        limit = dict(self._calls[i]).get(Quantity.POWER_LIMIT_W)
        if limit is not None:
            self._devices[i]["power_limit_w"] = limit()
        read = [q.value for q, _ in self._calls[i]] + [q.value for q, _, _ in self._fields[i]]
        self._devices[i]["readings"] = sorted(read + (["clocks_event_reasons"] if self._reasons[i] else []))

    def _supported_fields(self, handle: Any) -> list[tuple[Quantity, Any, float]]:
        """The field values (quantity, (field id, scope), scale) this device answers."""
        nvml = self._nvml
        instant = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", _FI_DEV_POWER_INSTANT)
        wanted = [
            (Quantity.POWER_W, (instant, 0), 1e-3),
            (Quantity.POWER_AVG_W, (getattr(nvml, "NVML_FI_DEV_POWER_AVERAGE", _FI_DEV_POWER_AVERAGE), 0), 1e-3),
            (Quantity.MEM_POWER_W, (instant, _POWER_SCOPE_MEMORY), 1e-3),
            (Quantity.MEM_TEMP_C, (getattr(nvml, "NVML_FI_DEV_MEMORY_TEMP", _FI_DEV_MEMORY_TEMP), 0), 1.0),
        ]
        if not hasattr(nvml, "nvmlDeviceGetFieldValues"):
            return []
        try:
            answers = nvml.nvmlDeviceGetFieldValues(handle, [ids for _, ids, _ in wanted])
        except Exception:  # noqa: BLE001
            return []
        return [w for w, fv in zip(wanted, answers) if int(fv.nvmlReturn) == 0]

    def describe(self) -> dict[str, Any]:
        counters = {SeriesKey.gpu(i, Quantity.ENERGY_J): None for i, calls in enumerate(self._calls) if any(q is Quantity.ENERGY_J for q, _ in calls)}
        return {"devices": {"nvml": self._devices}, "counters": counters}

    def read(self) -> tuple[Values, tuple[str, ...]]:
        values: Values = {}
        reasons: list[str] = []
        for i, handle in enumerate(self._handles):
            device = {q: call() for q, call in self._calls[i]}
            if self._reasons[i] is not None:
                mask = self._reasons[i]()  # type: ignore[misc]
                device[Quantity.CLOCKS_EVENT_MASK] = float(mask)
                reasons.extend(r for r in decode_clock_event_reasons(mask) if r not in reasons)
            device.update(self._field_values(i, handle))
            if Quantity.POWER_W not in device and Quantity.POWER_USAGE_W in device:
                device[Quantity.POWER_W] = device.pop(Quantity.POWER_USAGE_W)
            values.update({SeriesKey.gpu(i, q): v for q, v in device.items()})
        return values, tuple(reasons)

    def _field_values(self, i: int, handle: Any) -> dict[Quantity, float]:
        fields = self._fields[i]
        if not fields:
            return {}
        answers = self._nvml.nvmlDeviceGetFieldValues(handle, [ids for _, ids, _ in fields])
        return {q: _field_number(fv) * scale for (q, _, scale), fv in zip(fields, answers) if int(fv.nvmlReturn) == 0}

    def close(self) -> None:
        quiet(self._nvml.nvmlShutdown)


def _works(call: Callable[[], Any]) -> bool:
    try:
        call()
        return True
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
        return False
