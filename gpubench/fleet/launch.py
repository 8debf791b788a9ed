"""`gpubench fleet run`: one task per node through Slurm, each running `gpubench run`.

Outside an allocation it makes one (`salloc --exclusive`, whole nodes) and runs the step inside
it; inside one (SLURM_JOB_ID set, as in an sbatch script) it runs the step there. The step is
`srun --ntasks-per-node=1 --whole --kill-on-bad-exit=0 --output=DIR/logs/%N.out`, so a node that
fails does not stop the others and every node's output has a file. While it runs, the nodes'
status files are read for progress; at --max-time the nodes stop their runs themselves, and what
still runs shortly after is terminated.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from gpubench.errors import Interrupted, UserError
from gpubench.fleet.hostlist import expand
from gpubench.fleet.layout import FleetDir, LaunchRecord, NodeState, NodeStatus, settle
from gpubench.processes import stop_group

STOP_MARGIN_S = 30.0  # before --max-time: when the nodes stop their runs, to export and report in time
KILL_GRACE_S = 15.0  # after --max-time (or Ctrl-C): SIGTERM to srun; this much later, SIGKILL
POLL_S = 0.5
STDERR_LINES = 40
SRUN_NODE_ERROR = re.compile(r"^srun: error: (?P<node>[^\s:]+): tasks? [0-9,-]+: (?P<what>.+)$")


@dataclass(frozen=True)
class LaunchOptions:
    out: Path
    run_args: tuple[str, ...]
    nodes: str | None = None  # a Slurm host list
    count: int | None = None
    partition: str | None = None
    time_limit: str | None = None  # Slurm's --time for the allocation
    max_time: float | None = None  # seconds, for the whole fleet run
    node_dir: Path | None = None
    python: str = sys.executable


@dataclass(frozen=True)
class NodeCounts:
    expected: int | None
    running: int
    ok: int
    failed: int  # ended otherwise: failed, timed out, interrupted, no report

    @property
    def waiting(self) -> int | None:
        return None if self.expected is None else max(0, self.expected - self.running - self.ok - self.failed)


class LaunchProgress:
    """What the launch tells its watcher; the CLI draws it on stderr."""

    def counts(self, counts: NodeCounts, elapsed_s: float) -> None: ...
    def message(self, text: str) -> None: ...


def in_allocation() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID"))


def check_options(opts: LaunchOptions, allocated: bool) -> None:
    """Usage problems found before anything starts."""
    if allocated:
        for flag, value in (("--partition", opts.partition), ("--time", opts.time_limit)):
            if value:
                raise UserError(f"{flag} applies when fleet run makes the allocation; inside one (job {os.environ.get('SLURM_JOB_ID')}) leave it out")
    elif not opts.nodes and not opts.count:
        raise UserError("give --nodes LIST or -N COUNT (or run inside an allocation, e.g. from an sbatch script)")
    if opts.nodes:
        expand(opts.nodes)


def slurm_command(opts: LaunchOptions, fleet: FleetDir, deadline: float | None, allocated: bool) -> list[str]:
    """salloc (unless inside an allocation) + srun + the node task."""
    node = [opts.python, "-m", "gpubench", "fleet", "node", "--out", str(fleet.root)]
    if opts.node_dir is not None:
        node += ["--node-dir", str(opts.node_dir)]
    if deadline is not None:
        node += ["--deadline", f"{deadline - _stop_margin(opts.max_time):.3f}"]
    step = ["srun", "--ntasks-per-node=1", "--whole", "--kill-on-bad-exit=0", "--input=none", f"--output={fleet.output_pattern}"]
    where = ([f"--nodelist={opts.nodes}", f"--nodes={len(expand(opts.nodes))}"] if opts.nodes
             else [f"--nodes={opts.count}"] if opts.count else [])
    if allocated:
        return [*step, *where, *node, "--", *opts.run_args]
    allocation = ["salloc", "--exclusive", "--job-name=gpubench-fleet", *where]
    if opts.partition:
        allocation.append(f"--partition={opts.partition}")
    time_limit = opts.time_limit or (_minutes(opts.max_time + KILL_GRACE_S + 60) if opts.max_time else None)
    if time_limit:
        allocation.append(f"--time={time_limit}")
    return [*allocation, *step, *node, "--", *opts.run_args]


def _stop_margin(max_time: float | None) -> float:
    return min(STOP_MARGIN_S, (max_time or 0) / 5)


def _minutes(seconds: float) -> str:
    return str(max(1, math.ceil(seconds / 60)))


def launch(opts: LaunchOptions, progress: LaunchProgress) -> dict[str, NodeStatus]:
    """Run the fleet; returns every node's final status (those that never reported included)."""
    fleet = FleetDir(opts.out.resolve())
    allocated = in_allocation()
    check_options(opts, allocated)
    _prepare(fleet)
    started = time.time()
    deadline = started + opts.max_time if opts.max_time else None
    command = slurm_command(opts, fleet, deadline, allocated)
    expected = tuple(expand(opts.nodes)) if opts.nodes else ()
    record = LaunchRecord(tuple(command), expected, len(expected) or opts.count, started)
    fleet.write_launch(record)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)  # Ctrl-C reaches this process, which stops the step its own way
    except OSError as e:
        raise UserError(f"cannot start {command[0]}: {e.strerror or e} (is Slurm's client installed here?)") from None
    lines: deque[str] = deque(maxlen=STDERR_LINES)
    node_errors: dict[str, str] = {}
    reader = threading.Thread(target=_read_stderr, args=(process, lines, node_errors, progress), daemon=True)
    reader.start()
    interrupted = False
    try:
        stopped = _watch(process, fleet, record.node_count, deadline, started, progress)
    except KeyboardInterrupt:
        interrupted, stopped = True, False
        progress.message("interrupted: stopping the nodes' runs (their completed cases are kept)")
        stop_group(process, KILL_GRACE_S)
    reader.join(5)
    fleet.write_launch(replace(record, ended=time.time(), exit_code=process.returncode, stopped_at_max_time=stopped,
                               stderr_tail=tuple(lines), node_errors=dict(sorted(node_errors.items()))))
    statuses = settle(fleet)
    if interrupted:
        raise Interrupted(f"fleet run interrupted; what the nodes finished is in {fleet.root}")
    if not statuses and process.returncode == 0:
        raise UserError(f"srun ended well but no node wrote into {fleet.root}: is it on storage every node shares?")
    return statuses


def _prepare(fleet: FleetDir) -> None:
    if fleet.root.exists() and not fleet.root.is_dir():
        raise UserError(f"--out {fleet.root} is a file; give a directory")
    if fleet.root.is_dir() and fleet.holds_a_run():
        raise UserError(f"--out {fleet.root} already holds a fleet run (or run exports); give a new directory")
    try:
        fleet.logs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {fleet.logs}: {e.strerror or e}") from None


def _read_stderr(process: subprocess.Popen, lines: deque[str], node_errors: dict[str, str], progress: LaunchProgress) -> None:
    """Pass salloc's and srun's own messages on, and keep what they say about each node."""
    for raw in process.stderr:  # type: ignore[union-attr]
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            continue
        lines.append(line)
        found = SRUN_NODE_ERROR.match(line)
        if found:
            node_errors[found["node"]] = found["what"]
        progress.message(line)


def _watch(process: subprocess.Popen, fleet: FleetDir, expected: int | None, deadline: float | None, started: float,
           progress: LaunchProgress) -> bool:
    """Until srun ends: show the nodes' progress; stop the step shortly after the deadline.
    Returns whether it was stopped at the deadline."""
    last = None
    stopped = False
    while process.poll() is None:
        counts = _count(fleet.statuses(), expected)
        if counts != last:
            progress.counts(counts, time.time() - started)
            last = counts
        if deadline is not None and not stopped and time.time() > deadline + KILL_GRACE_S:
            progress.message("--max-time reached: stopping the nodes that are still running")
            stopped = True
            stop_group(process, KILL_GRACE_S)
        time.sleep(POLL_S)
    progress.counts(_count(fleet.statuses(), expected), time.time() - started)
    return stopped


def _count(statuses: dict[str, NodeStatus], expected: int | None) -> NodeCounts:
    known = {node for status in statuses.values() for node in status.step_node_names}
    total = expected or (len(known) if known else None)
    states = [s.state for s in statuses.values()]
    return NodeCounts(total, states.count(NodeState.RUNNING), states.count(NodeState.OK),
                      sum(1 for s in states if s not in (NodeState.RUNNING, NodeState.OK)))


