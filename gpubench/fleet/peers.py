"""Each node against its identical peers: groups by hardware signature; per case the group's
median, its robust spread (MAD, floored) and every node's ratio and robust z-score; the
capabilities most of the group has, and the nodes that lost one.

Deterministic: nodes in natural order, cases in the order the runs list them, ties between
verdicts broken by a fixed ranking, and no randomness anywhere.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Iterable, Mapping, Sequence

from gpubench.fleet.hostlist import natural_key
from gpubench.fleet.model import (MEMORY_TOLERANCE, CapabilityCell, CaseKey, CaseStats, CaseValue, Finding, FindingKind, Hardware,
                                  NodeRun, NodeScore, PeerGroup, PeerTest, Thresholds, gib)
from gpubench.probe.diff import diff_capabilities
from gpubench.probe.model import Capability, Profile, Status, probed_verdict
from gpubench.numbers import number

MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal data
STATUS_RANK = {Status.YES: 0, Status.PARTIAL: 1, Status.UNKNOWN: 2, Status.NO: 3}  # the better wins a tie

ColumnKey = tuple[str, str]  # (area, capability name)


def peer_groups(runs: Iterable[NodeRun], thresholds: Thresholds) -> tuple[PeerGroup, ...]:
    """Nodes of the same CPU and GPUs whose memory sizes lie within MEMORY_TOLERANCE of the
    smallest among them, the largest group first (G1)."""
    kinds: dict[tuple[str, str], list[NodeRun]] = {}
    for run in runs:
        kinds.setdefault((run.machine.cpu, run.machine.gpus), []).append(run)
    members: list[tuple[Hardware, list[str]]] = []
    for (cpu, gpus), alike in kinds.items():
        for sizes in _memory_clusters(alike):
            known = [size for size in sizes.values() if size is not None]
            low, high = (min(known), max(known)) if known else (None, None)
            memory = gib(low) if gib(low) == gib(high) else f"{gib(low)} to {gib(high)}"
            members.append((Hardware(cpu, gpus, memory), list(sizes)))
    ordered = sorted(members, key=lambda item: (-len(item[1]), item[0]))
    return tuple(PeerGroup(f"G{index}", hardware, tuple(sorted(nodes, key=natural_key)), _test(len(nodes), thresholds))
                 for index, (hardware, nodes) in enumerate(ordered, start=1))


def _memory_clusters(runs: list[NodeRun]) -> list[dict[str, int | None]]:
    """Split by memory size: in ascending order, a node more than MEMORY_TOLERANCE above the
    smallest of the current cluster starts the next one; nodes of unknown size are one cluster."""
    unknown = {run.node: None for run in runs if run.machine.memory_bytes is None}
    known = sorted((run for run in runs if run.machine.memory_bytes is not None), key=lambda r: (r.machine.memory_bytes, natural_key(r.node)))
    clusters: list[dict[str, int | None]] = [unknown] if unknown else []
    floor = None
    for run in known:
        size = run.machine.memory_bytes
        if floor is None or size > floor * (1 + MEMORY_TOLERANCE):  # type: ignore[operator]
            clusters.append({})
            floor = size
        clusters[-1][run.node] = size
    return clusters


def _test(size: int, thresholds: Thresholds) -> PeerTest:
    if size < 2:
        return PeerTest.NONE
    return PeerTest.BOTH if size >= thresholds.min_group_for_z else PeerTest.RELATIVE


def case_stats(group: PeerGroup, runs: Mapping[str, NodeRun], thresholds: Thresholds) -> tuple[CaseStats, ...]:
    """Every case that ran (status ok) on some node of the group."""
    keys: dict[CaseKey, CaseValue] = {}
    for node in group.nodes:
        for key, value in runs[node].cases.items():
            if value.value is not None:
                keys.setdefault(key, value)
    return tuple(_one_case(group, runs, first, thresholds) for first in keys.values())


def _one_case(group: PeerGroup, runs: Mapping[str, NodeRun], first: CaseValue, thresholds: Thresholds) -> CaseStats:
    measured = [(node, runs[node].cases[first.key].value) for node in group.nodes
                if first.key in runs[node].cases and runs[node].cases[first.key].value is not None]
    values = [value for _, value in measured]
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    spread = max(MAD_SCALE * mad, thresholds.mad_floor * abs(median))
    scores = tuple(_score(node, value, median, spread, first.higher_is_better, group.test, thresholds) for node, value in measured)  # type: ignore[arg-type]
    ran = {node for node, _ in measured}
    not_run = tuple((node, _why_not(runs[node].cases.get(first.key))) for node in group.nodes if node not in ran)
    return CaseStats(group.name, first.benchmark, first.case, first.unit, first.higher_is_better, median, mad, spread, scores, not_run)


def _score(node: str, value: float, median: float, spread: float, higher_is_better: bool, test: PeerTest, thresholds: Thresholds) -> NodeScore:
    worse = (median - value) if higher_is_better else (value - median)
    z = worse / spread if spread > 0 else 0.0
    deficit = worse / abs(median) if median else 0.0
    ratio = value / median if median else math.nan

    def beyond(amount: float, score: float) -> bool:
        if test is PeerTest.NONE:
            return False
        return amount > thresholds.relative and (test is PeerTest.RELATIVE or score > thresholds.z)

    return NodeScore(node, value, ratio, z, beyond(deficit, z), beyond(-deficit, -z))


def _why_not(value: CaseValue | None) -> str:
    if value is None:
        return "not in its run"
    return f"{value.status.value}: {value.reason}" if value.reason else value.status.value


def case_findings(stats: Sequence[CaseStats], group: PeerGroup) -> dict[str, list[Finding]]:
    """Slow nodes, and nodes that did not run a case most of their peers ran."""
    found: dict[str, list[Finding]] = {}
    for case in stats:
        subject = f"{case.benchmark}/{case.case}"
        for score in case.scores:
            if score.outlier:
                how = "" if group.test is PeerTest.BOTH else "; judged by the relative threshold alone"
                found.setdefault(score.node, []).append(Finding(FindingKind.SLOW, subject, (
                    f"{number(score.value)} {case.unit}, {score.ratio:.2f}x its group's median "
                    f"{number(case.median)} (robust z {score.z:.1f}{how})")))
        if group.test is not PeerTest.NONE and len(case.scores) * 2 >= len(group.nodes):
            for node, why in case.not_run:
                found.setdefault(node, []).append(Finding(FindingKind.LOST_CASE, subject, (
                    f"{why}; {len(case.scores)} of its {len(group.nodes)} peers ran it")))
    return found


def capability_matrix(group: PeerGroup, runs: Mapping[str, NodeRun]) -> dict[str, dict[ColumnKey, CapabilityCell]]:
    """Each node's verdict on each capability its group was probed for, marked where it differs
    from the verdict most of the group has (a tie goes to the better verdict)."""
    reference = Profile("peers", tuple(_reference(group, runs)))
    cells: dict[str, dict[ColumnKey, CapabilityCell]] = {}
    for node in group.nodes:
        changes = diff_capabilities(reference, Profile(node, runs[node].capabilities), all_rows=True)
        cells[node] = {
            (c.area, c.name): CapabilityCell(
                c.status_after, odd=c.status_before is not c.status_after, lost=c.lost and len(group.nodes) > 1,
                why=(c.after.why or c.after.fix) if c.after is not None else "not probed on this node")
            for c in changes
        }
    return cells


def _reference(group: PeerGroup, runs: Mapping[str, NodeRun]) -> list[Capability]:
    seen: dict[ColumnKey, list[Capability]] = {}
    for node in group.nodes:
        for cap in runs[node].capabilities:
            seen.setdefault((cap.area, cap.name), []).append(cap)
    chosen = []
    for caps in seen.values():
        votes = Counter(cap.status for cap in caps)
        status = min(votes, key=lambda s: (-votes[s], STATUS_RANK[s]))
        chosen.append(next(cap for cap in caps if cap.status is status))
    return chosen


def capability_findings(cells: Mapping[str, Mapping[ColumnKey, CapabilityCell]]) -> dict[str, list[Finding]]:
    found: dict[str, list[Finding]] = {}
    for node, row in cells.items():
        for (area, name), cell in row.items():
            if cell.lost:
                verdict = probed_verdict(cell.status)
                found.setdefault(node, []).append(Finding(FindingKind.LOST_CAPABILITY, name,
                                                          f"{verdict} here, yes on its peers: {cell.why or 'no reason given'}"))
    return found
