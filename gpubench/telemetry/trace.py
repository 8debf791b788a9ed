"""The recorded telemetry trace: what a session sampled, in a file that can be replayed.

A trace is one JSON object:

    {"format": "gpubench-telemetry-trace", "version": 1,
     "metadata": {"samplers": [...], "counters": {"gpu0.energy_j": {"wrap": null}}, ...},
     "marks": {"baseline_start": 0.0, "start": 1.0, "end": 21.0, "cooldown_end": 31.0},
     "samples": [{"t": 0.0, "v": {"gpu0.power_w": 71.2, ...}, "reasons": ["gpu_idle"]}, ...]}

`t` is a monotonic time in seconds (any origin); `v` holds the readings by series name (a
SeriesKey spelt as gpubench.telemetry.series describes: `gpu0.temp_c`, `rapl.package-0.energy_j`,
`cpu.mhz_mean`); `reasons` lists the clock-event / throttle reasons active at that instant.
Counter fields are stored raw, as the device reported them, so a replay sees the same
wraparounds; their wrap range (when the counter has one) is in metadata["counters"].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpubench.errors import UserError
from gpubench.files import read_user_file, write_new
from gpubench.telemetry.series import SeriesKey

TRACE_FORMAT = "gpubench-telemetry-trace"
TRACE_VERSION = 1


@dataclass(frozen=True)
class Reading:
    """Everything the samplers said at one instant."""

    t: float
    values: dict[SeriesKey, float]
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"t": round(self.t, 4), "v": {k.name: v for k, v in self.values.items()}}
        if self.reasons:
            d["reasons"] = list(self.reasons)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reading:
        values = d.get("v") or {}
        reasons = d.get("reasons", [])
        if not isinstance(values, dict):
            raise ValueError(f"a sample's v must be an object of numbers, found {type(values).__name__}")
        if not isinstance(reasons, list):
            raise ValueError(f"a sample's reasons must be a list, found {type(reasons).__name__}")
        return cls(
            t=_finite(d.get("t"), "a sample's t"),
            values={_key(k): _finite(v, f"v.{k}") for k, v in values.items() if v is not None},
            reasons=tuple(str(r) for r in reasons),
        )


def _key(name: Any) -> SeriesKey:
    try:
        return SeriesKey.parse(str(name))
    except ValueError as e:
        raise ValueError(f"v: {e}") from None


def _finite(value: Any, what: str) -> float:
    """A finite number from a trace, or ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, found {json.dumps(value)[:40]}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, found {str(value)[:40]}")
    return number


@dataclass(frozen=True)
class Trace:
    metadata: dict[str, Any]  # JSON-able facts: samplers, hz, devices, failures, notes of the waits
    readings: tuple[Reading, ...]
    marks: dict[str, float] = field(default_factory=dict)
    counters: dict[SeriesKey, float | None] = field(default_factory=dict)  # energy counters: wrap range in J, None if unknown

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "metadata": {**self.metadata, "counters": {k.name: {"wrap": wrap} for k, wrap in self.counters.items()}},
            "marks": self.marks,
            "samples": [r.to_dict() for r in self.readings],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        _check_format(d)
        samples, metadata, marks = d.get("samples", []), d.get("metadata") or {}, d.get("marks") or {}
        if not isinstance(samples, list) or not all(isinstance(x, dict) for x in samples):
            raise ValueError("samples must be a list of objects")
        if not samples:
            raise ValueError("the trace has no samples")
        if not isinstance(metadata, dict) or not isinstance(marks, dict):
            raise ValueError("metadata and marks must be objects")
        counters = metadata.get("counters") or {}
        if not isinstance(counters, dict):
            raise ValueError("metadata.counters must be an object")
        return cls(
            metadata={k: v for k, v in metadata.items() if k != "counters"},
            readings=tuple(sorted((Reading.from_dict(x) for x in samples), key=lambda r: r.t)),
            marks={str(k): _finite(v, f"marks.{k}") for k, v in marks.items() if v is not None},
            counters={_counter(k): _wrap(k, v) for k, v in counters.items()},
        )


def _check_format(d: dict[str, Any]) -> None:
    """A trace of a version this gpubench reads, or ValueError saying what it is instead."""
    if d.get("format") != TRACE_FORMAT:
        raise ValueError(f"not a {TRACE_FORMAT} (format field is {json.dumps(d.get('format'))[:40]})")
    version = d.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"version must be a whole number, found {json.dumps(version)[:40]}")
    if version > TRACE_VERSION:
        raise ValueError(f"trace version {version} is newer than this gpubench reads ({TRACE_VERSION})")


def _counter(name: str) -> SeriesKey:
    try:
        return SeriesKey.parse(name)
    except ValueError as e:
        raise ValueError(f"metadata.counters: {e}") from None


def _wrap(name: str, entry: Any) -> float | None:
    """A counter's wrap range from its {"wrap": joules} entry; null or no entry: not known."""
    wrap = entry.get("wrap") if isinstance(entry, dict) else None
    return None if wrap is None else _finite(wrap, f"metadata.counters.{name}.wrap")


def trace_json(trace: Trace) -> str:
    return json.dumps(trace.to_dict(), separators=(",", ":")) + "\n"


def write_trace(path: Path, trace: Trace, replace: bool = False) -> None:
    """Write the trace whole; FileExistsError rather than replace a file, unless `replace`."""
    write_new(path, trace_json(trace), replace)


def read_trace(path: Path) -> Trace:
    raw = read_user_file(path, "a trace file written by gpubench telemetry record")
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return Trace.from_dict(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError among them
        raise UserError(f"cannot read telemetry trace {path}: {e}") from None


class ReplaySampler:
    """Plays a recorded trace back as if it were being sampled now.

    The first read is anchored to the trace's first sample; later reads return the last recorded
    sample at or before the same elapsed time (the final sample once the trace has run out)."""

    def __init__(self, trace: Trace, now: Callable[[], float]):
        if not trace.readings:
            raise ValueError("the trace has no samples to replay")
        self.trace = trace
        self._now = now
        self._anchor: float | None = None
        self._index = 0
        sources = trace.metadata.get("samplers") or []
        self.name = "replay:" + "+".join(sources) if sources else "replay"

    def describe(self) -> dict[str, Any]:
        meta = {k: v for k, v in self.trace.metadata.items() if k != "samplers"}
        return {**meta, "counters": dict(self.trace.counters), "replayed_from": list(self.trace.metadata.get("samplers") or [])}

    def read(self) -> tuple[dict[SeriesKey, float], tuple[str, ...]]:
        readings = self.trace.readings
        if self._anchor is None:
            self._anchor = self._now() - readings[0].t
        position = self._now() - self._anchor
        while self._index + 1 < len(readings) and readings[self._index + 1].t <= position:
            self._index += 1
        hit = readings[self._index]
        return dict(hit.values), hit.reasons

    def close(self) -> None:
        pass
