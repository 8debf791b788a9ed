"""Samplers: one per telemetry source. Each reads the current values in one call.

A sampler has `name`, `read() -> (values, reasons)`, `describe() -> dict` (static facts recorded
once: devices, power limits, counters and their wrap range) and `close()`. Field names follow
`<source>.<quantity>_<unit>` (see gpubench.telemetry.trace). `open()` raises SamplerUnavailable
with the reason when the source cannot be read on this machine. Vendor libraries are imported
only inside `open()`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol


class SamplerUnavailable(Exception):
    """This source cannot be read here; the message says why (and how to fix it when we know)."""


class Sampler(Protocol):
    name: str  # a sampler may also set min_interval_s: read no more often than that


    def read(self) -> tuple[dict[str, float], tuple[str, ...]]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


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

# Reasons that mean "clocks are held below what the work asked for" (the others are settings or idle).
THROTTLE_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        # amdsmi violation status
        "ppt_power",
        "socket_thermal",
        "prochot_thermal",
        "vr_thermal",
        "hbm_thermal",
    }
)


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
    """NVIDIA GPUs through NVML (nvidia-ml-py, imported as `pynvml`).

    Per device i: gpu{i}.power_w (instant power where the field exists, else nvmlDeviceGetPowerUsage),
    gpu{i}.power_avg_w, gpu{i}.energy_j (total energy counter), gpu{i}.temp_c, gpu{i}.mem_temp_c,
    gpu{i}.sm_clock_mhz, gpu{i}.mem_clock_mhz, gpu{i}.power_limit_w (enforced), gpu{i}.mem_power_w,
    gpu{i}.clocks_event_mask; reasons: the decoded clocks-event bitmask of every device."""

    name = "nvml"

    def __init__(self, nvml: Any, handles: list[Any], devices: list[dict[str, Any]]):
        self._nvml = nvml
        self._handles = handles
        self._devices = devices
        self._supported: list[set[str]] = [set() for _ in handles]
        self._fields: list[list[tuple[str, Any, float]]] = [[] for _ in handles]
        self._reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        for i, handle in enumerate(handles):
            self._discover(i, handle)

    @classmethod
    def open(cls) -> NvmlSampler:
        try:
            import pynvml  # type: ignore[import-not-found]
        except Exception as e:  # noqa: BLE001 - a broken install must not stop a run
            raise SamplerUnavailable(f"nvidia-ml-py is not importable ({type(e).__name__}); install it: pip install nvidia-ml-py") from None
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001
            raise SamplerUnavailable(f"NVML did not initialise: {e}") from None
        try:
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
        except SamplerUnavailable:
            _quiet(pynvml.nvmlShutdown)
            raise
        except Exception as e:  # noqa: BLE001
            _quiet(pynvml.nvmlShutdown)
            raise SamplerUnavailable(f"NVML device query failed: {e}") from None

    def _discover(self, i: int, handle: Any) -> None:
        """Find out once which readings this device supports, so read() asks only for those."""
        nvml, supported = self._nvml, self._supported[i]
        probes: dict[str, Callable[[], Any]] = {
            "power_usage": lambda: nvml.nvmlDeviceGetPowerUsage(handle),
            "energy": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
            "temp": lambda: nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
            "sm_clock": lambda: nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_SM", 1)),
            "mem_clock": lambda: nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_MEM", 2)),
            "power_limit": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle),
        }
        if self._reasons_fn is not None:
            probes["reasons"] = lambda: self._reasons_fn(handle)
        for key, probe in probes.items():
            try:
                probe()
                supported.add(key)
            except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends
                pass
        wanted = [
            ("power_instant_w", getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", _FI_DEV_POWER_INSTANT), 0, 1e-3),
            ("power_avg_w", getattr(nvml, "NVML_FI_DEV_POWER_AVERAGE", _FI_DEV_POWER_AVERAGE), 0, 1e-3),
            ("mem_power_w", getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", _FI_DEV_POWER_INSTANT), _POWER_SCOPE_MEMORY, 1e-3),
            ("mem_temp_c", getattr(nvml, "NVML_FI_DEV_MEMORY_TEMP", _FI_DEV_MEMORY_TEMP), 0, 1.0),
        ]
        if hasattr(nvml, "nvmlDeviceGetFieldValues"):
            try:
                values = nvml.nvmlDeviceGetFieldValues(handle, [(fid, scope) for _, fid, scope, _ in wanted])
                for (label, fid, scope, scale), fv in zip(wanted, values):
                    if int(fv.nvmlReturn) == 0:
                        self._fields[i].append((label, (fid, scope), scale))
            except Exception:  # noqa: BLE001
                pass
        try:
            self._devices[i]["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        except Exception:  # noqa: BLE001
            pass
        self._devices[i]["readings"] = sorted(supported) + [label for label, _, _ in self._fields[i]]

    def describe(self) -> dict[str, Any]:
        counters = {f"gpu{d['index']}.energy_j": {"wrap": None} for d, s in zip(self._devices, self._supported) if "energy" in s}
        return {"devices": {"nvml": self._devices}, "counters": counters}

    def read(self) -> tuple[dict[str, float], tuple[str, ...]]:
        nvml = self._nvml
        values: dict[str, float] = {}
        reasons: list[str] = []
        for i, handle in enumerate(self._handles):
            supported, p = self._supported[i], f"gpu{i}."
            if "power_usage" in supported:
                values[p + "power_w"] = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            if "energy" in supported:
                values[p + "energy_j"] = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
            if "temp" in supported:
                values[p + "temp_c"] = float(nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)))
            if "sm_clock" in supported:
                values[p + "sm_clock_mhz"] = float(nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_SM", 1)))
            if "mem_clock" in supported:
                values[p + "mem_clock_mhz"] = float(nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, "NVML_CLOCK_MEM", 2)))
            if "power_limit" in supported:
                values[p + "power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
            if "reasons" in supported:
                mask = int(self._reasons_fn(handle))
                values[p + "clocks_event_mask"] = float(mask)
                reasons.extend(r for r in decode_clock_event_reasons(mask) if r not in reasons)
            fields = self._fields[i]
            if fields:
                fvs = nvml.nvmlDeviceGetFieldValues(handle, [ids for _, ids, _ in fields])
                for (label, _, scale), fv in zip(fields, fvs):
                    if int(fv.nvmlReturn) == 0:
                        values[p + label] = _field_number(fv) * scale
            if p + "power_instant_w" in values:
                values[p + "power_usage_w"] = values.get(p + "power_w", values[p + "power_instant_w"])
                values[p + "power_w"] = values.pop(p + "power_instant_w")
        return values, tuple(reasons)

    def close(self) -> None:
        _quiet(self._nvml.nvmlShutdown)


# amdsmi violation status key -> reason name (MI300 and later).
AMDSMI_VIOLATIONS = {
    "active_ppt_pwr": "ppt_power",
    "active_socket_thrm": "socket_thermal",
    "active_prochot_thrm": "prochot_thermal",
    "active_vr_thrm": "vr_thermal",
    "active_hbm_thrm": "hbm_thermal",
}


def _number(value: Any, unsupported: int = 0xFFFFFFFF) -> float | None:
    """amdsmi reports unsupported values as 'N/A' or the type's max (`unsupported`: a 32-bit field's
    unless told); keep only real numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value >= unsupported:
        return None
    return float(value)


class AmdSmiSampler:
    """AMD GPUs through amdsmi (ROCm's Python package).

    Per device i: gpu{i}.power_w (current socket power, else average), gpu{i}.energy_j (the energy
    accumulator times its resolution), gpu{i}.temp_c (hotspot, else edge), gpu{i}.mem_temp_c (the
    hottest HBM stack), gpu{i}.sm_clock_mhz (GFX clock), gpu{i}.mem_clock_mhz, gpu{i}.power_limit_w;
    reasons: active violations (ppt_power, socket_thermal, prochot_thermal, vr_thermal, hbm_thermal)."""

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
        try:
            amdsmi.amdsmi_init()
        except Exception as e:  # noqa: BLE001
            raise SamplerUnavailable(f"amdsmi did not initialise: {e}") from None
        try:
            handles = list(amdsmi.amdsmi_get_processor_handles())
            if not handles:
                raise SamplerUnavailable("amdsmi sees no AMD GPU")
            return cls(amdsmi, handles)
        except SamplerUnavailable:
            _quiet(amdsmi.amdsmi_shut_down)
            raise
        except Exception as e:  # noqa: BLE001
            _quiet(amdsmi.amdsmi_shut_down)
            raise SamplerUnavailable(f"amdsmi device query failed: {e}") from None

    def _try(self, i: int, key: str, call: Callable[[], Any]) -> Any:
        if key in self._broken[i]:
            return None
        try:
            return call()
        except Exception:  # noqa: BLE001 - not supported on this ASIC: stop asking
            self._broken[i].add(key)
            return None

    def describe(self) -> dict[str, Any]:
        counters = {f"gpu{i}.energy_j": {"wrap": None} for i in range(len(self._handles)) if "energy" not in self._broken[i]}
        return {"devices": {"amdsmi": self._devices}, "counters": counters}

    def read(self) -> tuple[dict[str, float], tuple[str, ...]]:
        smi = self._smi
        values: dict[str, float] = {}
        reasons: list[str] = []
        temp_type = getattr(smi, "AmdSmiTemperatureType", None)
        temp_metric = getattr(smi, "AmdSmiTemperatureMetric", None)
        clk_type = getattr(smi, "AmdSmiClkType", None)
        for i, h in enumerate(self._handles):
            p = f"gpu{i}."
            power = self._try(i, "power", lambda: smi.amdsmi_get_power_info(h)) or {}
            watts = _number(power.get("current_socket_power"))
            if watts is None:
                watts = _number(power.get("average_socket_power"))
            if watts is not None:
                values[p + "power_w"] = watts
            limit = _number(power.get("power_limit"))
            if limit is not None:
                values[p + "power_limit_w"] = limit / 1e6 if limit > 100_000 else limit  # uW in newer releases
            energy = self._try(i, "energy", lambda: smi.amdsmi_get_energy_count(h)) or {}
            acc = _number(energy.get("energy_accumulator", energy.get("power")), unsupported=0xFFFFFFFFFFFFFFFF)  # 64-bit: passes 2**32 within minutes
            resolution = energy.get("counter_resolution")
            if acc is not None and isinstance(resolution, (int, float)):
                values[p + "energy_j"] = acc * float(resolution) / 1e6
            if temp_type is not None and temp_metric is not None:
                for label, kinds in (("temp_c", ("HOTSPOT", "EDGE")), ("mem_temp_c", ("HBM_0", "HBM_1", "HBM_2", "HBM_3", "VRAM"))):
                    readings = []
                    for kind in kinds:
                        if hasattr(temp_type, kind):
                            t = self._try(i, f"temp.{kind}", lambda k=kind: smi.amdsmi_get_temp_metric(h, getattr(temp_type, k), temp_metric.CURRENT))
                            if _number(t) is not None:
                                readings.append(float(t))
                                if label == "temp_c":
                                    break
                    if readings:
                        values[p + label] = max(readings)
            if clk_type is not None:
                for label, kind in (("sm_clock_mhz", "GFX"), ("mem_clock_mhz", "MEM")):
                    if hasattr(clk_type, kind):
                        info = self._try(i, f"clock.{kind}", lambda k=kind: smi.amdsmi_get_clock_info(h, getattr(clk_type, k))) or {}
                        mhz = _number(info.get("clk"))
                        if mhz is not None:
                            values[p + label] = mhz
            violation = self._try(i, "violation", lambda: smi.amdsmi_get_violation_status(h)) or {}
            for key, name in AMDSMI_VIOLATIONS.items():
                if violation.get(key) in (True, 1) and name not in reasons:
                    reasons.append(name)
        return values, tuple(reasons)

    def close(self) -> None:
        _quiet(self._smi.amdsmi_shut_down)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+-]+", "_", text.strip()) or "x"


class HwmonSampler:
    """hwmon: temperatures and fans through psutil, power and energy from the hwmon files.

    Fields: hwmon.{chip}.{label}.temp_c, hwmon.{chip}.{label}.fan_rpm, hwmon.{chip}.power{N}_w
    (power{N}_input or _average, microwatts), hwmon.{chip}.energy{N}_j (energy{N}_input, microjoules,
    a counter)."""

    name = "hwmon"

    def __init__(
        self,
        root: Path = Path("/"),
        temperatures: Callable[[], dict[str, list[Any]]] | None = None,
        fans: Callable[[], dict[str, list[Any]]] | None = None,
    ):
        import psutil

        live = root == Path("/")
        self._temperatures = temperatures or (getattr(psutil, "sensors_temperatures", dict) if live else lambda: _hwmon_files(root, "temp", 1e-3))
        self._fans = fans or (getattr(psutil, "sensors_fans", dict) if live else lambda: _hwmon_files(root, "fan", 1.0))
        self._files: list[tuple[str, Path, float]] = []  # field, file, scale
        base = root / "sys/class/hwmon"
        for hw in sorted(base.glob("hwmon*")) if base.is_dir() else ():
            chip = _slug(_read_text(hw / "name") or hw.name)
            for f in sorted(hw.iterdir()):
                m = re.fullmatch(r"(power\d+)_(input|average)|(energy\d+)_input", f.name)
                if not m or _read_text(f) is None:
                    continue
                if m.group(1):
                    if any(x[0] == f"hwmon.{chip}.{m.group(1)}_w" for x in self._files):
                        continue  # power_input and power_average both exist: keep the first (input)
                    self._files.append((f"hwmon.{chip}.{m.group(1)}_w", f, 1e-6))
                else:
                    self._files.append((f"hwmon.{chip}.{m.group(3)}_j", f, 1e-6))
        values, _ = self.read()
        if not values:
            raise SamplerUnavailable("no hwmon temperature, fan, power or energy reading is exposed here")

    @classmethod
    def open(cls, root: Path = Path("/")) -> HwmonSampler:
        return cls(root)

    def describe(self) -> dict[str, Any]:
        return {"counters": {name: {"wrap": None} for name, _, _ in self._files if name.endswith("_j")}}

    def read(self) -> tuple[dict[str, float], tuple[str, ...]]:
        values: dict[str, float] = {}
        for chip, entries in (self._temperatures() or {}).items():
            for n, e in enumerate(entries):
                if e.current is not None:
                    values[f"hwmon.{_slug(chip)}.{_slug(e.label or f'temp{n + 1}')}.temp_c"] = float(e.current)
        for chip, entries in (self._fans() or {}).items():
            for n, e in enumerate(entries):
                values[f"hwmon.{_slug(chip)}.{_slug(e.label or f'fan{n + 1}')}.fan_rpm"] = float(e.current)
        for name, path, scale in self._files:
            text = _read_text(path)
            if text is not None:
                values[name] = int(text) * scale
        return values, ()

    def close(self) -> None:
        pass


class RaplSampler:
    """RAPL energy counters from the powercap tree (intel-rapl zones; AMD Zen uses the same driver).

    Fields: rapl.{zone}.energy_j, with subzones as rapl.{zone}.{subzone}.energy_j. The raw counter is
    recorded; its wrap range (max_energy_range_uj) goes in describe()["counters"]."""

    name = "rapl"

    def __init__(self, root: Path = Path("/")):
        base = root / "sys/class/powercap"
        self._zones: list[tuple[str, Path, float]] = []  # field, energy_uj file, wrap in joules
        problems: list[str] = []
        for zone in sorted(base.glob("intel-rapl:*")) if base.is_dir() else ():
            energy = zone / "energy_uj"
            if not energy.exists():
                continue
            if _read_text(energy) is None:
                problems.append("/" + str(energy.relative_to(root)))
                continue
            parts = zone.name.split(":")[1:]
            name = _slug(_read_text(zone / "name") or zone.name)
            if len(parts) > 1:
                parent = base / f"intel-rapl:{parts[0]}"
                name = f"{_slug(_read_text(parent / 'name') or parent.name)}.{name}"
            max_range = _read_text(zone / "max_energy_range_uj")
            wrap = int(max_range) / 1e6 if max_range and max_range.isdigit() else 2**32 / 1e6
            self._zones.append((f"rapl.{name}.energy_j", energy, wrap))
        if not self._zones:
            if problems:
                raise SamplerUnavailable(
                    f"RAPL energy counters are readable by root only here ({problems[0]}); "
                    "run as root or grant read access to energy_uj"
                )
            raise SamplerUnavailable("no RAPL powercap zone (/sys/class/powercap/intel-rapl:*) on this machine")

    @classmethod
    def open(cls, root: Path = Path("/")) -> RaplSampler:
        return cls(root)

    def describe(self) -> dict[str, Any]:
        return {"counters": {name: {"wrap": wrap} for name, _, wrap in self._zones}}

    def read(self) -> tuple[dict[str, float], tuple[str, ...]]:
        return {name: int(path.read_text()) / 1e6 for name, path, _ in self._zones}, ()

    def close(self) -> None:
        pass


class CpuFreqSampler:
    """CPU clock frequency through psutil: cpu.mhz_mean, cpu.mhz_min, cpu.mhz_max over all CPUs.

    Read once a second whatever the session's rate: psutil reads a file or three per CPU, each read
    hands the interpreter lock back and forth with the benchmark, and clocks change slowly."""

    name = "cpufreq"
    min_interval_s = 1.0

    def __init__(self, cpu_freq: Callable[..., Any] | None = None):
        import psutil

        self._cpu_freq = cpu_freq or psutil.cpu_freq
        values, _ = self.read()
        if not values:
            raise SamplerUnavailable("psutil reports no CPU frequency on this machine")

    @classmethod
    def open(cls) -> CpuFreqSampler:
        return cls()

    def describe(self) -> dict[str, Any]:
        return {"cpus": os.cpu_count()}

    def read(self) -> tuple[dict[str, float], tuple[str, ...]]:
        freqs = [f.current for f in (self._cpu_freq(percpu=True) or []) if f and f.current]
        if not freqs:
            return {}, ()
        return {"cpu.mhz_mean": sum(freqs) / len(freqs), "cpu.mhz_min": min(freqs), "cpu.mhz_max": max(freqs)}, ()

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SensorValue:
    """The shape psutil gives a sensor reading (label, current)."""

    label: str
    current: float


def _hwmon_files(root: Path, kind: str, scale: float) -> dict[str, list[SensorValue]]:
    """Temperatures or fans read from the hwmon files of a recorded tree, grouped like psutil's."""
    out: dict[str, list[SensorValue]] = {}
    base = root / "sys/class/hwmon"
    for hw in sorted(base.glob("hwmon*")) if base.is_dir() else ():
        chip = _read_text(hw / "name") or hw.name
        for f in sorted(hw.glob(f"{kind}*_input")):
            raw = _read_text(f)
            if raw is None or not raw.lstrip("-").isdigit():
                continue
            label = _read_text(hw / f.name.replace("_input", "_label")) or ""
            out.setdefault(chip, []).append(SensorValue(label, int(raw) * scale))
    return out


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quiet(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - shutting down: nothing useful to do with an error
        pass
