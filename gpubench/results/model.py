"""Frozen records that cross module boundaries: a run, its results, their summaries.

Serialised to JSON (versioned by SCHEMA_VERSION) for export/import and reports, and to SQLite by
gpubench.results.store.
"""

from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from gpubench.telemetry.summary import TelemetrySummary


SCHEMA_VERSION = 1
WHOLE_BENCHMARK = "*"  # the case name of a result that stands for a whole benchmark (e.g. waived)


class ResultStatus(str, enum.Enum):
    OK = "ok"
    WAIVED = "waived"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class RunStatus(str, enum.Enum):
    RUNNING = "running"  # stored this way while in progress; a crashed run stays so until read
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mean: float
    stdev: float
    q1: float
    q3: float
    ci_low: float  # 95% confidence interval of the median
    ci_high: float
    minimum: float
    maximum: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def rel_spread(self) -> float:
        """IQR relative to the median: the figure repetitions continue on."""
        return self.iqr / abs(self.median) if self.median else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Summary:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


ROUND_KEY = "round"  # in a sample's metrics: which round of the run took it (1, 2, ...)
ROUNDS_SECONDS_KEY = "seconds_in_rounds"  # in a result's extra: the time its rounds took, without the gaps between them
HOST_SPEED_KEY = "host_speed"  # in a sample's metrics: the machine's own speed just before it, MB/s (bench.hostspeed)


@dataclass(frozen=True)
class Result:
    benchmark: str
    case: str
    params: dict[str, Any]
    unit: str
    higher_is_better: bool
    status: ResultStatus
    reason: str = ""
    samples: tuple[float, ...] = ()
    sample_metrics: tuple[dict[str, float], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    summary: Summary | None = None
    telemetry: TelemetrySummary | None = None
    started: float = 0.0
    ended: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.benchmark, self.case)

    def by_round(self) -> tuple[tuple[float, ...], ...]:
        """The samples of each round of the run that took them (ROUND_KEY in a sample's metrics),
        in round order; all in one round when the samples carry no round."""
        rounds: dict[int, list[float]] = {}
        for i, value in enumerate(self.samples):
            metrics = self.sample_metrics[i] if i < len(self.sample_metrics) else {}
            rounds.setdefault(int(metrics.get(ROUND_KEY, 1)), []).append(value)
        return tuple(tuple(rounds[k]) for k in sorted(rounds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "params": self.params,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "status": self.status.value,
            "reason": self.reason,
            "samples": list(self.samples),
            "sample_metrics": [dict(m) for m in self.sample_metrics],
            "extra": self.extra,
            "summary": self.summary.to_dict() if self.summary else None,
            "telemetry": self.telemetry.to_dict() if self.telemetry else {},
            "started": self.started,
            "ended": self.ended,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(
            benchmark=d["benchmark"],
            case=d["case"],
            params=dict(d.get("params") or {}),
            unit=d["unit"],
            higher_is_better=bool(d.get("higher_is_better", True)),
            status=ResultStatus(d["status"]),
            reason=d.get("reason", ""),
            samples=tuple(float(x) for x in d.get("samples", ())),
            sample_metrics=tuple(dict(m) for m in d.get("sample_metrics", ())),
            extra=dict(d.get("extra") or {}),
            summary=Summary.from_dict(d["summary"]) if d.get("summary") else None,
            telemetry=_telemetry_from_dict(d.get("telemetry")),
            started=float(d.get("started", 0.0)),
            ended=float(d.get("ended", 0.0)),
        )


@dataclass(frozen=True)
class Run:
    uid: str  # globally unique (uuid4 hex), survives export/import
    label: str
    started: float
    ended: float | None
    status: RunStatus
    metadata: dict[str, Any]  # machine facts captured once per run
    profile: dict[str, Any]  # Profile.to_dict() of the probe the run was planned from
    results: tuple[Result, ...] = ()
    id: int | None = None  # local row id in one database; not exported

    @property
    def ident(self) -> str:
        """How to name it to the user: its local number, else the start of its uid."""
        return str(self.id) if self.id is not None else self.uid[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "uid": self.uid,
            "label": self.label,
            "started": self.started,
            "ended": self.ended,
            "status": self.status.value,
            "metadata": self.metadata,
            "profile": self.profile,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        return cls(
            uid=d["uid"],
            label=d.get("label", ""),
            started=float(d["started"]),
            ended=None if d.get("ended") is None else float(d["ended"]),
            status=RunStatus(d["status"]),
            metadata=dict(d.get("metadata") or {}),
            profile=dict(d.get("profile") or {}),
            results=tuple(Result.from_dict(r) for r in d.get("results", ())),
        )


def machine_speed_readings(runs: Iterable[Run]) -> list[float]:
    """The machine's own speed before each repetition of the runs (HOST_SPEED_KEY), MB/s; none for
    runs stored before the reference existed."""
    return [m[HOST_SPEED_KEY] for run in runs for r in run.results for m in r.sample_metrics if HOST_SPEED_KEY in m]


def machine_speed(runs: Iterable[Run]) -> float | None:
    """The median of machine_speed_readings; None without readings."""
    readings = machine_speed_readings(runs)
    return statistics.median(readings) if readings else None


class Verdict(str, enum.Enum):
    BETTER = "better"
    WORSE = "worse"
    SAME = "same"
    NOT_COMPARABLE = "not comparable"
    LOST = "lost capability"  # ran in the base, waived or failed in the new run (or in some of its runs)


@dataclass(frozen=True)
class CaseComparison:
    benchmark: str
    case: str
    unit: str
    higher_is_better: bool
    verdict: Verdict
    base: Result | None
    new: Result | None
    ratio: float | None = None  # new median / base median
    ci_low: float | None = None  # 95% confidence interval of the ratio
    ci_high: float | None = None
    p_value: float | None = None  # two-sided: t over rounds or runs (Holm-adjusted), else Mann-Whitney U over samples
    note: str = ""
    # Where rounds or runs were the unit ("rounds" or "runs"; "" when samples were): each unit's
    # median, and what the ratio compares, the geometric mean of those
    units: str = ""
    base_medians: tuple[float, ...] = ()
    new_medians: tuple[float, ...] = ()

    @property
    def base_level(self) -> float | None:
        return statistics.geometric_mean(self.base_medians) if self.base_medians else None

    @property
    def new_level(self) -> float | None:
        return statistics.geometric_mean(self.new_medians) if self.new_medians else None

    def level(self, side: str) -> float | None:
        """The value the ratio compares for 'base' or 'new': the geometric mean of the medians of
        the rounds or runs where those were the unit, else the median of the samples."""
        level = self.base_level if side == "base" else self.new_level
        result = self.base if side == "base" else self.new
        if level is None and result is not None and result.summary is not None:
            level = result.summary.median
        return level


@dataclass(frozen=True)
class Comparison:
    base_side: tuple[Run, ...]  # the runs of each side, one or several
    new_side: tuple[Run, ...]
    threshold: float  # minimum relative effect that counts, e.g. 0.05
    cases: tuple[CaseComparison, ...]

    @property
    def base(self) -> Run:
        """The first run of a side stands for its machine (metadata, capabilities)."""
        return self.base_side[0]

    @property
    def new(self) -> Run:
        return self.new_side[0]

    @property
    def machine_speeds(self) -> tuple[float | None, float | None]:
        """The machine's own speed on the base and the new side (machine_speed)."""
        return machine_speed(self.base_side), machine_speed(self.new_side)

    @property
    def regressions(self) -> tuple[CaseComparison, ...]:
        return tuple(c for c in self.cases if c.verdict in (Verdict.WORSE, Verdict.LOST))

    @property
    def missing(self) -> tuple[CaseComparison, ...]:
        """Cases not judged because a run of either side lacks them."""
        held = [{result.key for result in run.results} for run in self.base_side + self.new_side]
        return tuple(c for c in self.cases if c.verdict is Verdict.NOT_COMPARABLE and any((c.benchmark, c.case) not in keys for keys in held))

    @property
    def unmatched(self) -> tuple[CaseComparison, ...]:
        """Cases that ran on both sides and were still not judged: parameters or units differ, no
        samples, or the runs of one side disagree."""
        ran = [c for c in self.cases if c.verdict is Verdict.NOT_COMPARABLE and c not in self.missing]
        return tuple(c for c in ran if all(r is not None and r.status is ResultStatus.OK for r in (c.base, c.new)))


def _telemetry_from_dict(d: dict[str, Any] | None) -> TelemetrySummary | None:
    """The stored telemetry summary (its module loads only where a result carries one)."""
    if not d:
        return None
    from gpubench.telemetry.summary import TelemetrySummary

    return TelemetrySummary.from_dict(d)
