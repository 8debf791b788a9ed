"""Power and thermal telemetry around each benchmark: samplers, a sampling session, phase summaries.

The run pipeline calls `open_telemetry(profile)` once, then `telemetry.around(label)` around each
benchmark and stores `window.summary(bytes_moved)` (a TelemetrySummary) with the result.

The names below are imported when first used: the results model needs only the summary's
dataclasses, not the sampling machinery.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Telemetry": "session",
    "Window": "session",
    "open_telemetry": "session",
    "VirtualClock": "clock",
    "Reading": "trace",
    "ReplaySampler": "trace",
    "Trace": "trace",
    "read_trace": "trace",
    "write_trace": "trace",
    "TelemetrySummary": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
