"""Judging nodes against their identical peers: median, MAD with a floor, robust z, relative
threshold, lost cases and capabilities, peer groups, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fleet.factories import node_export, write_exports

from gpubench.errors import UserError
from gpubench.fleet.collect import Collected, collect
from gpubench.fleet.judge import judge
from gpubench.fleet.layout import NodeState, NodeStatus
from gpubench.fleet.model import FindingKind, NodeRun, PeerTest, Thresholds
from gpubench.fleet.peers import case_stats, peer_groups
from gpubench.report.fleet_json import report_json
from gpubench.results.jsonio import run_from_dict

CHASE = "chase-cpu0-mem0"  # ns: lower is better
TRIAD = "triad-cpu0-mem0"  # GB/s


def _collected(*documents: dict, statuses: dict | None = None) -> Collected:
    runs = tuple(NodeRun.of(d["metadata"]["hostname"], run_from_dict(d), "test") for d in documents)
    return Collected(runs, statuses or {}, {}, {}, len(runs), ())


def _kinds(report, node: str) -> list[tuple[FindingKind, str]]:  # type: ignore[no-untyped-def]
    return [(f.kind, f.subject) for f in next(n for n in report.nodes if n.node == node).findings]


def test_a_slow_node_among_eight_is_flagged_on_the_cases_it_is_slow_in_and_nobody_else() -> None:
    nodes = [node_export(f"n{i}") for i in range(1, 9)]
    nodes[4] = node_export("n5", slow={CHASE: 1.5, TRIAD: 1.3})
    report = judge(_collected(*nodes), Thresholds())
    assert [n.node for n in report.flagged] == ["n5"]
    assert _kinds(report, "n5") == [(FindingKind.SLOW, f"memtier/{TRIAD}"), (FindingKind.SLOW, f"memtier/{CHASE}")]
    chase = next(c for c in report.cases if c.case == CHASE)
    score = next(s for s in chase.scores if s.node == "n5")
    assert score.ratio == pytest.approx(1.5, rel=0.05) and score.z > 3.5 and score.outlier
    assert report.groups[0].test is PeerTest.BOTH


def test_both_thresholds_must_be_passed_with_five_peers_or_more() -> None:
    # 8% worse: beyond any z-score of this tight group, but under the 10% relative threshold
    nodes = [node_export(f"n{i}", jitter=0.005) for i in range(1, 7)] + [node_export("n7", slow={TRIAD: 1.08}, jitter=0.005)]
    assert judge(_collected(*nodes), Thresholds()).flagged == ()
    flagged = judge(_collected(*nodes), Thresholds(relative=0.05)).flagged
    assert [n.node for n in flagged] == ["n7"]
    # a loose group: 15% worse, beyond 10%, but within the group's own spread (z below 3.5)
    loose = [node_export(f"m{i}", jitter=0.25, seed=i) for i in range(1, 8)] + [node_export("m8", slow={TRIAD: 1.15}, jitter=0.0)]
    report = judge(_collected(*loose), Thresholds())
    triad = next(c for c in report.cases if c.case == TRIAD)
    m8 = next(s for s in triad.scores if s.node == "m8")
    assert m8.z < 3.5 and not m8.outlier


def test_with_fewer_than_five_peers_the_relative_threshold_alone_judges_and_the_report_says_so() -> None:
    nodes = [node_export("a1"), node_export("a2", slow={CHASE: 1.3}), node_export("a3")]
    report = judge(_collected(*nodes), Thresholds())
    assert report.groups[0].test is PeerTest.RELATIVE
    assert [n.node for n in report.flagged] == ["a2"]
    assert "relative threshold alone" in report.flagged[0].findings[0].detail


def test_identical_values_do_not_flag_everything_the_mad_floor_holds() -> None:
    nodes = [node_export(f"n{i}", jitter=0.0) for i in range(1, 7)] + [node_export("n7", jitter=0.0, slow={CHASE: 1.02})]
    report = judge(_collected(*nodes), Thresholds(relative=0.01))
    chase = next(c for c in report.cases if c.case == CHASE)
    assert chase.mad == 0 and chase.spread == pytest.approx(0.01 * chase.median)
    n7 = next(s for s in chase.scores if s.node == "n7")
    assert n7.z == pytest.approx(2.0, rel=1e-6) and not n7.outlier  # 2% over a 1% floor: z 2, not an outlier
    assert report.flagged == ()


def test_a_faster_node_is_noted_not_flagged() -> None:
    nodes = [node_export(f"n{i}") for i in range(1, 7)] + [node_export("n7", slow={TRIAD: 0.6})]
    report = judge(_collected(*nodes), Thresholds())
    triad = next(c for c in report.cases if c.case == TRIAD)
    assert next(s for s in triad.scores if s.node == "n7").faster
    assert report.flagged == ()


def test_lost_capability_and_lost_case_are_flagged_with_their_reasons() -> None:
    nodes = [node_export("n1"), node_export("n2", lose=["io_uring binding"], skip=["randread-4k-qd32-j1-direct"]), node_export("n3")]
    report = judge(_collected(*nodes), Thresholds())
    kinds = _kinds(report, "n2")
    assert (FindingKind.LOST_CAPABILITY, "io_uring binding") in kinds
    assert (FindingKind.LOST_CASE, "iouring/randread-4k-qd32-j1-direct") in kinds
    cell = report.capabilities["n2"][("iouring", "io_uring binding")]
    assert cell.lost and cell.odd and "cannot be used on this node" in cell.why
    assert not any(c.odd for node in ("n1", "n3") for c in report.capabilities[node].values())


def test_peers_are_nodes_of_the_same_hardware_a_different_cpu_is_another_group() -> None:
    nodes = [node_export(f"n{i}") for i in range(1, 5)] + [node_export("odd1", cpu="Other CPU", slow={CHASE: 3.0})]
    groups = peer_groups([NodeRun.of(d["metadata"]["hostname"], run_from_dict(d), "t") for d in nodes], Thresholds())
    assert [(g.name, g.nodes, g.test) for g in groups] == [("G1", ("n1", "n2", "n3", "n4"), PeerTest.RELATIVE),
                                                          ("G2", ("odd1",), PeerTest.NONE)]
    report = judge(_collected(*nodes), Thresholds())
    assert report.flagged == ()  # three times slower, but it has no peer to be compared with


def test_memory_within_three_percent_is_the_same_hardware_what_kernels_reserve_differs() -> None:
    sizes = {"n1": 25276059648, "n2": 25176059648, "n3": 25500000000, "big1": 2 * 25276059648, "big2": 2 * 25276059648 + 10**8}
    documents = []
    for node, size in sizes.items():
        document = node_export(node)
        document["metadata"]["memory_bytes"] = size
        documents.append(document)
    groups = peer_groups([NodeRun.of(d["metadata"]["hostname"], run_from_dict(d), "t") for d in documents], Thresholds())
    assert [(g.nodes, g.hardware.memory) for g in groups] == [(("n1", "n2", "n3"), "23.4 GiB to 23.7 GiB"),
                                                              (("big1", "big2"), "47.1 GiB to 47.2 GiB")]


def test_nodes_that_did_not_finish_are_flagged_with_what_happened() -> None:
    nodes = [node_export("n1"), node_export("n2")]
    statuses = {
        "n1": NodeStatus("n1", NodeState.OK, exit_code=0),
        "n3": NodeStatus("n3", NodeState.NO_REPORT, message="never reported how it ended (srun: Exited with exit code 7)"),
    }
    report = judge(_collected(*nodes, statuses=statuses), Thresholds())
    assert [n.node for n in report.flagged] == ["n3"]
    assert report.flagged[0].findings[0].kind is FindingKind.NOT_FINISHED
    assert "exit code 7" in report.flagged[0].findings[0].detail


def test_nothing_to_judge_is_an_error() -> None:
    statuses = {"n1": NodeStatus("n1", NodeState.NO_REPORT)}
    with pytest.raises(UserError, match="nothing to judge: 1 node"):
        judge(_collected(statuses=statuses), Thresholds())


def test_the_same_exports_in_any_order_give_the_same_report(tmp_path: Path) -> None:
    documents = [node_export(f"n{i}", slow={CHASE: 1.6} if i == 3 else {}) for i in range(1, 7)]
    forward = tmp_path / "a"
    backward = tmp_path / "b"
    write_exports(forward, documents)
    write_exports(backward, reversed(documents))
    reports = [report_json(judge(collect([d], tmp_path / f"{d.name}.db"), Thresholds())) for d in (forward, backward)]
    assert reports[0] == reports[1]
    assert json.loads(reports[0])["flagged"] == ["n3"]


def test_case_statistics_are_the_group_median_and_mad() -> None:
    nodes = [node_export(f"n{i}", jitter=0.0, slow={TRIAD: factor}) for i, factor in enumerate((1.0, 1.0, 1.25, 2.0, 1.25), start=1)]
    runs = {d["metadata"]["hostname"]: NodeRun.of(d["metadata"]["hostname"], run_from_dict(d), "t") for d in nodes}
    group = peer_groups(runs.values(), Thresholds())[0]
    triad = next(c for c in case_stats(group, runs, Thresholds()) if c.case == TRIAD)
    base = runs["n1"].cases[("memtier", TRIAD)].value
    # values 1, 1, 0.8, 0.5, 0.8 of base: median 0.8; deviations 0.2, 0.2, 0, 0.3, 0: their median 0.2
    assert triad.median == pytest.approx(0.8 * base)
    assert triad.mad == pytest.approx(0.2 * base)
    assert triad.spread == pytest.approx(1.4826 * triad.mad)
