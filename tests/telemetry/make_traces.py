"""Regenerates the real-shaped traces in tests/telemetry/data/ (deterministic: fixed seeds).

    python3 tests/telemetry/make_traces.py

The GPU traces follow an H100 SXM (700 W enforced limit) running a bandwidth benchmark as NVML
reports it at 10 Hz: idle about 70 W at 33 °C with the gpu_idle clocks-event reason, a ramp to a
brief ~690 W launch peak, a sustained plateau, then a cooldown where power drops at once and the
temperature decays exponentially. Replace them with traces recorded on a real GPU
(`gpubench telemetry record`) when one is at hand; the tests only rely on the shapes.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from gpubench.telemetry.series import SeriesKey
from gpubench.telemetry.trace import Reading, Trace, write_trace

K = SeriesKey.parse

DATA = Path(__file__).parent / "data"
HZ = 10.0
IDLE_W, IDLE_C = 70.0, 33.0
SW_POWER_CAP, HW_SLOWDOWN, GPU_IDLE = 0x4, 0x8, 0x1
REASON_NAMES = {GPU_IDLE: "gpu_idle", SW_POWER_CAP: "sw_power_cap", HW_SLOWDOWN: "hw_slowdown"}


def gpu_trace(
    *, seed: int, sustained_w: float, hot_c: float, throttle: bool, cool_tau_s: float, cooldown_s: float, start: float = 5.0, end: float = 35.0
) -> Trace:
    rng = random.Random(seed)
    readings = []
    energy = 1_234_567.891  # J since the driver loaded
    temp = IDLE_C
    t = 0.0
    n = int(round((end + cooldown_s) * HZ)) + 1
    for k in range(n):
        t = k / HZ
        mask = 0
        if t < start:
            power = IDLE_W + rng.gauss(0, 1.2)
            sm = 345.0
            mask = GPU_IDLE
        elif t < end:
            x = t - start
            if x < 1.2:  # context load, HBM traffic rising
                power = IDLE_W + (sustained_w - IDLE_W) * (x / 1.2) ** 1.5
            elif x < 1.9:  # launch peak
                power = 690.0 + rng.gauss(0, 3.0)
            elif x < 2.6:  # settling
                power = 690.0 + (sustained_w - 690.0) * (x - 1.9) / 0.7 + rng.gauss(0, 3.0)
            else:
                power = sustained_w + rng.gauss(0, 4.0)
            sm = 1980.0
            if throttle and x >= 2.6:
                if rng.random() < 0.45:
                    mask |= SW_POWER_CAP
                    sm = 1755.0
                if temp > hot_c - 4.0 and rng.random() < 0.3:
                    mask |= HW_SLOWDOWN
                    sm = 1410.0
                    power -= 25.0
            temp = hot_c - (hot_c - IDLE_C) * math.exp(-x / 9.0)
        else:
            x = t - end
            power = IDLE_W + 25.0 * math.exp(-x / 2.5) + rng.gauss(0, 1.2)
            sm = 345.0 if x > 1.0 else 1980.0
            mask = GPU_IDLE if x > 1.0 else 0
            peak_temp = hot_c - (hot_c - IDLE_C) * math.exp(-(end - start) / 9.0)
            temp = IDLE_C + (peak_temp - IDLE_C) * math.exp(-x / cool_tau_s)
        energy += power / HZ
        values = {
            K("gpu0.power_w"): round(power, 2),
            K("gpu0.power_avg_w"): round(power, 2),
            K("gpu0.energy_j"): round(energy, 3),
            K("gpu0.temp_c"): float(round(temp + rng.gauss(0, 0.2))),
            K("gpu0.mem_temp_c"): float(round(temp - 2.0 + rng.gauss(0, 0.2))),
            K("gpu0.sm_clock_mhz"): sm,
            K("gpu0.mem_clock_mhz"): 2619.0,
            K("gpu0.power_limit_w"): 700.0,
            K("gpu0.clocks_event_mask"): float(mask),
            K("cpu.mhz_mean"): round(2000.0 + rng.gauss(0, 30), 1),
        }
        reasons = tuple(name for bit, name in REASON_NAMES.items() if mask & bit)
        readings.append(Reading(round(t, 3), values, reasons))
    meta = {
        "samplers": ["nvml", "cpufreq"],
        "hz": HZ,
        "devices": {"nvml": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "power_limit_w": 700.0}]},
        "shape": "synthetic, H100-like",
    }
    marks = {"baseline_start": 1.0, "start": start, "end": end, "cooldown_end": end + cooldown_s}
    return Trace(meta, tuple(readings), marks, counters={K("gpu0.energy_j"): None})


def rapl_wrap_trace() -> Trace:
    """A CPU-only box: RAPL package and DRAM counters, the package counter wrapping mid-benchmark."""
    rng = random.Random(7)
    wrap_j = 262_143.328850  # max_energy_range_uj = 262143328850
    package, dram = wrap_j - 60.0, 1_000.0
    readings = []
    for k in range(int(8 * HZ) + 1):
        t = k / HZ
        watts = 45.0 if 1.0 <= t < 6.0 else 12.0
        package = (package + watts / HZ) % wrap_j
        dram = (dram + 3.0 / HZ) % wrap_j
        readings.append(
            Reading(
                round(t, 3),
                {
                    K("rapl.package-0.energy_j"): round(package, 6),
                    K("rapl.package-0.dram.energy_j"): round(dram, 6),
                    K("cpu.mhz_mean"): round(2600.0 + rng.gauss(0, 20), 1),
                },
            )
        )
    meta = {
        "samplers": ["rapl", "cpufreq"],
        "hz": HZ,
        "shape": "synthetic, RAPL counter wrapping",
    }
    counters = {K("rapl.package-0.energy_j"): wrap_j, K("rapl.package-0.dram.energy_j"): wrap_j}
    return Trace(meta, tuple(readings), {"start": 1.0, "end": 6.0, "cooldown_end": 8.0}, counters)


def main() -> None:
    DATA.mkdir(exist_ok=True)
    write_trace(DATA / "h100_throttled.json", gpu_trace(seed=1, sustained_w=650.0, hot_c=80.0, throttle=True, cool_tau_s=6.0, cooldown_s=25.0), replace=True)
    write_trace(DATA / "h100_steady.json", gpu_trace(seed=2, sustained_w=520.0, hot_c=66.0, throttle=False, cool_tau_s=5.0, cooldown_s=20.0), replace=True)
    write_trace(DATA / "h100_never_cools.json", gpu_trace(seed=3, sustained_w=650.0, hot_c=80.0, throttle=True, cool_tau_s=20.0, cooldown_s=10.0), replace=True)
    write_trace(DATA / "rapl_wrap.json", rapl_wrap_trace(), replace=True)


if __name__ == "__main__":
    main()
