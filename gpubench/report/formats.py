"""How numbers, times and p-values read, the same in the terminal and in HTML."""

from __future__ import annotations

import datetime as _dt
import math


def number(value: float | None, missing: str = "") -> str:
    """4 significant digits, thousands grouped, an exponent only when far from 1."""
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return missing
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if 1000 <= magnitude < 1e12:
        return f"{value:,.0f}"
    if 1e-3 <= magnitude < 1000:
        return f"{value:.4g}"
    return f"{value:.3e}"


def when(timestamp: float | None, missing: str = "") -> str:
    """Local time with its zone."""
    if not timestamp:
        return missing
    return _dt.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None, missing: str = "") -> str:
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return missing
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def p_value(p: float | None, missing: str = "") -> str:
    if p is None or math.isnan(p):
        return missing
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
