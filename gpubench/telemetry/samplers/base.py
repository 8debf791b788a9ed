"""What every sampler is: one call reads all its current values, each under a typed series key.

A sampler has `name`, `read() -> (values, reasons)` with values keyed by SeriesKey,
`describe() -> dict` (static facts recorded once: "devices", power limits, and "counters": the
energy counters it reads with their wrap range in joules, None where unknown) and `close()`. It
may set `min_interval_s` to be read no more often than that. `open()` raises SamplerUnavailable
with the reason when the source cannot be read on this machine; vendor libraries are imported
only inside `open()`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

from gpubench.telemetry.series import SeriesKey

Values = dict[SeriesKey, float]
T = TypeVar("T")


class SamplerUnavailable(Exception):
    """This source cannot be read here; the message says why (and how to fix it when we know)."""


class Sampler(Protocol):
    name: str

    def read(self) -> tuple[Values, tuple[str, ...]]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


# Reasons that mean "clocks are held below what the work asked for" (the others are settings or idle).
THROTTLE_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        # amdsmi violation status
        "ppt_power",
        "socket_thermal",
        "prochot_thermal",
        "vr_thermal",
        "hbm_thermal",
    }
)


def is_throttling(reason: str) -> bool:
    """Whether a clocks-event reason holds the clocks back (a bit gpubench cannot name may: it counts)."""
    return reason in THROTTLE_REASONS or reason.startswith("unknown")


def slug(text: str) -> str:
    """A name part without dots or spaces (series names use dots between their parts)."""
    return re.sub(r"[^A-Za-z0-9_+-]+", "_", text.strip()) or "x"


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def initialised(library: str, init: Callable[[], Any], shutdown: Callable[[], Any], query: Callable[[], T]) -> T:
    """Initialise a vendor library and query its devices; shut it down again when that fails."""
    try:
        init()
    except Exception as e:  # noqa: BLE001 - a broken driver stack must not stop a run
        raise SamplerUnavailable(f"{library} did not initialise: {e}") from None
    try:
        return query()
    except SamplerUnavailable:
        quiet(shutdown)
        raise
    except Exception as e:  # noqa: BLE001
        quiet(shutdown)
        raise SamplerUnavailable(f"{library} device query failed: {e}") from None


def quiet(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - shutting down: nothing useful to do with an error
        pass
