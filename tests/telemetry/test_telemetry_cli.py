"""The telemetry commands through the CLI: stdout, stderr and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpubench.cli import app
from gpubench.telemetry import samplers as samplers_mod
from gpubench.telemetry.samplers import SamplerUnavailable
from gpubench.telemetry.series import SeriesKey

DATA = Path(__file__).parent / "data"
K = SeriesKey.parse


@pytest.fixture
def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2 keeps them apart already
        return CliRunner()


def test_show_prints_the_phases_of_a_trace(runner):
    res = runner.invoke(app, ["telemetry", "show", str(DATA / "h100_throttled.json"), "--bytes", "6e13"])
    assert res.exit_code == 0, res.output
    for word in ("pre_run", "ramp_up", "execution", "sustained", "cooldown", "sw_power_cap", "J/GB", "(counter)"):
        assert word in res.stdout


def test_show_json_is_only_json(runner):
    res = runner.invoke(app, ["telemetry", "show", str(DATA / "h100_never_cools.json"), "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["cooldown"] == "did not cool within 10s"


def test_show_of_a_file_that_is_not_a_trace_is_a_user_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    from gpubench.errors import UserError

    with pytest.raises(UserError, match="not a gpubench-telemetry-trace"):
        app(["telemetry", "show", str(bad)], standalone_mode=False)


def test_show_of_a_directory_says_it_wants_a_trace_file(tmp_path):
    from gpubench.errors import UserError

    with pytest.raises(UserError) as caught:
        app(["telemetry", "show", str(tmp_path)], standalone_mode=False)
    assert str(caught.value) == f"{tmp_path} is a directory; give a trace file written by gpubench telemetry record"


def test_record_writes_a_replayable_trace(runner, tmp_path):
    out = tmp_path / "trace.json"
    res = runner.invoke(app, ["telemetry", "record", str(out), "--seconds", "0.3", "--hz", "20", "--json"])
    if res.exit_code != 0 and "nothing to record" in str(res.exception):
        pytest.skip("no telemetry source readable on this machine")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["samples"] >= 1
    shown = runner.invoke(app, ["telemetry", "show", str(out), "--json"])
    assert json.loads(shown.stdout)["samplers"] == data["summary"]["samplers"]
    # never overwritten
    again = runner.invoke(app, ["telemetry", "record", str(out), "--seconds", "0.1"])
    assert again.exit_code != 0


def test_sources_json_lists_every_sampler(runner):
    res = runner.invoke(app, ["telemetry", "sources", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert set(data["samplers"]) | set(data["not_available"]) == {"nvml", "amdsmi", "hwmon", "rapl", "cpufreq"}


def test_calibrate_json_reports_overhead_and_control(runner):
    res = runner.invoke(app, ["calibrate", "telemetry", "--seconds", "0.05", "--rounds", "2", "--hz", "20", "--json"])
    if res.exit_code != 0 and "nothing to measure" in str(res.exception):
        pytest.skip("no telemetry source readable on this machine")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert len(data["with_s"]) == len(data["without_s"]) == len(data["control_s"]) == 2
    assert {"median", "ci_low", "ci_high"} <= set(data["overhead_pct"])
    assert data["samplers"]


def test_calibrate_without_any_source_is_a_user_error(monkeypatch, tmp_path):
    from gpubench.errors import UserError
    from gpubench.calibrate.telemetry import calibrate
    from gpubench.telemetry.session import open_telemetry

    monkeypatch.setattr(samplers_mod.CpuFreqSampler, "open", classmethod(lambda cls: (_ for _ in ()).throw(SamplerUnavailable("none"))))
    telemetry = open_telemetry(None, root=tmp_path)
    with pytest.raises(UserError, match="nothing to measure"):
        calibrate(0.05, 1, telemetry=telemetry)


class Thermometer:
    name = "thermometer"

    def read(self):
        return {K("gpu0.temp_c"): 40.0}, ()

    def describe(self):
        return {}

    def close(self):
        pass


class SlowClock(Thermometer):
    """Capped the way cpufreq is: read at most once a second."""

    name = "slowclock"
    min_interval_s = 1.0

    def read(self):
        return {K("cpu.mhz_mean"): 2400.0}, ()


def test_record_and_calibrate_say_the_rate_each_source_runs_at(runner, tmp_path, monkeypatch):
    import gpubench.telemetry
    from gpubench.telemetry.session import Telemetry

    monkeypatch.setattr(gpubench.telemetry, "open_telemetry", lambda profile, hz: Telemetry([Thermometer(), SlowClock()], hz))
    res = runner.invoke(app, ["telemetry", "record", str(tmp_path / "t.json"), "--seconds", "0.1", "--hz", "100"])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines()[0] == "recording 0.1 s: thermometer at 100 Hz, slowclock at 1 Hz (its cap)"

    import gpubench.calibrate.telemetry as calibrate_mod

    monkeypatch.setattr(calibrate_mod, "open_telemetry", lambda profile, hz: Telemetry([SlowClock()], hz))
    res = runner.invoke(app, ["calibrate", "telemetry", "--seconds", "0.05", "--rounds", "1", "--hz", "20"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("telemetry overhead with slowclock at 1 Hz (its cap), python workload")


def test_unavailable_sources_name_absolute_paths(tmp_path):
    from gpubench.telemetry.session import open_telemetry

    reasons = open_telemetry(None, root=tmp_path).not_available
    assert "(/proc/driver/nvidia is absent)" in reasons["nvml"]
    assert "(/sys/module/amdgpu is absent)" in reasons["amdsmi"]
    assert "(/sys/class/powercap/intel-rapl:*)" in reasons["rapl"]


@pytest.mark.parametrize(
    "document,expected",
    [
        ('{"format": "gpubench-telemetry-trace", "samples": []}', "the trace has no samples"),
        ('{"format": "gpubench-telemetry-trace", "samples": [{"t": 1e999}]}', "a sample's t must be a finite number"),
        ('{"format": "gpubench-telemetry-trace", "samples": [{"t": ' + "1" * 400 + '}]}', "a sample's t must be a finite number"),
        ('{"format": "gpubench-telemetry-trace", "samples": [{"t": 0, "v": {"gpu0.power_w": "hot"}}]}', 'v.gpu0.power_w must be a number, found "hot"'),
        ('{"format": "gpubench-telemetry-trace", "samples": [{"t": 0, "reasons": "idle"}]}', "a sample's reasons must be a list"),
        ('{"format": "gpubench-telemetry-trace", "version": "1", "samples": [{"t": 0}]}', 'version must be a whole number, found "1"'),
        ('{"format": "gpubench-telemetry-trace", "samples": [1]}', "samples must be a list of objects"),
        ('{"format": "gpubench-telemetry-trace", "marks": {"start": "x"}, "samples": [{"t": 0}]}', 'marks.start must be a number'),
    ],
)
def test_a_malformed_trace_is_one_line_naming_the_problem(tmp_path, document, expected):
    from gpubench.errors import UserError
    from gpubench.telemetry.trace import read_trace

    bad = tmp_path / "bad.json"
    bad.write_text(document)
    with pytest.raises(UserError) as caught:
        read_trace(bad)
    assert str(caught.value).startswith(f"cannot read telemetry trace {bad}: ")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_trace_is_read_within_its_limit_also_from_a_pipe(tmp_path, monkeypatch):
    from gpubench import files
    from gpubench.errors import UserError
    from gpubench.telemetry import trace

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = subprocess.Popen(["sh", "-c", f"head -c 4096 /dev/zero > {pipe}"])
    monkeypatch.setattr(files, "MAX_READ_BYTES", 1024)
    with pytest.raises(UserError, match=r"is larger than"):
        trace.read_trace(pipe)
    writer.kill()
    writer.wait()
