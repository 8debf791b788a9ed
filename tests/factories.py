"""Results and runs for the tests, made by the code that makes them in `gpubench run`.

A benchmark's own plan on a recorded machine (probes/) gives the cases: their names, parameters
and units. The runner measures them (CaseRun, then merge_round for each round, as the job does),
with a stand-in for the device that returns the values a test chooses, and the machine reference
(bench.core.hostspeed) reading a speed the test chooses. Runs carry the run metadata captured as
a run captures it, and the recorded machine's probe. So a test sees what the history holds after
a real run: round numbers and machine speeds in the sample metrics, the time the rounds took, the
real parameter names.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Sequence
from unittest import mock

from gpubench.bench.core import hostspeed, registry
from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.bench.core.runner import CaseRun, RepeatPolicy, merge_round, waived_result
from gpubench.probe import Source, probe
from gpubench.probe.model import Profile
from gpubench.results.metadata import capture
from gpubench.results.model import Result, Run, RunStatus
from gpubench.results.store import Store

REPO = Path(__file__).resolve().parent.parent
SNAPSHOTS = REPO / "probes"
HOST_SPEED = 5000.0  # MB/s the machine reference reads unless a test says otherwise


@cache
def machine(snapshot: str = "cpu-vm") -> Profile:
    """The probe of a recorded machine."""
    return probe(Source(SNAPSHOTS / snapshot))


@dataclass(frozen=True)
class Planned:
    """A case as a benchmark plans it: the benchmark's key and the case."""

    key: str
    case: Case

    @property
    def name(self) -> str:
        return self.case.name


def planned(key: str, name: str, *, snapshot: str = "cpu-vm", scale: str = "full", options: dict[str, str] | None = None) -> Planned:
    """The case `name` of benchmark `key`, planned on a recorded machine at scale quick, default or
    full, with these --param options."""
    cases = {c.name: c for c in registry.load(key).cases(machine(snapshot), scale, dict(options or {}))}
    if name not in cases:
        raise KeyError(f"{key} plans no case {name!r} on {snapshot} ({scale}): {', '.join(cases)}")
    return Planned(key, cases[name])


def planned_all(key: str, *, snapshot: str = "cpu-vm", scale: str = "full") -> tuple[Planned, ...]:
    """Every case benchmark `key` plans on a recorded machine at this scale."""
    return tuple(Planned(key, c) for c in registry.load(key).cases(machine(snapshot), scale, {}))


RANDREAD = planned("iouring", "randread-4k-qd32-j1-direct")
RANDREAD_BUFFERED = planned("iouring", "randread-4k-qd32-j1-buffered")
SEQREAD = planned("iouring", "read-128k-qd8-j1-direct")
RANDWRITE = planned("iouring", "randwrite-4k-qd32-j1-direct")
SEQWRITE = planned("iouring", "write-128k-qd8-j1-direct")
PSYNC_READ = planned("psync", "randread-4k-qd1-j1-direct")
COPY = planned("memtier", "copy-cpu0-mem0", scale="quick")  # GB/s
CHASE = planned("memtier", "chase-cpu0-mem0", scale="quick")  # ns per load: lower is better
IO_CASES = planned_all("iouring")  # 14 cases


class _Device:
    """Stands in for what a benchmark drives: each repetition returns the next of the test's values
    (or preparing the case raises what the test asks for)."""

    def __init__(self, values: Sequence[float], outcome: BaseException | None, metrics: dict[str, float], extra: dict[str, Any]) -> None:
        self.values, self.outcome, self.metrics, self.extra = list(values), outcome, metrics, extra

    @contextmanager
    def prepare(self, case: Case, ctx: Context) -> Iterator[Any]:
        if self.outcome is not None:
            raise self.outcome
        values = iter(self.values)
        yield lambda: Sample(next(values), dict(self.metrics), dict(self.extra))


def _round(planned: Planned, values: Sequence[float], outcome: BaseException | None, host_speeds: Iterator[float],
           metrics: dict[str, float], extra: dict[str, Any]) -> Result:
    """One round of one case through the runner."""
    reps = max(1, len(values))
    policy = RepeatPolicy(rounds=1, warmup=0, min_reps=reps, max_reps=reps, target_spread=0.0)
    ctx = Context(scratch=Path(tempfile.gettempdir()), profile=machine())
    with mock.patch.object(hostspeed, "reference", lambda: next(host_speeds)):
        return CaseRun(planned.key, _Device(values, outcome, metrics, extra), planned.case, ctx, policy).run()  # type: ignore[arg-type]


def measured(planned: Planned = RANDREAD, samples: Sequence[float] = (100.0, 101.0, 99.0, 100.5, 99.5), *,
             rounds: Sequence[Sequence[float]] | None = None, host_speed: float | Sequence[float] = HOST_SPEED,
             metrics: dict[str, float] | None = None, extra: dict[str, Any] | None = None) -> Result:
    """A case measured in one round of `samples`, or in `rounds` (one list of samples a round); the
    machine reference reads `host_speed` before each sample (several: one after the other); each
    sample carries `metrics` and `extra` (the facts of the path that ran) as a benchmark's do."""
    speeds = itertools.cycle([host_speed] if isinstance(host_speed, (int, float)) else host_speed)
    result: Result | None = None
    for number, values in enumerate(rounds if rounds is not None else [samples], start=1):
        result = merge_round(result, _round(planned, values, None, speeds, metrics or {}, extra or {}), number)
    assert result is not None
    return result


def _not_measured(planned: Planned, outcome: BaseException) -> Result:
    return merge_round(None, _round(planned, (), outcome, itertools.repeat(HOST_SPEED), {}, {}), 1)


def waived(planned: Planned = RANDREAD, reason: str = "O_DIRECT is not supported here") -> Result:
    return _not_measured(planned, Waived(reason))


def failed(planned: Planned = RANDREAD, reason: str = "I/O error") -> Result:
    return _not_measured(planned, BenchFailure(reason))


def interrupted(planned: Planned = RANDREAD) -> Result:
    return _not_measured(planned, KeyboardInterrupt())


def waived_benchmark(key: str, reason: str) -> Result:
    """A benchmark waived as a whole (its needs unmet on this machine), as the runner stores it."""
    return waived_result(key, reason)


@cache
def _metadata(snapshot: str) -> dict[str, Any]:
    return capture(machine(snapshot), "")


def run_of(results: Sequence[Result] = (), label: str = "", status: RunStatus = RunStatus.COMPLETE, *,
           started: float | None = None, snapshot: str = "cpu-vm", metadata: dict[str, Any] | None = None,
           **overrides: Any) -> Run:
    """A run as the job builds it (a new uid, the metadata it captures, the probe it planned from),
    holding `results`; `metadata` entries replace captured ones."""
    started = time.time() if started is None else started
    fields: dict[str, Any] = dict(
        uid=uuid.uuid4().hex,
        label=label,
        started=started,
        ended=None if status is RunStatus.RUNNING else started + 100.0,
        status=status,
        metadata={**_metadata(snapshot), "label": label, **(metadata or {})},
        profile=machine(snapshot).to_dict(),
        results=tuple(results),
    )
    return Run(**{**fields, **overrides})


def stored(store: Store, run: Run) -> int:
    """Store `run` the way the job does: begun as running, each result committed, then finished."""
    run_id = store.begin_run(replace(run, status=RunStatus.RUNNING, ended=None, results=()))
    for result in run.results:
        store.put_result(run_id, result)
    if run.status is not RunStatus.RUNNING:
        store.finish_run(run_id, run.status, run.ended if run.ended is not None else run.started)
    return run_id


def noisy(center: float, n: int = 12, spread: float = 0.01, seed: int = 1) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(center * (1.0 + rng.uniform(-spread, spread)) for _ in range(n))
