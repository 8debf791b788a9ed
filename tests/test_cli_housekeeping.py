"""`gpubench delete` and `gpubench prune` through the CLI: what they print, what they delete, and
that they never touch a run still in progress."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gpubench.results.model import RunStatus
from gpubench.results.store import Store
from tests.cli import assert_one_line_error, fill, gpubench, invoke
from tests.factories import RANDREAD, SEQREAD, measured, run_of, stored

DAY = 86400.0


def _runs(db: Path, *ages_in_days: float, label: str = "nightly") -> list[int]:
    now = time.time()
    return fill(db, *(run_of((measured(RANDREAD), measured(SEQREAD)), label=label, started=now - age * DAY) for age in ages_in_days))


def _ids(db: Path) -> list[int]:
    with Store.open(db, create=False, readonly=True) as store:
        return sorted(listing.run.id for listing in store.list_runs())


def test_delete_says_what_it_deleted(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _runs(db, 3, 2, 1)
    result = invoke("delete", "2", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("deleted run 2 (nightly), started ") and line.endswith(f", 2 results from {db}")
    assert result.stderr == ""
    assert _ids(db) == [1, 3]
    several = invoke("delete", "1,3", "--db", str(db))
    assert several.exit_code == 0 and [line.split(",")[0] for line in several.stdout.splitlines()] == ["deleted run 1 (nightly)", "deleted run 3 (nightly)"]
    assert _ids(db) == []


def test_delete_takes_the_run_grammar_of_compare(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _runs(db, 3, 2, label="old")
    _runs(db, 1, label="new")
    result = invoke("delete", "label:old", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("deleted run") == 2 and _ids(db) == [3]


def test_delete_refuses_a_run_in_progress_and_deletes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _runs(db, 2)
    with Store.open(db) as store:
        live = stored(store, run_of((measured(),), status=RunStatus.RUNNING))  # this process writes it, and lives
    before = db.read_bytes()
    assert_one_line_error(gpubench("delete", f"1,{live}", "--db", str(db)), f"run {live} is in progress (process ")
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("9",), "no run 9 in"), (("1,,2",), "RUN '1,,2': an empty run name"), (("label:none",), "no complete run labelled 'none'")],
)
def test_delete_of_what_is_not_there_is_one_line_and_changes_nothing(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    db = tmp_path / "r.db"
    _runs(db, 1)
    before = db.read_bytes()
    assert_one_line_error(gpubench("delete", *args, "--db", str(db)), expected)
    assert db.read_bytes() == before


def test_housekeeping_never_creates_a_history(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "r.db"
    assert_one_line_error(gpubench("delete", "1", "--db", str(missing)), "no result history")
    assert_one_line_error(gpubench("prune", "--keep", "3", "--db", str(missing)), "no result history")
    assert not missing.parent.exists()


def test_prune_keeps_the_newest_and_says_what_went(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _runs(db, 40, 30, 20, 10)
    result = invoke("prune", "--keep", "2", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(",")[0] for line in lines[:2]] == ["deleted run 1 (nightly)", "deleted run 2 (nightly)"]
    assert lines[2] == f"pruned 2 of 4 runs from {db}; 2 kept"
    assert _ids(db) == [3, 4]
    again = invoke("prune", "--keep", "2", "--db", str(db))
    assert again.stdout == f"pruned 0 of 2 runs from {db}; 2 kept\n"


def test_prune_by_age_and_a_dry_run(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _runs(db, 40, 30, 2, 1)
    before = db.read_bytes()
    dry = invoke("prune", "--older-than", "1w", "--dry-run", "--db", str(db))
    assert dry.exit_code == 0, dry.stderr
    assert [line.split(",")[0] for line in dry.stdout.splitlines()] == ["would delete run 1 (nightly)", "would delete run 2 (nightly)",
                                                                       "nothing deleted (--dry-run): 2 of 4 runs in " + str(db) + " would go"]
    assert db.read_bytes() == before
    both = invoke("prune", "--older-than", "1w", "--keep", "3", "--db", str(db))
    assert both.exit_code == 0 and _ids(db) == [2, 3, 4]


def test_prune_keeps_a_run_in_progress_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _runs(db, 3)
    with Store.open(db) as store:
        live = stored(store, run_of((measured(),), label="now", status=RunStatus.RUNNING, started=time.time() - 10 * DAY))
    result = invoke("prune", "--keep", "0", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("deleted run 1 (nightly)")
    assert lines[1].startswith(f"kept run {live} (now), started ") and lines[1].endswith(": still in progress")
    assert lines[2] == f"pruned 1 of 2 runs from {db}; 1 kept"
    assert _ids(db) == [live]


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), "prune needs --keep N, --older-than AGE, or both"),
     (("--older-than", "30"), "'30' is not an age: give a number and a unit, s, m, h, d or w (e.g. 30d)"),
     (("--keep", "-1"), "--keep")],
)
def test_prune_without_a_policy_is_a_usage_error_on_one_line(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    db = tmp_path / "r.db"
    _runs(db, 1)
    assert_one_line_error(gpubench("prune", *args, "--db", str(db)), expected, code=2)
    assert _ids(db) == [1]
