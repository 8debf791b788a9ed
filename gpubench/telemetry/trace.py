"""The recorded telemetry trace: what a session sampled, in a file that can be replayed.

A trace is one JSON object:

    {"format": "gpubench-telemetry-trace", "version": 1,
     "metadata": {"samplers": [...], "counters": {"gpu0.energy_j": {"wrap": null}}, ...},
     "marks": {"baseline_start": 0.0, "start": 1.0, "end": 21.0, "cooldown_end": 31.0},
     "samples": [{"t": 0.0, "v": {"gpu0.power_w": 71.2, ...}, "reasons": ["gpu_idle"]}, ...]}

`t` is a monotonic time in seconds (any origin); `v` holds named numeric fields, named
`<source>.<quantity>_<unit>` (e.g. `gpu0.temp_c`, `rapl.package-0.energy_j`, `cpu.mhz_mean`);
`reasons` lists the clock-event / throttle reasons active at that instant. Counter fields are
stored raw, as the device reported them, so a replay sees the same wraparounds; their wrap range
(when the counter has one) is in metadata["counters"].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpubench.errors import UserError
from gpubench.files import write_new

TRACE_FORMAT = "gpubench-telemetry-trace"
TRACE_VERSION = 1


@dataclass(frozen=True)
class Reading:
    """Everything the samplers said at one instant."""

    t: float
    values: dict[str, float]
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"t": round(self.t, 4), "v": self.values}
        if self.reasons:
            d["reasons"] = list(self.reasons)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reading:
        return cls(
            t=float(d["t"]),
            values={str(k): float(v) for k, v in (d.get("v") or {}).items() if v is not None},
            reasons=tuple(str(r) for r in d.get("reasons", ())),
        )


@dataclass(frozen=True)
class Trace:
    metadata: dict[str, Any]
    readings: tuple[Reading, ...]
    marks: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "metadata": self.metadata,
            "marks": self.marks,
            "samples": [r.to_dict() for r in self.readings],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        if d.get("format") != TRACE_FORMAT:
            raise ValueError(f"not a {TRACE_FORMAT} (format field is {d.get('format')!r})")
        if int(d.get("version", 0)) > TRACE_VERSION:
            raise ValueError(f"trace version {d.get('version')} is newer than this gpubench reads ({TRACE_VERSION})")
        readings = tuple(sorted((Reading.from_dict(s) for s in d.get("samples", ())), key=lambda r: r.t))
        return cls(
            metadata=dict(d.get("metadata") or {}),
            readings=readings,
            marks={str(k): float(v) for k, v in (d.get("marks") or {}).items() if v is not None},
        )


def trace_json(trace: Trace) -> str:
    return json.dumps(trace.to_dict(), separators=(",", ":")) + "\n"


def write_trace(path: Path, trace: Trace, replace: bool = False) -> None:
    """Write the trace whole; FileExistsError rather than replace a file, unless `replace`."""
    write_new(path, trace_json(trace), replace)


def read_trace(path: Path) -> Trace:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return Trace.from_dict(data)
    except FileNotFoundError:
        raise UserError(f"telemetry trace {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; give a trace file written by gpubench telemetry record") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
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
        return {**meta, "replayed_from": list(self.trace.metadata.get("samplers") or [])}

    def read(self) -> tuple[dict[str, float], tuple[str, ...]]:
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
