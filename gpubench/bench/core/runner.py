"""The run pipeline: plan benchmarks from the probe, repeat each case until its spread settles,
and hand every result to a sink the moment it ends. It never knows which benchmark it runs."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from gpubench.bench.core import hostspeed
from gpubench.bench.core import registry
from gpubench.bench.core.interface import BenchFailure, Benchmark, Case, Context, Sample, Waived
from gpubench.bench.core.params import check_options
from gpubench.bench.core.scratch import ScratchDir
from gpubench.bench.core.settings import PIPELINE_SETTINGS, RunSettings, Setting, SettingError, honoured
from gpubench.errors import UserError, unexpected
from gpubench.probe.model import Profile
from gpubench.results.model import HOST_SPEED_KEY, ROUND_KEY, ROUNDS_SECONDS_KEY, WHOLE_BENCHMARK, Result, ResultStatus
from gpubench.results.stats import summarize

SIZES = ("quick", "default", "full")


@dataclass(frozen=True)
class RepeatPolicy:
    """Measure every case in `rounds` rounds: each round visits every case once, so the rounds of
    one case lie a whole sweep of the plan apart and show how far the machine moves in between (a
    comparison tests rounds, not back-to-back samples). Within a round: warm up, then repeat while
    the relative spread (IQR / median) is above the target, up to a cap."""

    rounds: int = 3
    warmup: int = 1
    min_reps: int = 3  # per round
    max_reps: int = 5  # per round
    target_spread: float = 0.05
    case_timeout_s: float = 300.0  # per case, all its rounds together

    @classmethod
    def for_size(cls, size: str) -> RepeatPolicy:
        if size == "quick":
            return cls(rounds=3, warmup=1, min_reps=2, max_reps=3, target_spread=0.10, case_timeout_s=60.0)
        if size == "full":
            return cls(rounds=5, warmup=2, min_reps=4, max_reps=8, target_spread=0.03, case_timeout_s=1200.0)
        return cls()

    @property
    def round_timeout_s(self) -> float:
        return self.case_timeout_s / self.rounds


def merge_round(earlier: Result | None, result: Result, number: int) -> Result:
    """A case's result after round `number`: the earlier rounds' samples and this round's, each
    sample's metrics naming its round; status, reason and extras from this round."""
    tagged = tuple({**m, ROUND_KEY: number} for m in result.sample_metrics)
    reason = f"round {number}: {result.reason}" if result.reason and number > 1 else result.reason
    seconds = max(0.0, result.ended - result.started) + (earlier.extra.get(ROUNDS_SECONDS_KEY, 0.0) if earlier else 0.0)
    extra = {**result.extra, ROUNDS_SECONDS_KEY: seconds}
    if earlier is None:
        return replace(result, sample_metrics=tagged, reason=reason, extra=extra)
    samples = earlier.samples + result.samples
    return replace(
        result,
        reason=reason,
        extra=extra,
        samples=samples,
        sample_metrics=earlier.sample_metrics + tagged,
        summary=summarize(samples) if samples else None,
        telemetry=earlier.telemetry or result.telemetry,
        started=earlier.started,
    )


@dataclass(frozen=True)
class Planned:
    key: str
    benchmark: Benchmark | None
    cases: tuple[Case, ...] = ()
    waived: str = ""  # why the whole benchmark cannot run here
    options: dict[str, str] = field(default_factory=dict)  # its parameters, as its cases were planned with


def parse_params(pairs: Iterable[str]) -> dict[str, dict[str, str]]:
    """`--param iouring.bs=4k` -> {"iouring": {"bs": "4k"}}; a key without a dot applies to all."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {pair!r}: expected KEY=VALUE or BENCHMARK.KEY=VALUE")
        if not value.strip():
            raise UserError(f"--param {pair!r}: {key.strip()}: empty value; give a value or leave the parameter out")
        bench, dot, name = key.strip().rpartition(".")
        if dot and bench not in registry.BENCHMARKS:
            raise UserError(f"--param {pair!r}: no benchmark {bench!r}; known: {', '.join(registry.BENCHMARKS)}")
        given = out.setdefault(bench or "*", {})
        if name in given:
            raise UserError(f"--param {pair!r}: {key.strip()} is already set (to {given[name]}); give each parameter once")
        given[name] = value
    return out


def select(only: Iterable[str], skip: Iterable[str]) -> list[str]:
    """The benchmarks to run, in registry order; each KEY may also be a comma-separated list."""
    only, skip = ([key.strip() for keys in side for key in keys.split(",")] for side in (only, skip))
    for key in only + skip:
        if key not in registry.BENCHMARKS:
            raise UserError(f"no benchmark {key!r}; known: {', '.join(registry.BENCHMARKS) or 'none'}")
    return [k for k in registry.BENCHMARKS if (not only or k in only) and k not in skip]


def plan(profile: Profile, keys: Iterable[str], size: str, params: dict[str, dict[str, str]],
         settings: RunSettings = RunSettings()) -> list[Planned]:
    """Decide what runs. Parameters and settings are validated here, before anything runs
    (UserError on bad input; SettingError for a setting that none of the benchmarks honours).

    A parameter given without a benchmark prefix goes to every selected benchmark that takes it."""
    if size not in SIZES:
        raise UserError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    keys = list(keys)
    for key in params.keys() - {"*"} - set(keys):
        raise UserError(f"parameters for {key!r}, which is not selected (see --only and --skip)")
    _refuse_settings_as_parameters(params)
    benches = {key: registry.load(key) for key in keys}
    unclaimed = [k for k in params.get("*", {}) if not any(k in b.options for b in benches.values())]
    if unclaimed:
        raise UserError(f"parameter {unclaimed[0]!r} is taken by none of: {', '.join(benches)}")
    check_settings_honoured(settings, benches)
    planned = []
    for key, bench in benches.items():
        check_options(key, params.get(key, {}), bench.options)  # also for a benchmark waived here
        reason = bench.requires(profile)
        if reason:
            planned.append(Planned(key, bench, waived=reason))
            continue
        options = options_for(bench, params)
        planned.append(Planned(key, bench, tuple(cases_of(bench, profile, size, options, settings)), options=options))
    return planned


def cases_of(bench: Benchmark, profile: Profile, size: str, options: dict[str, str], settings: RunSettings) -> list[Case]:
    """A benchmark's cases: with the run's settings for one that honours any (Benchmark.honours)."""
    if honoured(bench):
        return bench.cases(profile, size, options, settings=settings)  # type: ignore[call-arg]
    return bench.cases(profile, size, options)


def _refuse_settings_as_parameters(params: dict[str, dict[str, str]]) -> None:
    names = {s.value: s for s in Setting}
    for bench, given in params.items():
        for key, value in given.items():
            if key in names:
                where = "" if bench == "*" else f"{bench}."
                raise SettingError(names[key], f"is a run-wide setting, not a benchmark parameter "
                                               f"(given as --param {where}{key}={value})")


def check_settings_honoured(settings: RunSettings, benches: dict[str, Benchmark]) -> None:
    """Refuse a setting that none of the selected benchmarks honours, naming those that do."""
    for setting in settings.given():
        if setting in PIPELINE_SETTINGS or any(setting in honoured(b) for b in benches.values()):
            continue
        takers = [key for key in registry.BENCHMARKS if setting in honoured(registry.load(key))]
        raise SettingError(setting, f"applies to none of the selected benchmarks ({', '.join(benches)}); "
                                    f"it is for {', '.join(takers) or 'no benchmark'}")


def options_for(bench: Benchmark, params: dict[str, dict[str, str]]) -> dict[str, str]:
    shared = {k: v for k, v in params.get("*", {}).items() if k in bench.options}
    return {**shared, **params.get(bench.key, {})}


def waived_result(key: str, reason: str) -> Result:
    now = time.time()
    return Result(key, WHOLE_BENCHMARK, {}, "", True, ResultStatus.WAIVED, reason, started=now, ended=now)


@dataclass
class CaseRun:
    """Runs one case: warm-up, repetitions, summary; turns every outcome into a Result."""

    key: str
    bench: Benchmark
    case: Case
    ctx: Context
    policy: RepeatPolicy
    on_sample: Callable[[int, Sample], None] = lambda i, s: None
    telemetry: Any = None  # a gpubench.telemetry Telemetry, or None
    cool_down: bool = False
    pre_warm: bool = False
    samples: list[Sample] = field(default_factory=list)

    def _window(self, measure: Callable[[], Sample]):
        """Telemetry around the measured repetitions (pre-run, ramp-up, ..., cooldown)."""
        if self.telemetry is None:
            return nullcontext()
        return self.telemetry.around(
            f"{self.key}/{self.case.name}",
            cool_down=self.cool_down,
            pre_warm=measure if self.pre_warm else None,
        )

    def run(self) -> Result:
        started = time.time()
        status, reason, tel = ResultStatus.OK, "", None
        try:
            with self.bench.prepare(self.case, self.ctx) as measure:
                for _ in range(self.policy.warmup):
                    measure()
                    if time.monotonic() > self.ctx.deadline:
                        break
                with self._window(measure) as window:
                    self._repeat(measure)
                if window is not None:
                    tel = window.summary(bytes_moved=self._bytes_moved())
        except Waived as e:
            status, reason = ResultStatus.WAIVED, str(e)
        except BenchFailure as e:
            status, reason = ResultStatus.FAILED, str(e)
        except KeyboardInterrupt:
            status, reason = ResultStatus.INTERRUPTED, "interrupted by the user"
        except UserError as e:
            status, reason = ResultStatus.FAILED, str(e)
        except Exception as e:  # a broken case must not take the other results down
            status, reason = ResultStatus.FAILED, unexpected(e)
        values = [s.value for s in self.samples]
        if status is ResultStatus.OK and not values:
            status, reason = ResultStatus.FAILED, "no repetition completed"
        extra = dict(self.samples[-1].extra) if self.samples else {}
        return Result(
            benchmark=self.key,
            case=self.case.name,
            params=self.case.params,
            unit=self.case.unit,
            higher_is_better=self.case.higher_is_better,
            status=status,
            reason=reason,
            samples=tuple(values),
            sample_metrics=tuple(dict(s.metrics) for s in self.samples),
            extra=extra,
            summary=summarize(values) if values else None,
            telemetry=tel,
            started=started,
            ended=time.time(),
        )

    def _repeat(self, measure: Callable[[], Sample]) -> None:
        """Repeat until the spread settles (after min_reps), the cap, or the case's deadline; each
        sample carries the machine's own speed, timed just before it (bench.hostspeed)."""
        while len(self.samples) < self.policy.max_reps:
            speed = hostspeed.reference()
            sample = measure()
            if not math.isfinite(sample.value):
                raise BenchFailure(f"repetition {len(self.samples) + 1} measured {sample.value}: not a finite number")
            sample = replace(sample, metrics={**sample.metrics, HOST_SPEED_KEY: speed})
            self.samples.append(sample)
            self.on_sample(len(self.samples), sample)
            if time.monotonic() > self.ctx.deadline:
                break
            if len(self.samples) >= self.policy.min_reps and (
                summarize([s.value for s in self.samples]).rel_spread <= self.policy.target_spread
            ):
                break

    def _bytes_moved(self) -> float | None:
        moved = [s.metrics.get("bytes") for s in self.samples]
        return float(sum(moved)) if moved and all(m is not None for m in moved) else None


def scratch_dir(root: Path | None) -> ScratchDir:
    """A private directory for one case's files, locked while in use and removed afterwards
    whatever happens (gpubench.bench.core.scratch)."""
    return ScratchDir(root)
