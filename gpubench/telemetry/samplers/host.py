"""The host's own sensors: hwmon (temperatures, fans, power, energy), RAPL energy counters, CPU clocks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gpubench.telemetry.samplers.base import SamplerUnavailable, Values, read_text, slug
from gpubench.telemetry.series import Quantity, SeriesKey

# hwmon files read directly: the file's prefix, the quantity, the suffixes tried (the first wins)
HWMON_CHANNELS = (("power", Quantity.POWER_W, ("_input", "_average")), ("energy", Quantity.ENERGY_J, ("_input",)))
MICRO = 1e-6


class HwmonSampler:
    """hwmon: temperatures and fans through psutil, power and energy from the hwmon files.

    Keys: SeriesKey.hwmon(chip, label, temp_c | fan_rpm), and (chip, powerN, power_w) from
    powerN_input or _average (microwatts), (chip, energyN, energy_j) from energyN_input
    (microjoules, a counter)."""

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
        self._files = _channel_files(root / "sys/class/hwmon")
        values, _ = self.read()
        if not values:
            raise SamplerUnavailable("no hwmon temperature, fan, power or energy reading is exposed here")

    @classmethod
    def open(cls, root: Path = Path("/")) -> HwmonSampler:
        return cls(root)

    def describe(self) -> dict[str, Any]:
        return {"counters": {key: None for key in self._files if key.quantity is Quantity.ENERGY_J}}

    def read(self) -> tuple[Values, tuple[str, ...]]:
        values: Values = {}
        for quantity, sensors, default in ((Quantity.TEMP_C, self._temperatures, "temp"), (Quantity.FAN_RPM, self._fans, "fan")):
            for chip, entries in (sensors() or {}).items():
                for n, e in enumerate(entries):
                    if e.current is not None:
                        values[SeriesKey.hwmon(slug(chip), slug(e.label or f"{default}{n + 1}"), quantity)] = float(e.current)
        for key, path in self._files.items():
            text = read_text(path)
            if text is not None:
                values[key] = int(text) * MICRO
        return values, ()

    def close(self) -> None:
        pass


def _channel_files(base: Path) -> dict[SeriesKey, Path]:
    """The readable powerN and energyN files of every hwmon chip, by the key they are read under."""
    files: dict[SeriesKey, Path] = {}
    for hw in sorted(base.glob("hwmon*")) if base.is_dir() else ():
        chip = slug(read_text(hw / "name") or hw.name)
        for prefix, quantity, suffixes in HWMON_CHANNELS:
            for channel in sorted({f.name.split("_", 1)[0] for f in hw.glob(f"{prefix}*_*")}):
                if not channel[len(prefix) :].isdigit():
                    continue
                readable = [hw / f"{channel}{s}" for s in suffixes if read_text(hw / f"{channel}{s}") is not None]
                if readable:
                    files[SeriesKey.hwmon(chip, channel, quantity)] = readable[0]
    return files


class RaplSampler:
    """RAPL energy counters from the powercap tree (intel-rapl zones; AMD Zen uses the same driver).

    Keys: SeriesKey.rapl(zone) and, for subzones, SeriesKey.rapl("zone.subzone"). The raw counter is
    recorded; its wrap range (max_energy_range_uj) goes in describe()["counters"]."""

    name = "rapl"

    def __init__(self, root: Path = Path("/")):
        base = root / "sys/class/powercap"
        self._zones: list[tuple[SeriesKey, Path, float]] = []  # key, energy_uj file, wrap in joules
        problems: list[str] = []
        for zone in sorted(base.glob("intel-rapl:*")) if base.is_dir() else ():
            energy = zone / "energy_uj"
            if not energy.exists():
                continue
            if read_text(energy) is None:
                problems.append("/" + str(energy.relative_to(root)))
                continue
            parts = zone.name.split(":")[1:]
            name = slug(read_text(zone / "name") or zone.name)
            if len(parts) > 1:
                parent = base / f"intel-rapl:{parts[0]}"
                name = f"{slug(read_text(parent / 'name') or parent.name)}.{name}"
            max_range = read_text(zone / "max_energy_range_uj")
            wrap = int(max_range) * MICRO if max_range and max_range.isdigit() else 2**32 * MICRO
            self._zones.append((SeriesKey.rapl(name), energy, wrap))
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
        return {"counters": {key: wrap for key, _, wrap in self._zones}}

    def read(self) -> tuple[Values, tuple[str, ...]]:
        return {key: int(path.read_text()) * MICRO for key, path, _ in self._zones}, ()

    def close(self) -> None:
        pass


class CpuFreqSampler:
    """CPU clock frequency through psutil: SeriesKey.cpu(mhz_mean | mhz_min | mhz_max) over all CPUs.

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

    def read(self) -> tuple[Values, tuple[str, ...]]:
        freqs = [f.current for f in (self._cpu_freq(percpu=True) or []) if f and f.current]
        if not freqs:
            return {}, ()
        figures = {Quantity.MHZ_MEAN: sum(freqs) / len(freqs), Quantity.MHZ_MIN: min(freqs), Quantity.MHZ_MAX: max(freqs)}
        return {SeriesKey.cpu(q): v for q, v in figures.items()}, ()

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
        chip = read_text(hw / "name") or hw.name
        for f in sorted(hw.glob(f"{kind}*_input")):
            raw = read_text(f)
            if raw is None or not raw.lstrip("-").isdigit():
                continue
            label = read_text(hw / f.name.replace("_input", "_label")) or ""
            out.setdefault(chip, []).append(SensorValue(label, int(raw) * scale))
    return out
