"""The run pipeline around any benchmark: repetitions, deadlines, bad samples, stored status."""

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from gpubench.bench import registry
from gpubench.bench.interface import Case, Context, Sample
from gpubench.bench.runner import CaseRun, RepeatPolicy, plan
from gpubench.errors import UserError
from gpubench.job import JobOptions, Progress, run_job
from gpubench.probe.model import Profile
from gpubench.results.model import ResultStatus, RunStatus
from gpubench.results.store import Store

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


def test_parameters_for_a_benchmark_not_selected_are_refused(monkeypatch):
    monkeypatch.setitem(registry.BENCHMARKS, "scripted", f"{__name__}:Scripted")
    with pytest.raises(UserError, match="not selected"):
        plan(PROFILE, ["scripted"], "quick", {"memtier": {"size": "1"}})
    with pytest.raises(UserError, match="taken by none"):
        plan(PROFILE, ["scripted"], "quick", {"*": {"bogus": "1"}})


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
            "-p", "memtier.hops=10000", "--repeat", "2", "--label", "twice", "--no-report", "--no-telemetry", "--db", str(db), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["label"] for r in runs] == ["twice", "twice"] and runs[0]["uid"] != runs[1]["uid"]
    assert "gpubench compare 1,2 OTHER_RUNS" in result.stderr
    with Store.open(db, create=False, readonly=True) as store:
        assert [r.n_results for r in store.list_runs()] == [1, 1]
