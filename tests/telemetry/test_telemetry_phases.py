"""Phase segmentation and summaries on recorded (real-shaped) traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.telemetry.derive import unwrap_counter
from gpubench.telemetry.phases import MAX_SERIES_POINTS, summarize
from gpubench.telemetry.series import SeriesKey
from gpubench.telemetry.summary import EnergySource, Measure, TelemetryStatus, TelemetrySummary
from gpubench.telemetry.trace import Reading, Trace, read_trace

DATA = Path(__file__).parent / "data"
K = SeriesKey.parse


def test_throttled_h100_trace_has_five_phases_and_throttle_shares():
    s = summarize(read_trace(DATA / "h100_throttled.json"), bytes_moved=30 * 2.0e12)
    assert [p.name for p in s.phases] == ["pre_run", "ramp_up", "execution", "sustained", "cooldown"]
    pre = s.phase("pre_run")
    assert pre.idle_power_w == pytest.approx(70, abs=2)
    assert pre.requested_tdp_w == 700.0
    assert s.phase("ramp_up").start == 0.0
    # the launch peak lies in execution, before the plateau
    assert 680 <= s.peak_w <= 700
    assert s.phase("execution").start <= s.peak_t <= s.phase("execution").end
    assert s.sustained_mean_w == pytest.approx(650, abs=10)
    assert s.phase("sustained").end == 30.0
    reasons = s.throttled_pct_by_reason
    assert set(reasons) == {"sw_power_cap", "hw_slowdown"}
    assert 25 < reasons["sw_power_cap"] < 60
    assert 0 < reasons["hw_slowdown"] < reasons["sw_power_cap"]
    assert "gpu_idle" not in reasons
    assert {e.reason for e in s.events} == {"sw_power_cap", "hw_slowdown"}
    assert s.cooldown == "cooled"
    assert 10 < s.time_to_cool_s < 25
    assert s.phase("cooldown").duration_s == pytest.approx(s.time_to_cool_s, abs=0.01)


def test_clock_settings_are_not_throttling_in_the_shares_or_the_events():
    """Applications and display clock settings are choices, not slowdowns; an unnamed bit may be one."""
    trace = read_trace(DATA / "h100_steady.json")
    held = ("applications_clocks_setting", "display_clock_setting", "unknown_0x1000")
    readings = tuple(Reading(r.t, r.values, r.reasons + held) for r in trace.readings)
    s = summarize(Trace(trace.metadata, readings, trace.marks, trace.counters))
    assert s.throttled_pct_by_reason == {"unknown_0x1000": 100.0}
    assert all(set(p.throttled_pct_by_reason) <= {"unknown_0x1000"} for p in s.phases)
    assert [e.reason for e in s.events] == ["unknown_0x1000"]


def test_steady_trace_without_throttling():
    s = summarize(read_trace(DATA / "h100_steady.json"))
    assert s.status is TelemetryStatus.OK
    assert s.throttled_pct_by_reason == {}
    assert s.events == ()
    assert s.sustained_mean_w == pytest.approx(520, abs=10)
    assert s.max_temp_c <= 67
    assert s.time_to_cool_s is not None


def test_energy_from_counter_agrees_with_integrated_power():
    trace = read_trace(DATA / "h100_throttled.json")
    from_counter = summarize(trace)
    assert from_counter.energy_source is EnergySource.COUNTER
    without_counter = Trace(
        trace.metadata,
        tuple(Reading(r.t, {k: v for k, v in r.values.items() if k != K("gpu0.energy_j")}, r.reasons) for r in trace.readings),
        trace.marks,
    )
    integrated = summarize(without_counter)
    assert integrated.energy_source is EnergySource.INTEGRATED
    assert "integrated" in integrated.energy_note
    assert integrated.energy_j == pytest.approx(from_counter.energy_j, rel=0.02)
    # about 30 s at ~640 W
    assert from_counter.energy_j == pytest.approx(19_000, rel=0.05)


def test_joules_per_gigabyte():
    s = summarize(read_trace(DATA / "h100_steady.json"), bytes_moved=100e9)
    assert s.j_per_gb == pytest.approx(s.energy_j / 100, rel=1e-3)
    assert summarize(read_trace(DATA / "h100_steady.json")).j_per_gb is None


def test_trace_that_never_cools_within_the_timeout():
    s = summarize(read_trace(DATA / "h100_never_cools.json"))
    assert s.time_to_cool_s is None
    assert s.cooldown == "did not cool within 10s"
    assert s.phase("cooldown").duration_s == pytest.approx(10.0)


def test_rapl_counter_wraparound_counts_energy_once():
    trace = read_trace(DATA / "rapl_wrap.json")
    raw = [r.values[K("rapl.package-0.energy_j")] for r in trace.readings]
    assert any(b < a for a, b in zip(raw, raw[1:])), "the trace must contain a wraparound"
    s = summarize(trace)
    assert s.energy_source is EnergySource.COUNTER
    assert s.energy_counters == "RAPL package energy counters"
    # 49 intervals at 45 W and one at 12 W inside [start, end]
    assert s.energy_j == pytest.approx(4.9 * 45 + 0.1 * 12, abs=0.05)
    powers = [p for p in s.series.values[Measure.POWER] if p is not None]
    assert min(powers) > 0 and max(powers) < 50


def test_unwrap_counter_with_and_without_a_known_range():
    assert unwrap_counter([90.0, 95.0, 3.0, 8.0], wrap=100.0) == [0.0, 5.0, 13.0, 18.0]
    # no range known: a step backwards is a reset, counted as nothing
    assert unwrap_counter([90.0, 95.0, 3.0, 8.0], wrap=None) == [0.0, 5.0, 5.0, 10.0]
    assert unwrap_counter([None, 1.0, None, 2.0], wrap=None) == [None, 0.0, None, 1.0]


def test_series_is_downsampled_and_json_able():
    trace = read_trace(DATA / "h100_throttled.json")
    long = Trace(trace.metadata, tuple(Reading(i * 0.01, r.values, r.reasons) for i, r in enumerate(trace.readings * 3)), {"start": 1.0, "end": 15.0})
    s = summarize(long)
    series = s.series.to_dict()
    assert len(series["t"]) <= MAX_SERIES_POINTS
    assert {"t", "power_w", "temp_c", "sm_clock_mhz", "cpu_mhz"} <= set(series)
    assert all(len(v) == len(series["t"]) for v in series.values())
    json.dumps(s.to_dict())


def test_power_less_trace_is_one_execution_phase():
    readings = tuple(Reading(i / 10, {K("cpu.mhz_mean"): 2600.0 + i}) for i in range(30))
    s = summarize(Trace({"samplers": ["cpufreq"]}, readings, {"start": 0.5, "end": 2.5, "cooldown_end": 2.5}))
    assert s.status is TelemetryStatus.OK
    assert [p.name for p in s.phases] == ["execution"]
    assert s.energy_j is None and s.energy_source is None
    assert s.time_to_cool_s is None
    assert s.cooldown.startswith("not measured")
    assert s.series.values[Measure.CPU_CLOCK][0] == pytest.approx(2600.0)


def test_no_samplers_is_status_none():
    assert summarize(Trace({"samplers": []}, (), {})) == TelemetrySummary(samplers=(), status=TelemetryStatus.NONE)


@pytest.mark.parametrize("counter_from", [0, 5])
def test_a_counter_read_over_part_of_the_window_gives_way_to_integrated_power(counter_from):
    """A counter that stopped (one reading) or started inside the window held its first or last
    value there: 0 J, or 1,800 J of 3,000, labelled as from the counter."""
    meta = {"samplers": ["nvml"]}
    readings = []
    for t in range(0, 12):
        values = {K("gpu0.power_w"): 300.0}
        if (counter_from == 0 and t == 0) or (counter_from and t >= counter_from):
            values[K("gpu0.energy_j")] = 1000.0 + 300.0 * t
        readings.append(Reading(float(t), values))
    s = summarize(Trace(meta, tuple(readings), {"start": 1.0, "end": 11.0}, {K("gpu0.energy_j"): None}))
    assert s.energy_source is EnergySource.INTEGRATED
    assert s.energy_j == pytest.approx(3000.0)


def test_a_counter_read_over_the_whole_window_is_used():
    meta = {"samplers": ["nvml"]}
    readings = [Reading(float(t), {K("gpu0.power_w"): 300.0, K("gpu0.energy_j"): 1000.0 + 290.0 * t}) for t in range(0, 12)]
    s = summarize(Trace(meta, tuple(readings), {"start": 1.0, "end": 11.0}, {K("gpu0.energy_j"): None}))
    assert s.energy_source is EnergySource.COUNTER
    assert s.energy_j == pytest.approx(2900.0)
