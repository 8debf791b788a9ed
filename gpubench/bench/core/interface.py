"""The one small protocol every benchmark family implements (one module per family).

A benchmark never prints and never stores: the run pipeline (gpubench.bench.core.runner) plans it,
repeats it, times out, stores and reports. Adding a family touches one file plus one line in
gpubench.bench.core.registry.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from gpubench.bench.core.settings import RunSettings, Setting
from gpubench.probe.model import Profile


class Waived(Exception):
    """This case cannot run here; the message says why (stored as status 'waived')."""


class BenchFailure(Exception):
    """The case ran and failed (verify mismatch, I/O error): stored as status 'failed'."""


@dataclass(frozen=True)
class Sample:
    """One repetition: the primary value (in the benchmark's unit) and secondary metrics."""

    value: float
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-able facts (which path ran, fio's figures)


@dataclass(frozen=True)
class Case:
    """One parameter set of one benchmark: what a stored result and a comparison are keyed by."""

    name: str  # short, unique within the benchmark, e.g. "randread-4k-qd32-direct"
    params: dict[str, Any]
    unit: str
    higher_is_better: bool = True


@dataclass
class Context:
    """What the pipeline hands a benchmark while it prepares and measures a case."""

    scratch: Path  # a directory the benchmark may write to; removed by the pipeline afterwards
    profile: Profile
    options: dict[str, str] = field(default_factory=dict)  # --param overrides for this benchmark
    deadline: float = float("inf")  # time.monotonic() value after which the case should wrap up
    progress: Callable[[str], None] = lambda message: None
    telemetry: Any = None  # a gpubench.telemetry session when one runs, else None
    settings: RunSettings = RunSettings()  # the run's settings (its cases were planned with them)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


class Benchmark(Protocol):
    key: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[str, ...]]  # the parameter names cases() accepts
    # Optional: the run-wide settings (gpubench.bench.core.settings) this benchmark honours. One
    # that declares any gets the run's settings as cases(..., settings=); one that declares none
    # is planned without them, and a run that sets one that no selected benchmark honours is refused.
    honours: ClassVar[frozenset[Setting]]

    def requires(self, profile: Profile) -> str | None:
        """None when this benchmark can run on the probed machine; otherwise the reason it is waived."""

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
        """The parameter sets to run for size 'quick', 'default' or 'full', with --param overrides
        (and, for a benchmark that honours settings, the keyword `settings`) applied and validated
        (raise gpubench.errors.UserError on bad input, before anything runs)."""

    def prepare(self, case: Case, ctx: Context) -> AbstractContextManager[Callable[[], Sample]]:
        """Set up the case (scratch files, buffers, rings); yield a callable measuring one repetition;
        tear down on exit, also after an error or Ctrl-C. Raise Waived or BenchFailure as they apply."""
