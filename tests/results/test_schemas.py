"""The JSON Schemas shipped in the package describe what gpubench really writes: a quick run made
through the whole pipeline (run --json, export), the probe of this machine and of every recorded
snapshot, a comparison of two real runs; and the exports written by earlier versions still import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra: pip install '.[test]'")
referencing = pytest.importorskip("referencing", reason="referencing comes with jsonschema")

from gpubench.results import schemas  # noqa: E402
from gpubench.probe import Source, probe  # noqa: E402
from gpubench.results.jsonio import COMPARISONS_SCHEMA_VERSION, json_text, read_run_file, run_to_json  # noqa: E402
from gpubench.results.model import SCHEMA_VERSION  # noqa: E402
from gpubench.results.store import Store  # noqa: E402
from tests.factories import REPO, SNAPSHOTS  # noqa: E402

OLD_EXPORTS = sorted((REPO / "reports" / "cpu-vm").glob("gpubench-run-*.json")) + sorted((REPO / "reports" / "cpu-vm" / "default-aa").glob("run-*.json"))


def _validator(name: str) -> Any:
    resources = [(f"urn:gpubench:schema:{n}", referencing.Resource.from_contents(schemas.load(n))) for n in schemas.NAMES]
    registry = referencing.Registry().with_resources(resources)
    return jsonschema.Draft202012Validator(schemas.load(name), registry=registry)


def _valid(name: str, document: Any) -> None:
    errors = sorted(_validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}" for e in errors[:5])


def _gpubench(*args: str, db: Path) -> str:
    env = {**os.environ, "GPUBENCH_DB": str(db)}
    proc = subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Two quick runs of psync, tiny, through the whole pipeline (probe, plan, run, telemetry, store)."""
    db = tmp_path_factory.mktemp("schemas") / "results.db"
    out = _gpubench("run", "--quick", "--only", "psync", "-p", "psync.runtime=0.05", "-p", "psync.size=8M", "--repeat", "2",
                    "--json", "--no-report", "--scratch", str(db.parent), db=db)
    return db, json.loads(out)


def test_every_schema_is_a_valid_draft_2020_12_schema_and_ships_in_the_package() -> None:
    for name in schemas.NAMES:
        jsonschema.Draft202012Validator.check_schema(schemas.load(name))
        assert schemas.path(name).is_file()
        assert schemas.load(name)["$id"] == f"urn:gpubench:schema:{name}"
    with pytest.raises(KeyError):
        schemas.path("nothing")


def test_the_schemas_carry_the_versions_the_code_writes() -> None:
    assert schemas.load("run")["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert schemas.load("comparisons")["properties"]["schema_version"] == {"const": COMPARISONS_SCHEMA_VERSION}


def test_run_json_and_the_export_of_a_real_run_match_the_run_schema(history: tuple[Path, list[dict[str, Any]]]) -> None:
    db, runs = history
    assert [run["id"] for run in runs] == [1, 2] and all(run["results"] for run in runs)
    for run in runs:
        _valid("run", run)
    exported = json.loads(_gpubench("export", "1", "--format", "json", db=db))
    assert "id" not in exported
    _valid("run", exported)
    # the schema is not a formality: what the code does not write is refused
    for broken in ({**exported, "surprise": 1}, {**exported, "uid": "XYZ"}, {**exported, "status": "done"}):
        with pytest.raises(AssertionError):
            _valid("run", broken)


def test_compare_json_of_real_runs_matches_the_comparisons_schema(history: tuple[Path, list[dict[str, Any]]]) -> None:
    db, _ = history
    document = json.loads(_gpubench("compare", "1", "2", "--json", db=db))
    assert document["comparisons"][0]["what_changed"]["probed"] == {"base": True, "new": True}
    _valid("comparisons", document)
    broken = json.loads(json.dumps(document))
    broken["comparisons"][0]["cases"][0]["verdict"] = "faster"
    with pytest.raises(AssertionError):
        _valid("comparisons", broken)


def test_probe_json_of_this_machine_and_of_every_snapshot_matches_the_probe_schema(tmp_path: Path) -> None:
    _valid("probe", json.loads(_gpubench("probe", "--json", db=tmp_path / "unused.db")))
    for snapshot in sorted(p for p in SNAPSHOTS.iterdir() if p.is_dir()):
        _valid("probe", json.loads(json_text(probe(Source(snapshot)).to_dict())))  # what probe --json --root prints


def test_an_export_of_an_earlier_version_imports_through_the_command(tmp_path: Path) -> None:
    export = OLD_EXPORTS[0]
    out = _gpubench("import", str(export), db=tmp_path / "results.db")
    assert out.startswith(f"imported run {json.loads(export.read_text())['uid'][:12]}")
    _valid("run", json.loads(_gpubench("export", "1", "--format", "json", db=tmp_path / "results.db")))


@pytest.mark.parametrize("export", OLD_EXPORTS, ids=lambda p: str(p.relative_to(REPO)))
def test_exports_written_by_earlier_versions_still_import(export: Path, store: Store) -> None:
    run = read_run_file(export)
    assert run.results and run.uid == json.loads(export.read_text())["uid"]
    run_id = store.import_run(run)
    again = json.loads(run_to_json(store.get_run(str(run_id))))
    _valid("run", again)
    assert again == json.loads(run_to_json(run))


def test_there_are_earlier_exports_to_import() -> None:
    assert len(OLD_EXPORTS) >= 8  # two run reports and six default runs under reports/cpu-vm
