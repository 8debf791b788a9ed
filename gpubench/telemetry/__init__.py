"""Power and thermal telemetry around each benchmark: samplers, a sampling session, phase summaries.

The run pipeline calls `open_telemetry(profile)` once, then `telemetry.around(label)` around each
benchmark and stores `window.summary(bytes_moved)` with the result.
"""

from __future__ import annotations

from gpubench.telemetry.session import Telemetry, VirtualClock, Window, open_telemetry
from gpubench.telemetry.trace import Reading, ReplaySampler, Trace, read_trace, write_trace

__all__ = ["Reading", "ReplaySampler", "Telemetry", "Trace", "VirtualClock", "Window", "open_telemetry", "read_trace", "write_trace"]
