"""fleet run's parts that need no cluster: host lists, the Slurm command it builds, what it
refuses before anything starts, and how a fleet directory is read back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpubench.cli import app
from gpubench.cli.fleet import parse_duration
from gpubench.errors import UserError
from gpubench.fleet.hostlist import compress, expand, natural_key
from gpubench.fleet.launch import LaunchOptions, NodeCounts, launch, slurm_command
from gpubench.fleet.layout import FleetDir, LaunchRecord, NodeState, NodeStatus, settle

runner = CliRunner()


@pytest.mark.parametrize("text, names", [
    ("n[1-3,5]", ["n1", "n2", "n3", "n5"]),
    ("gpu[08-11]", ["gpu08", "gpu09", "gpu10", "gpu11"]),
    ("rack[1-2]-n[1-2],login", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2", "login"]),
    ("a, b", ["a", "b"]),
])
def test_host_lists_expand_and_compress_back(text: str, names: list[str]) -> None:
    assert expand(text) == names
    assert sorted(expand(compress(names)), key=natural_key) == sorted(names, key=natural_key)


@pytest.mark.parametrize("text", ["n[1-3", "n]1", "n[a-b]", "n[9-1]", "n[1-100000000]"])
def test_malformed_host_lists_are_refused(text: str) -> None:
    with pytest.raises(UserError, match="host list"):
        expand(text)


def test_compress_joins_padded_and_plain_numbers_of_one_width() -> None:
    assert compress(["gpu01", "gpu02", "gpu10", "gpu03"]) == "gpu[01-03,10]"
    assert compress(["n10", "n2", "n1"]) == "n[1-2,10]"
    assert compress(["login", "n7"]) == "login,n7"


def test_outside_an_allocation_it_makes_one_and_runs_one_task_per_node_in_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    opts = LaunchOptions(tmp_path / "out", ("--quick",), nodes="gpu[01-04]", partition="gpu", max_time=600, python="/opt/py")
    command = slurm_command(opts, FleetDir(tmp_path / "out"), deadline=1000.0, allocated=False)
    step = command.index("srun")
    assert command[:step] == ["salloc", "--exclusive", "--job-name=gpubench-fleet", "--nodelist=gpu[01-04]", "--nodes=4",
                              "--partition=gpu", "--time=12"]
    assert command[step:step + 6] == ["srun", "--ntasks-per-node=1", "--whole", "--kill-on-bad-exit=0", "--input=none",
                                      f"--output={tmp_path / 'out' / 'logs' / '%N.out'}"]
    node = command.index("/opt/py")
    assert command[node:] == ["/opt/py", "-m", "gpubench", "fleet", "node", "--out", str(tmp_path / "out"), "--deadline", "970.000",
                              "--", "--quick"]


def test_inside_an_allocation_it_runs_the_step_there_and_refuses_allocation_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    opts = LaunchOptions(tmp_path, (), count=2)
    command = slurm_command(opts, FleetDir(tmp_path), deadline=None, allocated=True)
    assert command[0] == "srun" and "--nodes=2" in command and "salloc" not in command
    result = runner.invoke(app, ["fleet", "run", "--partition", "gpu", "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, UserError) and "inside one (job 42)" in str(result.exception)


def test_bad_run_options_fail_once_before_anything_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    out = tmp_path / "out"
    for args, message in ((["--", "--bogus"], "No such option"), (["--", "--db", "x.db"], "--db is set by fleet run"),
                          (["--", "--rounds", "0"], "--rounds"), (["--max-time", "soon"], "duration")):
        result = runner.invoke(app, ["fleet", "run", "--nodes", "n1", "--out", str(out), *args])
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert not out.exists()
    result = runner.invoke(app, ["fleet", "run", "--out", str(out)])
    assert isinstance(result.exception, UserError) and "give --nodes LIST or -N COUNT" in str(result.exception)
    assert parse_duration("90", "x") == 90 and parse_duration("15m", "x") == 900 and parse_duration("2h", "x") == 7200


def test_a_directory_holding_a_fleet_run_is_not_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    (tmp_path / "n1.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a fleet run"):
        launch(LaunchOptions(tmp_path, (), nodes="n1"), progress=None)  # type: ignore[arg-type]
    assert (tmp_path / "n1.json").read_text() == "{}"


def test_without_slurm_on_the_path_it_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="cannot start salloc.*Slurm's client"):
        launch(LaunchOptions(tmp_path / "out", (), nodes="n1"), progress=None)  # type: ignore[arg-type]


def test_statuses_settle_once_the_launch_ended(tmp_path: Path) -> None:
    fleet = FleetDir(tmp_path)
    fleet.logs.mkdir()
    fleet.write_launch(LaunchRecord(("srun",), (), 3, 1.0))
    fleet.write_status(NodeStatus("n2", NodeState.RUNNING, started=5.0, step_nodes="n[1-3]"))
    fleet.write_status(NodeStatus("n10", NodeState.OK, exit_code=0, step_nodes="n[1-3]"))
    (fleet.logs / "n3.status.json").write_text("{garbled")
    running = settle(fleet)
    assert [(n, s.state) for n, s in running.items()] == [("n1", NodeState.NO_REPORT), ("n2", NodeState.RUNNING),
                                                          ("n3", NodeState.NO_REPORT), ("n10", NodeState.OK)]
    fleet.write_launch(LaunchRecord(("srun",), (), 3, 1.0, ended=9.0, exit_code=1, node_errors={"n2": "Killed"}))
    ended = settle(fleet)
    assert ended["n2"].state is NodeState.NO_REPORT and ended["n2"].started == 5.0 and "srun: Killed" in ended["n2"].message
    assert json.loads(fleet.launch.read_text())["node_errors"] == {"n2": "Killed"}


def test_node_counts() -> None:
    assert NodeCounts(5, 1, 2, 1).waiting == 1
    assert NodeCounts(None, 1, 0, 0).waiting is None
    assert os.path.basename(FleetDir(Path("/x")).output_pattern) == "%N.out"


def test_a_step_host_list_that_cannot_be_read_names_no_node(tmp_path: Path) -> None:
    fleet = FleetDir(tmp_path)
    fleet.logs.mkdir()
    fleet.write_status(NodeStatus("n1", NodeState.OK, exit_code=0, step_nodes="n[1-"))
    fleet.write_status(NodeStatus("n2", NodeState.OK, exit_code=0, step_nodes="n[2-3]"))
    assert NodeStatus("n1", NodeState.OK, step_nodes="n[1-").step_node_names == ()
    assert list(settle(fleet)) == ["n1", "n2", "n3"]
    from gpubench.fleet.launch import _count

    assert _count(fleet.statuses(), None) == NodeCounts(2, 0, 2, 0)
