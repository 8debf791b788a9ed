"""The typed telemetry summary: what it stores, and that every summary stored before still reads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.results.jsonio import read_run_file, run_from_json, run_to_json
from gpubench.results.model import Run, RunStatus
from gpubench.results.store import Store
from gpubench.telemetry.phases import summarize
from gpubench.telemetry.summary import EnergySource, Measure, Phase, TelemetryStatus, TelemetrySummary, Timeline
from gpubench.telemetry.trace import read_trace

DATA = Path(__file__).parent / "data"
REPORTS = Path(__file__).resolve().parents[2] / "reports"


def test_a_summary_stored_as_a_plain_dictionary_reads_as_the_same_summary_made_today():
    """stored-summary-h100_throttled.json is what gpubench stored for h100_throttled.json (6e13
    bytes) while summaries were dictionaries: some keys absent, others null."""
    stored = json.loads((DATA / "stored-summary-h100_throttled.json").read_text())
    made = summarize(read_trace(DATA / "h100_throttled.json"), bytes_moved=6e13)
    assert TelemetrySummary.from_dict(stored) == made
    assert made.energy_source is EnergySource.COUNTER and made.phase("sustained").throttled_pct_by_reason


@pytest.mark.parametrize("trace", ["h100_throttled.json", "h100_never_cools.json", "rapl_wrap.json"])
def test_to_dict_and_from_dict_round_trip_through_json(trace):
    made = summarize(read_trace(DATA / trace), bytes_moved=1e9)
    again = TelemetrySummary.from_dict(json.loads(json.dumps(made.to_dict())))
    assert again == made
    assert set(made.to_dict()) == set(TelemetrySummary().to_dict())  # every key, always


def test_every_key_is_written_even_where_nothing_was_measured():
    d = TelemetrySummary(samplers=(), status=TelemetryStatus.NONE, not_available={"nvml": "no driver"}).to_dict()
    assert d["status"] == "none" and d["energy_j"] is None and d["phases"] == [] and d["series"] is None
    assert TelemetrySummary.from_dict(d) == TelemetrySummary(not_available={"nvml": "no driver"})


def test_a_phase_writes_its_figures_only_where_they_were_sampled():
    phase = Phase("execution", 0.0, 2.0, 2.0, 20, cpu_mean_mhz=2400.0)
    assert phase.to_dict() == {"name": "execution", "start": 0.0, "end": 2.0, "duration_s": 2.0, "samples": 20, "cpu_mean_mhz": 2400.0}
    pre = Phase("pre_run", -1.0, 0.0, 1.0, 10).to_dict()
    assert pre["idle_power_w"] is None and "requested_tdp_w" in pre  # pre_run always says its idle figures


def test_a_series_gpubench_does_not_know_is_left_out_and_lengths_must_agree():
    timeline = Timeline.from_dict({"t": [0.0, 1.0], "power_w": [1.0, 2.0], "future_quantity_x": [1, 2]})
    assert timeline.values == {Measure.POWER: (1.0, 2.0)}
    with pytest.raises(ValueError, match=r"series.temp_c: 1 values for 2 times"):
        Timeline.from_dict({"t": [0.0, 1.0], "temp_c": [3.0]})


@pytest.mark.parametrize(
    "telemetry,expected",
    [
        ({"status": "hot"}, 'telemetry.status: "hot" is not one of ok, partial, none'),
        ({"phases": [{"name": "x", "start": "0", "end": 1}]}, "telemetry.phases[0].start: expected a number, found a string"),
        ({"energy_j": [1]}, "telemetry.energy_j: expected a number, found a list"),
        ({"events": [{"reason": "hw_slowdown"}]}, "telemetry.events[0].t: expected a number, found null"),
        ({"series": {"t": [0, 1], "power_w": ["a", 1]}}, "telemetry.series.power_w: expected a list of numbers"),
    ],
)
def test_a_malformed_summary_in_an_import_is_one_line_naming_its_place(telemetry, expected):
    document = json.loads(run_to_json(Run("ab12cd34", "x", 1.0, 2.0, RunStatus.COMPLETE, {}, {})))
    document["results"] = [{"benchmark": "b", "case": "c", "unit": "MB/s", "status": "waived", "telemetry": telemetry}]
    with pytest.raises(UserError) as caught:
        run_from_json(json.dumps(document), "run.json")
    assert str(caught.value).startswith(f"run.json: results[0].{expected}")
    assert "\n" not in str(caught.value)


def _exports() -> list[Path]:
    """The run exports kept as evidence (the comparisons beside them are not runs)."""
    return sorted(p for p in REPORTS.rglob("*.json") if "results" in json.loads(p.read_text()))


def test_the_exports_under_reports_import_with_their_telemetry_typed(tmp_path):
    exports = _exports()
    assert len(exports) >= 6
    for path in exports:
        run = read_run_file(path)
        summaries = [r.telemetry for r in run.results if r.telemetry is not None]
        assert summaries, path
        for summary in summaries:
            assert isinstance(summary, TelemetrySummary) and summary.samplers
            assert summary.series is None or all(len(v) == len(summary.series.t) for v in summary.series.values.values())
            assert TelemetrySummary.from_dict(summary.to_dict()) == summary
        stored = json.loads(path.read_text())["results"]
        assert [r.telemetry.to_dict()["cooldown"] if r.telemetry else None for r in run.results] == [(r.get("telemetry") or {}).get("cooldown") for r in stored]


def test_a_summary_survives_the_history_database(tmp_path):
    made = summarize(read_trace(DATA / "h100_throttled.json"), bytes_moved=6e13)
    run = read_run_file(_exports()[0])
    run = replace(run, results=(replace(run.results[0], telemetry=made), replace(run.results[1], telemetry=None)) + run.results[2:])
    with Store.open(tmp_path / "h.db") as store:
        run_id = store.import_run(run)
        back = store.get_run(str(run_id))
    assert back.results[0].telemetry == made
    assert back.results[1].telemetry is None
