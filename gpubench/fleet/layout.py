"""What a fleet run leaves in its directory on shared storage, and how each piece is read back.

    DIR/<node>.json               the node's run, exported (gpubench import DIR takes them all)
    DIR/logs/<node>.out           what the node's task printed (srun --output=DIR/logs/%N.out)
    DIR/logs/<node>.status.json   how the node's task went: running, then how it ended
    DIR/logs/srun.json            the launch: nodes asked for, srun's exit status and last words

A node that never wrote a status, or only `running`, never reported: the launch record and the
other nodes' statuses (each names the whole step's host list) say it was expected.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpubench.errors import UserError
from gpubench.files import write_new
from gpubench.fleet.hostlist import expand, natural_key

LOGS = "logs"
STATUS_SUFFIX = ".status.json"
TAIL_LINES = 12
TAIL_BYTES = 64 * 1024


class NodeState(str, enum.Enum):
    RUNNING = "running"  # started, not finished (yet, or ever)
    OK = "ok"  # gpubench run exited 0
    FAILED = "failed"  # exited with another status (a case failed, bad input, a crash)
    TIMED_OUT = "timed out"  # stopped at --max-time (its completed cases are kept)
    INTERRUPTED = "interrupted"  # stopped by a signal (job cancelled, Ctrl-C)
    NO_REPORT = "no report"  # expected, but never said how it ended


@dataclass(frozen=True)
class NodeStatus:
    node: str
    state: NodeState
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None  # of the node's gpubench run
    run_uid: str | None = None  # the run it stored and exported
    message: str = ""
    step_nodes: str = ""  # the whole step's host list, as Slurm gave it to the task

    @property
    def step_node_names(self) -> tuple[str, ...]:
        """The nodes of the whole step; none where the host list is missing or cannot be read."""
        try:
            return tuple(expand(self.step_nodes)) if self.step_nodes else ()
        except UserError:
            return ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeStatus:
        return cls(**{**{k: data[k] for k in cls.__dataclass_fields__ if k in data}, "state": NodeState(data["state"])})


@dataclass(frozen=True)
class LaunchRecord:
    command: tuple[str, ...]
    nodes: tuple[str, ...]  # the nodes asked for by name (empty: a count, or the whole allocation)
    node_count: int | None
    started: float
    ended: float | None = None
    exit_code: int | None = None  # of salloc/srun; None while it runs or when it was killed
    stopped_at_max_time: bool = False
    stderr_tail: tuple[str, ...] = field(default_factory=tuple)
    node_errors: dict[str, str] = field(default_factory=dict)  # srun's word on a node's task ("Exited with exit code 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaunchRecord:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("command", "nodes", "stderr_tail"):
            values[key] = tuple(str(v) for v in values.get(key) or ())
        values["node_errors"] = {str(k): str(v) for k, v in dict(values.get("node_errors") or {}).items()}
        return cls(**values)


@dataclass(frozen=True)
class FleetDir:
    root: Path

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def launch(self) -> Path:
        return self.logs / "srun.json"

    @property
    def output_pattern(self) -> str:
        """srun's --output: one file per node (%N, the node's name)."""
        return str(self.logs / "%N.out")

    def export(self, node: str) -> Path:
        return self.root / f"{node}.json"

    def output(self, node: str) -> Path:
        return self.logs / f"{node}.out"

    def status(self, node: str) -> Path:
        return self.logs / f"{node}{STATUS_SUFFIX}"

    def holds_a_run(self) -> bool:
        return self.logs.exists() or any(self.root.glob("*.json"))

    def write_status(self, status: NodeStatus) -> None:
        _write_json(self.status(status.node), status.to_dict())

    def write_launch(self, record: LaunchRecord) -> None:
        _write_json(self.launch, record.to_dict())

    def statuses(self) -> dict[str, NodeStatus]:
        """Every node status written so far, by node; a file that cannot be read (being replaced,
        damaged) is left out until it can."""
        found = {}
        for path in sorted(self.logs.glob(f"*{STATUS_SUFFIX}")) if self.logs.is_dir() else ():
            data = _read_json(path)
            try:
                status = NodeStatus.from_dict(data) if isinstance(data, dict) else None
            except (KeyError, TypeError, ValueError):
                status = None
            if status is not None:
                found[status.node] = status
        return found

    def launch_record(self) -> LaunchRecord | None:
        data = _read_json(self.launch)
        try:
            return LaunchRecord.from_dict(data) if isinstance(data, dict) else None
        except (KeyError, TypeError, ValueError):
            return None

    def output_tail(self, node: str) -> tuple[str, ...]:
        """The last lines the node's task printed."""
        return tail_lines(self.output(node))


def settle(fleet: FleetDir) -> dict[str, NodeStatus]:
    """Every node's last word, in node order. Once the launch has ended (or where there is no
    launch record), a node that was expected (asked for by name, named by srun, or in any node's
    step) and wrote nothing, or only `running`, never reported: NO_REPORT, with srun's word on it."""
    statuses = fleet.statuses()
    record = fleet.launch_record()
    expected = set(record.nodes if record else ()) | set(record.node_errors if record else ())
    for status in statuses.values():
        expected.update(status.step_node_names)
    ended = record is None or record.ended is not None
    settled = {}
    for node in sorted(expected | set(statuses), key=natural_key):
        status = statuses.get(node)
        if status is None or (ended and status.state is NodeState.RUNNING):
            said = record.node_errors.get(node, "") if record else ""
            status = NodeStatus(node, NodeState.NO_REPORT, started=status.started if status else None,
                                message="never reported how it ended" + (f" (srun: {said})" if said else ""))
        settled[node] = status
    return settled


def tail_lines(path: Path, lines: int = TAIL_LINES) -> tuple[str, ...]:
    try:
        with open(path, "rb") as source:
            source.seek(0, 2)
            size = source.tell()
            source.seek(max(0, size - TAIL_BYTES))
            text = source.read().decode("utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(line.rstrip("\r") for line in text.splitlines()[-lines:] if line.strip())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_new(path, json.dumps(data, sort_keys=True) + "\n", replace=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
