"""AMD GPUs through amdsmi (ROCm's Python package)."""

from __future__ import annotations

from typing import Any, Callable

from gpubench.telemetry.samplers.base import SamplerUnavailable, Values, initialised, quiet
from gpubench.telemetry.series import Quantity, SeriesKey

# amdsmi violation status key -> reason name (MI300 and later).
AMDSMI_VIOLATIONS = {
    "active_ppt_pwr": "ppt_power",
    "active_socket_thrm": "socket_thermal",
    "active_prochot_thrm": "prochot_thermal",
    "active_vr_thrm": "vr_thermal",
    "active_hbm_thrm": "hbm_thermal",
}
# (quantity, temperature sensors in order of preference, whether the hottest of them counts)
TEMPERATURES = (
    (Quantity.TEMP_C, ("HOTSPOT", "EDGE"), False),  # the first one that reads
    (Quantity.MEM_TEMP_C, ("HBM_0", "HBM_1", "HBM_2", "HBM_3", "VRAM"), True),  # the hottest HBM stack
)
CLOCKS = ((Quantity.SM_CLOCK_MHZ, "GFX"), (Quantity.MEM_CLOCK_MHZ, "MEM"))
UNSUPPORTED_32 = 0xFFFFFFFF
UNSUPPORTED_64 = 0xFFFFFFFFFFFFFFFF


def _number(value: Any, unsupported: int = UNSUPPORTED_32) -> float | None:
    """amdsmi reports unsupported values as 'N/A' or the type's max (`unsupported`: a 32-bit field's
    unless told); keep only real numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value >= unsupported:
        return None
    return float(value)


class AmdSmiSampler:
    """Per device i, under SeriesKey.gpu(i, ...): power_w (current socket power, else average),
    energy_j (the energy accumulator times its resolution), temp_c (hotspot, else edge), mem_temp_c
    (the hottest HBM stack), sm_clock_mhz (GFX clock), mem_clock_mhz, power_limit_w; reasons: active
    violations (ppt_power, socket_thermal, prochot_thermal, vr_thermal, hbm_thermal)."""

    name = "amdsmi"

    def __init__(self, amdsmi: Any, handles: list[Any]):
        self._smi = amdsmi
        self._handles = handles
        self._broken: list[set[str]] = [set() for _ in handles]
        self._devices = [{"index": i} for i in range(len(handles))]
        self.read()  # learn which calls fail on this device, once

    @classmethod
    def open(cls) -> AmdSmiSampler:
        try:
            import amdsmi  # type: ignore[import-not-found]
        except Exception as e:  # noqa: BLE001 - amdsmi raises KeyError/OSError when ROCm is half installed
            raise SamplerUnavailable(f"amdsmi is not importable ({type(e).__name__}: {e})") from None

        def query() -> AmdSmiSampler:
            handles = list(amdsmi.amdsmi_get_processor_handles())
            if not handles:
                raise SamplerUnavailable("amdsmi sees no AMD GPU")
            return cls(amdsmi, handles)

        return initialised("amdsmi", amdsmi.amdsmi_init, amdsmi.amdsmi_shut_down, query)

    def _try(self, i: int, key: str, call: Callable[[], Any]) -> Any:
        if key in self._broken[i]:
            return None
        try:
            return call()
        except Exception:  # noqa: BLE001 - not supported on this ASIC: stop asking
            self._broken[i].add(key)
            return None

    def describe(self) -> dict[str, Any]:
        counters = {SeriesKey.gpu(i, Quantity.ENERGY_J): None for i in range(len(self._handles)) if "energy" not in self._broken[i]}
        return {"devices": {"amdsmi": self._devices}, "counters": counters}

    def read(self) -> tuple[Values, tuple[str, ...]]:
        values: Values = {}
        reasons: list[str] = []
        for i, h in enumerate(self._handles):
            device = {**self._power(i, h), **self._energy(i, h), **self._temperatures(i, h), **self._clocks(i, h)}
            values.update({SeriesKey.gpu(i, q): v for q, v in device.items() if v is not None})
            reasons.extend(r for r in self._violations(i, h) if r not in reasons)
        return values, tuple(reasons)

    def _power(self, i: int, h: Any) -> dict[Quantity, float | None]:
        power = self._try(i, "power", lambda: self._smi.amdsmi_get_power_info(h)) or {}
        watts = _number(power.get("current_socket_power"))
        limit = _number(power.get("power_limit"))
        return {
            Quantity.POWER_W: watts if watts is not None else _number(power.get("average_socket_power")),
            Quantity.POWER_LIMIT_W: None if limit is None else (limit / 1e6 if limit > 100_000 else limit),  # uW in newer releases
        }

    def _energy(self, i: int, h: Any) -> dict[Quantity, float | None]:
        energy = self._try(i, "energy", lambda: self._smi.amdsmi_get_energy_count(h)) or {}
        acc = _number(energy.get("energy_accumulator", energy.get("power")), UNSUPPORTED_64)  # 64-bit: passes 2**32 within minutes
        resolution = energy.get("counter_resolution")
        if acc is None or not isinstance(resolution, (int, float)):
            return {}
        return {Quantity.ENERGY_J: acc * float(resolution) / 1e6}

    def _temperatures(self, i: int, h: Any) -> dict[Quantity, float | None]:
        kinds, metric = getattr(self._smi, "AmdSmiTemperatureType", None), getattr(self._smi, "AmdSmiTemperatureMetric", None)
        if kinds is None or metric is None:
            return {}
        out: dict[Quantity, float | None] = {}
        for quantity, sensors, hottest in TEMPERATURES:
            readings = (self._temperature(i, h, kinds, metric, sensor) for sensor in sensors if hasattr(kinds, sensor))
            found = (t for t in readings if t is not None)
            out[quantity] = max(found, default=None) if hottest else next(found, None)
        return out

    def _temperature(self, i: int, h: Any, kinds: Any, metric: Any, sensor: str) -> float | None:
        return _number(self._try(i, f"temp.{sensor}", lambda: self._smi.amdsmi_get_temp_metric(h, getattr(kinds, sensor), metric.CURRENT)))

    def _clocks(self, i: int, h: Any) -> dict[Quantity, float | None]:
        kinds = getattr(self._smi, "AmdSmiClkType", None)
        out: dict[Quantity, float | None] = {}
        for quantity, kind in CLOCKS if kinds is not None else ():
            if hasattr(kinds, kind):
                info = self._try(i, f"clock.{kind}", lambda k=kind: self._smi.amdsmi_get_clock_info(h, getattr(kinds, k))) or {}
                out[quantity] = _number(info.get("clk"))
        return out

    def _violations(self, i: int, h: Any) -> list[str]:
        status = self._try(i, "violation", lambda: self._smi.amdsmi_get_violation_status(h)) or {}
        return [name for key, name in AMDSMI_VIOLATIONS.items() if status.get(key) in (True, 1)]

    def close(self) -> None:
        quiet(self._smi.amdsmi_shut_down)
