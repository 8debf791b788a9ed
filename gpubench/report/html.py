"""Self-contained HTML reports of a run and of a comparison.

One file each: inline CSS, charts as inline SVG, no JavaScript, nothing fetched from anywhere.
jinja2 autoescapes every value; the only markup passed through unescaped is the SVG that
gpubench.report.charts draws (matplotlib escapes the text it writes into it).
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from gpubench.errors import UserError
from gpubench.files import write_new
from gpubench.report import formats
from gpubench.report.matrix import pair_matrices
from gpubench.results.model import CaseComparison, Comparison, Result, ResultStatus, Run, RunStatus, Verdict
from gpubench.telemetry.summary import Phase, TelemetryStatus, TelemetrySummary

VERDICT_CLASS = {
    Verdict.BETTER: "better",
    Verdict.WORSE: "worse",
    Verdict.SAME: "same",
    Verdict.NOT_COMPARABLE: "not-comparable",
    Verdict.LOST: "lost",
}
RUN_STATUS_NOTICE = {
    RunStatus.COMPLETE: "",
    RunStatus.INTERRUPTED: "This run was interrupted: only the results completed before it stopped are shown.",
    RunStatus.RUNNING: "This run never finished: it was still running when this report was made, or its process died "
    "before it could mark the run.",
}
CAPABILITY_STATUSES = ("yes", "partial", "no", "unknown")
RESULT_STATUSES = tuple(s.value for s in ResultStatus)
NOT_AVAILABLE = "—"


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("gpubench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _svg(markup: str | None) -> Any:
    from markupsafe import Markup

    return Markup(markup) if markup else None


# ---------------------------------------------------------------- formatting


def format_params(params: dict[str, Any]) -> list[str]:
    """key=value chips; parameters that are unset (None) say nothing and are left out."""
    return [f"{key}={value}" for key, value in params.items() if value is not None]


def _scalar_text(value: Any) -> str:
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return formats.number(value, NOT_AVAILABLE)
    return str(value)


def flatten_metadata(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metadata as (dotted key, text) rows: dict keys joined by '.', list items as [i]."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, NOT_AVAILABLE)]
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows += flatten_metadata(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return [(prefix, ", ".join(_scalar_text(item) for item in value) or NOT_AVAILABLE)]
        rows = []
        for index, item in enumerate(value):
            rows += flatten_metadata(item, f"{prefix}[{index}]")
        return rows
    return [(prefix, _scalar_text(value))]


# ---------------------------------------------------------------- view models (plain dicts for templates)


def run_header(run: Run) -> dict[str, Any]:
    counts = {status: 0 for status in RESULT_STATUSES}
    for result in run.results:
        counts[result.status.value] += 1
    duration = (run.ended - run.started) if run.ended is not None else None
    return {
        "label": run.label,
        "uid": run.uid,
        "local_id": run.id,
        "started": formats.when(run.started, NOT_AVAILABLE),
        "ended": formats.when(run.ended, NOT_AVAILABLE) if run.ended is not None else "not recorded",
        "duration": formats.duration(duration, NOT_AVAILABLE),
        "status": run.status.value,
        "notice": RUN_STATUS_NOTICE[run.status],
        "counts": counts,
        "benchmarks": len({r.benchmark for r in run.results}),
        "machine_speed": formats.machine_speed(run),
    }


def capability_rows(profile: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for cap in profile.get("capabilities") or ():
        status = str(cap.get("status", "unknown"))
        rows.append(
            {
                "area": str(cap.get("area", "")),
                "name": str(cap.get("name", "")),
                "status": status,
                "status_class": status if status in CAPABILITY_STATUSES else "unknown",
                "evidence": [(str(e.get("source", "")), str(e.get("value", ""))) for e in cap.get("evidence") or ()],
                "why": str(cap.get("why", "")),
                "fix": str(cap.get("fix", "")),
            }
        )
    return rows


def _group_by_benchmark(results: Iterable[Result]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.benchmark, []).append(result)
    return groups


def _result_row(result: Result) -> dict[str, Any]:
    summary = result.summary
    ok = summary is not None
    return {
        "case": result.case,
        "params": format_params(result.params),
        "status": result.status.value,
        "median": f"{formats.number(summary.median, NOT_AVAILABLE)} {result.unit}" if ok else NOT_AVAILABLE,
        "direction": "higher is better" if result.higher_is_better else "lower is better",
        "ci": f"{formats.number(summary.ci_low, NOT_AVAILABLE)} – {formats.number(summary.ci_high, NOT_AVAILABLE)}" if ok else NOT_AVAILABLE,
        "spread": f"{summary.rel_spread * 100:.1f}%" if ok and math.isfinite(summary.rel_spread) else NOT_AVAILABLE,
        "n": formats.sample_count(result),
        "reason": result.reason,
        "advertised": _advertised(result),
    }


def _advertised(result: Result) -> str:
    """What the platform claims for this case (a benchmark puts it in params["advertised"], in its
    own unit, e.g. memtier's HMAT figures), beside the measured share of it."""
    claim = result.params.get("advertised")
    if not isinstance(claim, (int, float)) or not claim:
        return ""
    text = f"{formats.number(claim, NOT_AVAILABLE)} {result.unit}"
    if result.summary is not None:
        text += f" (measured {result.summary.median / claim:.0%})"
    return text


TELEMETRY_DRAWN_ELSEWHERE = ("series", "phases", "events")
PHASE_LEADING_COLUMNS = ("name", "start", "end", "duration_s", "samples")


def _cell_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_scalar_text(v)}" for k, v in value.items()) or NOT_AVAILABLE
    if isinstance(value, (list, tuple)):
        return ", ".join(_scalar_text(v) for v in value) or NOT_AVAILABLE
    return _scalar_text(value)


def phase_table(phases: Sequence[Phase]) -> dict[str, Any] | None:
    """A column per phase, a row per field (the union of the phases' fields, the usual ones first)."""
    columns = [p.to_dict() for p in phases]
    if not columns:
        return None
    fields = [f for f in PHASE_LEADING_COLUMNS[1:] if any(f in p for p in columns)]
    for phase in columns:
        fields += [key for key in phase if key != "name" and key not in fields]
    return {
        "phases": [str(p.get("name", "")) for p in columns],
        "rows": [(field, [_cell_text(p[field]) if field in p else "" for p in columns]) for field in fields],
    }


def telemetry_view(case: str, telemetry: TelemetrySummary) -> dict[str, Any] | None:
    """What the report shows of one result's telemetry; None when no sampler ran and nothing was drawn."""
    from gpubench.report import charts

    chart = charts.telemetry_chart(telemetry)
    if chart is None and telemetry.status is TelemetryStatus.NONE:
        return None
    # what was measured: the figures without a value (null, no entries) are left out
    summary = {k: v for k, v in telemetry.to_dict().items() if k not in TELEMETRY_DRAWN_ELSEWHERE and v not in (None, {}, [])}
    events = [f"{formats.number(e.t, NOT_AVAILABLE)} s {e.reason}".strip() for e in telemetry.events]
    view = {
        "case": case,
        "svg": _svg(chart),
        "phases": phase_table(telemetry.phases),
        "summary": flatten_metadata(summary) if summary else [],
        "events": events,
    }
    return view if chart or view["phases"] or view["summary"] or events else None


def benchmark_sections(run: Run) -> list[dict[str, Any]]:
    from gpubench.report import charts

    sections = []
    for benchmark, results in _group_by_benchmark(run.results).items():
        units: dict[str, list[Result]] = {}
        for result in results:
            if result.samples:
                units.setdefault(result.unit, []).append(result)
        sample_charts = [{"unit": unit, "svg": _svg(charts.samples_chart(rows, unit))} for unit, rows in units.items()]
        telemetry = [view for r in results if r.telemetry and (view := telemetry_view(r.case, r.telemetry))]
        sections.append(
            {
                "benchmark": benchmark,
                "anchor": "bench-" + "".join(ch if ch.isalnum() else "-" for ch in benchmark),
                "rows": (rows := [_result_row(r) for r in results]),
                "advertised": any(r["advertised"] for r in rows),
                "charts": sample_charts,
                "matrices": pair_matrices(results),
                "telemetry": telemetry,
            }
        )
    return sections


def _not_run(results: Sequence[Result]) -> list[dict[str, str]]:
    return [
        {"benchmark": r.benchmark, "case": r.case, "status": r.status.value, "reason": r.reason or "no reason recorded"}
        for r in results
        if r.status is not ResultStatus.OK
    ]


def render_run_html(run: Run) -> str:
    return _render(
        "run.html.j2",
        header=run_header(run),
        metadata=flatten_metadata(run.metadata),
        profile_root=str(run.profile.get("root", "")),
        capabilities=capability_rows(run.profile),
        sections=benchmark_sections(run),
        not_run=_not_run(run.results),
    )


# ---------------------------------------------------------------- comparison


def _comparison_row(case: CaseComparison) -> dict[str, Any]:
    ratio = case.ratio if case.ratio is not None and math.isfinite(case.ratio) else None
    has_ci = case.ci_low is not None and case.ci_high is not None
    params = case.new.params if case.new is not None else case.base.params if case.base is not None else {}
    notes = [case.note] if case.note else []
    explained = {
        side: (result.status.value, result.reason)
        for side, result in (("base", case.base), ("new", case.new))
        if result is not None and result.status is not ResultStatus.OK and result.reason and result.reason not in case.note
    }
    if len(explained) == 2 and explained["base"] == explained["new"]:
        status, reason = explained["base"]
        notes.append(f"both {status}: {reason}")
    else:
        notes += [f"{side} {status}: {reason}" for side, (status, reason) in explained.items()]
    for side, medians in (("base", case.base_medians), ("new", case.new_medians)):
        if medians:
            notes.append(f"{side} medians of the {case.units}: " + ", ".join(formats.number(m, NOT_AVAILABLE) for m in medians))
    return {
        "case": case.case,
        "params": format_params(params),
        "unit": case.unit,
        "direction": "higher is better" if case.higher_is_better else "lower is better",
        "base": formats.side_value(case, "base", with_unit=True),
        "new": formats.side_value(case, "new", with_unit=True),
        "ratio": f"{ratio:.3f}" if ratio is not None else NOT_AVAILABLE,
        "change": f"{(ratio - 1) * 100:+.1f}%" if ratio is not None else "",
        "ci": f"{case.ci_low:.3f} – {case.ci_high:.3f}" if has_ci else NOT_AVAILABLE,
        "p": formats.p_value(case.p_value, NOT_AVAILABLE),
        "verdict": case.verdict.value,
        "verdict_class": VERDICT_CLASS[case.verdict],
        "notes": notes,
    }


def metadata_diff(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    base_rows, new_rows = dict(flatten_metadata(base)), dict(flatten_metadata(new))
    keys = list(base_rows) + [k for k in new_rows if k not in base_rows]
    return [
        {
            "key": key,
            "base": base_rows.get(key, NOT_AVAILABLE),
            "new": new_rows.get(key, NOT_AVAILABLE),
            "differs": base_rows.get(key) != new_rows.get(key),
        }
        for key in keys
    ]


def capability_changes(base: dict[str, Any], new: dict[str, Any]) -> tuple[list[dict[str, str]], int]:
    """Capabilities whose verdict differs between the runs' probes, and how many were compared."""
    base_caps = {(c["area"], c["name"]): c for c in capability_rows(base)}
    new_caps = {(c["area"], c["name"]): c for c in capability_rows(new)}
    changes = []
    for key in list(base_caps) + [k for k in new_caps if k not in base_caps]:
        before, after = base_caps.get(key), new_caps.get(key)
        if before and after and before["status"] == after["status"]:
            continue
        changes.append(
            {
                "area": key[0],
                "name": key[1],
                "base": before["status"] if before else "not probed",
                "base_class": before["status_class"] if before else "unknown",
                "new": after["status"] if after else "not probed",
                "new_class": after["status_class"] if after else "unknown",
                "why": (after or before or {}).get("why", ""),
            }
        )
    return changes, len(set(base_caps) | set(new_caps))


def _sentence(text: str | None) -> str | None:
    return f"{text[:1].upper()}{text[1:]}." if text else None


def render_comparison_html(comparison: Comparison) -> str:
    from gpubench.report import charts

    groups: dict[str, list[CaseComparison]] = {}
    for case in comparison.cases:
        groups.setdefault(case.benchmark, []).append(case)
    sections = []
    for benchmark, cases in groups.items():
        with_ratio = [c for c in cases if c.ratio is not None and math.isfinite(c.ratio)]
        sections.append(
            {
                "benchmark": benchmark,
                "rows": [_comparison_row(c) for c in cases],
                "svg": _svg(charts.ratio_chart(with_ratio, comparison.threshold)) if with_ratio else None,
            }
        )
    verdict_counts = [
        {"verdict": v.value, "verdict_class": VERDICT_CLASS[v], "count": sum(1 for c in comparison.cases if c.verdict is v)}
        for v in Verdict
    ]
    changes, compared = capability_changes(comparison.base.profile, comparison.new.profile)
    return _render(
        "comparison.html.j2",
        base=run_header(comparison.base),
        new=run_header(comparison.new),
        base_side=formats.side_name(comparison.base_side),
        new_side=formats.side_name(comparison.new_side),
        pooled=len(comparison.base_side) > 1 or len(comparison.new_side) > 1,
        threshold=f"{comparison.threshold * 100:g}%",
        verdict_counts=verdict_counts,
        regressions=[_comparison_row(c) | {"benchmark": c.benchmark} for c in comparison.regressions],
        sections=sections,
        machine_speeds=[formats.number(x) for x in comparison.machine_speeds] if all(comparison.machine_speeds) else None,
        machine_speed_note=_sentence(formats.machine_speed_note(comparison)),
        machine_reference=formats.MACHINE_REFERENCE,
        metadata=metadata_diff(comparison.base.metadata, comparison.new.metadata),
        capability_changes=changes,
        capabilities_compared=compared,
    )


# ---------------------------------------------------------------- files


def report_stem(run: Run) -> str:
    stamp = _dt.datetime.fromtimestamp(run.started).strftime("%Y%m%d-%H%M%S")
    return f"gpubench-run-{run.ident}-{stamp}"


def write_run_reports(run: Run, directory: Path) -> tuple[Path, Path]:
    """Write the run's HTML and JSON reports into `directory`; returns (html, json). Never overwrites a file."""
    from gpubench.results.jsonio import run_to_json

    html_text, json_text = render_run_html(run), run_to_json(run)
    stem = report_stem(run)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        attempt = 1
        while True:
            name = stem if attempt == 1 else f"{stem}-{attempt}"
            attempt += 1
            html_path, json_path = directory / f"{name}.html", directory / f"{name}.json"
            if html_path.exists() or json_path.exists():
                continue
            try:
                write_new(html_path, html_text)
            except FileExistsError:
                continue
            try:
                write_new(json_path, json_text)
            except FileExistsError:  # the JSON name was taken since the check: free the HTML name too
                html_path.unlink()
                continue
            return html_path, json_path
    except OSError as exc:
        raise UserError(f"cannot write the reports into {directory}: {exc.strerror or exc}") from exc
