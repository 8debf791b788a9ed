"""The memtier benchmark: what the run pipeline sees of the family (see gpubench.bench.memtier)."""

from __future__ import annotations

from typing import Callable, ClassVar, ContextManager

from gpubench.bench.core.interface import Case, Context, Sample
from gpubench.bench.memtier import measure
from gpubench.bench.memtier.plan import OPTIONS, plan_cases
from gpubench.probe.model import Profile


class MemTier:
    key: ClassVar[str] = "memtier"
    options: ClassVar[tuple[str, ...]] = OPTIONS
    description: ClassVar[str] = (
        "STREAM copy/scale/add/triad bandwidth and pointer-chase latency for every (CPU node, memory node) "
        "pair, CPU-less CXL nodes included, with pages bound, threads pinned and placement verified"
    )

    def requires(self, profile: Profile) -> str | None:
        return None  # a single-node machine still measures node 0

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
        return plan_cases(profile, size, options)

    def prepare(self, case: Case, ctx: Context) -> ContextManager[Callable[[], Sample]]:
        return measure.prepare(case, ctx)
