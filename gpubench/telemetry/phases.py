"""From a trace to the five phases of a benchmark and their summary.

Phases (times in seconds relative to the benchmark's start, so pre-run is negative):
  pre_run    the idle baseline before the start; the enforced power limit is the requested TDP
  ramp_up    from the start to the first sample at the working power level
  execution  from there until power settles: the launch peak and the instant power swings
  sustained  steady state until the end; share of time under each throttle reason
  cooldown   after the end, until temperature and power are back within a band of the baseline
             (or the cooldown timeout)
plus `cool_down_wait` and `pre_warm` when the run asked for them. Without a power reading the
benchmark is one `execution` phase from start to end.

Energy comes from the devices' counters (unwrapped through their wrap range) when the trace has
them, read across the whole window, else from integrating the power samples; the summary says which.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from gpubench.telemetry.samplers import THROTTLE_REASONS
from gpubench.telemetry.trace import Reading, Trace

MAX_SERIES_POINTS = 600
MAX_EVENTS = 200
FILL_GAPS_S = 2.0
NOT_THROTTLING = frozenset({"gpu_idle"})


@dataclass(frozen=True)
class Bands:
    """How close is close enough: for steady state, for being back at the idle baseline."""

    steady_fraction: float = 0.05  # steady: within 5% of the sustained power level ...
    steady_floor_w: float = 5.0  # ... or 5 W, whichever is larger
    steady_samples: int = 5  # ... for this many consecutive samples
    cool_temp_c: float = 2.0  # cooled: temperature within 2 °C of the baseline
    cool_power_fraction: float = 0.10  # and power within 10% of the baseline ...
    cool_power_floor_w: float = 5.0  # ... or 5 W, whichever is larger


@dataclass(frozen=True)
class Baseline:
    power_w: float | None
    temp_c: float | None

    @property
    def known(self) -> bool:
        return self.power_w is not None or self.temp_c is not None


def is_cooled(power_w: float | None, temp_c: float | None, baseline: Baseline, bands: Bands = Bands()) -> bool | None:
    """True when every reading that has a baseline is back within its band; None when none can tell."""
    verdicts = []
    if baseline.temp_c is not None and temp_c is not None:
        verdicts.append(temp_c <= baseline.temp_c + bands.cool_temp_c)
    if baseline.power_w is not None and power_w is not None:
        verdicts.append(power_w <= baseline.power_w + max(bands.cool_power_floor_w, bands.cool_power_fraction * baseline.power_w))
    return all(verdicts) if verdicts else None


# ---------------------------------------------------------------- deriving one series per quantity


def _matching(keys: set[str], pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return sorted(k for k in keys if rx.fullmatch(k))


def _combine(readings: Sequence[Reading], keys: list[str], how: str) -> list[float | None]:
    out: list[float | None] = []
    for r in readings:
        present = [r.values[k] for k in keys if k in r.values]
        if not present:
            out.append(None)
        elif how == "sum":
            out.append(sum(present))
        elif how == "max":
            out.append(max(present))
        else:
            out.append(sum(present) / len(present))
    return out


def unwrap_counter(values: Sequence[float | None], wrap: float | None) -> list[float | None]:
    """A raw counter as cumulative energy since its first reading.

    A step backwards is a wraparound when the wrap range is known (add the range), otherwise a
    reset (driver reload): that interval counts zero."""
    out: list[float | None] = []
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
    series: dict[str, list[float | None]]
    sources: dict[str, str]
    counters: dict[str, list[float | None]]  # unwrapped energy counters chosen for the energy figure
    counter_source: str | None


def derive(trace: Trace) -> Derived:
    readings = trace.readings
    t = [r.t for r in readings]
    keys: set[str] = set()
    for r in readings:
        keys.update(r.values)
    wraps = {k: (v or {}).get("wrap") for k, v in (trace.metadata.get("counters") or {}).items()}
    series: dict[str, list[float | None]] = {}
    sources: dict[str, str] = {}

    def unwrapped(names: list[str]) -> dict[str, list[float | None]]:
        return {k: unwrap_counter([r.values.get(k) for r in readings], wraps.get(k)) for k in names}

    gpu_power = _matching(keys, r"gpu\d+\.power_w")
    hwmon_power = _matching(keys, r"hwmon\.[^.]+\.power\d+_w")
    rapl_top = _matching(keys, r"rapl\.[^.]+\.energy_j")
    rapl_packages = [k for k in rapl_top if k.split(".")[1].startswith("package")] or rapl_top
    gpu_energy = _matching(keys, r"gpu\d+\.energy_j")
    hwmon_energy = _matching(keys, r"hwmon\.[^.]+\.energy\d+_j")

    if gpu_power:
        series["power_w"] = _combine(readings, gpu_power, "sum")
        sources["power_w"] = f"GPU board power ({len(gpu_power)} device{'s' if len(gpu_power) > 1 else ''})"
    elif hwmon_power:
        series["power_w"] = _combine(readings, hwmon_power, "sum")
        sources["power_w"] = "hwmon power inputs"
    elif rapl_packages:
        cumulative = unwrapped(rapl_packages)
        power: list[float | None] = [None]
        for i in range(1, len(readings)):
            steps = [c[i] - c[i - 1] for c in cumulative.values() if c[i] is not None and c[i - 1] is not None]
            dt = t[i] - t[i - 1]
            power.append(sum(steps) / dt if steps and dt > 0 else None)
        series["power_w"] = power
        sources["power_w"] = "CPU package power from RAPL energy counters"

    if gpu_energy:
        counters, counter_source = unwrapped(gpu_energy), "GPU energy counters"
    elif gpu_power:
        counters, counter_source = {}, None  # GPU power without a GPU counter: integrate GPU power, don't mix in the CPU
    elif hwmon_power and hwmon_energy:
        counters, counter_source = unwrapped(hwmon_energy), "hwmon energy counters"
    elif hwmon_power:
        counters, counter_source = {}, None
    elif rapl_packages:
        counters, counter_source = unwrapped(rapl_packages), "RAPL package energy counters"
    else:
        counters, counter_source = {}, None

    gpu_temp = _matching(keys, r"gpu\d+\.temp_c")
    if gpu_temp:
        series["temp_c"] = _combine(readings, gpu_temp, "max")
        sources["temp_c"] = "hottest GPU"
    else:
        hw_temps = _matching(keys, r"hwmon\..+\.temp_c")
        cpu_temps = [k for k in hw_temps if k.split(".")[1] in ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal")]
        if cpu_temps or hw_temps:
            series["temp_c"] = _combine(readings, cpu_temps or hw_temps, "max")
            sources["temp_c"] = "hottest CPU sensor (hwmon)" if cpu_temps else "hottest hwmon sensor"
    for name, pattern, how in (
        ("mem_temp_c", r"gpu\d+\.mem_temp_c", "max"),
        ("sm_clock_mhz", r"gpu\d+\.sm_clock_mhz", "mean"),
        ("mem_clock_mhz", r"gpu\d+\.mem_clock_mhz", "mean"),
        ("mem_power_w", r"gpu\d+\.mem_power_w", "sum"),
        ("power_limit_w", r"gpu\d+\.power_limit_w", "sum"),
        ("cpu_mhz", r"cpu\.mhz_mean", "mean"),
        ("fan_rpm", r"hwmon\..+\.fan_rpm", "max"),
    ):
        matched = _matching(keys, pattern)
        if matched:
            series[name] = _combine(readings, matched, how)
    return Derived(t, series, sources, counters, counter_source)


# ---------------------------------------------------------------- phases


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _indices(t: Sequence[float], a: float, b: float, *, closed_end: bool = False) -> list[int]:
    return [i for i, x in enumerate(t) if a <= x < b or (closed_end and x == b)]


def _find_steady(t: list[float], power: list[float | None], idx: list[int], bands: Bands) -> tuple[float | None, float | None, float | None]:
    """(level, time power first reaches it, time it first stays there) over the execution samples."""
    points = [(t[i], power[i]) for i in idx if power[i] is not None]
    if len(points) < 2 * bands.steady_samples:
        return None, None, None
    last_half = [p for x, p in points if x >= (points[0][0] + points[-1][0]) / 2]
    level = statistics.median(last_half)
    band = max(bands.steady_floor_w, bands.steady_fraction * abs(level))
    reach = next((x for x, p in points if p >= level - band), None)
    steady = None
    k = bands.steady_samples
    for j in range(len(points) - k + 1):
        if points[j][0] >= (reach if reach is not None else points[0][0]) and all(abs(p - level) <= band for _, p in points[j : j + k]):
            steady = points[j][0]
            break
    return level, reach, steady


def _interp(ts: Sequence[float], vs: Sequence[float | None], x: float) -> float | None:
    pts = [(a, b) for a, b in zip(ts, vs) if b is not None]
    if not pts:
        return None
    if x <= pts[0][0]:
        return pts[0][1]
    if x >= pts[-1][0]:
        return pts[-1][1]
    for (a0, b0), (a1, b1) in zip(pts, pts[1:]):
        if a0 <= x <= a1:
            return b0 + (b1 - b0) * (x - a0) / (a1 - a0) if a1 > a0 else b1
    return None


def _spans(ts: Sequence[float], vs: Sequence[float | None], a: float, b: float) -> bool:
    """Whether a counter was read from `a` to `b`, give or take the widest gap between samples: a
    counter that stopped (or started) inside the window would hold its last (first) value there
    and count too little."""
    read = [t for t, v in zip(ts, vs) if v is not None]
    slack = max((t1 - t0 for t0, t1 in zip(ts, ts[1:])), default=0.0)
    return len(read) >= 2 and read[0] <= a + slack and read[-1] >= b - slack


def _integrate(ts: Sequence[float], vs: Sequence[float | None], a: float, b: float) -> float | None:
    pts = [(x, v) for x, v in zip(ts, vs) if v is not None and a < x < b]
    ends = [(a, _interp(ts, vs, a)), (b, _interp(ts, vs, b))]
    if ends[0][1] is None or b <= a:
        return None
    pts = [ends[0], *pts, ends[1]]
    return sum((x1 - x0) * (v0 + v1) / 2 for (x0, v0), (x1, v1) in zip(pts, pts[1:]))


def _reason_share(readings: Sequence[Reading], idx: list[int]) -> dict[str, float]:
    if not idx:
        return {}
    counts: dict[str, int] = {}
    for i in idx:
        for reason in readings[i].reasons:
            if reason not in NOT_THROTTLING:
                counts[reason] = counts.get(reason, 0) + 1
    return {r: round(100.0 * n / len(idx), 1) for r, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def _phase(name: str, a: float, b: float, zero: float, d: Derived, readings: Sequence[Reading], *, closed_end: bool = False) -> dict[str, Any]:
    idx = _indices(d.t, a, b, closed_end=closed_end)
    out: dict[str, Any] = {"name": name, "start": _r(a - zero), "end": _r(b - zero), "duration_s": _r(b - a), "samples": len(idx)}
    for key, label, fns in (
        ("power_w", "power", (("mean_w", statistics.fmean), ("peak_w", max))),
        ("temp_c", "temp", (("mean_c", statistics.fmean), ("max_c", max))),
        ("sm_clock_mhz", "sm_clock", (("mean_mhz", statistics.fmean), ("min_mhz", min))),
        ("cpu_mhz", "cpu", (("mean_mhz", statistics.fmean),)),
    ):
        vals = _present([d.series[key][i] for i in idx]) if key in d.series else []
        for suffix, fn in fns:
            if vals:
                out[f"{label}_{suffix}"] = _r(fn(vals))
    share = _reason_share(readings, idx)
    if share:
        out["throttled_pct_by_reason"] = share
    return out


def summarize(trace: Trace, bytes_moved: float | None = None, bands: Bands = Bands()) -> dict[str, Any]:
    """The JSON-able telemetry summary of one benchmark window (see the module docstring)."""
    meta = trace.metadata
    samplers = list(meta.get("samplers") or [])
    failures = dict(meta.get("failures") or {})
    out: dict[str, Any] = {"samplers": samplers, "status": "none" if not samplers else ("partial" if failures else "ok")}
    if failures:
        out["partial"] = failures
    if meta.get("not_available"):
        out["not_available"] = meta["not_available"]
    for key in ("hz", "cool_down_wait_s", "cool_down", "pre_warm_s", "pre_warm", "notes"):
        if key in meta:
            out[key] = meta[key]
    readings = trace.readings
    marks = trace.marks
    if not samplers or not readings or "start" not in marks:
        return out
    out.setdefault("cool_down_wait_s", None)
    start = marks["start"]
    end = marks.get("end", readings[-1].t)
    d = derive(trace)
    out["samples"] = len(readings)
    out["sources"] = d.sources
    power = d.series.get("power_w")
    temp = d.series.get("temp_c")

    phases: list[dict[str, Any]] = []
    if "cool_down_start" in marks:
        phases.append(_phase("cool_down_wait", marks["cool_down_start"], marks.get("baseline_start", start), start, d, readings))
    baseline_start = marks.get("baseline_start")
    baseline_end = marks.get("pre_warm_start", start)
    baseline_idx = _indices(d.t, baseline_start, baseline_end) if baseline_start is not None else []
    if not baseline_idx:
        baseline_idx = _indices(d.t, -math.inf, start)[-1:] or [0]
    baseline = Baseline(
        power_w=_mean_at(power, baseline_idx),
        temp_c=_mean_at(temp, baseline_idx),
    )
    limit_series = d.series.get("power_limit_w")
    power_limit = _mean_at(limit_series, baseline_idx) if limit_series else None
    if power_limit is None:
        limits = [dev.get("power_limit_w") for devs in (meta.get("devices") or {}).values() for dev in devs if dev.get("power_limit_w")]
        power_limit = sum(limits) if limits else None
    if baseline_start is not None and _indices(d.t, baseline_start, baseline_end):
        pre = _phase("pre_run", baseline_start, baseline_end, start, d, readings)
        pre["idle_power_w"] = _r(baseline.power_w)
        pre["idle_temp_c"] = _r(baseline.temp_c)
        pre["requested_tdp_w"] = _r(power_limit)
        phases.append(pre)
    if "pre_warm_start" in marks:
        phases.append(_phase("pre_warm", marks["pre_warm_start"], start, start, d, readings))

    exec_idx = _indices(d.t, start, end, closed_end=True)
    level, reach, steady = _find_steady(d.t, power, exec_idx, bands) if power else (None, None, None)
    if reach is not None:
        settled = steady if steady is not None else end
        if reach > start:
            phases.append(_phase("ramp_up", start, reach, start, d, readings))
        if settled > reach:
            phases.append(_phase("execution", reach, settled, start, d, readings))
        if steady is not None:
            phases.append(_phase("sustained", steady, end, start, d, readings, closed_end=True))
    else:
        phases.append(_phase("execution", start, end, start, d, readings, closed_end=True))

    cooldown_end_mark = marks.get("cooldown_end", end)
    cool_idx = [i for i in range(len(d.t)) if end < d.t[i] <= cooldown_end_mark]
    cooled_at = None
    for i in cool_idx:
        if is_cooled(power[i] if power else None, temp[i] if temp else None, baseline, bands):
            cooled_at = d.t[i]
            break
    if cool_idx:
        phases.append(_phase("cooldown", end, cooled_at if cooled_at is not None else cooldown_end_mark, start, d, readings, closed_end=True))
    out["phases"] = phases

    exec_power = _present([power[i] for i in exec_idx]) if power else []
    if exec_power:
        peak_i = max((i for i in exec_idx if power[i] is not None), key=lambda i: power[i])  # type: ignore[index,arg-type,return-value]
        out["peak_w"] = _r(power[peak_i])
        out["peak_t"] = _r(d.t[peak_i] - start)
        out["mean_w"] = _r(statistics.fmean(exec_power))
    sustained = next((p for p in phases if p["name"] == "sustained"), None)
    if sustained and "power_mean_w" in sustained:
        out["sustained_mean_w"] = sustained["power_mean_w"]
    elif exec_power:
        out["sustained_mean_w"] = None
        out["sustained_note"] = "power did not settle into a steady state during the benchmark"
    out["baseline"] = {"power_w": _r(baseline.power_w), "temp_c": _r(baseline.temp_c)}
    out["power_limit_w"] = _r(power_limit)
    if temp:
        exec_temp = _present([temp[i] for i in exec_idx])
        if exec_temp:
            out["max_temp_c"] = _r(max(exec_temp))

    energy, source = None, None
    if d.counters and all(_spans(d.t, c, start, end) for c in d.counters.values()):
        energy = sum(_interp(d.t, c, end) - _interp(d.t, c, start) for c in d.counters.values())  # type: ignore[operator]
        source = "counter"
        out["energy_counters"] = d.counter_source
    if energy is None and power:
        energy = _integrate(d.t, power, start, end)
        source = "integrated" if energy is not None else None
        if energy is not None:
            out["energy_note"] = f"integrated from sampled power ({d.sources.get('power_w')}); no energy counter"
    out["energy_j"] = _r(energy)
    out["energy_source"] = source
    out["j_per_gb"] = _r(energy / (bytes_moved / 1e9), 4) if energy is not None and bytes_moved else None

    throttle_idx = _indices(d.t, steady, end, closed_end=True) if steady is not None else exec_idx
    out["throttled_pct_by_reason"] = _reason_share(readings, throttle_idx)
    out["throttled_pct_over"] = "sustained" if steady is not None else "execution"

    if not cool_idx:
        out["time_to_cool_s"] = None
        out["cooldown"] = "not measured" + ("" if baseline.known else ": no temperature or power reading")
    elif cooled_at is not None:
        out["time_to_cool_s"] = _r(cooled_at - end)
        out["cooldown"] = "cooled"
    else:
        out["time_to_cool_s"] = None
        out["cooldown"] = f"did not cool within {cooldown_end_mark - end:g}s"

    out["series"] = _downsample(d, start)
    out["events"] = _throttle_events(readings, start)
    return out


def _mean_at(series: list[float | None] | None, idx: list[int]) -> float | None:
    if not series:
        return None
    vals = _present([series[i] for i in idx])
    return statistics.fmean(vals) if vals else None


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


def _downsample(d: Derived, zero: float) -> dict[str, list[float | None]]:
    n = len(d.t)
    buckets = max(1, math.ceil(n / MAX_SERIES_POINTS))
    groups = [list(range(i, min(i + buckets, n))) for i in range(0, n, buckets)]
    out: dict[str, list[float | None]] = {"t": [_r(statistics.fmean(d.t[i] for i in g) - zero) for g in groups]}  # type: ignore[misc]
    for name, values in d.series.items():
        points = [_r(statistics.fmean(v), 2) if (v := _present([values[i] for i in g])) else None for g in groups]
        out[name] = _fill_short_gaps(out["t"], points, FILL_GAPS_S)  # type: ignore[arg-type]
    return out


def _fill_short_gaps(t: list[float], values: list[float | None], max_gap_s: float) -> list[float | None]:
    """Carry a value forward over short gaps (a source read at a lower rate than the session's)."""
    out: list[float | None] = []
    last: tuple[float, float] | None = None
    for x, v in zip(t, values):
        if v is not None:
            last = (x, v)
            out.append(v)
        elif last is not None and x - last[0] <= max_gap_s:
            out.append(last[1])
        else:
            out.append(None)
    return out


def _throttle_events(readings: Sequence[Reading], zero: float, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    """When each throttle reason starts; a reason that flickers (gone for less than quiet_s) continues its event."""
    events: list[dict[str, Any]] = []
    last_seen: dict[str, float] = {}
    for r in readings:
        for reason in r.reasons:
            if reason not in THROTTLE_REASONS and not reason.startswith("unknown"):
                continue
            seen = last_seen.get(reason)
            if (seen is None or r.t - seen > quiet_s) and len(events) < MAX_EVENTS:
                events.append({"t": _r(r.t - zero), "reason": reason})
            last_seen[reason] = r.t
    return events
