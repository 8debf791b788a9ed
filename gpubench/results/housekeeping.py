"""Keeping a history from growing without end (a CI runner's stores a run every night): which runs
`prune` deletes. A run still being written is never chosen for deletion, whatever the policy."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from gpubench.results.model import RunStatus
from gpubench.results.store import RunListing

AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_age(text: str) -> float:
    """'30d', '12h', '1.5w', '90m', '45s' -> seconds; ValueError with the reason otherwise."""
    match = _AGE.match(text.lower())
    if not match:
        raise ValueError(f"{text!r} is not an age: give a number and a unit, s, m, h, d or w (e.g. 30d)")
    seconds = float(match.group(1)) * AGE_UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long an age")
    return seconds


@dataclass(frozen=True)
class PrunePolicy:
    """Which runs go: those beyond the `keep` most recently started, and (with both) only those
    that started more than `older_than` seconds ago. At least one of the two is given."""

    keep: int | None = None
    older_than: float | None = None

    def __post_init__(self) -> None:
        if self.keep is None and self.older_than is None:
            raise ValueError("a prune policy needs a number of runs to keep, an age, or both")
        if self.keep is not None and self.keep < 0:
            raise ValueError("the number of runs to keep cannot be negative")

    def chooses(self, rank: int, listing: RunListing, now: float) -> bool:
        """Whether the run at `rank` (0: the most recently started) is one to delete."""
        beyond = self.keep is None or rank >= self.keep
        old = self.older_than is None or listing.run.started < now - self.older_than
        return beyond and old


@dataclass(frozen=True)
class PrunePlan:
    delete: tuple[RunListing, ...]  # oldest first
    in_progress: tuple[RunListing, ...]  # chosen by the policy, but still being written: kept
    total: int  # runs in the history before pruning

    @property
    def kept(self) -> int:
        return self.total - len(self.delete)


def plan_prune(listings: Sequence[RunListing], policy: PrunePolicy, now: float) -> PrunePlan:
    """`listings` most recently started first (Store.list_runs)."""
    chosen = [listing for rank, listing in enumerate(listings) if policy.chooses(rank, listing, now)][::-1]
    running = tuple(listing for listing in chosen if listing.run.status is RunStatus.RUNNING)
    return PrunePlan(tuple(listing for listing in chosen if listing not in running), running, len(listings))
