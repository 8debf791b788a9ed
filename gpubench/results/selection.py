"""Which runs a command names, in the one grammar `compare` and `delete` take:

  RUN          a run number, 'latest', or 6 or more hex digits of its uid
  1,2,3        several runs, each given as RUN
  label:NAME   every complete run labelled NAME, oldest first (NAME is the rest of the argument,
               commas included)

A selection is parsed first (bad text is refused before the history is opened) and resolved
against a store second. Any problem is a UserError naming the argument as the user wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gpubench.errors import UserError
from gpubench.results.model import Run
from gpubench.results.store import Store

LABEL_PREFIX = "label:"


@dataclass(frozen=True)
class RunSelection:
    """One argument that names runs: its parts, each a run reference or label:NAME."""

    text: str  # as the user wrote it
    what: str  # the argument's name in messages, e.g. BASE or RUN
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, what: str) -> RunSelection:
        stripped = text.strip()
        parts = (stripped,) if stripped.startswith(LABEL_PREFIX) else tuple(part.strip() for part in stripped.split(","))
        if not all(parts):
            raise UserError(f"{what} {text!r}: an empty run name; separate runs with commas, e.g. 1,2,3")
        if any(part.startswith(LABEL_PREFIX) and not part[len(LABEL_PREFIX):].strip() for part in parts):
            raise UserError(f"{what} {text!r} names no label; give label:NAME (labels are in: gpubench list)")
        return cls(text, what, parts)

    def resolve(self, store: Store) -> tuple[Run, ...]:
        """The runs, with their results, in the order named; each at most once."""
        runs = [run for part in self.parts for run in _resolve_part(store, part)]
        seen: set[str] = set()
        for run in runs:
            if run.uid in seen:
                raise UserError(f"{self.what} {self.text!r} names run {run.id} twice")
            seen.add(run.uid)
        return tuple(runs)


def _resolve_part(store: Store, part: str) -> list[Run]:
    if not part.startswith(LABEL_PREFIX):
        return [store.get_run(part)]
    label = part[len(LABEL_PREFIX):]
    runs = store.complete_runs_labelled(label)
    if not runs:
        raise UserError(f"no complete run labelled {label!r} (see: gpubench list)")
    return runs


@dataclass(frozen=True)
class ComparisonSides:
    """The runs of a comparison's base side and of each new side; no run on two sides."""

    base: tuple[Run, ...]
    new: tuple[tuple[Run, ...], ...]

    @classmethod
    def select(cls, store: Store, base: str, new: Sequence[str]) -> ComparisonSides:
        base_selection = RunSelection.parse(base, "BASE")
        new_selections = [RunSelection.parse(ref, "NEW") for ref in new]
        sides = cls(base_selection.resolve(store), tuple(s.resolve(store) for s in new_selections))
        base_uids = {run.uid for run in sides.base}
        for side in sides.new:
            shared = [run for run in side if run.uid in base_uids]
            if shared:
                raise UserError(f"run {shared[0].id} is on both sides of the comparison")
        return sides


def reference_runs(reference: str, db: Path, option: str = "--baseline") -> tuple[Run, ...]:
    """The runs a reference names: an export file, a directory of exports (every *.json in it), or
    runs in the history at `db` in the grammar above. The exports are read, not stored."""
    from gpubench.results.jsonio import read_run_file
    from gpubench.results.merge import Unlisted, export_files

    path = Path(reference).expanduser()
    if path.exists():
        runs = []
        for source in export_files([path]):
            if isinstance(source, Unlisted):
                raise UserError(f"{option}: {source.problem}")
            runs.append(read_run_file(source))
        return tuple(runs)
    if not db.exists():
        raise UserError(f"{option} {reference}: no such file, and no history {db} to find runs in")
    selection = RunSelection.parse(reference, option)
    with Store.open(db, create=False, readonly=True) as store:
        return selection.resolve(store)
