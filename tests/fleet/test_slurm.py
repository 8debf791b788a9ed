"""gpubench fleet run on a real Slurm cluster of three nodes (see conftest.py), then fleet report:
the slow node (its slurmd in a CPU-limited cgroup) and the node that lost a capability (a broken
liburing first on its PYTHONPATH, which the probe's child inherits) are flagged, and no other."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.fleet.conftest import SLOW_NODE, Slurm

BROKEN_NODE = "n3"
# one cheap case: a short pointer chase, whose time is all CPU time, so that the CPU-limited node
# is the slowest whatever else runs on the machine (no telemetry)
RUN = ("--quick", "--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=8M", "-p", "memtier.hops=300000",
       "--no-telemetry")


def _broken_liburing(directory: Path) -> Path:
    package = directory / "broken-site" / "liburing"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('this node has a broken liburing')\n")
    return package.parent


def _first_on_path(directory: Path) -> str:
    """PYTHONPATH with `directory` first (a task's environment is not expanded by a shell)."""
    return os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH", "")) if p)


def _statuses(out: Path) -> dict[str, dict]:
    return {p.name.split(".")[0]: json.loads(p.read_text()) for p in (out / "logs").glob("*.status.json")}


def test_fleet_run_and_report_flag_the_slow_node_and_the_one_that_lost_a_capability(slurm: Slurm, tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    broken = _broken_liburing(tmp_path)
    with slurm.node_env(BROKEN_NODE, PYTHONPATH=_first_on_path(broken)):
        started = time.monotonic()
        run = slurm.gpubench("fleet", "run", "--nodes", "n[1-3]", "--out", str(out), "--node-dir", str(tmp_path / "local"),
                             "--max-time", "5m", "--", *RUN, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - started < 240
    assert sorted(p.name for p in out.glob("*.json")) == ["n1.json", "n2.json", "n3.json"]
    statuses = _statuses(out)
    assert {node: s["state"] for node, s in statuses.items()} == {"n1": "ok", "n2": "ok", "n3": "ok"}
    assert all(s["step_nodes"] == "n[1-3]" for s in statuses.values())
    assert "salloc: Granted job allocation" in run.stderr and "nodes: 3 done, 0 running, 0 failed" in run.stderr
    for node in ("n1", "n2", "n3"):  # each node's history and lock are its own, on its local directory
        assert any((tmp_path / "local").glob(f"{node}-*.db")) and (tmp_path / "local" / f"{node}.lock").is_file()
        assert "memtier/chase-cpu0-mem0" in (out / "logs" / f"{node}.out").read_text()

    report = slurm.gpubench("fleet", "report", str(out), "--json", "--relative", "30%", cwd=tmp_path)
    assert report.returncode == 3, report.stderr
    document = json.loads(report.stdout)
    findings = {n["node"]: n["findings"] for n in document["nodes"]}
    assert document["flagged"] == [SLOW_NODE, BROKEN_NODE], findings
    nodes = {n["node"]: n for n in document["nodes"]}
    assert ("slow", "memtier/chase-cpu0-mem0") in {(f["kind"], f["subject"]) for f in nodes[SLOW_NODE]["findings"]}
    assert [(f["kind"], f["subject"]) for f in nodes[BROKEN_NODE]["findings"]] == [("lost capability", "io_uring binding")]
    assert "broken liburing" in nodes[BROKEN_NODE]["findings"][0]["detail"]
    assert document["groups"][0]["judged_by"] == "relative alone (a group of fewer than 5)"

    html, junit = tmp_path / "fleet.html", tmp_path / "fleet.xml"
    text = slurm.gpubench("fleet", "report", str(out), "--relative", "30%", "--html", str(html), "--junit", str(junit), cwd=tmp_path)
    assert text.returncode == 3 and "(0 new)" in text.stderr
    assert f"2 of 3 node(s) flagged: {SLOW_NODE}, {BROKEN_NODE}" in text.stderr
    assert junit.read_text().count("<failure") == 2 and html.read_text().count('class="outlier') >= 1


def test_a_node_that_dies_is_recorded_with_what_srun_said_inside_an_allocation(slurm: Slurm, tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    site = tmp_path / "dying-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos._exit(7)\n")  # this node's Python dies at start
    with slurm.node_env("n1", PYTHONPATH=_first_on_path(site)):
        run = slurm.gpubench("fleet", "run", "--out", str(out), "--node-dir", str(tmp_path / "local"), "--", *RUN,
                             cwd=tmp_path, prefix=("salloc", "-N", "2", "-w", "n1,n3", "--exclusive"))  # not the slow node: minutes there
    assert run.returncode == 1, run.stdout + run.stderr
    assert "srun: error: n1: task 0: Exited with exit code 7" in run.stderr
    statuses = _statuses(out)
    assert "n1" not in statuses and statuses["n3"]["state"] == "ok"
    assert " n1 " in run.stdout and "no report" in run.stdout and "exit code 7" in run.stdout

    report = slurm.gpubench("fleet", "report", str(out), "--json", "--relative", "30%", cwd=tmp_path)
    assert report.returncode == 3
    nodes = {n["node"]: n for n in json.loads(report.stdout)["nodes"]}
    assert nodes["n1"]["state"] == "no report" and nodes["n1"]["run_uid"] is None
    assert "Exited with exit code 7" in nodes["n1"]["findings"][0]["detail"]


def test_max_time_stops_every_node_in_time_and_keeps_what_they_finished(slurm: Slurm, tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    # far longer than the 40 s allowed (about a minute on an idle machine, in rounds of a few seconds
    # that may take 15 s each before they count as failed), on the two nodes that are not CPU-limited
    long_run = ("--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=8M", "-p", "memtier.hops=20000000",
                "--rounds", "20", "--no-telemetry")
    started = time.monotonic()
    run = slurm.gpubench("fleet", "run", "--nodes", "n[1,3]", "--out", str(out), "--node-dir", str(tmp_path / "local"),
                         "--max-time", "40s", "--", *long_run, cwd=tmp_path)
    took = time.monotonic() - started
    assert run.returncode == 1, run.stdout + run.stderr
    assert took < 40 + 30, took
    statuses = _statuses(out)
    assert {node: s["state"] for node, s in statuses.items()} == {"n1": "timed out", "n3": "timed out"}, run.stdout
    for node in statuses:
        export = json.loads((out / f"{node}.json").read_text())
        assert export["status"] == "interrupted" and export["results"], node  # its completed rounds are kept
