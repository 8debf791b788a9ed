"""What the sampling thread costs a benchmark: the same fixed work with and without it, interleaved.

The default workload is pure Python, the worst case: it needs the interpreter lock the sampling
thread also takes. The numpy workload spends its time in compiled code that releases the lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from gpubench.errors import UserError
from gpubench.calibrate.paired import Arm, PairedRatios, interleave
from gpubench.results.model import Summary
from gpubench.telemetry.session import Telemetry, open_telemetry

WORKLOADS = ("python", "numpy")


@dataclass(frozen=True)
class Calibration:
    """Runs of the same work without telemetry, with it, and without it again (the A/A control).

    overhead: per round, (with / without - 1) * 100. noise: per round, (control / without - 1) * 100:
    what the machine alone moves the figure by; an overhead inside that spread is not measurable here.
    Both are paired ratios (gpubench.calibrate.paired) of runs made in the same round."""

    workload: str
    hz: float
    samplers: tuple[str, ...]
    rounds: int
    work_units: int
    without_s: tuple[float, ...]
    with_s: tuple[float, ...]
    control_s: tuple[float, ...]
    samples_taken: int
    sampling_s: float  # wall time spent inside the samplers, all samples together
    sampling_cpu_s: float  # CPU time the sampling thread used for them
    rates: dict[str, float] = field(default_factory=dict)  # samples per second of each source

    @property
    def overhead(self) -> Summary:
        return PairedRatios(self.with_s, self.without_s).percent()

    @property
    def noise(self) -> Summary:
        return PairedRatios(self.control_s, self.without_s).percent()

    @property
    def total_pct(self) -> float:
        return (sum(self.with_s) / sum(self.without_s) - 1.0) * 100.0

    @property
    def sample_cost_ms(self) -> float:
        return 1000.0 * self.sampling_s / self.samples_taken if self.samples_taken else 0.0

    @property
    def sample_cpu_ms(self) -> float:
        return 1000.0 * self.sampling_cpu_s / self.samples_taken if self.samples_taken else 0.0

    @property
    def sampler_cpu_pct(self) -> float:
        """CPU the sampling used, as a share of the time the benchmark ran with it."""
        return 100.0 * self.sampling_cpu_s / sum(self.with_s) if self.with_s else 0.0

    @property
    def best_pct(self) -> float:
        """Fastest run with telemetry against fastest without: the runs least disturbed by the machine."""
        return (min(self.with_s) / min(self.without_s) - 1.0) * 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "hz": self.hz,
            "samplers": list(self.samplers),
            "rates_hz": dict(self.rates),
            "rounds": self.rounds,
            "work_units": self.work_units,
            "without_s": [round(x, 6) for x in self.without_s],
            "with_s": [round(x, 6) for x in self.with_s],
            "control_s": [round(x, 6) for x in self.control_s],
            "overhead_pct": _rounded(self.overhead.to_dict()),
            "noise_pct": _rounded(self.noise.to_dict()),
            "overhead_total_pct": round(self.total_pct, 3),
            "overhead_best_pct": round(self.best_pct, 3),
            "sample_wall_ms": round(self.sample_cost_ms, 4),
            "sample_cpu_ms": round(self.sample_cpu_ms, 4),
            "sampler_cpu_pct": round(self.sampler_cpu_pct, 4),
        }


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def _python_work(units: int) -> int:
    acc = 0
    for i in range(units):
        acc = (acc + i * i) % 1_000_003
    return acc


def _numpy_work() -> Callable[[int], Any]:
    import numpy as np

    a = np.random.default_rng(0).random((192, 192))

    def work(units: int) -> float:
        total = 0.0
        for _ in range(units):
            total += float((a @ a)[0, 0])
        return total

    return work


def _sized(work: Callable[[int], Any], seconds: float) -> int:
    """How many units of work take about `seconds` here."""
    units = 1
    while True:
        started = time.perf_counter()
        work(units)
        took = time.perf_counter() - started
        if took >= 0.05:
            return max(1, int(units * seconds / took))
        units *= 4


def calibrate(
    seconds: float = 0.5,
    rounds: int = 20,
    hz: float = 10.0,
    workload: str = "python",
    telemetry: Telemetry | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Calibration:
    if workload not in WORKLOADS:
        raise UserError(f"unknown workload {workload!r}; choose from: {', '.join(WORKLOADS)}")
    if seconds <= 0 or rounds < 1:
        raise UserError("--seconds must be positive and --rounds at least 1")
    work = _python_work if workload == "python" else _numpy_work()
    own = telemetry is None
    tel = telemetry or open_telemetry(None, hz)
    if not tel.samplers:
        raise UserError("no telemetry source is readable here, so there is nothing to measure: " + "; ".join(f"{k}: {v}" for k, v in tel.not_available.items()))
    try:
        units = _sized(work, seconds)
        work(units)  # warm-up, not counted

        def without() -> float:
            started = time.perf_counter()
            work(units)
            return time.perf_counter() - started

        def with_telemetry() -> float:
            with tel.around("calibrate", baseline_s=0.0, cooldown_timeout_s=0.0):
                started = time.perf_counter()
                work(units)
                return time.perf_counter() - started

        count0, spent0, cpu0 = tel.sample_count, tel.sample_seconds, tel.sample_cpu_seconds
        arms = (Arm("without", without), Arm("with", with_telemetry), Arm("control", without))
        ((without_s, with_s, control_s),) = interleave(rounds, [arms], lambda r, c, arm: progress(f"round {r + 1}/{rounds}: {arm.name}"))
        return Calibration(
            workload=workload,
            hz=tel.hz,
            samplers=tuple(tel.samplers),
            rounds=rounds,
            work_units=units,
            without_s=tuple(without_s),
            with_s=tuple(with_s),
            control_s=tuple(control_s),
            samples_taken=tel.sample_count - count0,
            sampling_s=tel.sample_seconds - spent0,
            sampling_cpu_s=tel.sample_cpu_seconds - cpu0,
            rates=tel.rates(),
        )
    finally:
        if own:
            tel.close()
