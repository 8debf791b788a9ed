"""Rules files: what they accept, what they refuse with one clear line, and the verdict per node
with the rule that failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet.factories import node_export

from gpubench.errors import UserError
from gpubench.fleet.model import FindingKind, NodeRun
from gpubench.fleet.rules import check_rules, load_rules
from gpubench.results.jsonio import run_from_dict

TRIAD = ("memtier", "triad-cpu0-mem0")
CHASE = ("memtier", "chase-cpu0-mem0")


def _rules(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return load_rules(path)


def _runs(*documents: dict) -> list[NodeRun]:
    return [NodeRun.of(d["metadata"]["hostname"], run_from_dict(d), "t") for d in documents]


def test_min_max_max_drop_and_capabilities_each_fail_the_node_that_breaks_them(tmp_path: Path) -> None:
    rules = _rules(tmp_path, """
[[rule]]
name = "triad floor"
benchmark = "memtier"
case = "triad-*"
min = 45.0

[[rule]]
name = "chase ceiling"
benchmark = "memtier"
case = "chase-*"
max = 250

[[rule]]
name = "no drop"
benchmark = "iouring"
max_drop = "20%"

[[rule]]
capabilities = ["io_uring", "io_uring binding"]
nodes = "n[1-3]"
""")
    runs = _runs(node_export("n1", jitter=0), node_export("n2", jitter=0, slow={"triad-cpu0-mem0": 1.3, "chase-cpu0-mem0": 1.5}),
                 node_export("n3", jitter=0, lose=["io_uring binding"], slow={"read-128k-qd8-j1-direct": 1.5}),
                 node_export("n4", jitter=0, lose=["io_uring"]))
    baseline = {key: value.value for key, value in runs[0].cases.items() if value.value is not None}
    found, notes = check_rules(rules, runs, baseline)
    assert notes == []
    assert sorted(found) == ["n2", "n3"]  # n4 lost io_uring, but the capability rule covers n[1-3] only
    assert [(f.kind, f.subject) for f in found["n2"]] == [(FindingKind.RULE, "triad floor"), (FindingKind.RULE, "chase ceiling")]
    assert "below the minimum 45" in found["n2"][0].detail
    assert "above the maximum 250" in found["n2"][1].detail
    n3 = {f.subject: f.detail for f in found["n3"]}
    assert "33% worse than the baseline" in n3["no drop"] and "read-128k-qd8-j1-direct" in n3["no drop"]
    assert n3["capabilities io_uring, io_uring binding must be yes"].startswith("io_uring binding: no")


def test_a_case_the_node_did_not_run_fails_its_rule_and_a_baseline_without_the_case_is_noted(tmp_path: Path) -> None:
    rules = _rules(tmp_path, '[[rule]]\nbenchmark = "memtier"\ncase = "chase-*"\nmax_drop = 0.1\n')
    runs = _runs(node_export("n1"), node_export("n2", skip=["chase-cpu0-mem0"]))
    found, notes = check_rules(rules, runs, {})
    assert list(found) == ["n2"] and "not measured (not in its run)" in found["n2"][0].detail
    assert notes and "the baseline has no value for memtier/chase-cpu0-mem0" in notes[0]


@pytest.mark.parametrize("text, message", [
    ("rule = 3", "expected [[rule]] tables only"),
    ("[[rule]]\nbenchmark = 'memtier'\nminimum = 3\n", "unknown key 'minimum'"),
    ("[[rule]]\nbenchmark = 'memtier'\n", "give min, max or max_drop"),
    ("[[rule]]\nbenchmark = 'memtier'\nmin = 'fast'\n", "min: expected a number"),
    ("[[rule]]\nbenchmark = 'memtier'\nmax_drop = '150%'\n", "max_drop: expected a percentage"),
    ("[[rule]]\ncapabilities = []\n", "capabilities: expected a list"),
    ("[[rule]]\ncapabilities = ['io_uring']\nnodes = 'n[1-'\n", "unbalanced"),
    ("[[rule]\n", "not valid TOML"),
])
def test_a_bad_rules_file_is_one_clear_error_naming_the_rule(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        _rules(tmp_path, text)


def test_a_rule_matching_no_case_anywhere_is_an_error_not_a_silent_pass(tmp_path: Path) -> None:
    rules = _rules(tmp_path, '[[rule]]\nname = "typo"\nbenchmark = "memtier"\ncase = "triads-*"\nmin = 1\n')
    with pytest.raises(UserError, match="rule 'typo' matches no case"):
        check_rules(rules, _runs(node_export("n1")), {})
