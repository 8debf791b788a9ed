"""From readings keyed by SeriesKey to one machine-wide series per Measure.

Each measure is chosen by an ordered table: the first source that has the readings wins (GPU
power before hwmon power before RAPL counters; the hottest GPU before the hottest CPU sensor),
so a machine's power is never the sum of a GPU and the CPU package it is already part of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from gpubench.telemetry.series import Quantity, SeriesKey, Source
from gpubench.telemetry.summary import Measure
from gpubench.telemetry.trace import Reading, Trace

Combine = Callable[[list[float]], float]
Series = list[float | None]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _rapl_packages(keys: Sequence[SeriesKey]) -> list[SeriesKey]:
    """The top-level RAPL zones (subzones are part of them), the packages only where named so."""
    top = [k for k in keys if not k.is_subzone]
    return [k for k in top if k.device.startswith("package")] or top


@dataclass(frozen=True)
class PowerSource:
    """One place power and energy can come from; the first one a trace has is used for both."""

    source: Source
    power_text: Callable[[int], str]  # what the power series is, given how many readings it sums
    from_counters_text: str  # what it is when taken from the energy counters instead
    counters_text: str
    needs_power: bool = False  # its counters alone are not used (they may overlap, as hwmon's per core and per socket)
    counters_of: Callable[[Sequence[SeriesKey]], list[SeriesKey]] = list

    def power_keys(self, keys: Iterable[SeriesKey]) -> list[SeriesKey]:
        return sorted(k for k in keys if k.source is self.source and k.quantity is Quantity.POWER_W)

    def counter_keys(self, keys: Iterable[SeriesKey]) -> list[SeriesKey]:
        return self.counters_of(sorted(k for k in keys if k.source is self.source and k.quantity is Quantity.ENERGY_J))

    def applies(self, keys: Iterable[SeriesKey]) -> bool:
        keys = list(keys)
        return bool(self.power_keys(keys)) or (not self.needs_power and bool(self.counter_keys(keys)))


POWER_SOURCES = (
    PowerSource(Source.GPU, lambda n: f"GPU board power ({n} device{'s' if n > 1 else ''})", "GPU power from GPU energy counters", "GPU energy counters"),
    PowerSource(Source.HWMON, lambda n: "hwmon power inputs", "", "hwmon energy counters", needs_power=True),
    PowerSource(Source.RAPL, lambda n: "RAPL power", "CPU package power from RAPL energy counters", "RAPL package energy counters", counters_of=_rapl_packages),
)

CPU_CHIPS = frozenset({"coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal"})
# the temperature series: the first of these that has a reading, its hottest sensor at each instant
TEMPERATURE_SOURCES: tuple[tuple[str, Callable[[SeriesKey], bool]], ...] = (
    ("hottest GPU", lambda k: k.source is Source.GPU),
    ("hottest CPU sensor (hwmon)", lambda k: k.source is Source.HWMON and k.device in CPU_CHIPS),
    ("hottest hwmon sensor", lambda k: k.source is Source.HWMON),
)
# the other series: (measure, source, quantity, how the devices' readings combine)
OTHER_MEASURES: tuple[tuple[Measure, Source, Quantity, Combine], ...] = (
    (Measure.MEM_TEMP, Source.GPU, Quantity.MEM_TEMP_C, max),
    (Measure.SM_CLOCK, Source.GPU, Quantity.SM_CLOCK_MHZ, _mean),
    (Measure.MEM_CLOCK, Source.GPU, Quantity.MEM_CLOCK_MHZ, _mean),
    (Measure.MEM_POWER, Source.GPU, Quantity.MEM_POWER_W, sum),
    (Measure.POWER_LIMIT, Source.GPU, Quantity.POWER_LIMIT_W, sum),
    (Measure.CPU_CLOCK, Source.CPU, Quantity.MHZ_MEAN, _mean),
    (Measure.FAN, Source.HWMON, Quantity.FAN_RPM, max),
)


def power_source(keys: Iterable[SeriesKey]) -> PowerSource | None:
    keys = list(keys)
    return next((s for s in POWER_SOURCES if s.applies(keys)), None)


def temperature_keys(keys: Iterable[SeriesKey]) -> tuple[str, list[SeriesKey]] | None:
    temps = sorted(k for k in keys if k.quantity is Quantity.TEMP_C)
    for text, wanted in TEMPERATURE_SOURCES:
        chosen = [k for k in temps if wanted(k)]
        if chosen:
            return text, chosen
    return None


def is_thermal(keys: Iterable[SeriesKey]) -> bool:
    """Whether these readings tell if the machine is hot or busy (a power or temperature series)."""
    keys = list(keys)
    return power_source(keys) is not None or temperature_keys(keys) is not None


def unwrap_counter(values: Sequence[float | None], wrap: float | None) -> Series:
    """A raw counter as cumulative energy since its first reading.

    A step backwards is a wraparound when the wrap range is known (add the range), otherwise a
    reset (driver reload): that interval counts zero."""
    out: Series = []
    total, previous = 0.0, None
    for v in values:
        if v is None:
            out.append(None)
            continue
        if previous is not None:
            step = v - previous
            if step < 0:
                step = step + wrap if wrap else 0.0
            total += step
        previous = v
        out.append(total)
    return out


@dataclass(frozen=True)
class Derived:
    t: list[float]
    series: dict[Measure, Series]
    sources: dict[Measure, str]
    counters: dict[SeriesKey, Series]  # unwrapped energy counters chosen for the energy figure
    counter_source: str | None


def _combine(readings: Sequence[Reading], keys: list[SeriesKey], how: Combine) -> Series:
    out: Series = []
    for r in readings:
        present = [r.values[k] for k in keys if k in r.values]
        out.append(how(present) if present else None)
    return out


def _power_from_counters(t: list[float], counters: dict[SeriesKey, Series]) -> Series:
    power: Series = [None]
    for i in range(1, len(t)):
        steps = [c[i] - c[i - 1] for c in counters.values() if c[i] is not None and c[i - 1] is not None]  # type: ignore[operator]
        dt = t[i] - t[i - 1]
        power.append(sum(steps) / dt if steps and dt > 0 else None)
    return power


def derive(trace: Trace) -> Derived:
    readings = trace.readings
    t = [r.t for r in readings]
    keys = {k for r in readings for k in r.values}
    series: dict[Measure, Series] = {}
    sources: dict[Measure, str] = {}
    counters: dict[SeriesKey, Series] = {}
    counter_source = None
    chosen = power_source(keys)
    if chosen is not None:
        power_keys, counter_keys = chosen.power_keys(keys), chosen.counter_keys(keys)
        counters = {k: unwrap_counter([r.values.get(k) for r in readings], trace.counters.get(k)) for k in counter_keys}
        counter_source = chosen.counters_text if counters else None
        if power_keys:
            series[Measure.POWER], sources[Measure.POWER] = _combine(readings, power_keys, sum), chosen.power_text(len(power_keys))
        else:
            series[Measure.POWER], sources[Measure.POWER] = _power_from_counters(t, counters), chosen.from_counters_text
    temperature = temperature_keys(keys)
    if temperature is not None:
        sources[Measure.TEMP], temp_keys = temperature
        series[Measure.TEMP] = _combine(readings, temp_keys, max)
    for measure, source, quantity, how in OTHER_MEASURES:
        matched = sorted(k for k in keys if k.source is source and k.quantity is quantity)
        if matched:
            series[measure] = _combine(readings, matched, how)
    return Derived(t, series, sources, counters, counter_source)
