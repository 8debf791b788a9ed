"""Progress of a run on stderr: a live bar on a terminal, one line per result in a log."""

from __future__ import annotations

import errno
import functools
from typing import Any, Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gpubench.bench.core.interface import Sample
from gpubench.bench.core.runner import Planned
from gpubench.bench.core.job import Progress as JobProgress
from gpubench.report import formats
from gpubench.report.terminal import stderr_console
from gpubench.results.model import WHOLE_BENCHMARK, Result, ResultStatus


def _describe(result: Result) -> str:
    name = f"{result.benchmark}/{result.case}" if result.case != WHOLE_BENCHMARK else result.benchmark
    if result.status is ResultStatus.OK and result.summary:
        s = result.summary
        return f"{name}: {formats.number(s.median)} {result.unit} (95% CI {formats.number(s.ci_low)} - {formats.number(s.ci_high)}, n={s.n})"
    return f"{name}: {result.status.value.upper()} - {result.reason}"


def _unless_terminal_gone(method: Callable[..., None]) -> Callable[..., None]:
    """A terminal that went away (SIGHUP) fails every write with EIO: from then on, draw nothing,
    and never let a drawing stop the run's cleanup."""

    @functools.wraps(method)
    def drawn(self: StderrProgress, *args: Any, **kwargs: Any) -> None:
        if self.gone:
            return
        try:
            method(self, *args, **kwargs)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self.gone = True

    return drawn


class StderrProgress(JobProgress):
    def __init__(self) -> None:
        self.console = stderr_console()
        self.live = self.console.is_terminal
        self.bar: Progress | None = None
        self.task = None
        self.gone = False  # the terminal went away

    def __enter__(self) -> StderrProgress:
        return self

    @_unless_terminal_gone
    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    @_unless_terminal_gone
    def planned(self, planned: list[Planned], rounds: int = 1) -> None:
        cases = sum(len(p.cases) for p in planned)
        total = cases * rounds
        waived = [p.key for p in planned if p.waived]
        self.console.print(f"planned {cases} case(s) in {len(planned) - len(waived)} benchmark(s)"
                           + (f", {rounds} rounds each" if rounds > 1 else "")
                           + (f"; waived: {', '.join(waived)}" if waived else ""))
        if self.live and total:
            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=self.console, transient=True,
            )
            self.task = self.bar.add_task("starting", total=total)
            self.bar.start()

    @_unless_terminal_gone
    def case_started(self, key: str, case: str, index: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{key}/{case}")
        else:
            self.console.print(f"[{index}/{total}] {key}/{case} ...")

    @_unless_terminal_gone
    def sample(self, key: str, case: str, rep: int, sample: Sample, unit: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"{key}/{case} rep {rep}: {formats.number(sample.value)} {unit}")

    @_unless_terminal_gone
    def result(self, result: Result, final: bool = True) -> None:
        if self.bar is not None and result.case != WHOLE_BENCHMARK:
            self.bar.advance(self.task)
        if not final:
            return
        line = _describe(result)
        if self.bar is not None:
            self.bar.console.print(line)
        else:
            self.console.print("  " + line)

    @_unless_terminal_gone
    def message(self, text: str) -> None:
        (self.bar.console if self.bar is not None else self.console).print(text)
