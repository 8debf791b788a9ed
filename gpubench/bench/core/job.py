"""`gpubench run` as a sequence: probe, plan, run each case under telemetry, store as it ends.

Completed results are committed one by one, so a crash or Ctrl-C loses only the case in flight.
"""

from __future__ import annotations

import signal
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from gpubench.bench.core.interface import Context, Sample
from gpubench.bench.core.runner import CaseRun, Planned, RepeatPolicy, merge_round, plan, scratch_dir, waived_result
from gpubench.errors import UserError
from gpubench.probe import Profile, Source, probe
from gpubench.results.metadata import capture
from gpubench.results.model import Result, ResultStatus, Run, RunStatus
from gpubench.results.store import Store


@dataclass(frozen=True)
class JobOptions:
    db: Path
    keys: tuple[str, ...]
    size: str = "default"
    label: str = ""
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    scratch: Path | None = None
    telemetry: bool = True
    telemetry_hz: float = 10.0
    telemetry_replay: Path | None = None
    cool_down: bool = False
    pre_warm: bool = False
    rounds: int | None = None  # None: the size's default


class Progress:
    """What a job tells its watcher; the CLI draws it on stderr."""

    def planned(self, planned: list[Planned], rounds: int = 1) -> None: ...
    def case_started(self, key: str, case: str, index: int, total: int) -> None: ...
    def sample(self, key: str, case: str, rep: int, sample: Sample, unit: str) -> None: ...
    def result(self, result: Result, final: bool = True) -> None:
        """A case finished a round (final: its last, or it cannot go on), or a benchmark was waived."""
    def message(self, text: str) -> None: ...


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A `kill` stops the job the way Ctrl-C does: cleanly, with the run marked interrupted."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_job(opts: JobOptions, progress: Progress, profile: Profile | None = None) -> Run:
    """Probe, plan, run, store. Returns the stored run (status complete or interrupted)."""
    if opts.scratch is not None and not opts.scratch.is_dir():
        raise UserError(f"--scratch {opts.scratch}: not a directory")
    profile = profile or probe(Source("/"))
    planned = plan(profile, opts.keys, opts.size, opts.params)  # bad parameters fail here, before the DB is touched
    policy = RepeatPolicy.for_size(opts.size)
    if opts.rounds is not None:
        policy = replace(policy, rounds=opts.rounds)
    started = time.time()
    run = Run(
        uid=uuid.uuid4().hex,
        label=opts.label,
        started=started,
        ended=None,
        status=RunStatus.RUNNING,
        metadata=capture(profile, opts.label),
        profile=profile.to_dict(),
    )
    telemetry = _open_telemetry(profile, opts, progress)
    with Store.open(opts.db, create=True) as store, sigterm_as_interrupt():
        run_id = store.begin_run(run)
        progress.planned(planned, policy.rounds)
        note = thermal_note(opts, telemetry)
        if note:
            progress.message(note)
        status = RunStatus.COMPLETE
        try:
            _run_all(store, run_id, planned, profile, opts, policy, progress, telemetry)
        except KeyboardInterrupt:
            status = RunStatus.INTERRUPTED
        except BaseException:  # the run stopped short: never stored as complete
            status = RunStatus.INTERRUPTED
            raise
        finally:
            if telemetry is not None:
                telemetry.close()
            store.finish_run(run_id, status, time.time())
        return store.get_run(str(run_id))


def _run_all(store, run_id, planned, profile, opts, policy, progress, telemetry) -> None:
    total = sum(len(p.cases) for p in planned) * policy.rounds
    merged: dict[tuple[str, str], Result] = {}
    index = 0
    for number in range(1, policy.rounds + 1):
        if policy.rounds > 1:
            progress.message(f"round {number} of {policy.rounds}")
        for p in planned:
            if p.waived:
                if number == 1:
                    result = waived_result(p.key, p.waived)
                    store.add_result(run_id, result)
                    progress.result(result)
                continue
            for case in p.cases:
                index += 1
                earlier = merged.get((p.key, case.name))
                if earlier is not None and earlier.status is not ResultStatus.OK:
                    progress.result(earlier, final=False)  # failed or waived in an earlier round: done
                    continue
                progress.case_started(p.key, case.name, index, total)
                result = _run_case(p, case, profile, opts, policy, progress, telemetry)
                if result.status is ResultStatus.INTERRUPTED and earlier is not None:
                    raise KeyboardInterrupt  # its completed rounds stand as stored, as after a kill
                merged[(p.key, case.name)] = result = merge_round(earlier, result, number)
                store.put_result(run_id, result)
                progress.result(result, final=number == policy.rounds or result.status is not ResultStatus.OK)
                if result.status is ResultStatus.INTERRUPTED:
                    raise KeyboardInterrupt


def _run_case(p, case, profile, opts, policy, progress, telemetry) -> Result:
    """One round of one case, in a scratch directory of its own."""
    with scratch_dir(opts.scratch) as scratch:
        ctx = Context(
            scratch=Path(scratch),
            profile=profile,
            options=p.options,
            deadline=time.monotonic() + policy.round_timeout_s,
            progress=progress.message,
            telemetry=telemetry,
        )
        on_sample: Callable[[int, Sample], None] = lambda rep, s, k=p.key, c=case: progress.sample(k, c.name, rep, s, c.unit)
        return CaseRun(p.key, p.benchmark, case, ctx, policy, on_sample, telemetry, opts.cool_down, opts.pre_warm).run()


def thermal_note(opts: JobOptions, telemetry) -> str | None:  # type: ignore[no-untyped-def]
    """Why --cool-down and --pre-warm cannot do their work in this run; None when they can (or were not asked)."""
    asked = " and ".join(flag for flag, on in (("--cool-down", opts.cool_down), ("--pre-warm", opts.pre_warm)) if on)
    if not asked:
        return None
    if telemetry is None:
        return f"{asked} cannot act in this run: telemetry is off" + ("" if opts.telemetry else " (--no-telemetry)")
    if telemetry.thermal:
        return None
    readable = ", ".join(telemetry.samplers) or "nothing"
    note = (f"{asked} cannot act here: no temperature or power reading (readable: {readable}; "
            f"see gpubench telemetry sources)")
    return note + ("; --pre-warm runs each case once before measuring" if opts.pre_warm else "")


def _open_telemetry(profile: Profile, opts: JobOptions, progress: Progress):
    if not opts.telemetry:
        return None
    from gpubench.telemetry.session import open_telemetry

    try:
        return open_telemetry(profile, hz=opts.telemetry_hz, replay=opts.telemetry_replay)
    except UserError:  # a replay trace asked for that cannot be read: bad input, before anything runs
        raise
    except Exception as e:  # telemetry must never stop a benchmark
        progress.message(f"telemetry off: {e}")
        return None
