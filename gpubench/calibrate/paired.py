"""What every calibration shares: one interleaving of the things compared, and one set of
statistics for the ratios of what they measured in the same round.

A calibration compares gpubench with a reference (fio, a C program, gpubench without telemetry)
on one machine, in one run. A slow drift of the machine (a neighbour, the page cache, the
clock) must weigh on both sides alike, so every round measures each side once, and the order
rotates from round to round and from one comparison to the next. Each round gives one ratio;
the verdict rests on their median, with its distribution-free 95% confidence interval
(gpubench.results.stats), quartiles and range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from gpubench.results.model import Summary
from gpubench.results.stats import summarize

T = TypeVar("T")


@dataclass(frozen=True)
class Arm(Generic[T]):
    """One side of a comparison: its name and one measurement of it."""

    name: str
    measure: Callable[[], T]


def interleave(
    rounds: int,
    comparisons: Sequence[Sequence[Arm[T]]],
    before: Callable[[int, int, Arm[T]], None] = lambda round_, comparison, arm: None,
) -> list[list[list[T]]]:
    """Measure every arm of every comparison once per round; results[comparison][arm][round].

    In round r, comparison c starts with arm (r + c) mod n and goes round the others in order,
    so each arm goes first equally often. `before(round, comparison, arm)` is called before each
    measurement (for progress)."""
    results: list[list[list[T]]] = [[[] for _ in arms] for arms in comparisons]
    for r in range(rounds):
        for c, arms in enumerate(comparisons):
            for k in range(len(arms)):
                j = (r + c + k) % len(arms)
                before(r, c, arms[j])
                results[c][j].append(arms[j].measure())
    return results


@dataclass(frozen=True)
class PairedRatios:
    """gpubench's measurement over the reference's, round by round, and the statistics of those ratios."""

    ours: tuple[float, ...]
    reference: tuple[float, ...]

    @property
    def ratios(self) -> tuple[float, ...]:
        """One per round in which the reference measured something (a zero has no ratio)."""
        return tuple(a / b for a, b in zip(self.ours, self.reference) if b > 0)

    @property
    def summary(self) -> Summary | None:
        return summarize(self.ratios) if self.ratios else None

    @property
    def median(self) -> float:
        return self.summary.median if self.summary else math.nan

    def percent(self) -> Summary:
        """The same statistics of (ratio - 1) x 100: how much larger ours is, in percent (ValueError without a ratio)."""
        return summarize([(r - 1.0) * 100.0 for r in self.ratios])

    def to_dict(self) -> dict[str, Any]:
        """ratios and ratio_{median,ci_low,ci_high,q1,q3,min,max} (null without a ratio)."""
        s = self.summary
        figures = ("median", "ci_low", "ci_high", "q1", "q3", "minimum", "maximum")
        names = ("median", "ci_low", "ci_high", "q1", "q3", "min", "max")
        return {"ratios": list(self.ratios), **{f"ratio_{n}": getattr(s, f) if s else None for n, f in zip(names, figures)}}


@dataclass(frozen=True)
class Goal:
    """What a calibration holds a ratio's median to: at least `bound`, or within `bound` of 1."""

    bound: float
    two_sided: bool = False

    def met(self, ratio: float) -> bool:
        if math.isnan(ratio):
            return False
        return abs(ratio - 1.0) <= self.bound if self.two_sided else ratio >= self.bound

    def text(self, reference: str) -> str:
        return f"within {self.bound:.0%} of {reference}" if self.two_sided else f">= {self.bound:g}x {reference}"


class Judged:
    """A calibration outcome's ratios and their median held to its goal; the outcome gives its
    `paired` figures and its `goal`."""

    paired: PairedRatios
    goal: Goal

    @property
    def ratios(self) -> tuple[float, ...]:
        return self.paired.ratios

    @property
    def ratio(self) -> float:
        return self.paired.median

    @property
    def met(self) -> bool:
        return self.goal.met(self.ratio)
