"""What the reports show of a run's telemetry: one summary per benchmark, a row per case with its
peak and sustained power, energy, energy per GB, the largest share of time throttled and the
time to cool, its phases as one strip; a chart only where a series varies; the sources that could
not be read, once per report.

Everything here is read from each result's TelemetrySummary, and the benchmark's figures are
computed from the rows it shows (its peak is the largest row's, its energy their sum), so that no
number contradicts another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gpubench.report import formats
from gpubench.results.model import Result, Run
from gpubench.telemetry.summary import Measure, PhaseName, TelemetryStatus, TelemetrySummary

PHASE_TITLES = {
    PhaseName.COOL_DOWN_WAIT.value: "cool-down wait", PhaseName.PRE_RUN.value: "pre-run", PhaseName.PRE_WARM.value: "pre-warm",
    PhaseName.RAMP_UP.value: "ramp-up", PhaseName.EXECUTION.value: "execution", PhaseName.SUSTAINED.value: "sustained",
    PhaseName.COOLDOWN.value: "cooldown",
}
MEASURE_TITLES = {
    Measure.POWER: "power", Measure.TEMP: "temperature", Measure.MEM_TEMP: "memory temperature", Measure.SM_CLOCK: "SM clock",
    Measure.MEM_CLOCK: "memory clock", Measure.MEM_POWER: "memory power", Measure.POWER_LIMIT: "power limit",
    Measure.CPU_CLOCK: "CPU clock", Measure.FAN: "fan speed",
}
STEADY = 0.02  # a series whose range stays within 2% of its level does not vary: nothing to draw


@dataclass(frozen=True)
class Span:
    name: str  # as PHASE_TITLES says it
    start: float  # fraction of the window
    width: float
    seconds: float


@dataclass(frozen=True)
class CaseTelemetry:
    case: str
    summary: TelemetrySummary

    @property
    def throttled(self) -> tuple[str, float] | None:
        """The throttle reason that held longest, with its share of time (%), where any did."""
        shares = {k: v for k, v in self.summary.throttled_pct_by_reason.items() if v > 0}
        return max(shares.items(), key=lambda kv: kv[1]) if shares else None

    @property
    def strip(self) -> tuple[Span, ...]:
        phases = [p for p in self.summary.phases if p.end > p.start]
        if not phases:
            return ()
        first, last = phases[0].start, phases[-1].end
        window = (last - first) or 1.0
        return tuple(Span(PHASE_TITLES.get(p.name, p.name), (p.start - first) / window, (p.end - p.start) / window, p.end - p.start)
                     for p in phases)

    @property
    def varying(self) -> tuple[Measure, ...]:
        """The series that move by more than STEADY of their level over the window."""
        series = self.summary.series
        if series is None or len(series.t) < 2:
            return ()
        out = []
        for measure, values in series.values.items():
            known = [v for v in values if v is not None]
            if measure is not Measure.POWER_LIMIT and len(known) > 1 and max(known) - min(known) > STEADY * max(abs(v) for v in known):
                out.append(measure)
        return tuple(out)


# a case's row, by the column name the reports give it: what the column reads (None: not known)
ROW_FIGURES: dict[str, Callable[[CaseTelemetry], object]] = {
    "peak": lambda c: c.summary.peak_w,
    "sustained": lambda c: c.summary.sustained_mean_w,
    "energy": lambda c: c.summary.energy_j,
    "per_gb": lambda c: c.summary.j_per_gb,
    "throttled": lambda c: c.throttled,
    "cool": lambda c: c.summary.time_to_cool_s,
}


@dataclass(frozen=True)
class BenchmarkTelemetry:
    benchmark: str
    cases: tuple[CaseTelemetry, ...]

    @property
    def sampled(self) -> tuple[Measure, ...]:
        """What the window's series hold, in the order Measure lists them."""
        found = {m for c in self.cases if c.summary.series for m in c.summary.series.values}
        return tuple(m for m in Measure if m in found)

    @property
    def peak(self) -> CaseTelemetry | None:
        with_peak = [c for c in self.cases if c.summary.peak_w is not None]
        return max(with_peak, key=lambda c: c.summary.peak_w) if with_peak else None  # type: ignore[arg-type, return-value]

    @property
    def energy_j(self) -> float | None:
        """The energy of the cases that have it, summed (the rows' own figures)."""
        known = [c.summary.energy_j for c in self.cases if c.summary.energy_j is not None]
        return sum(known) if known else None

    @property
    def energy_cases(self) -> int:
        return sum(1 for c in self.cases if c.summary.energy_j is not None)

    @property
    def columns(self) -> tuple[str, ...]:
        """The row figures (ROW_FIGURES) some case has."""
        return tuple(name for name, read in ROW_FIGURES.items() if any(read(c) is not None for c in self.cases))

    @property
    def drawn(self) -> CaseTelemetry | None:
        """The case whose series are drawn: the one with the highest peak (else the first) among
        those where a series varies; None where none does."""
        moving = [c for c in self.cases if c.varying]
        if not moving:
            return None
        return max(moving, key=lambda c: c.summary.peak_w if c.summary.peak_w is not None else float("-inf"))


@dataclass(frozen=True)
class RunTelemetry:
    benchmarks: tuple[BenchmarkTelemetry, ...]
    unreadable: tuple[tuple[str, str], ...]  # (source, why), each source once
    stopped: tuple[tuple[str, str, tuple[str, ...]], ...]  # (source, why, cases) of samplers that stopped part way

    @property
    def any(self) -> bool:
        return bool(self.benchmarks or self.unreadable)


def _sampled(result: Result) -> TelemetrySummary | None:
    t = result.telemetry
    return t if t is not None and (t.status is not TelemetryStatus.NONE or t.series is not None) else None


def of_run(run: Run) -> RunTelemetry:
    benchmarks: dict[str, list[CaseTelemetry]] = {}
    unreadable: dict[str, str] = {}
    stopped: dict[tuple[str, str], list[str]] = {}
    for result in run.results:
        if result.telemetry is None:
            continue
        for source, why in result.telemetry.not_available.items():
            unreadable.setdefault(source, why)
        for source, why in result.telemetry.partial.items():
            stopped.setdefault((source, why), []).append(f"{result.benchmark} {result.case}")
        summary = _sampled(result)
        if summary is not None:
            benchmarks.setdefault(result.benchmark, []).append(CaseTelemetry(result.case, summary))
    return RunTelemetry(tuple(BenchmarkTelemetry(b, tuple(cases)) for b, cases in benchmarks.items()),
                        tuple(sorted(unreadable.items())), tuple((s, w, tuple(c)) for (s, w), c in stopped.items()))


def sampled_text(bench: BenchmarkTelemetry) -> str:
    """'power, temperature, SM clock' or 'CPU clock only'."""
    names = [MEASURE_TITLES[m] for m in bench.sampled]
    if not names:
        return "no series"
    return ", ".join(names) + (" only" if len(names) == 1 else "")


def energy_text(joules: float) -> str:
    """A total of several cases: in kJ with three digits from 1,000 J on, so that the sum of the
    rows as shown (each rounded) reads the same."""
    return f"{joules / 1000:.3g} kJ" if joules >= 1000 else f"{formats.number(joules)} J"


def line(bench: BenchmarkTelemetry) -> str:
    """The benchmark's summary in one line, as the terminal prints it under its table."""
    fmt = formats.number
    parts = [f"sampled {sampled_text(bench)}"]
    peak = bench.peak
    if peak is not None:
        parts.append(f"peak {fmt(peak.summary.peak_w)} W ({peak.case})")
    if bench.energy_j is not None:
        parts.append(f"energy {energy_text(bench.energy_j)} over {bench.energy_cases} case{'s' if bench.energy_cases != 1 else ''}")
    throttled = [(c.case, c.throttled) for c in bench.cases if c.throttled]
    if throttled:
        case, (reason, pct) = max(throttled, key=lambda x: x[1][1])
        parts.append(f"throttled up to {pct:.0f}% ({reason}, {case})")
    if "peak" not in bench.columns and "energy" not in bench.columns:
        parts.append("no power or energy reading")
    return "telemetry: " + "; ".join(parts)
