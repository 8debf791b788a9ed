"""Series keys: how samplers name what they read, how traces spell it, how phases choose by it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.telemetry.derive import derive, is_thermal
from gpubench.telemetry.series import Quantity, SeriesKey, Source
from gpubench.telemetry.summary import Measure
from gpubench.telemetry.trace import Reading, Trace, read_trace

DATA = Path(__file__).parent / "data"
K = SeriesKey.parse


@pytest.mark.parametrize(
    "name,key",
    [
        ("gpu0.power_w", SeriesKey.gpu(0, Quantity.POWER_W)),
        ("gpu12.clocks_event_mask", SeriesKey.gpu(12, Quantity.CLOCKS_EVENT_MASK)),
        ("cpu.mhz_mean", SeriesKey.cpu(Quantity.MHZ_MEAN)),
        ("rapl.package-0.energy_j", SeriesKey.rapl("package-0")),
        ("rapl.package-0.dram.energy_j", SeriesKey.rapl("package-0.dram")),
        ("hwmon.k10temp.Tctl.temp_c", SeriesKey.hwmon("k10temp", "Tctl", Quantity.TEMP_C)),
        ("hwmon.nct6798.fan2.fan_rpm", SeriesKey.hwmon("nct6798", "fan2", Quantity.FAN_RPM)),
        ("hwmon.amdgpu.power1_w", SeriesKey.hwmon("amdgpu", "power1", Quantity.POWER_W)),
        ("hwmon.amd_energy.energy17_j", SeriesKey.hwmon("amd_energy", "energy17", Quantity.ENERGY_J)),
        ("hwmon.coretemp.power1.temp_c", SeriesKey.hwmon("coretemp", "power1", Quantity.TEMP_C)),  # a sensor labelled like a channel
    ],
)
def test_a_name_reads_back_into_the_key_that_wrote_it(name, key):
    assert SeriesKey.parse(name) == key
    assert key.name == name


@pytest.mark.parametrize("name", ["gpu0.power", "gpux.power_w", "gpu0.x.power_w", "cpu.0.mhz_mean", "rapl.energy_j", "hwmon.chip.power_w",
                                  "hwmon.chip.powerX_w", "hwmon.chip.power1_j", "nvml.gpu0.power_w", "power_w", ""])
def test_a_name_gpubench_never_writes_is_refused(name):
    with pytest.raises(ValueError, match="not a series name gpubench writes"):
        SeriesKey.parse(name)


def test_a_trace_naming_an_unknown_series_is_one_line(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"format": "gpubench-telemetry-trace", "samples": [{"t": 0, "v": {"gpu0.watts": 1.0}}]}))
    with pytest.raises(UserError, match=r"cannot read telemetry trace .*: v: 'gpu0.watts' is not a series name gpubench writes"):
        read_trace(bad)


def test_recorded_traces_read_into_typed_keys_and_write_the_same_names(tmp_path):
    trace = read_trace(DATA / "rapl_wrap.json")
    assert {k.source for r in trace.readings for k in r.values} == {Source.RAPL, Source.CPU}
    assert trace.counters == {K("rapl.package-0.energy_j"): pytest.approx(262143.32885), K("rapl.package-0.dram.energy_j"): pytest.approx(262143.32885)}
    written = trace.to_dict()
    original = json.loads((DATA / "rapl_wrap.json").read_text())
    assert written["samples"] == original["samples"] and written["metadata"] == original["metadata"]


def _trace(values: dict[str, float]) -> Trace:
    """Three readings a second apart, each value rising by 1 a second."""
    readings = tuple(Reading(float(t), {K(k): v + t for k, v in values.items()}) for t in range(3))
    return Trace({"samplers": ["x"]}, readings, {"start": 0.0, "end": 2.0})


def test_gpu_power_is_not_added_to_the_cpu_package_it_is_part_of():
    d = derive(_trace({"gpu0.power_w": 300.0, "gpu1.power_w": 200.0, "rapl.package-0.energy_j": 10.0, "gpu0.energy_j": 5.0}))
    assert d.sources[Measure.POWER] == "GPU board power (2 devices)"
    assert d.series[Measure.POWER] == [500.0, 502.0, 504.0]
    assert list(d.counters) == [K("gpu0.energy_j")] and d.counter_source == "GPU energy counters"


def test_hwmon_energy_counters_alone_are_not_used_they_overlap():
    """amd_energy reports every core and every socket: their sum counts the cores twice."""
    d = derive(_trace({"hwmon.amd_energy.energy1_j": 1.0, "hwmon.amd_energy.energy2_j": 9.0, "rapl.package-0.energy_j": 10.0, "rapl.package-0.core.energy_j": 3.0}))
    assert d.counter_source == "RAPL package energy counters"
    assert list(d.counters) == [K("rapl.package-0.energy_j")]  # the subzone is part of its package
    assert d.sources[Measure.POWER] == "CPU package power from RAPL energy counters"
    assert d.series[Measure.POWER] == [None, 1.0, 1.0]


def test_the_hottest_cpu_sensor_is_preferred_over_other_hwmon_sensors():
    d = derive(_trace({"hwmon.nvme.Composite.temp_c": 70.0, "hwmon.k10temp.Tctl.temp_c": 50.0, "hwmon.k10temp.Tccd1.temp_c": 55.0}))
    assert d.sources[Measure.TEMP] == "hottest CPU sensor (hwmon)"
    assert d.series[Measure.TEMP] == [55.0, 56.0, 57.0]
    assert Measure.POWER not in d.series


@pytest.mark.parametrize(
    "names,thermal",
    [
        (["cpu.mhz_mean"], False),
        (["hwmon.nct6798.fan1.fan_rpm"], False),
        (["hwmon.amd_energy.energy1_j"], False),
        (["gpu0.temp_c"], True),
        (["gpu0.energy_j"], True),
        (["rapl.psys.energy_j"], True),  # a top zone not named package: still the machine's
        (["hwmon.amdgpu.power1_w"], True),
        (["hwmon.k10temp.Tctl.temp_c"], True),
    ],
)
def test_a_session_is_thermal_when_it_reads_power_or_temperature(names, thermal):
    assert is_thermal(K(n) for n in names) is thermal
