"""`gpubench run --profile health`: a fixed quick check of one node for Slurm's HealthCheckProgram
(killed after 60 s), a prolog, a Kubernetes job or a timer. One JSON line on stdout says what it
found; exit 0 healthy, 1 unhealthy, 2 could not run (as NVIDIA's health checks answer).

The set: the probe; STREAM triad and the pointer chase (32 MiB) on every (CPU node, memory node) pair;
4 KiB random reads through io_uring and through pread; pinned host<->device copies on every
NVIDIA GPU; one round each at the quick sizes, so that it ends well within a minute (it stops
itself at BUDGET_S and says so). Unhealthy: a case failed, or, against the node's baseline (an
earlier run of the same set, given with --baseline), a capability or a case was lost or a case
is more than TOLERANCE worse.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gpubench.errors import UserError, unexpected
from gpubench.fleet.lock import host_name, node_dir, node_lock
from gpubench.results.model import ResultStatus, Run, RunStatus

PROFILES = ("health",)
KEYS = ("memtier", "iouring", "psync", "memcpy")
PARAMS = {
    "memtier": {"kernels": "triad,chase", "size": "32M", "chase_size": "32M", "hops": "500000"},
    "iouring": {"pattern": "randread", "bs": "4k", "qd": "32", "direct": "0"},
    "psync": {"pattern": "randread", "bs": "4k", "direct": "0"},
    "memcpy": {"directions": "h2d,d2h", "memory": "pinned", "engines": "ce", "reference": "0"},
}
TOLERANCE = 0.25  # worse than the baseline by more than this: unhealthy (one quick round is noisy)
BUDGET_S = 50  # Slurm kills a HealthCheckProgram at 60 s
LOCK_WAIT_S = 5.0
HEALTHY, UNHEALTHY, COULD_NOT_RUN = 0, 1, 2


@dataclass(frozen=True)
class Check:
    benchmark: str
    case: str
    status: str
    unit: str = ""
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None  # value / baseline


@dataclass(frozen=True)
class HealthVerdict:
    node: str
    exit_code: int
    reasons: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    run: str | None = None  # uid of the stored run
    baseline: str | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        return {HEALTHY: "healthy", UNHEALTHY: "unhealthy"}.get(self.exit_code, "could not run")

    def line(self) -> str:
        document: dict[str, Any] = {"node": self.node, "verdict": self.verdict, "exit": self.exit_code, "reasons": list(self.reasons),
                                    "run": self.run, "baseline": self.baseline, "seconds": round(self.seconds, 2),
                                    "checks": [asdict(c) for c in self.checks], "notes": list(self.notes)}
        return json.dumps(document, separators=(",", ":"), allow_nan=False, default=str) + "\n"


def check_health(db: Path, baseline: str | None = None, label: str = "health", budget_s: float = BUDGET_S) -> HealthVerdict:
    """Run the set and judge it; every problem is a verdict, never an exception."""
    started = time.monotonic()
    node = host_name()
    try:
        base = _baseline(baseline, db) if baseline else None
        with node_lock(node_dir(), wait_s=LOCK_WAIT_S), _budget(budget_s):
            run = _run(db, label)
    except UserError as e:
        return HealthVerdict(node, COULD_NOT_RUN, (str(e),), seconds=time.monotonic() - started)
    except KeyboardInterrupt:
        return HealthVerdict(node, COULD_NOT_RUN, (f"stopped before the run began (interrupted, or over the {budget_s:g} s budget)",),
                             seconds=time.monotonic() - started)
    except Exception as e:  # noqa: BLE001 - a health check answers, whatever broke
        return HealthVerdict(node, COULD_NOT_RUN, (unexpected(e),), seconds=time.monotonic() - started)
    return _judge(node, run, base, time.monotonic() - started)


def _run(db: Path, label: str) -> Run:
    from gpubench.bench.core.job import JobOptions, Progress, run_job
    from gpubench.probe import Source, probe
    from gpubench.probe.views import GpuView

    profile = probe(Source("/"))
    params = {key: dict(values) for key, values in PARAMS.items()}
    gpus = GpuView.from_profile(profile).nvidia
    if gpus:
        params["memcpy"]["gpus"] = ",".join(str(gpu.index) for gpu in gpus)
    opts = JobOptions(db=db, keys=KEYS, size="quick", label=label, params=params, telemetry=False, rounds=1)
    return run_job(opts, Progress(), profile)


@contextmanager
def _budget(seconds: float) -> Iterator[None]:
    """Stop the run (as Ctrl-C would: completed cases are kept) when the budget is spent."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _baseline(reference: str, db: Path) -> Run:
    """An export, or a run in the history: its number, uid prefix, or label:NAME (the newest such)."""
    from gpubench.results.selection import reference_runs

    runs = reference_runs(reference, db)
    if len(runs) != 1 and not reference.startswith("label:"):
        raise UserError(f"--baseline {reference}: names {len(runs)} runs; give one")
    return runs[-1]


def _judge(node: str, run: Run, base: Run | None, seconds: float) -> HealthVerdict:
    checks, reasons = _checks(run, base)
    if base is not None:
        reasons += _lost_capabilities(base, run)
    code = UNHEALTHY if reasons else HEALTHY
    if run.status is RunStatus.INTERRUPTED and not reasons:
        code = COULD_NOT_RUN
        reasons.append(f"stopped after {seconds:.0f} s, before every check ran (interrupted or over the {BUDGET_S} s budget)")
    notes = () if base is not None else (
        "no --baseline: only failures count; give the node's earlier health run to catch a slowdown or a lost capability",)
    return HealthVerdict(node, code, tuple(reasons), tuple(checks), run.uid, base.uid if base is not None else None, seconds, notes)


def _checks(run: Run, base: Run | None) -> tuple[list[Check], list[str]]:
    """Each case against the baseline's, and what is wrong with them: failed, lost, too slow."""
    before = {r.key: r for r in base.results} if base is not None else {}
    checks, reasons = [], []
    for result in run.results:
        value = result.summary.median if result.status is ResultStatus.OK and result.summary else None
        earlier = before.get(result.key)
        reference = earlier.summary.median if earlier is not None and earlier.status is ResultStatus.OK and earlier.summary else None
        ratio = value / reference if value is not None and reference else None
        checks.append(Check(result.benchmark, result.case, result.status.value, result.unit, value, reference, ratio))
        name = f"{result.benchmark}/{result.case}"
        if result.status is ResultStatus.FAILED:
            reasons.append(f"{name} failed: {result.reason}")
        elif reference is not None and value is None:
            reasons.append(f"{name} ran in the baseline, now {result.status.value}: {result.reason}")
        elif ratio is not None and (1 / ratio if result.higher_is_better else ratio) - 1 > TOLERANCE:
            reasons.append(f"{name}: {value:.4g} {result.unit} against {reference:.4g} in the baseline ({ratio:.2f}x)")
    return checks, reasons


def _lost_capabilities(base: Run, run: Run) -> list[str]:
    from gpubench.probe.diff import diff_capabilities
    from gpubench.probe.model import probed_verdict
    from gpubench.results.metadata import stored_profile

    before, after = stored_profile(base), stored_profile(run)
    if before is None or after is None:
        return []  # a run that stored no readable probe has no capabilities to compare
    reasons = []
    for change in diff_capabilities(before, after):
        if change.lost:
            now = probed_verdict(change.status_after)
            why = change.after.why if change.after is not None else ""
            reasons.append(f"capability {change.name} lost: {now}" + (f" ({why})" if why else ""))
    return reasons


def health_main(profile: str | None, db: Path | None, baseline: str | None, label: str, options: dict[str, object]) -> int:
    """What `gpubench run --profile NAME` does: the verdict line on stdout, its exit status.
    `options` are the run's other options, none of which may be given (the set is fixed)."""
    import sys

    import typer

    from gpubench.results.store import default_db_path

    if profile is None:
        raise typer.BadParameter("goes with --profile health", param_hint="--baseline")
    if profile not in PROFILES:
        raise typer.BadParameter(f"{profile!r}: the profiles are {', '.join(PROFILES)}", param_hint="--profile")
    given = [flag for flag, value in options.items() if value]
    if given:
        raise typer.BadParameter(f"{profile} runs a fixed set: leave out {', '.join(given)}", param_hint="--profile")
    verdict = check_health(db or default_db_path(), baseline, label or profile)
    sys.stdout.write(verdict.line())
    sys.stdout.flush()
    return verdict.exit_code
