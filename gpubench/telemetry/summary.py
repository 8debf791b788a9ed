"""The telemetry summary of one benchmark window: what a result stores and the reports show.

Produced by gpubench.telemetry.phases.summarize (through a session's Window.summary) and stored
with every result as `to_dict()`; `from_dict` reads every summary gpubench has written, so old
exports and histories keep importing. The dictionary always has every top-level key (null where
nothing was measured); a phase's dictionary has its figures only where the series behind them
were sampled.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gpubench.errors import json_kind


class TelemetryStatus(str, enum.Enum):
    OK = "ok"
    PARTIAL = "partial"  # a sampler stopped or the summary failed: see `partial`
    NONE = "none"  # no source was readable: see `not_available`


class EnergySource(str, enum.Enum):
    COUNTER = "counter"  # the devices' energy counters, each read across the whole window
    INTEGRATED = "integrated"  # the sampled power integrated over the window


class Measure(str, enum.Enum):
    """A machine-wide series derived from the samplers' readings; the value is its key in JSON."""

    POWER = "power_w"
    TEMP = "temp_c"
    MEM_TEMP = "mem_temp_c"
    SM_CLOCK = "sm_clock_mhz"
    MEM_CLOCK = "mem_clock_mhz"
    MEM_POWER = "mem_power_w"
    POWER_LIMIT = "power_limit_w"
    CPU_CLOCK = "cpu_mhz"
    FAN = "fan_rpm"


class PhaseName(str, enum.Enum):
    COOL_DOWN_WAIT = "cool_down_wait"
    PRE_RUN = "pre_run"
    PRE_WARM = "pre_warm"
    RAMP_UP = "ramp_up"
    EXECUTION = "execution"
    SUSTAINED = "sustained"
    COOLDOWN = "cooldown"


@dataclass(frozen=True)
class Baseline:
    """Idle power and temperature before the benchmark, the level cooldown returns to."""

    power_w: float | None = None
    temp_c: float | None = None

    @property
    def known(self) -> bool:
        return self.power_w is not None or self.temp_c is not None

    def to_dict(self) -> dict[str, Any]:
        return {"power_w": self.power_w, "temp_c": self.temp_c}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "baseline") -> Baseline:
        read = _Reader(d, where)
        return cls(read.number("power_w"), read.number("temp_c"))


# What a phase reports where the series behind it were sampled; pre_run adds its idle figures.
PHASE_FIGURES = (
    "power_mean_w",
    "power_peak_w",
    "temp_mean_c",
    "temp_max_c",
    "sm_clock_mean_mhz",
    "sm_clock_min_mhz",
    "cpu_mean_mhz",
)
PRE_RUN_FIGURES = ("idle_power_w", "idle_temp_c", "requested_tdp_w")


@dataclass(frozen=True)
class Phase:
    """One phase of a window: its span relative to the benchmark's start and what was sampled in it."""

    name: str  # a PhaseName for the phases gpubench writes
    start: float
    end: float
    duration_s: float
    samples: int
    power_mean_w: float | None = None
    power_peak_w: float | None = None
    temp_mean_c: float | None = None
    temp_max_c: float | None = None
    sm_clock_mean_mhz: float | None = None
    sm_clock_min_mhz: float | None = None
    cpu_mean_mhz: float | None = None
    throttled_pct_by_reason: dict[str, float] = field(default_factory=dict)
    idle_power_w: float | None = None  # pre_run only: the idle baseline ...
    idle_temp_c: float | None = None
    requested_tdp_w: float | None = None  # ... and the enforced power limit

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "start": self.start, "end": self.end, "duration_s": self.duration_s, "samples": self.samples}
        out.update({name: getattr(self, name) for name in PHASE_FIGURES if getattr(self, name) is not None})
        if self.throttled_pct_by_reason:
            out["throttled_pct_by_reason"] = dict(self.throttled_pct_by_reason)
        if self.name == PhaseName.PRE_RUN:
            out.update({name: getattr(self, name) for name in PRE_RUN_FIGURES})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "phase") -> Phase:
        read = _Reader(d, where)
        figures = {name: read.number(name) for name in PHASE_FIGURES + PRE_RUN_FIGURES}
        return cls(
            name=read.text("name") or "",
            start=read.number("start", required=True),  # type: ignore[arg-type]
            end=read.number("end", required=True),  # type: ignore[arg-type]
            duration_s=read.number("duration_s") or 0.0,
            samples=int(read.number("samples") or 0),
            throttled_pct_by_reason=read.numbers("throttled_pct_by_reason"),
            **figures,
        )


@dataclass(frozen=True)
class ThrottleEvent:
    t: float  # seconds from the benchmark's start
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "reason": self.reason}


@dataclass(frozen=True)
class Timeline:
    """The derived series, downsampled for drawing: one value (or None) per time in `t`."""

    t: tuple[float, ...]
    values: dict[Measure, tuple[float | None, ...]]

    def to_dict(self) -> dict[str, Any]:
        return {"t": list(self.t), **{m.value: list(v) for m, v in self.values.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "series") -> Timeline:
        read = _Reader(d, where)
        t = tuple(v for v in read.series("t") if v is not None)
        known = {m.value: m for m in Measure}
        values = {known[k]: read.series(k) for k in d if k in known}  # a series gpubench does not know is left out
        for measure, series in values.items():
            if len(series) != len(t):
                raise ValueError(f"{where}.{measure.value}: {len(series)} values for {len(t)} times")
        return cls(t, values)


@dataclass(frozen=True)
class TelemetrySummary:
    """What the samplers saw around one benchmark (see gpubench.telemetry.phases)."""

    samplers: tuple[str, ...] = ()
    status: TelemetryStatus = TelemetryStatus.NONE
    partial: dict[str, str] = field(default_factory=dict)  # source -> why it stopped
    not_available: dict[str, str] = field(default_factory=dict)  # source -> why it could not be read
    hz: float | None = None
    cool_down: str | None = None  # what the wait for idle temperatures before the benchmark found
    cool_down_wait_s: float | None = None
    pre_warm: str | None = None  # how the pre-warm ended
    pre_warm_s: float | None = None
    samples: int | None = None
    sources: dict[Measure, str] = field(default_factory=dict)  # what each derived series is made of
    phases: tuple[Phase, ...] = ()
    peak_w: float | None = None
    peak_t: float | None = None  # seconds from the start
    mean_w: float | None = None
    sustained_mean_w: float | None = None
    sustained_note: str | None = None
    baseline: Baseline | None = None
    power_limit_w: float | None = None
    max_temp_c: float | None = None
    energy_j: float | None = None
    energy_source: EnergySource | None = None
    energy_counters: str | None = None  # which counters, when energy_source is counter
    energy_note: str | None = None
    j_per_gb: float | None = None
    throttled_pct_by_reason: dict[str, float] = field(default_factory=dict)
    throttled_pct_over: str | None = None  # the phase the shares are of: sustained, else execution
    time_to_cool_s: float | None = None
    cooldown: str | None = None  # cooled, did not cool within ..., not measured ...
    series: Timeline | None = None
    events: tuple[ThrottleEvent, ...] = ()

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samplers": list(self.samplers),
            "status": self.status.value,
            "partial": dict(self.partial),
            "not_available": dict(self.not_available),
            "hz": self.hz,
            "cool_down": self.cool_down,
            "cool_down_wait_s": self.cool_down_wait_s,
            "pre_warm": self.pre_warm,
            "pre_warm_s": self.pre_warm_s,
            "samples": self.samples,
            "sources": {m.value: text for m, text in self.sources.items()},
            "phases": [p.to_dict() for p in self.phases],
            "peak_w": self.peak_w,
            "peak_t": self.peak_t,
            "mean_w": self.mean_w,
            "sustained_mean_w": self.sustained_mean_w,
            "sustained_note": self.sustained_note,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "power_limit_w": self.power_limit_w,
            "max_temp_c": self.max_temp_c,
            "energy_j": self.energy_j,
            "energy_source": self.energy_source.value if self.energy_source else None,
            "energy_counters": self.energy_counters,
            "energy_note": self.energy_note,
            "j_per_gb": self.j_per_gb,
            "throttled_pct_by_reason": dict(self.throttled_pct_by_reason),
            "throttled_pct_over": self.throttled_pct_over,
            "time_to_cool_s": self.time_to_cool_s,
            "cooldown": self.cooldown,
            "series": self.series.to_dict() if self.series else None,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TelemetrySummary:
        """A stored summary, as written by this or any earlier gpubench; ValueError names what is wrong."""
        read = _Reader(d, "telemetry")
        status = read.choice("status", TelemetryStatus)
        energy_source = read.choice("energy_source", EnergySource)
        samplers = tuple(read.texts("samplers"))
        known = {m.value: m for m in Measure}
        return cls(
            samplers=samplers,
            status=status or (TelemetryStatus.OK if samplers else TelemetryStatus.NONE),
            partial=read.text_map("partial"),
            not_available=read.text_map("not_available"),
            hz=read.number("hz"),
            cool_down=read.text("cool_down"),
            cool_down_wait_s=read.number("cool_down_wait_s"),
            pre_warm=read.text("pre_warm"),
            pre_warm_s=read.number("pre_warm_s"),
            samples=None if (n := read.number("samples")) is None else int(n),
            sources={known[k]: v for k, v in read.text_map("sources").items() if k in known},
            phases=tuple(Phase.from_dict(p, f"telemetry.phases[{i}]") for i, p in enumerate(read.objects("phases"))),
            peak_w=read.number("peak_w"),
            peak_t=read.number("peak_t"),
            mean_w=read.number("mean_w"),
            sustained_mean_w=read.number("sustained_mean_w"),
            sustained_note=read.text("sustained_note"),
            baseline=read.nested("baseline", Baseline.from_dict),
            power_limit_w=read.number("power_limit_w"),
            max_temp_c=read.number("max_temp_c"),
            energy_j=read.number("energy_j"),
            energy_source=energy_source,
            energy_counters=read.text("energy_counters"),
            energy_note=read.text("energy_note"),
            j_per_gb=read.number("j_per_gb"),
            throttled_pct_by_reason=read.numbers("throttled_pct_by_reason"),
            throttled_pct_over=read.text("throttled_pct_over"),
            time_to_cool_s=read.number("time_to_cool_s"),
            cooldown=read.text("cooldown"),
            series=read.nested("series", Timeline.from_dict),
            events=tuple(_event(e, f"telemetry.events[{i}]") for i, e in enumerate(read.objects("events"))),
        )


def _event(d: Mapping[str, Any], where: str) -> ThrottleEvent:
    read = _Reader(d, where)
    return ThrottleEvent(read.number("t", required=True), read.text("reason") or "")  # type: ignore[arg-type]


class _Reader:
    """Typed reads of one JSON object; a value of the wrong type is a ValueError naming its place."""

    def __init__(self, d: Any, where: str):
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected an object, found {json_kind(d)}")
        self.d, self.where = d, where

    def _fail(self, key: str, expected: str, value: Any) -> ValueError:
        return ValueError(f"{self.where}.{key}: expected {expected}, found {json_kind(value)}")

    def number(self, key: str, required: bool = False) -> float | None:
        value = self.d.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, "a number", value)
        return value

    def text(self, key: str) -> str | None:
        value = self.d.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def choice(self, key: str, kind: Callable[[str], Any]) -> Any:
        value = self.text(key)
        try:
            return None if value is None else kind(value)
        except ValueError:
            raise ValueError(f"{self.where}.{key}: {json.dumps(value)[:40]} is not one of {', '.join(k.value for k in kind)}") from None  # type: ignore[attr-defined]

    def _list(self, key: str) -> list[Any]:
        value = self.d.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        return value

    def texts(self, key: str) -> list[str]:
        items = self._list(key)
        if not all(isinstance(x, str) for x in items):
            raise self._fail(key, "a list of strings", items)
        return items

    def objects(self, key: str) -> list[Any]:
        return self._list(key)

    def series(self, key: str) -> tuple[float | None, ...]:
        items = self._list(key)
        if not all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in items):
            raise self._fail(key, "a list of numbers", items)
        return tuple(items)

    def _map(self, key: str) -> dict[str, Any]:
        value = self.d.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._fail(key, "an object", value)
        return dict(value)

    def text_map(self, key: str) -> dict[str, str]:
        value = self._map(key)
        if not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "an object of strings", value)
        return value

    def numbers(self, key: str) -> dict[str, float]:
        value = self._map(key)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            raise self._fail(key, "an object of numbers", value)
        return value

    def nested(self, key: str, build: Callable[[Mapping[str, Any], str], Any]) -> Any:
        value = self.d.get(key)
        return None if value is None else build(value, f"{self.where}.{key}")


