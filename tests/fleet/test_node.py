"""What a node does in a fleet run, run here without Slurm: the node-local history and lock, the
export and the status; a deadline, a cancelled task and a busy node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gpubench.fleet.layout import FleetDir, NodeState
from gpubench.fleet.lock import NodeBusy, node_lock
from gpubench.fleet.node import NodeTask, run_node_task
from gpubench.results.jsonio import read_run_file

QUICK = ("--quick", "--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=4M", "-p", "memtier.hops=100000",
         "--no-telemetry")
# about a minute here in rounds of a few seconds (each may take 30 s before it counts as failed)
LONG = ("--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=8M", "-p", "memtier.hops=20000000",
        "--rounds", "10", "--no-telemetry")


def _task(tmp_path: Path, args: tuple[str, ...], deadline: float | None = None) -> NodeTask:
    fleet = FleetDir(tmp_path / "fleet")
    fleet.logs.mkdir(parents=True)
    return NodeTask(fleet, "n7", args, tmp_path / "local", deadline, "n[1-9]")


def _status(task: NodeTask) -> dict:
    return json.loads(task.fleet.status("n7").read_text())


def test_a_node_runs_into_its_local_history_exports_and_reports(tmp_path: Path) -> None:
    task = _task(tmp_path, QUICK)
    assert run_node_task(task) == 0
    status = _status(task)
    assert status["state"] == "ok" and status["exit_code"] == 0 and status["step_nodes"] == "n[1-9]"
    run = read_run_file(task.fleet.export("n7"))
    assert run.uid == status["run_uid"] and run.status.value == "complete"
    assert [r.case for r in run.results] == ["chase-cpu0-mem0"]
    assert task.history.is_file() and task.history.parent == tmp_path / "local"
    assert oct((tmp_path / "local").stat().st_mode & 0o7777) == "0o1777"  # shared by every user of the node


def test_a_node_held_by_another_run_waits_until_the_deadline_and_says_why(tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    task = _task(tmp_path, QUICK, deadline=time.time() + 2)
    with node_lock(tmp_path / "local"):
        assert run_node_task(task) != 0
    said = capfd.readouterr().err
    assert said.count("waiting for it to end") == 1 and f"pid {os.getpid()}" in said
    status = _status(task)
    assert status["state"] == "timed out" and "another gpubench run holds this node" in status["message"]
    assert not task.fleet.export("n7").exists()


def test_the_deadline_stops_the_run_and_what_it_stored_is_exported(tmp_path: Path) -> None:
    task = _task(tmp_path, LONG, deadline=time.time() + 15)
    started = time.monotonic()
    assert run_node_task(task) != 0
    assert time.monotonic() - started < 15 + 20
    status = _status(task)
    assert status["state"] == "timed out" and "completed cases are kept" in status["message"]
    run = read_run_file(task.fleet.export("n7"))
    assert run.status.value == "interrupted" and run.results  # the case in flight at least, stored as it stood


def test_a_run_that_fails_is_recorded_with_its_exit_status(tmp_path: Path) -> None:
    task = _task(tmp_path, ("--only", "memtier", "-p", "memtier.hops=many"))
    assert run_node_task(task) == 1
    status = _status(task)
    assert status["state"] == "failed" and status["exit_code"] == 1 and status["message"] == "gpubench run exited 1"
    assert status["run_uid"] is None and not task.fleet.export("n7").exists()


def test_a_cancelled_task_stops_its_run_cleanly_and_still_exports(tmp_path: Path) -> None:
    fleet = FleetDir(tmp_path / "fleet")
    fleet.logs.mkdir(parents=True)
    env = {**os.environ, "SLURMD_NODENAME": "n7", "SLURM_STEP_NODELIST": "n7"}
    command = [sys.executable, "-m", "gpubench", "fleet", "node", "--out", str(fleet.root), "--node-dir", str(tmp_path / "local"),
               "--", *LONG]
    task = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _has_a_result(tmp_path / "local"):  # a round is stored
            time.sleep(0.5)
        os.killpg(task.pid, signal.SIGTERM)  # as Slurm does when the job is cancelled: the task and its children
        _, stderr = task.communicate(timeout=40)
    finally:
        task.kill()
    status = json.loads(fleet.status("n7").read_text())
    assert status["state"] == "interrupted", stderr
    assert read_run_file(fleet.export("n7")).status.value == "interrupted"


def _has_a_result(local: Path) -> bool:
    from gpubench.results.store import Store

    for db in local.glob("*.db"):
        try:
            with Store.open(db, create=False, readonly=True) as store:
                listings = store.list_runs(1)
        except Exception:  # noqa: BLE001 - being written
            return False
        if listings and listings[0].n_results:
            return True
    return False


def test_a_run_that_ended_well_is_ok_even_when_it_was_asked_to_stop() -> None:
    from gpubench.fleet.node import RunOutcome, _state

    assert _state(RunOutcome(0, stopped_by="signal")) is NodeState.OK  # it finished first
    assert _state(RunOutcome(0, stopped_by="deadline")) is NodeState.OK
    assert _state(RunOutcome(130, stopped_by="signal")) is NodeState.INTERRUPTED
    assert _state(RunOutcome(130, stopped_by="deadline")) is NodeState.TIMED_OUT
    assert _state(RunOutcome(-9, stopped_by="deadline")) is NodeState.TIMED_OUT
    assert _state(RunOutcome(1)) is NodeState.FAILED and _state(RunOutcome(None)) is NodeState.FAILED


def test_the_node_lock_says_once_who_holds_it_then_gives_up_at_the_wait(tmp_path: Path) -> None:
    told: list[str] = []
    with node_lock(tmp_path / "local"):
        started = time.monotonic()
        try:
            with node_lock(tmp_path / "local", wait_s=1.2, on_wait=told.append):
                raise AssertionError("the lock is held")
        except NodeBusy as e:
            assert f"pid {os.getpid()}" in str(e)
        assert time.monotonic() - started >= 1.2
    assert len(told) == 1 and f"pid {os.getpid()}" in told[0]
    with node_lock(tmp_path / "local", wait_s=0, on_wait=told.append):
        assert len(told) == 1  # free: nobody to wait for
