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


def test_a_closed_terminal_stops_the_run_cleanly(tmp_path):
    """SSH dropped, terminal closed: the run, on a pseudo-terminal that is its controlling
    terminal, gets SIGHUP when the other side closes, and every later write to that terminal fails
    (EIO). It must stop as after a kill: completed results kept, the case in flight's scratch
    directory removed, the run stored as interrupted."""
    import os
    import pty
    import select

    db, scratch = tmp_path / "history.db", tmp_path / "scratch"
    scratch.mkdir()
    args = [sys.executable, "-m", "gpubench", "run", "--quick", "--only", BENCH, "--db", str(db),
            "--scratch", str(scratch), "--no-report", "--no-telemetry"]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a session of its own, the pseudo-terminal as its controlling terminal
        try:
            os.execv(sys.executable, args)
        finally:
            os._exit(127)
    closed = False
    try:
        seen = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.05)[0]:
                try:
                    os.read(terminal, 65536)  # what it draws, read so that it never blocks on a full terminal
                except OSError:
                    break  # it ended
            seen = seen or _results_so_far(db)
            if seen and any(scratch.iterdir()):  # a result stored, and a case in flight
                break
        assert seen and any(scratch.iterdir()), "the run never had a result stored and a case in flight"
        os.close(terminal)
        closed = True
        status = _wait(pid, 60)
    finally:
        if not closed:
            os.close(terminal)
            os.kill(pid, signal.SIGKILL)
            _wait(pid, 30)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130, status
    assert list(scratch.iterdir()) == [], "the scratch directory of the case in flight must be removed"
    run = stored_run(db)
    assert run.status is RunStatus.INTERRUPTED
    completed = [r for r in run.results if r.status is ResultStatus.OK]
    assert len(completed) >= seen and all(r.samples for r in completed)


def _results_so_far(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with Store.open(db, create=False, readonly=True) as store:
            runs = store.list_runs()
            return runs[0].n_results if runs else 0
    except Exception:
        return 0  # the writer may hold a lock for a moment


def _wait(pid: int, timeout: float) -> int:
    import os

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the run did not end within {timeout:.0f} s of losing its terminal")


_HOLD_SCRATCH = """
import sys, time
from pathlib import Path
from gpubench.bench.core.scratch import ScratchDir
from gpubench.bench.engines import iofile
held = ScratchDir(Path(sys.argv[1]))
(held.path / "data").write_bytes(bytes(4096))
placed = iofile.create_scratch(Path(sys.argv[2]), 8192, 4096, "data")
print(held.path, placed, flush=True)
time.sleep(600)
"""


def _holder(root: Path, target: Path) -> tuple[subprocess.Popen, Path, Path]:
    """A process that made a scratch directory in `root` and placed a scratch file in `target`,
    and holds both (as a run in the middle of a case does)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_SCRATCH, str(root), str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert len(line) == 2, proc.stderr.read()
    return proc, Path(line[0]), Path(line[1])


def test_scratch_left_by_a_killed_run_is_removed_and_a_live_runs_is_kept(tmp_path):
    root, target = tmp_path / "scratch", tmp_path / "target"
    root.mkdir()
    target.mkdir()
    dead, stale_dir, stale_file = _holder(root, target)
    live, live_dir, live_file = _holder(root, target)
    mine = root / "gpubench-results"  # not a scratch directory: never touched
    mine.mkdir()
    try:
        dead.kill()
        dead.wait(30)
        args = [sys.executable, "-m", "gpubench", "run", "--quick", "--only", BENCH, "--db", str(tmp_path / "h.db"),
                "--scratch", str(root), "--target", str(target), "-p", "size=1M", "-p", "runtime=0.02",
                "-p", "pattern=randread", "--rounds", "1", "--no-report", "--no-telemetry"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert not stale_dir.exists() and not stale_file.exists()
        assert live_dir.is_dir() and (live_dir / "data").exists() and live_file.exists()
        assert mine.is_dir()
        said = [line for line in proc.stderr.splitlines() if line.startswith("removed scratch")]
        assert sorted(said) == sorted(
            f"removed scratch left by a gpubench that is no longer running: {path} ({size})"
            for path, size in ((stale_dir, "4K"), (stale_file, "8K")))
    finally:
        live.kill()
        live.wait(30)
