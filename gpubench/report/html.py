"""Self-contained HTML reports of a run and of a comparison.

One file each: inline CSS, charts as inline SVG, no JavaScript, nothing fetched from anywhere.
jinja2 autoescapes every value; the only markup passed through unescaped is the SVG that
gpubench.report.charts draws (matplotlib escapes the text it writes into it).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from gpubench.errors import UserError
from gpubench.files import write_new
from gpubench.probe.model import printable
from gpubench.report import formats
from gpubench.report.html_run import RUN_STATUS_NOTICE
from gpubench.results.model import Comparison, ResultStatus, Run, Verdict

CAPABILITY_STATUSES = ("yes", "partial", "no", "unknown")
RESULT_STATUSES = tuple(s.value for s in ResultStatus)


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


def _scalar_text(value: Any) -> str:
    if value is None:
        return formats.NOT_AVAILABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return formats.number(value, formats.NOT_AVAILABLE)
    return str(value)


def flatten_metadata(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metadata as (dotted key, text) rows: dict keys joined by '.', list items as [i]."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, formats.NOT_AVAILABLE)]
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows += flatten_metadata(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return [(prefix, ", ".join(_scalar_text(item) for item in value) or formats.NOT_AVAILABLE)]
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
        "started": formats.when(run.started, formats.NOT_AVAILABLE),
        "ended": formats.when(run.ended, formats.NOT_AVAILABLE) if run.ended is not None else formats.NOT_RECORDED,
        "duration": formats.duration(duration, formats.NOT_AVAILABLE),
        "status": run.status.value,
        "notice": RUN_STATUS_NOTICE[run.status],
        "counts": counts,
        "benchmarks": len({r.benchmark for r in run.results}),
        "machine_speed": formats.machine_speed(run),
        "kernel": f"kernel {run.metadata['kernel']}" if run.metadata.get("kernel") else "kernel not recorded",
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
                "evidence": [(printable(str(e.get("source", ""))), printable(str(e.get("value", "")))) for e in cap.get("evidence") or ()],
                "why": printable(str(cap.get("why", ""))),
                "fix": printable(str(cap.get("fix", ""))),
            }
        )
    return rows


def render_run_html(run: Run) -> str:
    from gpubench.report import html_run
    from gpubench.report.headline import build

    head = build(run)
    capabilities = capability_rows(run.profile)
    return _render(
        "run.html.j2",
        header=html_run.header_view(run),
        paths=html_run.path_views(head),
        shortfalls=html_run.shortfall_views(head),
        sections=html_run.section_views(run),
        telemetry=html_run.telemetry_sources(run),
        not_run=html_run.not_run_views(run),
        metadata=flatten_metadata(run.metadata),
        profile_root=str(run.profile.get("root", "")),
        capabilities=capabilities,
        capability_counts=html_run.capability_counts(capabilities),
    )


# ---------------------------------------------------------------- comparison


def metadata_diff(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    base_rows, new_rows = dict(flatten_metadata(base)), dict(flatten_metadata(new))
    keys = list(base_rows) + [k for k in new_rows if k not in base_rows]
    return [
        {
            "key": key,
            "base": base_rows.get(key, formats.NOT_AVAILABLE),
            "new": new_rows.get(key, formats.NOT_AVAILABLE),
            "differs": base_rows.get(key) != new_rows.get(key),
        }
        for key in keys
    ]


def _sentence(text: str | None) -> str | None:
    return f"{text[:1].upper()}{text[1:]}." if text else None


def render_comparison_html(comparison: Comparison) -> str:
    from gpubench.report import charts
    from gpubench.report import html_comparison as view

    from gpubench.results.changes import what_changed

    changed = what_changed(comparison)
    settings, unrecorded, same = view.setting_rows(changed)
    verdict_counts = [
        {"verdict": v.value, "verdict_class": view.VERDICT_CLASS[v], "count": sum(1 for c in comparison.cases if c.verdict is v)}
        for v in Verdict
    ]
    return _render(
        "comparison.html.j2",
        base=run_header(comparison.base),
        new=run_header(comparison.new),
        base_side=formats.side_name(comparison.base_side),
        new_side=formats.side_name(comparison.new_side),
        pooled=len(comparison.base_side) > 1 or len(comparison.new_side) > 1,
        threshold=f"{comparison.threshold * 100:g}%",
        verdict_counts=verdict_counts,
        settings=settings,
        unrecorded=unrecorded,
        settings_same=same,
        capability_changes=view.capability_rows(changed),
        moved=view.moved(comparison),
        regressions=len(comparison.regressions),
        median_means=view.MEDIAN_MEANS,
        sections=view.sections(comparison, lambda cases: _svg(charts.ratio_chart(cases, comparison.threshold))),
        machine_speeds=[formats.number(x) for x in comparison.machine_speeds] if all(comparison.machine_speeds) else None,
        machine_speed_note=_sentence(formats.machine_speed_note(comparison)),
        machine_reference=formats.MACHINE_REFERENCE,
        metadata=metadata_diff(comparison.base.metadata, comparison.new.metadata),
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
