"""Gather what `fleet report` judges: every node's export merged into one history (the lean part
of each run kept in memory, one run at a time), the fleet run's status files, and the baseline."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from gpubench.fleet.layout import FleetDir, NodeState, NodeStatus, settle
from gpubench.fleet.model import CaseKey, NodeRun
from gpubench.results.merge import merge_exports
from gpubench.results.model import ResultStatus, Run
from gpubench.results.selection import reference_runs


@dataclass(frozen=True)
class Collected:
    runs: tuple[NodeRun, ...]  # one per node: its newest
    statuses: dict[str, NodeStatus]  # from the fleet run's status files, where there are any
    log_tails: dict[str, tuple[str, ...]]  # the last lines of the nodes that did not end well
    unreadable: dict[str, str]  # node (the file's name) -> why its export could not be read
    added: int  # runs new to the history
    notes: tuple[str, ...]


def default_db(inputs: Sequence[Path]) -> Path:
    """DIR/fleet.db for the first input (its directory where it is a file)."""
    first = Path(inputs[0]).expanduser()
    return (first if first.is_dir() else first.parent) / "fleet.db"


def collect(inputs: Sequence[Path], db: Path, on_merged: Callable[[int], None] = lambda count: None) -> Collected:
    statuses: dict[str, NodeStatus] = {}
    tails: dict[str, tuple[str, ...]] = {}
    for path in inputs:
        fleet = FleetDir(Path(path).expanduser())
        if fleet.logs.is_dir():
            for node, status in settle(fleet).items():
                statuses[node] = status
                if status.state is not NodeState.OK:
                    tails[node] = fleet.output_tail(node)
    named = {status.run_uid: node for node, status in statuses.items() if status.run_uid}
    runs: dict[str, NodeRun] = {}
    unreadable: dict[str, str] = {}
    notes: list[str] = []
    added = 0
    for count, item in enumerate(merge_exports(db, inputs), start=1):
        on_merged(count)
        if item.run is None:
            if item.source.is_dir():
                notes.append(item.problem)
            else:
                unreadable[item.source.stem] = item.problem
            continue
        added += item.added
        node = named.get(item.run.uid) or _hostname(item.run) or item.source.stem
        run = NodeRun.of(node, item.run, str(item.source))
        earlier = runs.get(node)
        if earlier is not None:
            newer, older = (run, earlier) if (run.started, run.uid) > (earlier.started, earlier.uid) else (earlier, run)
            notes.append(f"node {node}: several runs; judged the newest ({newer.uid[:12]}), not {older.uid[:12]} ({older.source})")
            run = newer
        runs[node] = run
    return Collected(tuple(runs.values()), statuses, tails, unreadable, added, tuple(notes))


def _hostname(run: Run) -> str:
    name = run.metadata.get("hostname")
    return name.split(".")[0] if isinstance(name, str) else ""


def baseline_values(reference: str, db: Path) -> tuple[dict[CaseKey, float], tuple[str, ...]]:
    """Per case, the median over the baseline runs of each run's median; and their uids.
    `reference` is an export, a directory of exports, or runs in the fleet's history: numbers or
    uid prefixes separated by commas, or label:NAME."""
    runs = reference_runs(reference, db)
    per_case: dict[CaseKey, list[float]] = {}
    for run in runs:
        for result in run.results:
            if result.status is ResultStatus.OK and result.summary is not None:
                per_case.setdefault(result.key, []).append(result.summary.median)
    return {key: statistics.median(values) for key, values in per_case.items()}, tuple(run.uid for run in runs)
