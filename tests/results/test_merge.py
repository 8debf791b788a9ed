"""Merging exports: many files and directories into one history, each run once (by uid)."""

from __future__ import annotations

import json
from pathlib import Path

from gpubench.results.merge import merge_exports
from gpubench.results.store import Store
from tests.cli import invoke
from tests.factories import measured, run_of


def _export(directory: Path, name: str, **overrides: object) -> Path:
    run = run_of((measured(),), **overrides)  # type: ignore[arg-type]
    path = directory / name
    path.write_text(json.dumps(run.to_dict()))
    return path


def test_directories_and_files_merge_in_order_and_a_second_merge_adds_nothing(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    for name in ("b.json", "a.json", "c.json"):
        _export(nodes, name)
    (nodes / "notes.txt").write_text("not an export")
    extra = _export(tmp_path, "extra.json")
    db = tmp_path / "fleet.db"

    first = list(merge_exports(db, [nodes, extra]))
    assert [m.source.name for m in first] == ["a.json", "b.json", "c.json", "extra.json"]
    assert all(m.added and m.problem == "" for m in first)
    assert [m.run_id for m in first] == [1, 2, 3, 4]

    again = list(merge_exports(db, [extra, nodes]))
    assert not any(m.added for m in again)
    assert [m.run_id for m in again] == [4, 1, 2, 3]
    with Store.open(db, create=False, readonly=True) as store:
        assert len(store.list_runs()) == 4


def test_a_bad_file_is_named_and_the_others_still_merge(tmp_path: Path) -> None:
    good = _export(tmp_path, "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    empty = tmp_path / "empty"
    empty.mkdir()
    outcome = list(merge_exports(tmp_path / "h.db", [bad, empty, good, tmp_path / "missing.json"]))
    assert [bool(m.problem) for m in outcome] == [True, True, False, True]
    assert "not valid JSON" in outcome[0].problem
    assert "holds no .json files" in outcome[1].problem
    assert "no such file" in outcome[3].problem
    assert outcome[2].added


def test_bad_input_alone_creates_no_history(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    db = tmp_path / "never.db"
    assert [bool(m.problem) for m in merge_exports(db, [bad])] == [True]
    assert not db.exists()


def test_import_takes_many_files_skips_known_runs_and_fails_on_a_bad_one(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    _export(exports, "n1.json", label="node one")
    _export(exports, "n2.json")
    db = tmp_path / "h.db"
    first = invoke("import", str(exports), "--db", str(db))
    assert first.exit_code == 0, first.stderr
    assert first.stdout.count("imported run") == 2 and "(node one) as run 1" in first.stdout
    assert "imported 2 run(s), skipped 0 already there" in first.stderr

    (exports / "broken.json").write_text('{"schema_version": 1}')
    _export(exports, "n3.json")
    second = invoke("import", str(exports), "--db", str(db))
    assert second.exit_code == 1
    assert second.stdout.count("skipped run") == 2 and second.stdout.count("imported run") == 1
    assert "broken.json: uid: missing" in second.stderr
    assert "imported 1 run(s), skipped 2 already there, 1 could not be read" in second.stderr
    with Store.open(db, create=False, readonly=True) as store:
        assert len(store.list_runs()) == 3
