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
import statistics
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from gpubench.telemetry.derive import Derived, derive
from gpubench.telemetry.samplers.base import is_throttling
from gpubench.telemetry.summary import Baseline, EnergySource, Measure, Phase, PhaseName, TelemetryStatus, TelemetrySummary, ThrottleEvent, Timeline
from gpubench.telemetry.trace import Reading, Trace

MAX_SERIES_POINTS = 600
MAX_EVENTS = 200
FILL_GAPS_S = 2.0


@dataclass(frozen=True)
class Bands:
    """How close is close enough: for steady state, for being back at the idle baseline."""

    steady_fraction: float = 0.05  # steady: within 5% of the sustained power level ...
    steady_floor_w: float = 5.0  # ... or 5 W, whichever is larger
    steady_samples: int = 5  # ... for this many consecutive samples
    cool_temp_c: float = 2.0  # cooled: temperature within 2 °C of the baseline
    cool_power_fraction: float = 0.10  # and power within 10% of the baseline ...
    cool_power_floor_w: float = 5.0  # ... or 5 W, whichever is larger


def is_cooled(power_w: float | None, temp_c: float | None, baseline: Baseline, bands: Bands = Bands()) -> bool | None:
    """True when every reading that has a baseline is back within its band; None when none can tell."""
    verdicts = []
    if baseline.temp_c is not None and temp_c is not None:
        verdicts.append(temp_c <= baseline.temp_c + bands.cool_temp_c)
    if baseline.power_w is not None and power_w is not None:
        verdicts.append(power_w <= baseline.power_w + max(bands.cool_power_floor_w, bands.cool_power_fraction * baseline.power_w))
    return all(verdicts) if verdicts else None


# ---------------------------------------------------------------- facts of one window


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _indices(t: Sequence[float], a: float, b: float, *, closed_end: bool = False) -> list[int]:
    return [i for i, x in enumerate(t) if a <= x < b or (closed_end and x == b)]


def _find_steady(t: list[float], power: list[float | None], idx: list[int], bands: Bands) -> tuple[float | None, float | None]:
    """(time power first reaches its sustained level, time it first stays there) over the execution samples."""
    points = [(t[i], power[i]) for i in idx if power[i] is not None]
    if len(points) < 2 * bands.steady_samples:
        return None, None
    last_half = [p for x, p in points if x >= (points[0][0] + points[-1][0]) / 2]
    level = statistics.median(last_half)
    band = max(bands.steady_floor_w, bands.steady_fraction * abs(level))
    reach = next((x for x, p in points if p >= level - band), None)
    k = bands.steady_samples
    after = reach if reach is not None else points[0][0]
    steady = next(
        (points[j][0] for j in range(len(points) - k + 1) if points[j][0] >= after and all(abs(p - level) <= band for _, p in points[j : j + k])),
        None,
    )
    return reach, steady


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
            if is_throttling(reason):
                counts[reason] = counts.get(reason, 0) + 1
    return {r: round(100.0 * n / len(idx), 1) for r, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def _mean_at(series: list[float | None] | None, idx: list[int]) -> float | None:
    vals = _present([series[i] for i in idx]) if series else []
    return statistics.fmean(vals) if vals else None


@dataclass(frozen=True)
class Marks:
    """When each part of the window began (the session's marks), in trace time."""

    start: float
    end: float
    cooldown_end: float
    baseline_start: float | None = None
    cool_down_start: float | None = None
    pre_warm_start: float | None = None

    @classmethod
    def of(cls, trace: Trace) -> Marks:
        m = trace.marks
        end = m.get("end", trace.readings[-1].t)
        return cls(m["start"], end, m.get("cooldown_end", end), m.get("baseline_start"), m.get("cool_down_start"), m.get("pre_warm_start"))

    @property
    def baseline_end(self) -> float:
        return self.pre_warm_start if self.pre_warm_start is not None else self.start


@dataclass(frozen=True)
class Facts:
    """What the trace says about one window, read once; the summary is decided from these."""

    d: Derived
    readings: Sequence[Reading]
    marks: Marks
    baseline: Baseline
    power_limit_w: float | None
    exec_idx: list[int]
    reach: float | None  # when power first reached its sustained level
    steady: float | None  # when it first stayed there
    cool_idx: list[int]  # samples after the end, up to the cooldown mark
    cooled_at: float | None

    @property
    def power(self) -> list[float | None]:
        return self.d.series.get(Measure.POWER) or []

    @property
    def temp(self) -> list[float | None]:
        return self.d.series.get(Measure.TEMP) or []

    def phase(self, name: PhaseName, a: float, b: float, *, closed_end: bool = False, **extra: float | None) -> Phase:
        idx = _indices(self.d.t, a, b, closed_end=closed_end)
        figures: dict[str, float | None] = {}
        for measure, fns in PHASE_MEASURES.items():
            vals = _present([self.d.series[measure][i] for i in idx]) if measure in self.d.series else []
            figures.update({figure: _r(fn(vals)) for figure, fn in fns} if vals else {})
        zero = self.marks.start
        return Phase(name.value, _r(a - zero), _r(b - zero), _r(b - a), len(idx), throttled_pct_by_reason=_reason_share(self.readings, idx), **figures, **extra)  # type: ignore[arg-type]


# A phase's figures: the series each is taken from and how.
PHASE_MEASURES: dict[Measure, tuple[tuple[str, Callable[[list[float]], float]], ...]] = {
    Measure.POWER: (("power_mean_w", statistics.fmean), ("power_peak_w", max)),
    Measure.TEMP: (("temp_mean_c", statistics.fmean), ("temp_max_c", max)),
    Measure.SM_CLOCK: (("sm_clock_mean_mhz", statistics.fmean), ("sm_clock_min_mhz", min)),
    Measure.CPU_CLOCK: (("cpu_mean_mhz", statistics.fmean),),
}


def read_facts(trace: Trace, bands: Bands) -> Facts:
    d = derive(trace)
    marks = Marks.of(trace)
    baseline_idx = _indices(d.t, marks.baseline_start, marks.baseline_end) if marks.baseline_start is not None else []
    baseline_idx = baseline_idx or _indices(d.t, -math.inf, marks.start)[-1:] or [0]
    power, temp = d.series.get(Measure.POWER), d.series.get(Measure.TEMP)
    baseline = Baseline(_mean_at(power, baseline_idx), _mean_at(temp, baseline_idx))
    exec_idx = _indices(d.t, marks.start, marks.end, closed_end=True)
    reach, steady = _find_steady(d.t, power, exec_idx, bands) if power else (None, None)
    cool_idx = [i for i, x in enumerate(d.t) if marks.end < x <= marks.cooldown_end]
    cooled_at = next((d.t[i] for i in cool_idx if is_cooled(power[i] if power else None, temp[i] if temp else None, baseline, bands)), None)
    return Facts(d, trace.readings, marks, baseline, _power_limit(trace, d, baseline_idx), exec_idx, reach, steady, cool_idx, cooled_at)


def _power_limit(trace: Trace, d: Derived, baseline_idx: list[int]) -> float | None:
    """The enforced power limit at idle (the requested TDP), else the one the devices described."""
    limit = _mean_at(d.series.get(Measure.POWER_LIMIT), baseline_idx)
    if limit is None:
        limits = [dev.get("power_limit_w") for devs in (trace.metadata.get("devices") or {}).values() for dev in devs if dev.get("power_limit_w")]
        limit = sum(limits) if limits else None
    return limit


# ---------------------------------------------------------------- deciding the summary


def summarize(trace: Trace, bytes_moved: float | None = None, bands: Bands = Bands()) -> TelemetrySummary:
    """The telemetry summary of one benchmark window (see the module docstring)."""
    head = _header(trace.metadata)
    if not head.samplers or not trace.readings or "start" not in trace.marks:
        return head
    f = read_facts(trace, bands)
    phases = _phases(f)
    time_to_cool_s, cooldown = _cooldown(f)
    return replace(
        head,
        samples=len(f.readings),
        sources=dict(f.d.sources),
        phases=phases,
        baseline=Baseline(_r(f.baseline.power_w), _r(f.baseline.temp_c)),
        power_limit_w=_r(f.power_limit_w),
        max_temp_c=_r(max(exec_temp)) if (exec_temp := _present([f.temp[i] for i in f.exec_idx] if f.temp else [])) else None,
        throttled_pct_by_reason=_reason_share(f.readings, _indices(f.d.t, f.steady, f.marks.end, closed_end=True) if f.steady is not None else f.exec_idx),
        throttled_pct_over=(PhaseName.SUSTAINED if f.steady is not None else PhaseName.EXECUTION).value,
        time_to_cool_s=time_to_cool_s,
        cooldown=cooldown,
        series=_downsample(f.d, f.marks.start),
        events=_throttle_events(f.readings, f.marks.start),
        **_power_figures(f, phases),
        **_energy(f, bytes_moved),
    )


def _header(meta: dict[str, Any]) -> TelemetrySummary:
    """What the session says of itself: its sources, what failed, the waits it made."""
    samplers = tuple(meta.get("samplers") or ())
    failures = dict(meta.get("failures") or {})
    status = TelemetryStatus.NONE if not samplers else (TelemetryStatus.PARTIAL if failures else TelemetryStatus.OK)
    return TelemetrySummary(
        samplers=samplers,
        status=status,
        partial=failures,
        not_available=dict(meta.get("not_available") or {}),
        hz=meta.get("hz"),
        cool_down=meta.get("cool_down"),
        cool_down_wait_s=meta.get("cool_down_wait_s"),
        pre_warm=meta.get("pre_warm"),
        pre_warm_s=meta.get("pre_warm_s"),
    )


def _phases(f: Facts) -> tuple[Phase, ...]:
    m = f.marks
    phases: list[Phase] = []
    if m.cool_down_start is not None:
        phases.append(f.phase(PhaseName.COOL_DOWN_WAIT, m.cool_down_start, m.baseline_start if m.baseline_start is not None else m.start))
    if m.baseline_start is not None and _indices(f.d.t, m.baseline_start, m.baseline_end):
        idle = {"idle_power_w": _r(f.baseline.power_w), "idle_temp_c": _r(f.baseline.temp_c), "requested_tdp_w": _r(f.power_limit_w)}
        phases.append(f.phase(PhaseName.PRE_RUN, m.baseline_start, m.baseline_end, **idle))
    if m.pre_warm_start is not None:
        phases.append(f.phase(PhaseName.PRE_WARM, m.pre_warm_start, m.start))
    phases += _running_phases(f)
    if f.cool_idx:
        phases.append(f.phase(PhaseName.COOLDOWN, m.end, f.cooled_at if f.cooled_at is not None else m.cooldown_end, closed_end=True))
    return tuple(phases)


def _running_phases(f: Facts) -> list[Phase]:
    """ramp_up until power reaches its level, execution until it settles, sustained to the end; one
    execution phase when power never reached a level (or there is no power reading)."""
    m, reach, steady = f.marks, f.reach, f.steady
    if reach is None:
        return [f.phase(PhaseName.EXECUTION, m.start, m.end, closed_end=True)]
    settled = steady if steady is not None else m.end
    spans = (
        (PhaseName.RAMP_UP, m.start, reach, reach > m.start),
        (PhaseName.EXECUTION, reach, settled, settled > reach),
        (PhaseName.SUSTAINED, settled, m.end, steady is not None),
    )
    return [f.phase(name, a, b, closed_end=name is PhaseName.SUSTAINED) for name, a, b, wanted in spans if wanted]


def _power_figures(f: Facts, phases: Sequence[Phase]) -> dict[str, Any]:
    power = f.power
    exec_power = [i for i in f.exec_idx if power and power[i] is not None]
    if not exec_power:
        return {}
    peak_i = max(exec_power, key=lambda i: power[i])  # type: ignore[arg-type,return-value]
    sustained = next((p for p in phases if p.name == PhaseName.SUSTAINED), None)
    out = {
        "peak_w": _r(power[peak_i]),
        "peak_t": _r(f.d.t[peak_i] - f.marks.start),
        "mean_w": _r(statistics.fmean(power[i] for i in exec_power)),  # type: ignore[misc]
        "sustained_mean_w": sustained.power_mean_w if sustained else None,
    }
    if out["sustained_mean_w"] is None:
        out["sustained_note"] = "power did not settle into a steady state during the benchmark"
    return out


def _energy(f: Facts, bytes_moved: float | None) -> dict[str, Any]:
    """From the counters when every one was read across the whole window, else integrated power."""
    d, start, end = f.d, f.marks.start, f.marks.end
    out: dict[str, Any] = {}
    if d.counters and all(_spans(d.t, c, start, end) for c in d.counters.values()):
        energy = sum(_interp(d.t, c, end) - _interp(d.t, c, start) for c in d.counters.values())  # type: ignore[operator]
        out = {"energy_j": energy, "energy_source": EnergySource.COUNTER, "energy_counters": d.counter_source}
    elif f.power and (energy := _integrate(d.t, f.power, start, end)) is not None:
        note = f"integrated from sampled power ({d.sources.get(Measure.POWER)}); no energy counter"
        out = {"energy_j": energy, "energy_source": EnergySource.INTEGRATED, "energy_note": note}
    if out and bytes_moved:
        out["j_per_gb"] = _r(out["energy_j"] / (bytes_moved / 1e9), 4)
    if out:
        out["energy_j"] = _r(out["energy_j"])
    return out


def _cooldown(f: Facts) -> tuple[float | None, str]:
    """(time to cool, what the cooldown found)."""
    if not f.cool_idx:
        return None, "not measured" + ("" if f.baseline.known else ": no temperature or power reading")
    if f.cooled_at is not None:
        return _r(f.cooled_at - f.marks.end), "cooled"
    return None, f"did not cool within {f.marks.cooldown_end - f.marks.end:g}s"


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


def _downsample(d: Derived, zero: float) -> Timeline:
    n = len(d.t)
    buckets = max(1, math.ceil(n / MAX_SERIES_POINTS))
    groups = [list(range(i, min(i + buckets, n))) for i in range(0, n, buckets)]
    t = [round(statistics.fmean(d.t[i] for i in g) - zero, 3) for g in groups]
    values = {}
    for measure, series in d.series.items():
        points = [_r(statistics.fmean(v), 2) if (v := _present([series[i] for i in g])) else None for g in groups]
        values[measure] = tuple(_fill_short_gaps(t, points, FILL_GAPS_S))
    return Timeline(tuple(t), values)


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


def _throttle_events(readings: Sequence[Reading], zero: float, quiet_s: float = 1.0) -> tuple[ThrottleEvent, ...]:
    """When each throttle reason starts; a reason that flickers (gone for less than quiet_s) continues its event."""
    events: list[ThrottleEvent] = []
    last_seen: dict[str, float] = {}
    for r in readings:
        for reason in r.reasons:
            if not is_throttling(reason):
                continue
            seen = last_seen.get(reason)
            if (seen is None or r.t - seen > quiet_s) and len(events) < MAX_EVENTS:
                events.append(ThrottleEvent(round(r.t - zero, 3), reason))
            last_seen[reason] = r.t
    return tuple(events)
