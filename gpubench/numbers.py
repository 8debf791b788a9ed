"""How gpubench writes a measured number in a sentence or a table: the one spelling that reports,
comparisons and fleet findings share."""

from __future__ import annotations

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
