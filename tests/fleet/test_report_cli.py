"""`gpubench fleet report`: a directory of node exports in, the slow node and the node that lost a
capability named in the terminal (80 columns), JSON, Markdown, JUnit and HTML; exit 0/3/1/2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fleet.factories import node_export, write_exports

from gpubench.cli import app
from gpubench.errors import UserError
from gpubench.fleet.layout import FleetDir, LaunchRecord, NodeState, NodeStatus

runner = CliRunner()
SLOW, BROKEN = "n3", "n6"


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fleet") / "run"
    documents = [node_export(f"n{i}") for i in range(1, 9)]
    documents[2] = node_export(SLOW, slow={"chase-cpu0-mem0": 1.6, "randread-4k-qd32-j1-buffered": 1.4})
    documents[5] = node_export(BROKEN, lose=["io_uring binding"])
    write_exports(directory, documents)
    return directory


def _report(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["fleet", "report", *args], env={"NO_COLOR": "1", "COLUMNS": "80", **(env or {})})


def _error(result) -> str:  # type: ignore[no-untyped-def]
    """The one line gpubench's main() prints for a UserError (raised through the runner)."""
    assert isinstance(result.exception, UserError), result.exception
    return str(result.exception)


def test_terminal_names_exactly_the_slow_and_the_broken_node_and_fits_80_columns(fleet_dir: Path, tmp_path: Path) -> None:
    result = _report(str(fleet_dir), "--db", str(tmp_path / "f.db"))
    assert result.exit_code == 3, result.stderr
    assert "8 node(s), 8 with a run to judge, in 1 group(s) of identical hardware; 2 flagged" in result.stdout
    flagged = result.stdout.split("Flagged nodes")[1].split("Peer groups")[0]
    assert f"│ {SLOW} " in flagged and f"│ {BROKEN} " in flagged
    assert not any(f"│ n{i} " in flagged for i in (1, 2, 4, 5, 7, 8))
    assert "chase-cpu0-mem0" in flagged and "lost capability" in flagged and "io_uring binding" in flagged
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "merged 8 node run(s)" in result.stderr and "(8 new)" in result.stderr
    assert f"2 of 8 node(s) flagged: {SLOW}, {BROKEN}" in result.stderr


def test_json_is_the_only_thing_on_stdout_and_names_the_findings(fleet_dir: Path, tmp_path: Path) -> None:
    result = _report(str(fleet_dir), "--db", str(tmp_path / "f.db"), "--json")
    assert result.exit_code == 3
    document = json.loads(result.stdout)
    assert document["kind"] == "fleet-report" and document["flagged"] == [SLOW, BROKEN]
    nodes = {n["node"]: n for n in document["nodes"]}
    assert {f["kind"] for f in nodes[SLOW]["findings"]} == {"slow"}
    assert [f["subject"] for f in nodes[BROKEN]["findings"]] == ["io_uring binding"]
    assert document["groups"][0]["judged_by"] == "robust z and relative"
    columns = [c["name"] for c in document["capabilities"]["columns"]]
    cell = document["capabilities"]["nodes"][BROKEN][columns.index("io_uring binding")]
    assert cell["status"] == "no" and cell["lost"]


def test_markdown_junit_and_a_second_merge_that_adds_nothing(fleet_dir: Path, tmp_path: Path) -> None:
    db, junit = tmp_path / "f.db", tmp_path / "fleet.xml"
    first = _report(str(fleet_dir), "--db", str(db), "--markdown", "--junit", str(junit))
    assert first.exit_code == 3
    assert first.stdout.startswith("# gpubench fleet report")
    assert f"| {SLOW} | slow |" in first.stdout and f"| {BROKEN} | lost capability |" in first.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "8" and suite.get("failures") == "2"
    failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == {SLOW, BROKEN}
    again = _report(str(fleet_dir), "--db", str(db), "--junit", str(junit))
    assert "already exists" in _error(again) and "merged" not in again.stderr  # refused before any work
    again = _report(str(fleet_dir), "--db", str(db), "--junit", str(junit), "--force")
    assert again.exit_code == 3 and "(0 new)" in again.stderr


def test_html_lists_the_flagged_nodes_first_and_renders_in_chromium(fleet_dir: Path, tmp_path: Path) -> None:
    from tests.report.chromium import dump_dom, ink_stats, screenshot

    page = tmp_path / "fleet.html"
    result = _report(str(fleet_dir), "--db", str(tmp_path / "f.db"), "--html", str(page))
    assert result.exit_code == 3
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    order = [html.index(marker) for marker in ('id="flagged"', 'id="heat"', 'id="capabilities"', 'id="groups"')]
    assert order == sorted(order)
    flagged = html[order[0]:order[1]]
    assert f">{SLOW}<" in flagged and f">{BROKEN}<" in flagged and ">n1<" not in flagged
    dom = dump_dom(page, tmp_path)
    assert dom.count('class="outlier"') == 2  # n3's two slow cases, outlined in the heat map
    assert "where its peers have yes" in dom
    colours, inked = ink_stats(screenshot(page, tmp_path))
    assert colours > 20 and inked > 0.05


def test_no_node_flagged_exits_0(tmp_path: Path) -> None:
    directory = tmp_path / "fine"
    write_exports(directory, [node_export(f"n{i}") for i in range(1, 6)])
    result = _report(str(directory))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "no node is flagged" in result.stdout
    assert (directory / "fleet.db").is_file()  # DIR/fleet.db by default


def test_nodes_that_never_reported_are_listed_not_dropped(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    write_exports(directory, [node_export("n1"), node_export("n2")])
    fleet = FleetDir(directory)
    fleet.logs.mkdir()
    fleet.write_launch(LaunchRecord(("srun",), ("n1", "n2", "n3"), 3, 1.0, ended=2.0, exit_code=7,
                                    node_errors={"n3": "Exited with exit code 7"}))
    for node in ("n1", "n2"):
        fleet.write_status(NodeStatus(node, NodeState.OK, exit_code=0, step_nodes="n[1-3]"))
    fleet.output("n3").write_text("Traceback (most recent call last):\nImportError: broken site-packages\n")
    result = _report(str(directory), "--json")
    assert result.exit_code == 3
    n3 = next(n for n in json.loads(result.stdout)["nodes"] if n["node"] == "n3")
    assert n3["state"] == "no report" and n3["run_uid"] is None
    assert "srun: Exited with exit code 7" in n3["findings"][0]["detail"]
    assert "ImportError: broken site-packages" in n3["findings"][0]["detail"]


def test_rules_and_a_baseline_through_the_command(fleet_dir: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "chase within 20%"\nbenchmark = "memtier"\ncase = "chase-*"\nmax_drop = "20%"\n')
    without = _report(str(fleet_dir), "--db", str(tmp_path / "a.db"), "--rules", str(rules))
    assert "needs --baseline" in _error(without)
    baseline = fleet_dir / "n1.json"
    result = _report(str(fleet_dir), "--db", str(tmp_path / "b.db"), "--rules", str(rules), "--baseline", str(baseline), "--json")
    assert result.exit_code == 3
    nodes = {n["node"]: n for n in json.loads(result.stdout)["nodes"]}
    assert [f["subject"] for f in nodes[SLOW]["findings"] if f["kind"] == "rule"] == ["chase within 20%"]
    by_run = _report(str(fleet_dir), "--db", str(tmp_path / "b.db"), "--rules", str(rules), "--baseline", "1", "--json")
    assert by_run.exit_code == 3 and json.loads(by_run.stdout)["baseline"] == json.loads(result.stdout)["baseline"]


def test_bad_input_and_usage(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _report(str(empty))
    assert "nothing to judge" in _error(nothing) and nothing.stdout == ""
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "n1.json").write_text("{")
    unreadable = _report(str(garbage))
    assert "could not be read" in _error(unreadable)
    both = _report(str(empty), "--json", "--markdown")
    assert both.exit_code == 2
    bad_threshold = _report(str(empty), "--relative", "150%")
    assert bad_threshold.exit_code == 2


def test_an_unreadable_export_among_good_ones_flags_its_node(fleet_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "mixed"
    write_exports(directory, [node_export(f"n{i}") for i in range(1, 4)])
    (directory / "n4.json").write_text('{"schema_version": 1}')
    result = _report(str(directory), "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["flagged"] == ["n4"]
