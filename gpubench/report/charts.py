"""Charts for the HTML reports, drawn with matplotlib and returned as inline SVG text.

matplotlib is imported inside each function: `import gpubench` and `gpubench probe` never pay for
it. Output is deterministic for the same data (fixed hash salt, no date, no random jitter), so two
renders of one run are byte-identical. Every string from the data is drawn with mathtext off, so a
`$` in a case name is text, and matplotlib escapes it into the SVG.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from gpubench.results.model import CaseComparison, Result, Verdict
from gpubench.telemetry.summary import TelemetrySummary

SVG_STYLE = {
    "svg.fonttype": "none",  # text stays text: small files, the browser's own font
    "svg.hashsalt": "gpubench",  # stable element ids, so identical data gives identical SVG
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

# Colours match the report's CSS.
COLOUR_POINT = "#4c72b0"
COLOUR_MEDIAN = "#c0392b"
COLOUR_BAND = "#d9d9d9"
VERDICT_COLOUR = {
    Verdict.BETTER: "#1e8449",
    Verdict.WORSE: "#c0392b",
    Verdict.SAME: "#7f8c8d",
    Verdict.NOT_COMPARABLE: "#d68910",
    Verdict.LOST: "#d68910",
}
SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860")
UNIT_QUANTITY = {"W": "power", "°C": "temperature", "MHz": "clock", "%": "utilisation", "MiB": "memory", "V": "voltage", "A": "current"}
PHASE_LABEL_LEVELS = (1.02, 1.14, 1.26)  # axes fractions above the top panel
PHASE_COLOURS = ("#f5cba7", "#aed6f1", "#d5f5e3", "#e8daef", "#fcf3cf", "#d6dbdf")

CHART_WIDTH = 10.0  # inches; the page scales it down to its width
MAX_POINTS_PER_CASE = 400  # more would only make the file larger, not the picture clearer
SERIES_UNITS = {"_w": "W", "_c": "°C", "_mhz": "MHz", "_pct": "%", "_percent": "%", "_mib": "MiB", "_v": "V", "_a": "A"}

_XML_PROLOG = re.compile(r"^\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SVG_ID = re.compile(r'\b(id)="([^"]+)"')
_SVG_HREF = re.compile(r'\b((?:xlink:)?href)="#([^"]+)"')
_SVG_URL = re.compile(r"url\(#([^)]+)\)")


@contextmanager
def _figure(width: float, height: float) -> Iterator[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(SVG_STYLE):
        fig = plt.figure(figsize=(width, height))
        try:
            yield fig
        finally:
            plt.close(fig)


def _to_inline_svg(fig: Any) -> str:
    """Called inside `_figure`, so the SVG settings are in force while saving."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = _XML_PROLOG.sub("", buffer.getvalue(), count=1)
    # The RDF block only names the generator; it carries the one external URL of the file.
    svg = _SVG_METADATA.sub("", svg, count=1).strip()
    return _namespace_ids(svg)


def _namespace_ids(svg: str) -> str:
    """Prefix the SVG's element ids (and references to them) so several charts can share one page.

    The prefix is a digest of the SVG itself: deterministic, and two charts can only share ids when
    they are identical.
    """
    prefix = "c" + hashlib.sha1(svg.encode("utf-8")).hexdigest()[:8] + "-"
    svg = _SVG_ID.sub(lambda m: f'{m.group(1)}="{prefix}{m.group(2)}"', svg)
    svg = _SVG_HREF.sub(lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', svg)
    return _SVG_URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)


def _spread_offsets(count: int, width: float = 0.32) -> list[float]:
    """Deterministic vertical jitter in [-width, width] (golden-ratio sequence): no RNG, no overlap pattern."""
    golden = (math.sqrt(5) - 1) / 2
    return [((i * golden) % 1.0 - 0.5) * 2 * width for i in range(count)]


def _thin(values: Sequence[float], cap: int) -> list[float]:
    if len(values) <= cap:
        return list(values)
    step = len(values) / cap
    return [values[int(i * step)] for i in range(cap)]


ROUND_LANES_TOP = 0.32  # the rounds' rows share [-0.32, 0.32] of a case's panel


def _round_lanes(result: Result) -> list[tuple[list[float], list[float]]]:
    """(values, vertical offsets) per round: the rounds of a case in lanes, first on top, so that
    a shift between rounds shows."""
    rounds = result.by_round()
    lane = 2 * ROUND_LANES_TOP / len(rounds)
    lanes = []
    for k, group in enumerate(rounds):
        values = [v for v in _thin(group, max(1, MAX_POINTS_PER_CASE // len(rounds))) if math.isfinite(v)]
        center = ROUND_LANES_TOP - lane * (k + 0.5)
        lanes.append((values, [center + o for o in _spread_offsets(len(values), width=lane * 0.4)]))
    return lanes


def _use_log_scale(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) > 100


def samples_chart(results: Sequence[Result], unit: str) -> str:
    """Strip plots, one panel per case on its own scale: every raw sample a dot, the median a bar,
    its 95% confidence interval a band. `results` are cases of one benchmark in one unit.
    """
    rows = [r for r in results if any(math.isfinite(v) for v in r.samples)]
    if not rows:
        raise ValueError("samples_chart needs at least one result with samples")
    with _figure(CHART_WIDTH, 0.35 + (0.95 if any(len(r.by_round()) > 1 for r in rows) else 0.7) * len(rows)) as fig:
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for ax, result in zip(axes, rows):
            shown = []
            lanes = _round_lanes(result)
            for k, (values, offsets) in enumerate(lanes):
                ax.scatter(values, offsets, s=14, color=COLOUR_POINT, alpha=0.7, linewidths=0, zorder=2)
                shown += values
                if k:
                    ax.axhline(ROUND_LANES_TOP * (1 - 2 * k / len(lanes)), color="#d0d0d0", linewidth=0.6, linestyle=":", zorder=1)
            summary = result.summary
            if summary is not None:
                if math.isfinite(summary.ci_low) and math.isfinite(summary.ci_high):
                    ax.axvspan(summary.ci_low, summary.ci_high, color=COLOUR_MEDIAN, alpha=0.2, linewidth=0, zorder=1)
                ax.axvline(summary.median, color=COLOUR_MEDIAN, linewidth=2, zorder=3)
            ax.set_ylim(-0.5, 0.5)
            ax.set_yticks([])
            ax.set_ylabel(result.case, rotation=0, ha="right", va="center", parse_math=False)
            if _use_log_scale(shown):
                ax.set_xscale("log")
            ax.spines["left"].set_visible(False)
            ax.grid(axis="x", color="#e5e5e5", linewidth=0.6, zorder=0)
            ax.set_axisbelow(True)
            ax.tick_params(axis="x", labelsize=8)
        axes[-1].set_xlabel(unit, parse_math=False)
        fig.subplots_adjust(hspace=0.75)
        return _to_inline_svg(fig)


def _split_series_key(key: str) -> tuple[str, str]:
    """("power limit", "W") from "power_limit_w"; the unit is "" when the suffix names none."""
    for suffix, unit in SERIES_UNITS.items():
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)].replace("_", " "), unit
    return key.replace("_", " "), ""


def _panels(keys: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(unit, series keys) per panel: series sharing a unit share one (power with its limit)."""
    panels: dict[str, tuple[str, list[str]]] = {}
    for key in keys:
        unit = _split_series_key(key)[1]
        panels.setdefault(unit or "key:" + key, (unit, []))[1].append(key)
    return list(panels.values())


def telemetry_series(telemetry: TelemetrySummary) -> tuple[list[float], dict[str, list[float]]] | None:
    """The time axis and the series of the telemetry's timeline by key, or None when there is nothing to draw."""
    series = telemetry.series
    if series is None or len(series.t) < 2 or not series.values:
        return None
    curves = {measure.value: [float("nan") if v is None else float(v) for v in values] for measure, values in series.values.items()}
    return [float(x) for x in series.t], curves


def telemetry_chart(telemetry: TelemetrySummary) -> str | None:
    """The sampled series over time, one panel per unit on a shared time axis, phases shaded and
    named, throttle events marked; None when the telemetry has no series."""
    found = telemetry_series(telemetry)
    if found is None:
        return None
    times, curves = found
    origin = times[0] if times[0] > 1e8 else 0.0  # epoch stamps become seconds from the first sample
    t = [x - origin for x in times]
    phases, events = telemetry.phases, telemetry.events
    panels = _panels(list(curves))
    span = (t[-1] - t[0]) or 1.0
    with _figure(CHART_WIDTH, 0.6 + 1.45 * len(panels)) as fig:
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (unit, members) in zip(axes, panels):
            for index, phase in enumerate(phases):
                colour = PHASE_COLOURS[index % len(PHASE_COLOURS)]
                ax.axvspan(phase.start - origin, phase.end - origin, color=colour, alpha=0.55, linewidth=0, zorder=0)
            for event in events:
                ax.axvline(event.t - origin, color=COLOUR_MEDIAN, linewidth=0.7, linestyle=":", zorder=1)
            for number, key in enumerate(members):
                style = "--" if key.endswith("limit_w") else "-"
                ax.plot(t, curves[key], linestyle=style, linewidth=1.2, color=SERIES_COLOURS[number % len(SERIES_COLOURS)], label=_split_series_key(key)[0], zorder=2)
            if len(members) > 1:
                ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
            label = _split_series_key(members[0])[0] if len(members) == 1 else UNIT_QUANTITY.get(unit, unit)
            ax.set_ylabel(f"{label} ({unit})" if unit else label, parse_math=False)
            ax.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        top, last_at_level = axes[0], [float("-inf")] * len(PHASE_LABEL_LEVELS)
        for phase in phases:
            start, end = phase.start - origin, phase.end - origin
            middle = (start + end) / 2
            # the lowest row where this name keeps clear of the previous one there
            level = next((i for i, x in enumerate(last_at_level) if middle - x > 0.1 * span), len(PHASE_LABEL_LEVELS) - 1)
            last_at_level[level] = middle
            top.annotate(phase.name, xy=(middle, PHASE_LABEL_LEVELS[level]), xycoords=("data", "axes fraction"),
                         ha="center", va="bottom", fontsize=8, annotation_clip=False, parse_math=False)
        axes[-1].set_xlabel("seconds" + (" from the benchmark start" if origin == 0.0 and t[0] < 0 else ""))
        return _to_inline_svg(fig)


def ratio_chart(cases: Sequence[CaseComparison], threshold: float) -> str:
    """new/base median ratio per case with its 95% CI as whiskers, 1.0 marked and the ±threshold band shaded."""
    rows = [c for c in cases if c.ratio is not None and math.isfinite(c.ratio)]
    if not rows:
        raise ValueError("ratio_chart needs at least one case with a ratio")
    with _figure(CHART_WIDTH, 0.9 + 0.36 * len(rows)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        ax.axvspan(1 - threshold, 1 + threshold, color=COLOUR_BAND, alpha=0.7, linewidth=0, zorder=0)
        ax.axvline(1.0, color="#555555", linewidth=0.8, zorder=1)
        extremes = [1 - threshold, 1 + threshold]
        for index, case in enumerate(rows):
            y = len(rows) - 1 - index
            colour = VERDICT_COLOUR[case.verdict]
            ratio = float(case.ratio)  # type: ignore[arg-type]
            if case.ci_low is not None and case.ci_high is not None and math.isfinite(case.ci_low) and math.isfinite(case.ci_high):
                low, high = float(case.ci_low), float(case.ci_high)
                ax.errorbar([ratio], [y], xerr=[[max(ratio - low, 0.0)], [max(high - ratio, 0.0)]], fmt="none", ecolor=colour, elinewidth=1.4, capsize=3, zorder=2)
                extremes += [low, high]
            ax.plot([ratio], [y], marker="o", markersize=6, color=colour, zorder=3)
            extremes.append(ratio)
        one_benchmark = len({c.benchmark for c in rows}) == 1
        labels = [c.case if one_benchmark else f"{c.benchmark} / {c.case}" for c in reversed(rows)]
        ax.set_yticks(range(len(rows)), labels=labels, parse_math=False)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        span = max(extremes) - min(extremes)
        ax.set_xlim(min(extremes) - 0.08 * span, max(extremes) + 0.08 * span)
        ax.set_xlabel(f"new / base (median), band = ±{threshold * 100:g}%")
        ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", length=0)
        return _to_inline_svg(fig)
