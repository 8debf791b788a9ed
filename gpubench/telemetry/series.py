"""Which series a reading belongs to: a typed key (source, index, quantity) that samplers produce
and phases select by, and its spelling in a trace file.

Traces spell a key as one name, as gpubench has always written them:

    gpu{N}.{quantity}                      gpu0.power_w, gpu1.temp_c
    cpu.{quantity}                         cpu.mhz_mean
    rapl.{zone}[.{subzone}].{quantity}     rapl.package-0.energy_j, rapl.package-0.dram.energy_j
    hwmon.{chip}.{sensor}.{quantity}       hwmon.k10temp.Tctl.temp_c, hwmon.nct6798.fan2.fan_rpm
    hwmon.{chip}.{channel}_{w|j}           hwmon.amdgpu.power1_w, hwmon.amdgpu.energy1_j

Chip, sensor and zone names never hold a dot (samplers replace anything but letters, digits,
`_`, `+` and `-`), so a name reads back into exactly the key that wrote it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Source(str, enum.Enum):
    GPU = "gpu"  # NVML or amdsmi, one index per device
    HWMON = "hwmon"  # /sys/class/hwmon: index = chip.sensor (or chip.powerN, chip.energyN)
    RAPL = "rapl"  # powercap energy counters: index = zone or zone.subzone
    CPU = "cpu"  # the CPUs as a whole: no index


class Quantity(str, enum.Enum):
    POWER_W = "power_w"  # the device's power now (instant where the device has it)
    POWER_AVG_W = "power_avg_w"  # averaged by the device over its own window
    POWER_USAGE_W = "power_usage_w"  # NVML's nvmlDeviceGetPowerUsage beside an instant reading
    MEM_POWER_W = "mem_power_w"
    POWER_LIMIT_W = "power_limit_w"  # the enforced limit
    ENERGY_J = "energy_j"  # a counter: raw, as the device reports it (may wrap)
    TEMP_C = "temp_c"
    MEM_TEMP_C = "mem_temp_c"
    SM_CLOCK_MHZ = "sm_clock_mhz"
    MEM_CLOCK_MHZ = "mem_clock_mhz"
    CLOCKS_EVENT_MASK = "clocks_event_mask"  # NVML's clocks-event bitmask, as a number
    FAN_RPM = "fan_rpm"
    MHZ_MEAN = "mhz_mean"  # over all CPUs
    MHZ_MIN = "mhz_min"
    MHZ_MAX = "mhz_max"


# hwmon power and energy channels are spelt with the unit on the channel (power1_w, energy1_j)
_CHANNEL_SUFFIX = {Quantity.POWER_W: "_w", Quantity.ENERGY_J: "_j"}


@dataclass(frozen=True, order=True)
class SeriesKey:
    source: Source
    index: str  # which device or sensor of the source ("0", "k10temp.Tctl", "package-0.dram"); "" for the CPUs
    quantity: Quantity

    @classmethod
    def gpu(cls, device: int, quantity: Quantity) -> SeriesKey:
        return cls(Source.GPU, str(device), quantity)

    @classmethod
    def cpu(cls, quantity: Quantity) -> SeriesKey:
        return cls(Source.CPU, "", quantity)

    @classmethod
    def hwmon(cls, chip: str, sensor: str, quantity: Quantity) -> SeriesKey:
        return cls(Source.HWMON, f"{chip}.{sensor}", quantity)

    @classmethod
    def rapl(cls, zone: str, quantity: Quantity = Quantity.ENERGY_J) -> SeriesKey:
        return cls(Source.RAPL, zone, quantity)

    @property
    def device(self) -> str:
        """The first part of the index: the hwmon chip, the top RAPL zone, the GPU number."""
        return self.index.split(".", 1)[0]

    @property
    def is_subzone(self) -> bool:
        """A RAPL zone inside another (its energy is part of its parent's)."""
        return "." in self.index

    @property
    def is_hwmon_channel(self) -> bool:
        """An hwmon powerN or energyN file (spelt chip.powerN_w, chip.energyN_j)."""
        return self.source is Source.HWMON and self.quantity in _CHANNEL_SUFFIX and self.index.count(".") == 1

    @property
    def name(self) -> str:
        if self.source is Source.GPU:
            return f"gpu{self.index}.{self.quantity.value}"
        if self.source is Source.CPU:
            return f"cpu.{self.quantity.value}"
        if self.is_hwmon_channel:
            return f"hwmon.{self.index}{_CHANNEL_SUFFIX[self.quantity]}"
        return f"{self.source.value}.{self.index}.{self.quantity.value}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> SeriesKey:
        """The key a trace's name stands for; ValueError when gpubench never writes such a name."""
        head, _, rest = name.partition(".")
        index, _, last = rest.rpartition(".")
        try:
            if head.startswith("gpu") and head[3:].isdigit() and not index:
                return cls(Source.GPU, str(int(head[3:])), Quantity(last))
            if head == "cpu" and not index:
                return cls(Source.CPU, "", Quantity(last))
            if head == "hwmon" and "." not in index and index:
                return cls._hwmon_channel(index, last)
            if head in (Source.HWMON.value, Source.RAPL.value) and index:
                return cls(Source(head), index, Quantity(last))
        except ValueError:
            pass
        raise ValueError(f"{name!r} is not a series name gpubench writes (e.g. gpu0.power_w, cpu.mhz_mean, rapl.package-0.energy_j)")

    @classmethod
    def _hwmon_channel(cls, chip: str, channel: str) -> SeriesKey:
        for quantity, suffix in _CHANNEL_SUFFIX.items():
            kind = quantity.value.removesuffix(suffix)  # "power", "energy"
            number = channel.removeprefix(kind).removesuffix(suffix)
            if channel.startswith(kind) and channel.endswith(suffix) and number.isdigit():
                return cls(Source.HWMON, f"{chip}.{kind}{number}", quantity)
        raise ValueError(channel)
