"""The telemetry session around a benchmark: replayed traces on a virtual clock, failing and absent samplers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.probe.model import Capability, Profile, Status
from gpubench.telemetry import samplers as samplers_mod
from gpubench.telemetry.samplers import SamplerUnavailable
from gpubench.telemetry.series import SeriesKey
from gpubench.telemetry.summary import Measure, TelemetryStatus
from gpubench.telemetry.session import Telemetry, VirtualClock, open_telemetry
from gpubench.telemetry.trace import read_trace

DATA = Path(__file__).parent / "data"
K = SeriesKey.parse


class CountingSampler:
    """Reports a steady CPU clock; counts its reads."""

    name = "fakefreq"

    def __init__(self):
        self.reads = 0

    def read(self):
        self.reads += 1
        return {K("cpu.mhz_mean"): 2400.0}, ()

    def describe(self):
        return {}

    def close(self):
        pass


class BreaksAfter:
    """A power sensor that dies (as a GPU falling off the bus does) after some reads."""

    name = "flaky"

    def __init__(self, good_reads: int):
        self.left = good_reads
        self.closed = False

    def read(self):
        if self.left <= 0:
            raise RuntimeError("GPU is lost")
        self.left -= 1
        return {K("gpu0.power_w"): 300.0, K("gpu0.temp_c"): 50.0}, ()

    def describe(self):
        return {}

    def close(self):
        self.closed = True


def test_replayed_trace_on_virtual_clock_segments_like_the_recording():
    clock = VirtualClock()
    telemetry = open_telemetry(None, hz=10.0, replay=DATA / "h100_throttled.json", clock=clock)
    assert telemetry.samplers == ["replay:nvml+cpufreq"]
    assert telemetry.thermal
    with telemetry.around("membw", baseline_s=5.0, cooldown_timeout_s=25.0) as window:
        clock.sleep(30.0)  # the benchmark runs for the trace's 30 s
    s = window.summary(bytes_moved=60e12)
    telemetry.close()
    assert s.status is TelemetryStatus.OK
    assert [p.name for p in s.phases] == ["pre_run", "ramp_up", "execution", "sustained", "cooldown"]
    assert s.sustained_mean_w == pytest.approx(650, abs=10)
    assert set(s.throttled_pct_by_reason) == {"sw_power_cap", "hw_slowdown"}
    assert s.cooldown == "cooled"
    # the cooldown wait stopped once back in the band, well before its 25 s timeout
    assert window.marks["cooldown_end"] - window.marks["end"] < 25.0
    assert s.time_to_cool_s == pytest.approx(window.marks["cooldown_end"] - window.marks["end"], abs=0.15)
    json.dumps(s.to_dict())


def test_cooldown_wait_gives_up_at_its_timeout():
    clock = VirtualClock()
    telemetry = open_telemetry(None, replay=DATA / "h100_never_cools.json", clock=clock)
    with telemetry.around("hot", baseline_s=5.0, cooldown_timeout_s=4.0) as window:
        clock.sleep(30.0)
    s = window.summary()
    assert window.marks["cooldown_end"] - window.marks["end"] == pytest.approx(4.0, abs=0.11)
    assert s.time_to_cool_s is None
    assert s.cooldown.startswith("did not cool within 4")


def test_cool_down_before_the_next_benchmark_waits_and_records_the_wait():
    clock = VirtualClock()
    telemetry = open_telemetry(None, replay=DATA / "h100_never_cools.json", clock=clock)
    with telemetry.around("first", baseline_s=5.0, cooldown_timeout_s=1.0, cool_down=True) as first:
        clock.sleep(30.0)
    assert "no idle reference" in first.summary().cool_down
    with telemetry.around("second", baseline_s=1.0, cooldown_timeout_s=0.0, cool_down=True, cool_down_timeout_s=3.0) as second:
        clock.sleep(1.0)
    s = second.summary()
    assert s.cool_down == "still above the idle baseline after 3s"
    assert s.cool_down_wait_s == pytest.approx(3.0, abs=0.11)
    assert s.phases[0].name == "cool_down_wait"


def test_pre_warm_runs_until_steady():
    clock = VirtualClock()
    telemetry = open_telemetry(None, replay=DATA / "h100_steady.json", clock=clock)
    runs = []

    def warm():
        runs.append(clock.now())
        clock.sleep(0.5)

    with telemetry.around("warm", baseline_s=5.0, pre_warm=warm, cooldown_timeout_s=0.0) as window:
        clock.sleep(2.0)
    s = window.summary()
    assert s.pre_warm.startswith("steady after")
    assert len(runs) >= 4  # the ramp and launch peak are not steady
    assert "pre_warm" in [p.name for p in s.phases]
    assert window.marks["start"] - window.marks["pre_warm_start"] == pytest.approx(s.pre_warm_s)


def test_sampler_failing_mid_run_leaves_the_others_and_the_result():
    clock = VirtualClock()
    flaky, steady = BreaksAfter(good_reads=15), CountingSampler()
    telemetry = Telemetry([flaky, steady], hz=10.0, clock=clock)
    with telemetry.around("bench", baseline_s=0.5, cooldown_timeout_s=0.5) as window:
        clock.sleep(3.0)
        result = 42
    assert result == 42
    s = window.summary()
    assert s.status is TelemetryStatus.PARTIAL
    assert s.partial == {"flaky": "RuntimeError: GPU is lost"}
    assert flaky.closed
    late = [r for r in window.readings if r.t > window.marks["start"] + 2.0]
    assert late and all(K("cpu.mhz_mean") in r.values and K("gpu0.power_w") not in r.values for r in late)
    assert s.samplers == ("flaky", "fakefreq")


def test_body_exception_propagates_and_sampling_stops():
    clock = VirtualClock()
    sampler = CountingSampler()
    telemetry = Telemetry([sampler], clock=clock)
    with pytest.raises(ValueError):
        with telemetry.around("boom"):
            clock.sleep(1.0)
            raise ValueError("benchmark failed")
    reads = sampler.reads
    clock.sleep(5.0)
    assert sampler.reads == reads


def test_no_sampler_available_means_status_none_and_nothing_breaks(monkeypatch, tmp_path):
    def unavailable(*_a, **_k):
        raise SamplerUnavailable("psutil reports no CPU frequency on this machine")

    monkeypatch.setattr(samplers_mod.CpuFreqSampler, "open", classmethod(lambda cls: unavailable()))
    telemetry = open_telemetry(None, root=tmp_path)
    assert telemetry.samplers == []
    assert set(telemetry.not_available) == {"nvml", "amdsmi", "hwmon", "rapl", "cpufreq"}
    warmed = []
    with telemetry.around("bench", cool_down=True, pre_warm=lambda: warmed.append(1)) as window:
        value = sum(range(10))
    assert value == 45
    assert warmed == [1]
    s = window.summary(bytes_moved=1e9)
    assert s.samplers == () and s.status is TelemetryStatus.NONE
    assert s.not_available["cpufreq"] == "psutil reports no CPU frequency on this machine"
    assert s.phases == () and s.energy_j is None and s.series is None
    telemetry.close()


def test_profile_without_gpus_skips_gpu_libraries(tmp_path):
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    profile = Profile(root="/", capabilities=(Capability("gpu", "gpus", Status.NO, why="no GPU found"),))
    telemetry = open_telemetry(profile, root=tmp_path)
    assert "probe found none" in telemetry.not_available["nvml"]
    telemetry.close()


def test_cpu_only_sampling_skips_the_baseline_and_cooldown_waits():
    clock = VirtualClock()
    telemetry = Telemetry([CountingSampler()], clock=clock)
    assert not telemetry.thermal
    with telemetry.around("bench", baseline_s=1.0, cooldown_timeout_s=10.0) as window:
        clock.sleep(1.0)
    assert window.marks["start"] == window.marks["baseline_start"]
    assert window.marks["cooldown_end"] == window.marks["end"]
    s = window.summary()
    assert [p.name for p in s.phases] == ["execution"]
    assert s.series.values[Measure.CPU_CLOCK]


def test_live_thread_on_the_real_clock_collects_readings():
    sampler = CountingSampler()
    telemetry = Telemetry([sampler], hz=50.0)
    with telemetry.around("live", baseline_s=0.0, cooldown_timeout_s=0.0) as window:
        import time

        time.sleep(0.2)
    telemetry.close()
    assert len(window.readings) >= 2
    assert all(b.t >= a.t for a, b in zip(window.readings, window.readings[1:]))
    assert window.summary().status is TelemetryStatus.OK


def test_recorded_window_round_trips_through_a_trace_file(tmp_path):
    from gpubench.telemetry.trace import write_trace

    clock = VirtualClock()
    telemetry = open_telemetry(None, replay=DATA / "h100_steady.json", clock=clock)
    with telemetry.around("x", baseline_s=5.0, cooldown_timeout_s=20.0) as window:
        clock.sleep(30.0)
    write_trace(tmp_path / "t.json", window.trace())
    again = read_trace(tmp_path / "t.json")
    from gpubench.telemetry.phases import summarize

    assert summarize(again).energy_j == pytest.approx(window.summary().energy_j, rel=1e-6)
    assert again.metadata["label"] == "x"
