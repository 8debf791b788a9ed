"""The run pipeline around any benchmark: repetitions, deadlines, bad samples, stored status."""

import math
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from gpubench.bench.core import hostspeed
from gpubench.bench.core import registry
from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample
from gpubench.bench.core.runner import CaseRun, RepeatPolicy, merge_round, options_for, parse_params, plan
from gpubench.errors import UserError
from gpubench.bench.core.job import JobOptions, Progress, run_job
from gpubench.probe.model import Profile
from gpubench.results.model import ResultStatus, RunStatus
from gpubench.results.store import Store
from gpubench.telemetry.series import Quantity, SeriesKey

PROFILE = Profile("/", ())


class Scripted:
    """A benchmark double whose repetitions return the values it is given, in order."""

    key = "scripted"
    description = "returns scripted values"
    options = ("values",)

    def requires(self, profile):
        return None

    def cases(self, profile, size, options):
        values = options.get("values", "1,1,1,1,1,1,1")
        return [Case("only", {"values": values}, "units")]

    @contextmanager
    def prepare(self, case, ctx):
        values = iter(float(v) for v in case.params["values"].split(","))
        yield lambda: Sample(next(values))


def case_run(values, deadline=float("inf"), policy=RepeatPolicy(warmup=1, min_reps=3, max_reps=6, target_spread=0.05)):
    bench = Scripted()
    case = bench.cases(PROFILE, "quick", {"values": values})[0]
    ctx = Context(scratch=Path("."), profile=PROFILE, deadline=deadline)
    return CaseRun("scripted", bench, case, ctx, policy).run()


def test_repeats_until_the_spread_settles():
    result = case_run("9,1,1,1,1,1,1")  # the 9 is the warm-up
    assert result.status is ResultStatus.OK
    assert result.samples == (1.0, 1.0, 1.0)


def test_stops_at_the_cap_when_it_never_settles():
    result = case_run("0,1,5,1,5,1,5,1,5")
    assert result.samples == (1.0, 5.0, 1.0, 5.0, 1.0, 5.0)


def test_a_passed_deadline_stops_after_one_repetition():
    result = case_run("0,2,2,2,2", deadline=time.monotonic() - 1)
    assert result.status is ResultStatus.OK
    assert result.samples == (2.0,)


def test_a_non_finite_sample_fails_the_case_and_keeps_the_others():
    result = case_run("0,1,2,inf,3")
    assert result.status is ResultStatus.FAILED
    assert "not a finite number" in result.reason
    assert result.samples == (1.0, 2.0)
    assert result.summary is not None and result.summary.n == 2


def test_an_unexpected_error_fails_the_case_and_says_where_it_was_raised():
    result = case_run("0,1,2,x,3")  # float('x') raises inside this file's generator, called by the runner
    assert result.status is ResultStatus.FAILED and result.samples == (1.0, 2.0)
    assert result.reason.startswith("ValueError: could not convert string to float: 'x' (raised at test_runner.py:")
    assert "in <genexpr>, from gpubench/bench/core/runner.py:" in result.reason


def test_each_sample_carries_the_machines_speed_read_just_before_it(monkeypatch):
    readings = iter(range(100, 200))
    monkeypatch.setattr(hostspeed, "reference", lambda: float(next(readings)))
    result = case_run("9,1,1,1,1")  # the warm-up (9) reads none
    assert [m["host_speed"] for m in result.sample_metrics] == [100.0, 101.0, 102.0]


def test_the_machine_reference_is_the_work_of_its_faster_pass(monkeypatch):
    assert math.isfinite(hostspeed.reference()) and hostspeed.reference() > 0
    ticks = iter([0.0, 0.004, 1.0, 1.002])  # passes of 4 ms and 2 ms
    monkeypatch.setattr(hostspeed.time, "perf_counter", lambda: next(ticks))
    assert hostspeed.reference() == pytest.approx(64 * 65536 / 0.002 / 1e6)


def test_parameters_for_a_benchmark_not_selected_are_refused(monkeypatch):
    monkeypatch.setitem(registry.BENCHMARKS, "scripted", f"{__name__}:Scripted")
    with pytest.raises(UserError, match="not selected"):
        plan(PROFILE, ["scripted"], "quick", {"memtier": {"size": "1"}})
    with pytest.raises(UserError, match="taken by none"):
        plan(PROFILE, ["scripted"], "quick", {"*": {"bogus": "1"}})


@pytest.mark.parametrize("pair", ["iouring.bs=", "psync.qd= ", "direct=", "iouring.mix="])
def test_an_empty_parameter_value_is_an_error_naming_the_parameter(pair):
    key = pair.partition("=")[0]
    with pytest.raises(UserError, match=rf"^--param '{pair}': {key}: empty value"):
        parse_params([pair])


def test_a_parameter_given_twice_is_an_error_not_a_silent_choice():
    with pytest.raises(UserError, match=r"^--param 'iouring.bs=8k': iouring.bs is already set \(to 4k\); give each parameter once"):
        parse_params(["iouring.bs=4k", "iouring.qd=32", "iouring.bs=8k"])
    assert parse_params(["bs=4k", "iouring.bs=8k"]) == {"*": {"bs": "4k"}, "iouring": {"bs": "8k"}}  # the named one wins


def test_a_ring_parameter_given_to_all_goes_to_iouring_only():
    """-p sqpoll=1 with the default selection: psync has no ring, so it takes neither sqpoll nor
    registered, and the parameter reaches iouring alone."""
    params = {"*": {"sqpoll": "1", "registered": "0"}}
    plan(PROFILE, ["iouring", "psync"], "quick", params)  # claimed: by iouring
    assert options_for(registry.load("iouring"), params) == {"sqpoll": "1", "registered": "0"}
    assert options_for(registry.load("psync"), params) == {}
    with pytest.raises(UserError, match="^psync: unknown parameter 'sqpoll'"):
        plan(PROFILE, ["psync"], "quick", {"psync": {"sqpoll": "1"}})


def test_a_parameter_unknown_to_a_waived_benchmark_is_still_an_error():
    """gds is waived without a GPU; a typo in its parameters must fail here as it would there."""
    assert registry.load("gds").requires(PROFILE)
    with pytest.raises(UserError, match="^gds: unknown parameter 'nosuch'; known: "):
        plan(PROFILE, ["gds"], "quick", {"gds": {"nosuch": "1"}})
    plan(PROFILE, ["gds"], "quick", {"gds": {registry.load("gds").options[0]: "1"}})  # a known one passes


def test_only_and_skip_take_commas_as_compare_does():
    from gpubench.bench.core.runner import select

    assert select(["iouring,psync"], []) == select(["iouring", "psync"], []) == ["iouring", "psync"]
    assert "psync" not in select([], ["psync, memtier"]) and "memtier" not in select([], ["psync, memtier"])
    with pytest.raises(UserError, match="no benchmark 'nope'"):
        select(["iouring,nope"], [])


def test_an_empty_parameter_value_ends_the_run_in_one_line(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "results.db"
    args = ["run", "--quick", "--only", "psync", "-p", "psync.bs=", "-p", "psync.size=1M", "-p", "psync.runtime=0.01",
            "--rounds", "1", "--no-report", "--no-telemetry", "--db", str(db)]
    proc = subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == ("gpubench: error: --param 'psync.bs=': psync.bs: empty value; "
                           "give a value or leave the parameter out\n")
    assert not db.exists()


def test_a_run_stopped_by_an_error_is_never_stored_as_complete(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.BENCHMARKS, "scripted", f"{__name__}:Scripted")

    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(CaseRun, "run", broken)
    db = tmp_path / "h.db"
    with pytest.raises(RuntimeError):
        run_job(JobOptions(db=db, keys=("scripted",), size="quick", telemetry=False), Progress(), PROFILE)
    with Store.open(db, create=False, readonly=True) as store:
        assert store.get_run("latest").status is RunStatus.INTERRUPTED


def test_run_repeat_stores_each_run_and_names_the_set(tmp_path):
    import json

    from typer.testing import CliRunner

    from gpubench.cli import app

    db = tmp_path / "results.db"
    args = ["run", "--quick", "--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=1MiB",
            "-p", "memtier.hops=10000", "--repeat", "2", "--rounds", "2", "--label", "twice", "--no-report", "--no-telemetry",
            "--db", str(db), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["label"] for r in runs] == ["twice", "twice"] and runs[0]["uid"] != runs[1]["uid"]
    assert [r["id"] for r in runs] == [1, 2]  # the numbers compare takes
    assert "gpubench compare 1,2 OTHER_RUNS" in result.stderr
    with Store.open(db, create=False, readonly=True) as store:
        assert [r.n_results for r in store.list_runs()] == [1, 1]
        (chase,) = store.get_run("latest").results
    assert len(chase.by_round()) == 2  # --rounds


def test_run_prints_the_machines_speed_under_its_table(tmp_path):
    from typer.testing import CliRunner

    from gpubench.cli import app

    args = ["run", "--quick", "--only", "memtier", "-p", "memtier.kernels=chase", "-p", "memtier.chase_size=1MiB",
            "-p", "memtier.hops=10000", "--rounds", "1", "--no-report", "--no-telemetry", "--db", str(tmp_path / "r.db")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table, speed = result.stdout.split("machine speed: ")
    speed = " ".join(speed.split())  # however the console wrapped it
    assert "chase" in table and " MB/s by a fixed CPU reference timed before every repetition (10th-90th percentile " in speed


VISITS: list[str] = []


class Sweeping:
    """Two cases; the second fails in the round given by its params; records every visit."""

    key = "sweeping"
    description = "two cases, visits recorded"
    options = ()

    def requires(self, profile):
        return None

    def cases(self, profile, size, options):
        return [Case("a", {"fail_in": 0}, "units"), Case("b", {"fail_in": 2}, "units")]

    @contextmanager
    def prepare(self, case, ctx):
        VISITS.append(case.name)
        if case.params["fail_in"] and VISITS.count(case.name) == case.params["fail_in"]:
            raise BenchFailure("verify mismatch")
        level = 10.0 * VISITS.count(case.name)
        yield lambda: Sample(level)


class NeverHere:
    key = "neverhere"
    description = "always waived"
    options = ()

    def requires(self, profile):
        return "needs hardware this machine lacks"


def test_every_case_is_measured_in_rounds_that_sweep_the_plan(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.BENCHMARKS, "sweeping", f"{__name__}:Sweeping")
    monkeypatch.setitem(registry.BENCHMARKS, "neverhere", f"{__name__}:NeverHere")
    VISITS.clear()
    db = tmp_path / "h.db"
    run = run_job(JobOptions(db=db, keys=("neverhere", "sweeping"), size="quick", telemetry=False), Progress(), PROFILE)
    rounds = RepeatPolicy.for_size("quick").rounds
    assert rounds >= 2
    # a, b, a, b(fails), a: b is not visited again once it failed
    assert VISITS == ["a", "b", "a", "b"] + ["a"] * (rounds - 2)
    assert [r.case for r in run.results] == ["*", "a", "b"]  # plan order, the waiver first as planned
    waived, a, b = run.results
    assert waived.status is ResultStatus.WAIVED
    assert a.status is ResultStatus.OK
    assert a.by_round() == tuple(tuple([10.0 * n] * len(group)) for n, group in enumerate(a.by_round(), start=1))
    assert len(a.by_round()) == rounds and a.summary.n == len(a.samples)
    assert b.status is ResultStatus.FAILED and b.reason == "round 2: verify mismatch"
    assert b.by_round() == ((10.0,) * len(b.samples),)  # round 1's samples kept
    with Store.open(db, create=False, readonly=True) as store:
        stored = store.get_run("latest")
    assert [r.case for r in stored.results] == ["*", "a", "b"] and stored.results[1].samples == a.samples


class StoppedInRoundTwo:
    """One case; Ctrl-C arrives in the middle of its second round."""

    key = "stopped"
    description = "interrupted in round 2"
    options = ()
    visits = 0

    def requires(self, profile):
        return None

    def cases(self, profile, size, options):
        return [Case("a", {}, "units")]

    @contextmanager
    def prepare(self, case, ctx):
        StoppedInRoundTwo.visits += 1
        reps = iter(range(100))

        def measure():
            if StoppedInRoundTwo.visits == 2 and next(reps) == 2:
                raise KeyboardInterrupt
            return Sample(float(StoppedInRoundTwo.visits))

        yield measure


def test_ctrl_c_in_a_later_round_keeps_the_completed_rounds_as_they_were(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.BENCHMARKS, "stopped", f"{__name__}:StoppedInRoundTwo")
    StoppedInRoundTwo.visits = 0
    run = run_job(JobOptions(db=tmp_path / "h.db", keys=("stopped",), size="quick", telemetry=False), Progress(), PROFILE)
    assert run.status is RunStatus.INTERRUPTED
    (a,) = run.results
    assert a.status is ResultStatus.OK and a.reason == ""  # what a kill at that moment would have left
    assert len(a.by_round()) == 1 and set(a.samples) == {1.0}


def test_merge_round_tags_each_sample_with_its_round():
    first = case_run("0,1,1,1")
    second = case_run("0,2,2,2")
    merged = merge_round(merge_round(None, first, 1), second, 2)
    assert merged.samples == (1.0,) * 3 + (2.0,) * 3
    assert [m["round"] for m in merged.sample_metrics] == [1, 1, 1, 2, 2, 2]
    assert merged.by_round() == ((1.0,) * 3, (2.0,) * 3)
    assert merged.summary.n == 6 and merged.started == first.started
    took = (first.ended - first.started) + (second.ended - second.started)
    assert merged.extra["seconds_in_rounds"] == pytest.approx(took)  # not first.started to second.ended


class Messages(Progress):
    def __init__(self):
        self.lines: list[str] = []

    def message(self, text):
        self.lines.append(text)


class ClockOnly:
    """A telemetry source with no temperature or power reading."""

    name = "clockonly"

    def read(self):
        return {SeriesKey.cpu(Quantity.MHZ_MEAN): 2400.0}, ()

    def describe(self):
        return {}

    def close(self):
        pass


class Thermometer(ClockOnly):
    name = "thermometer"

    def read(self):
        return {SeriesKey.gpu(0, Quantity.TEMP_C): 40.0}, ()


@pytest.mark.parametrize("flags,telemetry,expected", [
    ({"cool_down": True, "pre_warm": True}, None,
     "--cool-down and --pre-warm cannot act in this run: telemetry is off (--no-telemetry)"),
    ({"cool_down": True}, ClockOnly,
     "--cool-down cannot act here: no temperature or power reading (readable: clockonly; see gpubench telemetry sources)"),
    ({"pre_warm": True}, ClockOnly,
     "--pre-warm cannot act here: no temperature or power reading (readable: clockonly; see gpubench telemetry sources); "
     "--pre-warm runs each case once before measuring"),
    ({"cool_down": True, "pre_warm": True}, Thermometer, None),
    ({}, None, None),
])
def test_cool_down_and_pre_warm_say_once_when_they_cannot_act(tmp_path, monkeypatch, flags, telemetry, expected):
    from gpubench.bench.core import job
    from gpubench.telemetry.session import Telemetry

    monkeypatch.setitem(registry.BENCHMARKS, "scripted", f"{__name__}:Scripted")
    if telemetry is not None:
        monkeypatch.setattr(job, "_open_telemetry", lambda profile, opts, progress: Telemetry([telemetry()]))
    progress = Messages()
    opts = JobOptions(db=tmp_path / "h.db", keys=("scripted",), size="quick", telemetry=telemetry is not None, **flags)
    run_job(opts, progress, PROFILE)
    notes = [line for line in progress.lines if "--cool-down" in line or "--pre-warm" in line]
    assert notes == ([expected] if expected else [])


@pytest.mark.parametrize("inside", [False, True])
def test_run_refuses_a_reports_dir_that_is_a_file_before_running(tmp_path, inside):
    from typer.testing import CliRunner

    from gpubench.cli import app

    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    reports = blocker / "sub" if inside else blocker
    db = tmp_path / "r.db"
    args = ["run", "--quick", "--only", "memtier", "--no-telemetry", "--db", str(db), "--reports-dir", str(reports)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith(f"--reports-dir {reports} is not a directory")
    assert not db.exists() and blocker.read_text() == "keep me"  # nothing ran, nothing stored


# --- run-wide settings -----------------------------------------------------------------------

def run_cli(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gpubench", "run", *args, "--no-report", "--no-telemetry", "--db", str(db)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--only", "memtier", "--verify"],
     "--verify applies to none of the selected benchmarks (memtier); it is for iouring, psync"),
    (["--only", "memtier,memcpy", "--drop-cache"],
     "--drop-cache applies to none of the selected benchmarks (memtier, memcpy); it is for iouring, psync, gds"),
    (["--only", "psync", "-p", "psync.verify=1"],
     "--verify is a run-wide setting, not a benchmark parameter (given as --param psync.verify=1)"),
    (["--only", "psync", "-p", "target=/tmp"],
     "--target is a run-wide setting, not a benchmark parameter (given as --param target=/tmp)"),
])
def test_a_setting_is_worded_as_its_flag(tmp_path, args, message):
    db = tmp_path / "r.db"
    proc = run_cli(*args, db=db)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"gpubench: error: {message}\n")
    assert not db.exists()


def _fifo(tmp_path: Path) -> Path:
    import os

    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("target, what", [
    (lambda tmp: Path("/proc"), "on proc (mounted at /proc), a pseudo-filesystem of the kernel's, not storage: give a "
                                "directory, a regular file or a block device on a real filesystem"),
    (lambda tmp: Path("/proc/self/status"), "on proc (mounted at /proc), a pseudo-filesystem of the kernel's, not "
                                            "storage: give a directory, a regular file or a block device on a real filesystem"),
    (lambda tmp: Path("/sys/kernel"), "on sysfs (mounted at /sys), a pseudo-filesystem of the kernel's, not storage: "
                                      "give a directory, a regular file or a block device on a real filesystem"),
    (lambda tmp: Path("/dev/null"), "a character device, not storage: give a directory, a regular file or a block device"),
    (_fifo, "a FIFO (named pipe), not storage: give a directory, a regular file or a block device"),
    (lambda tmp: tmp / "missing", "No such file or directory"),
], ids=["proc", "proc-file", "sysfs", "char-device", "fifo", "missing"])
def test_a_target_that_is_no_storage_is_one_line_before_anything_runs(tmp_path, target, what):
    path = target(tmp_path)
    if not path.exists() and path.parent == Path("/sys"):
        pytest.skip("no sysfs here")
    db = tmp_path / "r.db"
    proc = run_cli("--only", "psync", "--target", str(path), db=db)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"gpubench: error: --target {path}: {what}\n")
    assert not db.exists()


def test_every_setting_has_its_flag_and_the_flag_exists():
    import typer

    from gpubench.bench.core.settings import Setting
    from gpubench.cli import app
    from gpubench.cli.run import FLAGS

    assert set(FLAGS) == set(Setting)
    (run,) = [c for name, c in typer.main.get_command(app).commands.items() if name == "run"]
    options = {opt for p in run.params for opt in p.opts}
    assert set(FLAGS.values()) <= options


def test_progress_on_a_terminal_that_went_away_draws_nothing_more_and_never_raises():
    import errno

    from gpubench.cli.progress import StderrProgress

    calls = []

    class LostTerminal:
        is_terminal = False

        def print(self, *args, **kwargs):
            calls.append(args)
            raise OSError(errno.EIO, "Input/output error")

    progress = StderrProgress()
    progress.console = LostTerminal()
    progress.message("one")
    progress.message("two")
    progress.case_started("psync", "a", 1, 2)
    assert len(calls) == 1 and progress.gone
