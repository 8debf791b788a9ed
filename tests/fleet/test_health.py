"""gpubench run --profile health: one JSON verdict line; 0 healthy, 1 unhealthy, 2 could not run."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpubench.cli import app
from gpubench.fleet.health import COULD_NOT_RUN, HEALTHY, UNHEALTHY, _judge, check_health
from gpubench.fleet.lock import NODE_DIR_ENV, node_lock
from gpubench.results.model import ResultStatus, RunStatus
from gpubench.results.stats import summarize
from tests.factories import RANDREAD, failed, measured, run_of, waived

runner = CliRunner()


def _profile(binding: str = "yes") -> dict:
    return {"root": "/", "capabilities": [
        {"area": "iouring", "name": "io_uring", "status": "yes"},
        {"area": "iouring", "name": "io_uring binding", "status": binding, "why": "" if binding == "yes" else "ImportError: broken"},
    ]}


def _run(value: float = 100.0, status: ResultStatus = ResultStatus.OK, binding: str = "yes", run_status: RunStatus = RunStatus.COMPLETE):  # type: ignore[no-untyped-def]
    result = {ResultStatus.OK: lambda: measured(RANDREAD, (value, value * 1.01, value * 0.99)),
              ResultStatus.FAILED: lambda: failed(RANDREAD, "I/O error"),
              ResultStatus.WAIVED: lambda: waived(RANDREAD, "O_DIRECT is not supported here")}[status]()
    return run_of((result,), status=run_status, profile=_profile(binding))


@pytest.mark.parametrize("now, base, code, reason", [
    (_run(), None, HEALTHY, ""),
    (_run(status=ResultStatus.FAILED), None, UNHEALTHY, "iouring/randread-4k-qd32-j1-direct failed: I/O error"),
    (_run(90.0), _run(100.0), HEALTHY, ""),
    (_run(70.0), _run(100.0), UNHEALTHY, "against 100 in the baseline (0.70x)"),
    (_run(status=ResultStatus.WAIVED), _run(), UNHEALTHY, "ran in the baseline, now waived"),
    (_run(binding="no"), _run(), UNHEALTHY, "capability io_uring binding lost: no (ImportError: broken)"),
    (_run(run_status=RunStatus.INTERRUPTED), None, COULD_NOT_RUN, "before every check ran"),
])
def test_verdicts(now, base, code: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    verdict = _judge("n1", now, base, 12.0)
    assert verdict.exit_code == code, verdict.reasons
    assert (reason in " ".join(verdict.reasons)) if reason else verdict.reasons == ()
    line = verdict.line()
    assert line.endswith("\n") and line.count("\n") == 1
    document = json.loads(line)
    assert document["verdict"] == {0: "healthy", 1: "unhealthy", 2: "could not run"}[code]
    assert document["baseline"] == (base.uid if base is not None else None)


def test_the_real_set_runs_and_judges_against_its_own_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NODE_DIR_ENV, str(tmp_path / "node"))
    db = tmp_path / "h.db"
    first = check_health(db, budget_s=600)  # no time limit worth the name: this machine is shared
    assert first.exit_code == HEALTHY, first.reasons
    ran = {(c.benchmark, c.case): c.status for c in first.checks}
    assert ran[("memtier", "triad-cpu0-mem0")] == "ok" and ran[("memtier", "chase-cpu0-mem0")] == "ok", first.checks
    assert ran[("psync", "randread-4k-qd1-j1-buffered")] == "ok"
    assert ran[("memcpy", "*")] == "waived" or ran.get(("memcpy", "h2d-pinned-ce-gpu0-32M")) == "ok"
    assert len(ran) <= 4 + 16  # a fixed, small set
    # against itself made twice as slow in the chase: unhealthy, naming the case
    from gpubench.results.store import Store

    with Store.open(db, create=False, readonly=True) as store:
        stored = store.get_run(first.run)
    halved = tuple(dataclasses.replace(r, samples=tuple(v / 2 for v in r.samples), summary=summarize([v / 2 for v in r.samples]))
                   if r.case == "chase-cpu0-mem0" else r for r in stored.results)
    verdict = _judge("vm", stored, dataclasses.replace(stored, results=halved), 1.0)
    assert verdict.exit_code == UNHEALTHY and verdict.reasons == (
        f"memtier/chase-cpu0-mem0: {stored.results[1].summary.median:.4g} ns against {stored.results[1].summary.median / 2:.4g} in the baseline (2.00x)",)


def test_a_busy_node_could_not_run_and_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, NODE_DIR_ENV: str(tmp_path / "node")}
    with node_lock(tmp_path / "node"):
        done = subprocess.run([sys.executable, "-m", "gpubench", "run", "--profile", "health", "--db", str(tmp_path / "h.db")],
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == COULD_NOT_RUN
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["verdict"] == "could not run" and "another gpubench run holds this node" in document["reasons"][0]


def test_the_profile_is_a_fixed_set_and_baseline_goes_with_it(tmp_path: Path) -> None:
    mixed = runner.invoke(app, ["run", "--profile", "health", "--quick", "--db", str(tmp_path / "h.db")])
    assert mixed.exit_code == 2 and "runs a fixed set: leave out --quick" in mixed.stderr
    unknown = runner.invoke(app, ["run", "--profile", "warp", "--db", str(tmp_path / "h.db")])
    assert unknown.exit_code == 2 and "the profiles are health" in unknown.stderr
    alone = runner.invoke(app, ["run", "--baseline", "1", "--db", str(tmp_path / "h.db")])
    assert alone.exit_code == 2 and "goes with --profile health" in alone.stderr
    missing = runner.invoke(app, ["run", "--profile", "health", "--baseline", "label:nope", "--db", str(tmp_path / "h.db")])
    assert missing.exit_code == COULD_NOT_RUN and json.loads(missing.stdout)["reasons"] == [
        f"--baseline label:nope: no such file, and no history {tmp_path / 'h.db'} to find runs in"]


def test_a_baseline_whose_stored_probe_cannot_be_read_is_judged_on_its_cases() -> None:
    unreadable = dataclasses.replace(_run(), profile={"capabilities": [{"area": "iouring"}]})  # an entry without name or status
    assert _judge("n1", _run(), unreadable, 1.0).exit_code == HEALTHY
    assert "against 100 in the baseline" in " ".join(_judge("n1", _run(70.0), unreadable, 1.0).reasons)
