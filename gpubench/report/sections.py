"""Per benchmark, what a report shows of a stored run: one compact table, a row per case, with the
parameters every case shares said once above it; each io_uring case beside its psync twin; a
memory tier's case beside the firmware's figure; and what did not run, grouped by its reason.

The terminal, HTML and Markdown reports all render these, so they show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from gpubench.bench.core.params import format_size
from gpubench.bench.memtier import TierParams
from gpubench.report import formats
from gpubench.report.headline import Limit, Versus, io_versus_psync
from gpubench.results.model import Result, ResultStatus, Run


@dataclass(frozen=True)
class CaseRow:
    result: Result
    versus: Versus | None = None  # the baseline path for the same job, where the family has one
    no_versus: str = ""
    claim: Limit | None = None  # what the platform states for this case (HMAT), in its unit

    @property
    def share_of_claim(self) -> float | None:
        s = self.result.summary
        return s.median / self.claim.value if s is not None and self.claim and self.claim.value > 0 else None

    @property
    def median_text(self) -> str:
        """'3,830 MB/s', or the status where there is no figure."""
        s = self.result.summary
        return f"{formats.number(s.median)} {self.result.unit}" if s else self.result.status.value

    def ci_text(self, dash: str = " - ") -> str:
        s = self.result.summary
        return f"{formats.number(s.ci_low)}{dash}{formats.number(s.ci_high)}" if s else ""

    @property
    def claim_text(self) -> str:
        """'61.44 GB/s (98%)': the platform's figure and the share of it measured."""
        if self.claim is None:
            return ""
        share = self.share_of_claim
        return f"{formats.number(self.claim.value)} {self.result.unit}" + (f" ({share:.0%})" if share is not None else "")


@dataclass(frozen=True)
class Section:
    benchmark: str
    shared: tuple[tuple[str, str], ...]  # (parameter, value) the same in every case shown
    rows: tuple[CaseRow, ...]  # the cases that were measured (or failed or stopped part way)
    versus_what: str  # the baseline path of the rows' Versus ("psync"), "" where there is none
    rounds: int | None  # the rounds of every row where they all had as many

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(row.result.unit for row in self.rows))

    @property
    def claims(self) -> bool:
        return any(row.claim for row in self.rows)


@dataclass(frozen=True)
class NotRun:
    """Cases that did not run for one and the same reason."""

    status: ResultStatus
    reason: str
    cases: tuple[Result, ...]

    def names(self) -> str:
        """'memcpy, p2p, gds' (whole benchmarks) or 'iouring randread-4k-qd32-j1-direct, ...'."""
        return ", ".join(r.benchmark if r.case == "*" else f"{r.benchmark} {r.case}" for r in self.cases)


def param_text(value: Any) -> str:
    """A parameter as a reader takes it in: sizes in K/M/G, lists joined, yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and value >= 1024 and value % 1024 == 0:
        return format_size(value)
    if isinstance(value, float):
        return formats.number(value)
    if isinstance(value, (list, tuple)):
        return ",".join(param_text(v) for v in value)
    return str(value)


def shared_params(results: Sequence[Result]) -> tuple[tuple[str, str], ...]:
    """The parameters every one of `results` has, with the same value (unset ones left out)."""
    if len(results) < 2:
        return ()
    first = results[0].params
    return tuple((key, param_text(value)) for key, value in first.items()
                 if value is not None and all(key in r.params and r.params[key] == value for r in results[1:]))


def sections(run: Run) -> tuple[Section, ...]:
    measured = [r for r in run.results if r.samples or r.status is ResultStatus.OK]
    by_bench: dict[str, list[Result]] = {}
    for result in measured:
        by_bench.setdefault(result.benchmark, []).append(result)
    psync = io_versus_psync(measured)
    out = []
    for benchmark, results in by_bench.items():
        rows = tuple(_row(r, psync) for r in results)
        rounds = {len(r.by_round()) for r in results if r.samples}
        out.append(Section(benchmark, shared_params(results), rows, "psync" if benchmark == "iouring" else "",
                           rounds.pop() if len(rounds) == 1 else None))
    return tuple(out)


def _row(result: Result, psync: dict[str, Versus | str]) -> CaseRow:
    if result.benchmark == "iouring" and result.case in psync:
        found = psync[result.case]
        return CaseRow(result, found, "") if isinstance(found, Versus) else CaseRow(result, None, found)
    if result.benchmark == "memtier" and (tier := TierParams.from_params(result.params)) is not None and tier.advertised:
        return CaseRow(result, claim=Limit(tier.advertised, tier.advertised_what or "advertised"))
    return CaseRow(result)


def not_run(run: Run) -> tuple[NotRun, ...]:
    """Waived, failed and interrupted cases without figures, one group per status and reason."""
    groups: dict[tuple[ResultStatus, str], list[Result]] = {}
    for result in run.results:
        if result.status is not ResultStatus.OK and not result.samples:
            groups.setdefault((result.status, result.reason or "no reason recorded"), []).append(result)
    return tuple(NotRun(status, reason, tuple(cases)) for (status, reason), cases in groups.items())
