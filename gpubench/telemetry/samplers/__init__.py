"""Samplers: one per telemetry source (see base for what a sampler is).

nvml and amdsmi read GPUs through their vendors' libraries; host reads hwmon, RAPL and the CPU
clocks. Each reading is keyed by a gpubench.telemetry.series.SeriesKey.
"""

from __future__ import annotations

from gpubench.telemetry.samplers.amdsmi import AMDSMI_VIOLATIONS, AmdSmiSampler
from gpubench.telemetry.samplers.base import THROTTLE_REASONS, Sampler, SamplerUnavailable, Values
from gpubench.telemetry.samplers.host import CpuFreqSampler, HwmonSampler, RaplSampler, SensorValue
from gpubench.telemetry.samplers.nvml import NVML_CLOCK_EVENT_REASONS, NvmlSampler, decode_clock_event_reasons

__all__ = [
    "AMDSMI_VIOLATIONS",
    "NVML_CLOCK_EVENT_REASONS",
    "THROTTLE_REASONS",
    "AmdSmiSampler",
    "CpuFreqSampler",
    "HwmonSampler",
    "NvmlSampler",
    "RaplSampler",
    "Sampler",
    "SamplerUnavailable",
    "SensorValue",
    "Values",
    "decode_clock_event_reasons",
]
