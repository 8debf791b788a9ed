"""What the HTML report of one run shows, as plain values for its template: the header, the
headline (gpubench.report.headline), one section per benchmark (gpubench.report.sections) with
its table, its chart and its telemetry, what did not run, then the machine and the full probe
folded away. Every figure comes from the same typed models as the terminal's."""

from __future__ import annotations

import math
from typing import Any

from gpubench.probe.model import Status
from gpubench.report import formats
from gpubench.report import headline as hl
from gpubench.report import sections as sec
from gpubench.report import telemetry as tel
from gpubench.report.matrix import pair_matrices
from gpubench.report.terminal import machine_line
from gpubench.results.model import Run, RunStatus

RUN_STATUS_NOTICE = {
    RunStatus.COMPLETE: "",
    RunStatus.INTERRUPTED: "This run was interrupted: only the results completed before it stopped are shown.",
    RunStatus.RUNNING: "This run never finished: it was still running when this report was made, or its process died "
    "before it could mark the run.",
}


def anchor(benchmark: str) -> str:
    return "bench-" + "".join(ch if ch.isalnum() else "-" for ch in benchmark)


def shortfall_views(head: hl.Headline) -> list[dict[str, str]]:
    return [{"area": s.area, "name": s.name, "status": s.status.value, "text": s.fix or s.why, "why": s.why if s.fix else ""}
            for s in head.shortfalls]


def path_views(head: hl.Headline) -> list[dict[str, Any]]:
    views = []
    for row in head.paths:
        share = row.share_of_limit
        views.append({
            "path": row.path,
            "job": row.job,
            "anchor": anchor(row.best.benchmark),
            "case": row.best.case,
            "best": row.best_text,
            "limit": f"{formats.number(row.limit.value)} {row.best.unit}" if row.limit else "",
            "limit_source": row.limit.source if row.limit else row.no_limit,
            "share": f"{share:.0%}" if share is not None else "",
            "bar": f"{min(share, 1.0) * 100:.0f}" if share is not None and math.isfinite(share) else "",
            "versus": [{"ratio": v.ratio_text, "ci": v.ci_text, "note": v.note,
                        "what": f"{formats.number(v.own_value if v.result else row.value)} vs {formats.number(v.other_value)} {v.other.unit}"}
                       for v in row.versus],
            "no_versus": row.no_versus,
        })
    return views


def case_views(section: sec.Section) -> list[dict[str, Any]]:
    rows = []
    for row in section.rows:
        r, s = row.result, row.result.summary
        v = row.versus
        rows.append({
            "case": r.case,
            "status": r.status.value,
            "median": row.median_text if s else formats.NOT_AVAILABLE,
            "direction": "higher is better" if r.higher_is_better else "lower is better",
            "ci": row.ci_text(" – ") if s else formats.NOT_AVAILABLE,
            "spread": f"{s.rel_spread:.1%}" if s and math.isfinite(s.rel_spread) else formats.NOT_AVAILABLE,
            "n": str(len(r.samples)),
            "reason": r.reason if r.status.value != "ok" else "",
            "versus": hl.ratio_text(v.ratio) if v else "",
            "versus_ci": v.ci_text if v else "",
            "versus_note": (v.note if v else row.no_versus),
            "claim": row.claim_text,
        })
    return rows


def section_views(run: Run) -> list[dict[str, Any]]:
    from gpubench.report import charts

    telemetry = {b.benchmark: b for b in tel.of_run(run).benchmarks}
    views = []
    for section in sec.sections(run):
        results = [row.result for row in section.rows]
        drawn = [r for r in results if r.summary is not None and r.summary.median and len(r.samples) > 1]
        rows = case_views(section)
        notes = list(dict.fromkeys(r["versus_note"] for r in rows if r["versus_note"]))
        views.append({
            "benchmark": section.benchmark,
            "anchor": anchor(section.benchmark),
            "count": len(section.rows),
            "rounds": section.rounds,
            "shared": list(section.shared),
            "rows": rows,
            "versus_what": section.versus_what,
            "notes": notes,
            "claims": section.claims,
            "reasons": any(row.result.status.value != "ok" for row in section.rows),
            "svg": charts_svg(charts.spread_chart(drawn)) if drawn else None,
            "matrices": pair_matrices([r for r in run.results if r.benchmark == section.benchmark]),  # waived pairs too
            "telemetry": telemetry_view(telemetry[section.benchmark]) if section.benchmark in telemetry else None,
        })
    return views


def charts_svg(markup: str | None) -> Any:
    from markupsafe import Markup

    return Markup(markup) if markup else None


def header_view(run: Run) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for result in run.results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    return {
        "name": formats.run_name(run),
        "label": run.label,
        "uid": run.uid,
        "local_id": run.id,
        "status": run.status.value,
        "notice": RUN_STATUS_NOTICE[run.status],
        "started": formats.when(run.started, formats.NOT_AVAILABLE),
        "took": formats.duration(run.ended - run.started, formats.NOT_AVAILABLE) if run.ended is not None else formats.NOT_RECORDED,
        "machine": machine_line(run),
        "counts": counts,
        "machine_speed": formats.machine_speed(run),
    }


def capability_counts(capabilities: list[dict[str, Any]]) -> str:
    counts = {status.value: sum(1 for c in capabilities if c["status"] == status.value) for status in Status}
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def not_run_views(run: Run) -> list[dict[str, str]]:
    return [{"status": g.status.value, "names": g.names(), "reason": g.reason} for g in sec.not_run(run)]


def _phase_colour(title: str) -> str:
    from gpubench.report.charts import PHASE_COLOUR

    name = next((n for n, t in tel.PHASE_TITLES.items() if t == title), "")
    return PHASE_COLOUR.get(name, "#d6dbdf")


# the headers of the telemetry table's figure columns (telemetry.ROW_FIGURES); all but throttled are numbers
TELEMETRY_COLUMNS = {"peak": "peak", "sustained": "sustained", "energy": "energy", "per_gb": "per GB", "throttled": "throttled",
                     "cool": "time to cool"}


def _figure(value: float | None, unit: str = "") -> str:
    return f"{formats.number(value)}{' ' + unit if unit else ''}" if value is not None else ""


def telemetry_view(bench: tel.BenchmarkTelemetry) -> dict[str, Any] | None:
    """The benchmark's telemetry: a row per case where there is more than one phase or a figure
    to show, the series of the case drawn where one varies; None where there is nothing but the
    line saying what was sampled."""
    from gpubench.report import charts

    rows = []
    for case in bench.cases:
        summary, throttled = case.summary, case.throttled
        rows.append({
            "case": case.case,
            "strip": [{"name": span.name, "colour": _phase_colour(span.name), "left": f"{span.start * 100:.2f}",
                       "width": f"{span.width * 100:.2f}", "seconds": formats.number(span.seconds)} for span in case.strip],
            "peak": _figure(summary.peak_w, "W"), "sustained": _figure(summary.sustained_mean_w, "W"),
            "energy": _figure(summary.energy_j, "J"), "per_gb": _figure(summary.j_per_gb, "J/GB"),
            "throttled": f"{throttled[1]:.0f}% {throttled[0]}" if throttled else "", "cool": _figure(summary.time_to_cool_s, "s"),
        })
    drawn = bench.drawn
    hz = next((c.summary.hz for c in bench.cases if c.summary.hz), None)
    return {
        "line": tel.line(bench).removeprefix("telemetry: "),
        "hz": formats.number(hz) if hz else "",
        "columns": [{"key": key, "title": TELEMETRY_COLUMNS[key], "num": key != "throttled"} for key in bench.columns],
        "rows": rows if bench.columns or any(len(r["strip"]) > 1 for r in rows) else [],
        "svg": charts_svg(charts.telemetry_chart(drawn.summary)) if drawn is not None else None,
        "drawn": drawn.case if drawn is not None else "",
    }


def telemetry_sources(run: Run) -> dict[str, Any]:
    found = tel.of_run(run)
    return {"unreadable": list(found.unreadable), "stopped": [{"source": s, "why": w, "cases": ", ".join(c)} for s, w, c in found.stopped],
            "phases": [{"name": title, "colour": _phase_colour(title)} for title in tel.PHASE_TITLES.values()]}
