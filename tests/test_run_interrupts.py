"""A real `gpubench run` process, stopped mid-way: completed results survive, the run says interrupted."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpubench.results.model import ResultStatus, RunStatus
from gpubench.results.store import Store

BENCH = "psync"  # runs on any machine, several cases in --quick


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    db, scratch = tmp_path / "history.db", tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpubench", "run", "--quick", "--only", BENCH, "--db", str(db),
         "--scratch", str(scratch), "--no-report", "--no-telemetry"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return proc, db, scratch


def wait_for_results(proc: subprocess.Popen, db: Path, at_least: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be stopped: {proc.stderr.read()}")
        if db.exists():
            try:
                with Store.open(db, create=False, readonly=True) as store:
                    runs = store.list_runs()
                    if runs and runs[0].n_results >= at_least:
                        return runs[0].n_results
            except Exception:
                pass  # the writer may hold a lock for a moment
        time.sleep(0.05)
    pytest.fail("no result was committed in time")


def stored_run(db: Path):
    with Store.open(db, create=False, readonly=True) as store:
        return store.get_run("latest")


def test_sigkill_keeps_completed_results_and_reads_as_interrupted(tmp_path):
    proc, db, scratch = start_run(tmp_path)
    seen = wait_for_results(proc, db, at_least=1)
    proc.kill()
    proc.wait(timeout=30)
    run = stored_run(db)
    assert run.status is RunStatus.INTERRUPTED
    assert len(run.results) >= seen
    planned_cases = len(run.results)
    assert all(r.status is ResultStatus.OK and r.summary is not None and r.samples for r in run.results)
    assert planned_cases >= 1


def test_sigint_stops_cleanly(tmp_path):
    proc, db, scratch = start_run(tmp_path)
    seen = wait_for_results(proc, db, at_least=1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    run = stored_run(db)
    assert run.status is RunStatus.INTERRUPTED
    completed = [r for r in run.results if r.status is ResultStatus.OK]
    assert len(completed) >= seen
    assert all(r.samples for r in completed)
    assert list(scratch.iterdir()) == [], "scratch files must be removed after Ctrl-C"


def test_sigint_stops_a_recording_and_keeps_its_samples(tmp_path):
    out = tmp_path / "trace.json"
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", "telemetry", "record", str(out), "--seconds", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = proc.stderr.readline()
    if started.startswith("gpubench: error: nothing to record"):
        proc.communicate(timeout=30)
        pytest.skip("no telemetry source is readable on this machine")
    assert started.startswith("recording 60 s"), started
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith(f"gpubench: error: recording interrupted; wrote {out} (")
    from gpubench.telemetry.trace import read_trace

    assert read_trace(out).readings


def test_sigint_of_any_command_says_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "gpubench", "calibrate", "telemetry"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # past the imports, into the work
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "gpubench: error: interrupted"
    assert "Traceback" not in err
