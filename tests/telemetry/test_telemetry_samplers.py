"""Samplers at the library and file boundary: fake pynvml/amdsmi modules, recorded sysfs trees, live psutil."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from gpubench.telemetry.phases import summarize
from gpubench.telemetry.samplers import (
    AmdSmiSampler,
    CpuFreqSampler,
    HwmonSampler,
    NvmlSampler,
    RaplSampler,
    SamplerUnavailable,
    decode_clock_event_reasons,
)
from gpubench.telemetry.series import Quantity, SeriesKey
from gpubench.telemetry.summary import EnergySource, Measure, TelemetryStatus
from gpubench.telemetry.session import Telemetry, VirtualClock

K = SeriesKey.parse


class FakeNVMLError(Exception):
    pass


def fake_pynvml(*, events_api: bool = True, instant_field: bool = True, energy: bool = True) -> types.ModuleType:
    """A pynvml look-alike for one H100 under load, with the calls and constants gpubench uses."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNVMLError
    m.NVML_TEMPERATURE_GPU = 0
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 1, 2
    m.NVML_FI_DEV_MEMORY_TEMP, m.NVML_FI_DEV_POWER_AVERAGE, m.NVML_FI_DEV_POWER_INSTANT = 82, 185, 186
    state = {"energy_mj": 81_234_567_000, "mask": 0x4 | 0x20, "shutdown": 0}
    m.state = state
    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: state.__setitem__("shutdown", state["shutdown"] + 1)
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetPowerUsage = lambda h: 648_250  # mW
    m.nvmlDeviceGetTemperature = lambda h, kind: 71 if kind == 0 else 0
    m.nvmlDeviceGetClockInfo = lambda h, kind: {1: 1755, 2: 2619}[kind]
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000

    def total_energy(h):
        if not energy:
            raise FakeNVMLError("Not Supported")
        state["energy_mj"] += 65_000
        return state["energy_mj"]

    m.nvmlDeviceGetTotalEnergyConsumption = total_energy
    if events_api:
        m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: state["mask"]
    else:
        m.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: state["mask"]

    def field_values(h, ids):
        out = []
        for fid, scope in ids:
            if fid == 186 and scope == 0:
                fv = SimpleNamespace(nvmlReturn=0 if instant_field else 3, valueType=1, value=SimpleNamespace(uiVal=655_500))
            elif fid == 185:
                fv = SimpleNamespace(nvmlReturn=0, valueType=1, value=SimpleNamespace(uiVal=647_000))
            elif fid == 186 and scope == 2:
                fv = SimpleNamespace(nvmlReturn=0, valueType=1, value=SimpleNamespace(uiVal=121_000))
            elif fid == 82:
                fv = SimpleNamespace(nvmlReturn=0, valueType=5, value=SimpleNamespace(siVal=69))
            else:
                fv = SimpleNamespace(nvmlReturn=3, valueType=1, value=SimpleNamespace(uiVal=0))
            out.append(fv)
        return out

    m.nvmlDeviceGetFieldValues = field_values
    return m


def test_clock_event_reasons_decode_to_names():
    assert decode_clock_event_reasons(0) == ()
    assert decode_clock_event_reasons(0x1) == ("gpu_idle",)
    assert decode_clock_event_reasons(0x4 | 0x8 | 0x40) == ("sw_power_cap", "hw_slowdown", "hw_thermal_slowdown")
    assert decode_clock_event_reasons(0x80 | 0x1000) == ("hw_power_brake_slowdown", "unknown_0x1000")


def test_nvml_sampler_decodes_fields_and_reasons(monkeypatch):
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = NvmlSampler.open()
    values, reasons = sampler.read()
    assert values[K("gpu0.power_w")] == pytest.approx(655.5)  # instant field preferred
    assert values[K("gpu0.power_usage_w")] == pytest.approx(648.25)
    assert values[K("gpu0.power_avg_w")] == pytest.approx(647.0)
    assert values[K("gpu0.mem_power_w")] == pytest.approx(121.0)
    assert values[K("gpu0.mem_temp_c")] == 69.0
    assert values[K("gpu0.temp_c")] == 71.0
    assert values[K("gpu0.sm_clock_mhz")] == 1755.0 and values[K("gpu0.mem_clock_mhz")] == 2619.0
    assert values[K("gpu0.power_limit_w")] == 700.0
    assert values[K("gpu0.energy_j")] > 81_234_567.0
    assert reasons == ("sw_power_cap", "sw_thermal_slowdown")
    assert values[K("gpu0.clocks_event_mask")] == float(0x24)
    described = sampler.describe()
    assert described["counters"] == {SeriesKey.gpu(0, Quantity.ENERGY_J): None}
    assert described["devices"]["nvml"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert described["devices"]["nvml"][0]["power_limit_w"] == 700.0
    sampler.close()
    assert fake.state["shutdown"] == 1


def test_nvml_sampler_falls_back_to_throttle_reasons_and_usage(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(events_api=False, instant_field=False, energy=False))
    sampler = NvmlSampler.open()
    values, reasons = sampler.read()
    assert values[K("gpu0.power_w")] == pytest.approx(648.25)
    assert K("gpu0.energy_j") not in values
    assert sampler.describe()["counters"] == {}
    assert reasons == ("sw_power_cap", "sw_thermal_slowdown")


def test_nvml_in_a_session_gives_counter_energy(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    clock = VirtualClock()
    telemetry = Telemetry([NvmlSampler.open()], hz=10.0, clock=clock)
    with telemetry.around("bench", baseline_s=0.5, cooldown_timeout_s=0.3) as window:
        clock.sleep(2.0)
    s = window.summary()
    assert s.energy_source is EnergySource.COUNTER
    # the fake's counter rises 65 J per read, ten reads a second
    assert s.energy_j == pytest.approx(2.0 * 650, rel=0.06)
    assert s.throttled_pct_by_reason == {"sw_power_cap": 100.0, "sw_thermal_slowdown": 100.0}
    telemetry.close()


def test_nvml_unavailable_without_the_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(SamplerUnavailable, match="nvidia-ml-py"):
        NvmlSampler.open()


def test_amdsmi_import_errors_other_than_import_error_are_contained(monkeypatch):
    class HalfInstalledRocm:
        """Finds `amdsmi` and fails while loading it, as a ROCm install missing its library does."""

        def find_spec(self, name, path=None, target=None):
            if name != "amdsmi":
                return None
            import importlib.machinery

            class Loader:
                def create_module(self, spec):
                    raise KeyError("ROCM_PATH")

                def exec_module(self, module):
                    pass

            return importlib.machinery.ModuleSpec("amdsmi", Loader())

    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.setattr(sys, "meta_path", [HalfInstalledRocm(), *sys.meta_path])
    with pytest.raises(SamplerUnavailable, match="KeyError"):
        AmdSmiSampler.open()


def test_amdsmi_sampler_reads_power_energy_temps_and_violations(monkeypatch):
    m = types.ModuleType("amdsmi")
    m.AmdSmiTemperatureType = SimpleNamespace(EDGE=0, HOTSPOT=1, HBM_0=3, HBM_1=4)
    m.AmdSmiTemperatureMetric = SimpleNamespace(CURRENT=0)
    m.AmdSmiClkType = SimpleNamespace(GFX=0, MEM=1)
    m.amdsmi_init = lambda *a: None
    m.amdsmi_shut_down = lambda: None
    m.amdsmi_get_processor_handles = lambda: ["gpu-a"]
    m.amdsmi_get_power_info = lambda h: {"current_socket_power": 512, "average_socket_power": "N/A", "power_limit": 750}
    m.amdsmi_get_energy_count = lambda h: {"energy_accumulator": 1_000_000, "counter_resolution": 15.3, "timestamp": 1}
    m.amdsmi_get_temp_metric = lambda h, kind, metric: {1: 88, 0: 61, 3: 79, 4: 81}[kind]
    m.amdsmi_get_clock_info = lambda h, kind: {"clk": 2100 if kind == 0 else 1300}
    m.amdsmi_get_violation_status = lambda h: {"active_ppt_pwr": True, "active_socket_thrm": False, "active_hbm_thrm": "N/A"}
    monkeypatch.setitem(sys.modules, "amdsmi", m)
    sampler = AmdSmiSampler.open()
    values, reasons = sampler.read()
    assert values[K("gpu0.power_w")] == 512.0
    assert values[K("gpu0.power_limit_w")] == 750.0
    assert values[K("gpu0.energy_j")] == pytest.approx(15.3)
    assert values[K("gpu0.temp_c")] == 88.0  # hotspot first
    assert values[K("gpu0.mem_temp_c")] == 81.0  # the hottest HBM stack
    assert values[K("gpu0.sm_clock_mhz")] == 2100.0
    assert reasons == ("ppt_power",)
    # the accumulator is 64-bit: past 2**32 counts (about 65 kJ) it is a reading, not 'unsupported'
    m.amdsmi_get_energy_count = lambda h: {"energy_accumulator": 2**33, "counter_resolution": 15.3, "timestamp": 2}
    assert sampler.read()[0][K("gpu0.energy_j")] == pytest.approx(2**33 * 15.3 / 1e6)
    m.amdsmi_get_energy_count = lambda h: {"energy_accumulator": 2**64 - 1, "counter_resolution": 15.3, "timestamp": 3}
    assert K("gpu0.energy_j") not in sampler.read()[0]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_rapl_sampler_reads_zones_and_their_wrap_range(tmp_path):
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "name", "package-0\n")
    write(zone / "energy_uj", "262143000000\n")
    write(zone / "max_energy_range_uj", "262143328850\n")
    sub = tmp_path / "sys/class/powercap/intel-rapl:0:0"
    write(sub / "name", "dram\n")
    write(sub / "energy_uj", "5000000\n")
    write(sub / "max_energy_range_uj", "65532610987\n")
    sampler = RaplSampler(tmp_path)
    values, _ = sampler.read()
    assert values == {K("rapl.package-0.energy_j"): pytest.approx(262143.0), K("rapl.package-0.dram.energy_j"): pytest.approx(5.0)}
    assert sampler.describe()["counters"][K("rapl.package-0.energy_j")] == pytest.approx(262143.32885)
    # the counter wraps between two samples: the session still counts the energy once
    clock = VirtualClock()
    telemetry = Telemetry([sampler], hz=10.0, clock=clock)
    counter = [262143.0]

    def advance():
        counter[0] = (counter[0] + 4.0) % 262143.32885  # 40 W at 10 Hz
        (zone / "energy_uj").write_text(f"{int(counter[0] * 1e6)}\n")

    with telemetry.around("bench", baseline_s=0.0, cooldown_timeout_s=0.0) as window:
        for _ in range(20):
            clock.sleep(0.1)
            advance()
    s = window.summary()
    assert s.energy_source is EnergySource.COUNTER
    assert s.energy_j == pytest.approx(80.0, abs=4.1)


def test_rapl_unreadable_counter_says_root_only(tmp_path):
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "name", "package-0")
    (zone / "energy_uj").mkdir()  # exists but cannot be read as a file
    with pytest.raises(SamplerUnavailable, match="root only"):
        RaplSampler(tmp_path)


def test_rapl_absent(tmp_path):
    with pytest.raises(SamplerUnavailable, match="no RAPL"):
        RaplSampler(tmp_path)


def test_hwmon_sampler_reads_a_recorded_tree(tmp_path):
    hw = tmp_path / "sys/class/hwmon/hwmon0"
    write(hw / "name", "k10temp")
    write(hw / "temp1_input", "54250")
    write(hw / "temp1_label", "Tctl")
    hw1 = tmp_path / "sys/class/hwmon/hwmon1"
    write(hw1 / "name", "amdgpu")
    write(hw1 / "power1_average", "187000000")
    write(hw1 / "energy1_input", "123456789")
    write(hw1 / "fan1_input", "1450")
    hw2 = tmp_path / "sys/class/hwmon/hwmon2"
    write(hw2 / "name", "psu")
    write(hw2 / "power1_average", "40000000")
    write(hw2 / "power1_input", "50000000")  # both: the instant reading, as NVML's
    write(hw2 / "power1_cap", "900000000")  # a setting, not a reading
    sampler = HwmonSampler(tmp_path)
    values, _ = sampler.read()
    assert values[SeriesKey.hwmon("psu", "power1", Quantity.POWER_W)] == pytest.approx(50.0)
    assert len([k for k in values if k.device == "psu"]) == 1
    assert values[K("hwmon.k10temp.Tctl.temp_c")] == pytest.approx(54.25)
    assert values[K("hwmon.amdgpu.power1_w")] == pytest.approx(187.0)
    assert values[K("hwmon.amdgpu.energy1_j")] == pytest.approx(123.456789)
    assert values[K("hwmon.amdgpu.fan1.fan_rpm")] == 1450.0
    assert sampler.describe()["counters"] == {K("hwmon.amdgpu.energy1_j"): None}


def test_hwmon_with_psutil_shaped_readings(tmp_path):
    temps = {"coretemp": [SimpleNamespace(label="Package id 0", current=61.0, high=100.0, critical=100.0)]}
    sampler = HwmonSampler(tmp_path, temperatures=lambda: temps, fans=lambda: {})
    values, _ = sampler.read()
    assert values == {K("hwmon.coretemp.Package_id_0.temp_c"): 61.0}


def test_hwmon_with_nothing_exposed(tmp_path):
    with pytest.raises(SamplerUnavailable):
        HwmonSampler(tmp_path)


def test_live_cpufreq_sampler_on_this_machine():
    try:
        sampler = CpuFreqSampler.open()
    except SamplerUnavailable as e:
        pytest.skip(str(e))
    telemetry = Telemetry([sampler], hz=50.0)
    with telemetry.around("live", baseline_s=0.0, cooldown_timeout_s=0.0) as window:
        sum(i * i for i in range(200_000))
    telemetry.close()
    s = window.summary()
    assert s.status is TelemetryStatus.OK and s.samplers == ("cpufreq",)
    assert window.readings and all(r.values.get(K("cpu.mhz_mean"), 0) > 0 for r in window.readings)
    assert any(v is not None for v in s.series.values[Measure.CPU_CLOCK])


def test_summary_of_partial_trace_survives_a_bad_metadata_entry():
    from gpubench.telemetry.trace import Trace

    document = {"format": "gpubench-telemetry-trace", "metadata": {"samplers": ["x"], "counters": {"gpu0.energy_j": None}},
                "marks": {"start": 0.0, "end": 0.0}, "samples": [{"t": 0.0, "v": {"gpu0.energy_j": 1.0, "gpu0.power_w": 10.0}}]}
    trace = Trace.from_dict(document)
    assert trace.counters == {K("gpu0.energy_j"): None}
    assert summarize(trace).status is TelemetryStatus.OK


def test_a_vendor_library_that_fails_after_init_is_shut_down_again(monkeypatch):
    fake = fake_pynvml()
    fake.nvmlDeviceGetHandleByIndex = lambda i: (_ for _ in ()).throw(FakeNVMLError("GPU is lost"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with pytest.raises(SamplerUnavailable, match="NVML device query failed: GPU is lost"):
        NvmlSampler.open()
    assert fake.state["shutdown"] == 1
    fake.nvmlInit = lambda: (_ for _ in ()).throw(FakeNVMLError("Driver Not Loaded"))
    with pytest.raises(SamplerUnavailable, match="NVML did not initialise: Driver Not Loaded"):
        NvmlSampler.open()
    assert fake.state["shutdown"] == 1  # nothing to shut down when init failed
