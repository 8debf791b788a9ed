"""The task Slurm starts on each node of a fleet run: hold the node's lock, run `gpubench run`
into a node-local history, export the run into the fleet directory, and say how it went.

The run is the ordinary `gpubench run` in a child process; its progress goes where the task's
output goes (DIR/logs/<node>.out). At the deadline (--max-time) or on SIGTERM/SIGINT (job
cancelled) the child is told to stop, which it does cleanly, keeping its completed cases, and the
node still exports what it has and writes its final status.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from gpubench.errors import UserError
from gpubench.fleet.layout import FleetDir, NodeState, NodeStatus
from gpubench.fleet.lock import NodeBusy, host_name, node_lock

STOP_GRACE_S = 20.0  # after asking the run to stop, before killing it
FORWARD_AFTER_S = 5.0  # a cancelled step signals the whole process group: the run is told again only if still there then
POLL_S = 0.25
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class NodeTask:
    fleet: FleetDir
    node: str  # Slurm's name for this node: what its files in the fleet directory are named by
    run_args: tuple[str, ...]
    node_dir: Path  # node-local: the history and the lock
    deadline: float | None = None  # seconds since the epoch, for the whole fleet run
    step_nodes: str = ""

    @property
    def history(self) -> Path:
        return self.node_dir / f"{host_name()}-{_user()}.db"


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int | None = None  # None: never started or could not be waited for
    uid: str | None = None
    stopped_by: str = ""  # "deadline", "signal" or ""
    message: str = ""


def run_node_task(task: NodeTask) -> int:
    """Everything a node does in a fleet run; returns the task's exit status (0: the run ended 0)."""
    started = time.time()
    status = NodeStatus(task.node, NodeState.RUNNING, started=started, step_nodes=task.step_nodes)
    task.fleet.write_status(status)
    with _cancellation() as cancelled:
        outcome = _locked_run(task, cancelled)
    uid = outcome.uid or _newest_run_uid(task.history, started)
    message = outcome.message
    if uid is not None:
        message = "; ".join(m for m in (message, _export(task, uid)) if m)
    state = _state(outcome)
    task.fleet.write_status(replace(status, state=state, ended=time.time(), exit_code=outcome.exit_code, run_uid=uid, message=message))
    return 0 if state is NodeState.OK else (outcome.exit_code or 1)


def _state(outcome: RunOutcome) -> NodeState:
    """A run that ended 0 is OK even when asked to stop: it finished first."""
    if outcome.exit_code == 0:
        return NodeState.OK
    if outcome.stopped_by == "deadline":
        return NodeState.TIMED_OUT
    if outcome.stopped_by == "signal":
        return NodeState.INTERRUPTED
    return NodeState.FAILED


def _locked_run(task: NodeTask, cancelled: Callable[[], bool]) -> RunOutcome:
    """The run, once the node's lock is held: another run's holder is waited for until the deadline."""
    wait = None if task.deadline is None else max(0.0, task.deadline - time.time())
    try:
        with node_lock(task.node_dir, wait_s=wait, on_wait=_say_waiting):
            return _run(task, cancelled)
    except NodeBusy as e:
        return RunOutcome(stopped_by="deadline", message=f"{e}, until --max-time")
    except UserError as e:
        return RunOutcome(message=str(e))


def _say_waiting(why: str) -> None:
    print(f"gpubench fleet: {why}; waiting for it to end", file=sys.stderr, flush=True)


def _run(task: NodeTask, cancelled: Callable[[], bool]) -> RunOutcome:
    command = [sys.executable, "-m", "gpubench", "run", "--db", str(task.history), "--json", "--no-report", *task.run_args]
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError as e:
        return RunOutcome(message=f"cannot start gpubench run: {e.strerror or e}")
    captured: list[bytes] = []
    reader = threading.Thread(target=lambda: captured.append(child.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    stopped_by = _supervise(child, task.deadline, cancelled)
    reader.join(5)
    message = "" if child.returncode == 0 else f"gpubench run exited {child.returncode}"
    if stopped_by == "deadline" and child.returncode != 0:
        message = "stopped at --max-time; its completed cases are kept"
    return RunOutcome(child.returncode, _uid_of(b"".join(captured)), stopped_by, message)


def _supervise(child: subprocess.Popen, deadline: float | None, cancelled: Callable[[], bool]) -> str:
    """Wait for the run; ask it to stop (SIGTERM, which it takes as Ctrl-C) at the deadline or
    once this task is cancelled, and kill it when it has not stopped STOP_GRACE_S later. Returns
    what stopped it: "deadline", "signal" or "" (it ended by itself)."""
    stopped_by, tell_at, kill_at = "", None, None
    while child.poll() is None:
        now = time.monotonic()
        if not stopped_by and deadline is not None and time.time() >= deadline:
            stopped_by, tell_at = "deadline", now
        elif not stopped_by and cancelled():
            stopped_by, tell_at = "signal", now + FORWARD_AFTER_S
        if tell_at is not None and now >= tell_at:
            child.send_signal(signal.SIGTERM)
            tell_at, kill_at = None, now + STOP_GRACE_S
        if kill_at is not None and now >= kill_at:
            child.kill()
            kill_at = None
        time.sleep(POLL_S)
    return stopped_by


class _Cancelled:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def _cancellation() -> Iterator[Callable[[], bool]]:
    """While inside, SIGTERM and SIGINT (a cancelled job step) are noted, not fatal: the task
    still stops its run cleanly, exports and reports."""
    flag = _Cancelled()

    def note(signum: int, frame: object) -> None:
        flag.requested = True

    previous = {sig: signal.signal(sig, note) for sig in CANCEL_SIGNALS}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _uid_of(stdout: bytes) -> str | None:
    """The uid of the run `gpubench run --json` printed, if it printed one."""
    try:
        document = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    uid = document.get("uid") if isinstance(document, dict) else None
    return uid if isinstance(uid, str) else None


def _newest_run_uid(history: Path, since: float) -> str | None:
    """The run this task started, when the run could not say (killed): the newest one in the
    node's history that began after the task did."""
    from gpubench.results.store import Store

    if not history.exists():
        return None
    try:
        with Store.open(history, create=False, readonly=True) as store:
            newest = store.list_runs(1)
    except UserError:
        return None
    return newest[0].run.uid if newest and newest[0].run.started >= since else None


def _export(task: NodeTask, uid: str) -> str:
    """Write the run's export into the fleet directory; what went wrong, or ""."""
    from gpubench.files import write_new
    from gpubench.results.jsonio import run_to_json
    from gpubench.results.store import Store

    try:
        with Store.open(task.history, create=False, readonly=True) as store:
            text = run_to_json(store.get_run(uid))
        write_new(task.fleet.export(task.node), text)
    except UserError as e:
        return f"no export: {e}"
    except OSError as e:
        return f"no export: cannot write {task.fleet.export(task.node)}: {e.strerror or e}"
    return ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())
