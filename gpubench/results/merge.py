"""Merge exported runs into one history: many files and directories at once, each run once.

A run already in the history (the same uid) is skipped, not refused, so that merging the same
exports again, or a directory that grew since, adds only what is new. Each file is read,
validated and stored on its own, and the runs are handed back one by one: memory stays that of
one run, however many files there are, and one bad file does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from gpubench.errors import UserError
from gpubench.results.model import Run

EXPORT_SUFFIX = ".json"


@dataclass(frozen=True)
class Merged:
    """What became of one input file: its run, stored under `run_id` (now, or earlier when not
    `added`), or the problem that kept it out (run is None)."""

    source: Path
    run: Run | None = None
    run_id: int | None = None
    added: bool = False
    problem: str = ""


def merge_exports(db: Path, paths: Iterable[Path]) -> Iterator[Merged]:
    """Store the run of every export named, a directory standing for its *.json files (sorted by
    name, not recursing); yields each file's outcome in that order. The history is opened (and
    created) only once a file holds a valid run, so bad input alone leaves no database behind."""
    from gpubench.results.jsonio import read_run_file
    from gpubench.results.store import Store

    store = None
    try:
        for source in export_files(paths):
            if isinstance(source, Unlisted):
                yield Merged(source.directory, problem=source.problem)
                continue
            try:
                run = read_run_file(source)
            except UserError as e:
                yield Merged(source, problem=str(e))
                continue
            if store is None:
                store = Store.open(db, create=True)
            known = _stored_id(store, run.uid)
            if known is not None:
                yield Merged(source, run, known, added=False)
            else:
                yield Merged(source, run, store.import_run(run), added=True)
    finally:
        if store is not None:
            store.close()


@dataclass(frozen=True)
class Unlisted:
    """A directory named that gave no export: it cannot be listed, or holds none."""

    directory: Path
    problem: str


def export_files(paths: Iterable[Path]) -> Iterator[Path | Unlisted]:
    """Each file named, and each directory's *.json files (sorted by name, not recursing)."""
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            yield path
            continue
        try:
            files = sorted(p for p in path.iterdir() if p.suffix == EXPORT_SUFFIX and p.is_file())
        except OSError as e:
            yield Unlisted(path, f"cannot list {path}: {e.strerror or e}")
            continue
        if not files:
            yield Unlisted(path, f"{path} holds no {EXPORT_SUFFIX} files (gpubench export RUN --format json writes them)")
        yield from files


def _stored_id(store, uid: str) -> int | None:  # type: ignore[no-untyped-def]
    """The local id of the run with this uid, None when the history does not hold it."""
    try:
        return store.get_run(uid, with_results=False).id
    except UserError:
        return None
