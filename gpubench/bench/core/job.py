"""`gpubench run` as a sequence: probe, plan, run each case under telemetry, store as it ends.

Completed results are committed one by one, so a crash or Ctrl-C loses only the case in flight.
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import time
import uuid
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from gpubench.bench.core.interface import Context, Sample
from gpubench.bench.core.params import format_size
from gpubench.bench.core.scratch import Removed, sweep
from gpubench.bench.core.settings import RunSettings
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
    settings: RunSettings = RunSettings()
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
def stop_signals_as_interrupt() -> Iterator[None]:
    """A `kill` (SIGTERM) or a terminal that went away (SIGHUP: closed, SSH dropped) stops the job
    the way Ctrl-C does: cleanly, completed results kept, scratch removed, the run marked
    interrupted. After a hang-up, standard output and error that pointed at the lost terminal
    point at /dev/null, so that no write (EIO) stops the cleanup. A SIGHUP ignored when the job
    started (nohup) stays ignored. A second signal while the first is handled changes nothing."""
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            leave_lost_terminal()
        if stopping:
            return
        stopping.append(signum)
        raise KeyboardInterrupt

    signals = [signal.SIGTERM] + ([signal.SIGHUP] if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN else [])
    previous = {signum: signal.signal(signum, stop) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def leave_lost_terminal(fds: tuple[int, ...] = (1, 2)) -> None:
    """Point each of `fds` that is a terminal which hung up (its attributes read EIO) at /dev/null."""
    import termios

    for fd in fds:
        try:
            termios.tcgetattr(fd)
        except termios.error as e:
            if e.args and e.args[0] == errno.EIO:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
        except OSError:
            pass


def run_job(opts: JobOptions, progress: Progress, profile: Profile | None = None) -> Run:
    """Probe, plan, run, store. Returns the stored run (status complete or interrupted)."""
    opts.settings.check()
    profile = profile or probe(Source("/"))
    planned = plan(profile, opts.keys, opts.size, opts.params, opts.settings)  # bad input fails here, before the DB is touched
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
    with Store.open(opts.db, create=True) as store, stop_signals_as_interrupt():
        run_id = store.begin_run(run)
        for gone in sweep_stale_scratch(opts.settings):
            progress.message(f"removed scratch left by a gpubench that is no longer running: {gone.path} "
                             f"({format_size(gone.nbytes)})")
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


def sweep_stale_scratch(settings: RunSettings) -> list[Removed]:
    """Remove the scratch that runs which are gone left where this run keeps its own: the scratch
    root, and a target directory (scratch files placed there)."""
    root = settings.scratch if settings.scratch is not None else Path(tempfile.gettempdir())
    removed = sweep(root)
    if settings.target is not None and settings.target.is_dir() and settings.target.resolve() != root.resolve():
        removed += sweep(settings.target)
    return removed


def run_series(opts: JobOptions, repeat: int, progress_for: Callable[[int], AbstractContextManager[Progress]],
               after: Callable[[Run], None] = lambda run: None) -> list[Run]:
    """`repeat` runs back to back, each stored on its own (`progress_for(index)` watches run
    `index`, `after` gets each stored run); a run that was interrupted ends the series."""
    runs: list[Run] = []
    for index in range(repeat):
        with progress_for(index) as progress:
            stored = run_job(opts, progress)
        runs.append(stored)
        after(stored)
        if stored.status is RunStatus.INTERRUPTED:
            break
    return runs


EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def exit_status(runs: list[Run], problems: bool = False) -> int:
    """The exit status of `gpubench run`: 130 when the last run was interrupted; 1 when a case
    failed or something else went wrong (`problems`, e.g. a report not written); else 0."""
    if runs and runs[-1].status is RunStatus.INTERRUPTED:
        return EXIT_INTERRUPTED
    if problems or any(r.status is ResultStatus.FAILED for run in runs for r in run.results):
        return EXIT_FAILED
    return EXIT_OK


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
    with scratch_dir(opts.settings.scratch) as scratch:
        ctx = Context(
            scratch=Path(scratch),
            profile=profile,
            options=p.options,
            deadline=time.monotonic() + policy.round_timeout_s,
            progress=progress.message,
            telemetry=telemetry,
            settings=opts.settings,
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
