"""Verdicts as tables. A check reads what it needs into a small frozen dataclass of facts (and
records its evidence), then the first rule of its table whose condition holds on those facts
gives the status, why and fix. The order of a table is its meaning: the first rule that applies
names the first thing missing, so a reader finds every outcome of a check in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar, Union

from gpubench.probe.model import Capability, Findings, Status

F = TypeVar("F")
Words = Union[str, Callable[[Any], str]]  # a sentence, or one made from the facts

YES, NO, PARTIAL, UNKNOWN = Status.YES, Status.NO, Status.PARTIAL, Status.UNKNOWN
RERECORD = "record the snapshot again with `gpubench snapshot` (all areas)"


@dataclass(frozen=True)
class Rule(Generic[F]):
    when: Callable[[F], bool]
    status: Status
    why: Words = ""
    fix: Words = ""


def always(facts: object) -> bool:
    """The condition of a table's last rule."""
    return True


def _words(words: Words, facts: object) -> str:
    return words(facts) if callable(words) else words


def decide(f: Findings, facts: F, rules: Sequence[Rule[F]]) -> Capability:
    """The verdict of the first rule that applies (every table ends with an `always` rule)."""
    for rule in rules:
        if rule.when(facts):
            return f.verdict(rule.status, _words(rule.why, facts), _words(rule.fix, facts))
    raise LookupError(f"no rule of {f.name!r} applies")


def not_recorded(inputs: str) -> Rule[Any]:
    """The first rule of an area whose facts carry `recorded`: a snapshot that holds none of its
    inputs (`inputs`, for the why) answers unknown, not 'absent'."""
    return Rule(lambda facts: not facts.recorded, UNKNOWN, f"not recorded in this snapshot (it holds no {inputs})", RERECORD)
