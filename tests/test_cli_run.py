"""`gpubench run` around the job: what it says when the run is stored but its reports are not."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpubench.cli import app
from gpubench.errors import UserError
from gpubench.results.store import Store

TINY = ["--quick", "--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=4M", "-p", "memtier.hops=100000",
        "--no-telemetry"]


def test_a_report_that_cannot_be_written_leaves_the_run_stored_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(run, directory):  # type: ignore[no-untyped-def]
        raise UserError(f"cannot write into {directory}: disk full")

    monkeypatch.setattr("gpubench.report.html.write_run_reports", refuse)
    db = tmp_path / "r.db"
    result = CliRunner().invoke(app, ["run", *TINY, "--db", str(db), "--reports-dir", str(tmp_path / "reports")])
    assert result.exit_code == 1, result.output
    assert f"gpubench: error: results are stored, but cannot write into {tmp_path / 'reports'}: disk full" in result.output
    with Store.open(db, create=False, readonly=True) as store:
        assert [r.run.status.value for r in store.list_runs(5)] == ["complete"]
