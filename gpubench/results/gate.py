"""What a CI gate makes of comparisons: how many cases regressed, and the exit status.

A regression is a case judged worse beyond the threshold, or a capability lost (Comparison.
regressions). Cases that could not be judged (missing from a side, run otherwise) never fail the
gate; the notes say how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from gpubench.results.model import Comparison

EXIT_REGRESSION = 3  # 0 done, 1 error, 2 usage: the exit statuses every command shares


@dataclass(frozen=True)
class Gate:
    regressions: int
    threshold: float
    enforced: bool  # --fail-on-regression

    @classmethod
    def of(cls, comparisons: Sequence[Comparison], threshold: float, enforced: bool) -> Gate:
        return cls(sum(len(c.regressions) for c in comparisons), threshold, enforced)

    @property
    def failed(self) -> bool:
        return self.enforced and self.regressions > 0

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.failed else 0
