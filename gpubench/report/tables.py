"""Rich tables for the history commands: the list of runs, a run's header, a comparison.

Colour comes from the console (only on a TTY, NO_COLOR honoured); every style here maps an enum
exhaustively, which a test checks.
"""

from __future__ import annotations

import math
from typing import Sequence

from rich.table import Table
from rich.text import Text

from gpubench.probe.model import probed_verdict
from gpubench.report import formats
from gpubench.report.terminal import PROSE_WIDTH, RESULT_COUNT_STYLE
from gpubench.results.changes import WhatChanged
from gpubench.results.model import CaseComparison, Comparison, ResultStatus, Run, RunStatus, Verdict
from gpubench.results.store import RunListing

VERDICT_STYLE: dict[Verdict, str] = {
    Verdict.BETTER: "bold green",
    Verdict.WORSE: "bold red",
    Verdict.SAME: "",
    Verdict.NOT_COMPARABLE: "yellow",
    Verdict.LOST: "bold red reverse",
}

RUN_STATUS_STYLE: dict[RunStatus, str] = {
    RunStatus.RUNNING: "cyan",
    RunStatus.COMPLETE: "green",
    RunStatus.INTERRUPTED: "magenta",
}



def _add_column(table: Table, name: str, justify: str, wrap: bool, prose: bool = False, min_width: int = 0) -> None:
    """A column that may wrap is what a narrow terminal squeezes (terminal.fit), down to its
    header's width or min_width, never to nothing; it folds a long word rather than cut it. Prose
    also wraps at PROSE_WIDTH on a wide one."""
    if wrap:
        table.add_column(name, justify=justify, overflow="fold", min_width=max(len(name), min_width),
                         max_width=PROSE_WIDTH if prose else None)
    else:
        table.add_column(name, justify=justify, no_wrap=True)


def runs_table(listings: Sequence[RunListing]) -> Table:
    table = Table(title="Result history", expand=False)
    for name, justify in (("id", "right"), ("uid", "left"), ("started", "left"), ("took", "right"), ("label", "left"),
                          ("status", "left"), ("results", "left"), ("kernel", "left")):
        _add_column(table, name, justify, wrap=name not in ("id", "uid", "status"), prose=True,
                    min_width=len("2026-01-01") if name == "started" else 0)  # a start splits into date and time
    for entry in listings:
        run = entry.run
        counts = Text()
        for status in ResultStatus:
            count = entry.counts.get(status.value, 0)
            if count:
                if counts:
                    counts.append(" ")
                counts.append(f"{count} {status.value}", style=RESULT_COUNT_STYLE[status])
        table.add_row(
            str(run.id),
            run.uid[:12],
            formats.when(run.started),
            formats.duration(run.ended - run.started if run.ended else None),
            run.label,
            Text(run.status.value, style=RUN_STATUS_STYLE[run.status]),
            counts if counts else Text("none", style="dim"),
            str(run.metadata.get("kernel") or ""),
        )
    return table


def run_header(run: Run) -> Table:
    """Who, where and when a run was: the lines above its results."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows = [
        ("run", f"{run.id if run.id is not None else ''}  uid {run.uid}"),
        ("label", run.label),
        ("status", Text(run.status.value, style=RUN_STATUS_STYLE[run.status])),
        ("started", formats.when(run.started)),
        ("ended", f"{formats.when(run.ended)} (took {formats.duration(run.ended - run.started)})" if run.ended else ""),
    ]
    for key in ("hostname", "kernel", "distro", "cpu_model", "governor", "gpus", "nvidia_driver", "gpubench"):
        value = run.metadata.get(key)
        if value not in (None, "", [], {}):
            rows.append((key.replace("_", " "), ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    rows.append(("machine speed", formats.machine_speed(run) or ""))
    for name, value in rows:
        if value != "":
            grid.add_row(name, value)
    return grid


def results_table(run: Run) -> Table:
    """One row per result: benchmark, case, status, median with unit, its 95% CI, n, reason."""
    table = Table(title=f"Results of {formats.run_name(run)}", expand=False)
    for name, justify in (("benchmark", "left"), ("case", "left"), ("status", "left"), ("median", "right"),
                          ("95% CI", "right"), ("n", "right"), ("reason", "left")):
        _add_column(table, name, justify, wrap=name not in ("status", "n"), prose=name == "reason")
    for result in run.results:
        s = result.summary
        table.add_row(
            result.benchmark,
            result.case,
            Text(result.status.value, style=RESULT_COUNT_STYLE[result.status]),
            f"{formats.number(s.median)} {result.unit}" if s else "",
            f"{formats.number(s.ci_low)} - {formats.number(s.ci_high)}" if s else "",
            formats.sample_count(result),
            result.reason,
        )
    return table


def format_change(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return ""
    return f"{ratio - 1.0:+.1%}"


def comparison_table(comparison: Comparison) -> Table:
    """Medians of both runs, the change (new / base - 1) with its 95% CI, p, verdict. Notes are
    shown where the numbers alone do not explain the verdict."""
    title = f"{formats.side_name(comparison.base_side)} -> {formats.side_name(comparison.new_side)} (threshold {comparison.threshold:.1%})"
    table = Table(title=title, expand=False)
    for name, justify in (("benchmark", "left"), ("case", "left"), ("unit", "left"), ("base", "right"), ("new", "right"),
                          ("change", "right"), ("95% CI", "right"), ("p", "right"), ("verdict", "left"), ("note", "left")):
        _add_column(table, name, justify, wrap=name not in ("base", "new", "change", "p"), prose=name == "note")
    for case in comparison.cases:
        table.add_row(
            case.benchmark,
            case.case,
            case.unit + ("" if case.higher_is_better else " (lower)"),
            formats.side_value(case, "base"),
            formats.side_value(case, "new"),
            format_change(case.ratio),
            change_interval(case),
            formats.p_value(case.p_value),
            Text(case.verdict.value, style=VERDICT_STYLE[case.verdict]),
            "" if case.verdict in (Verdict.BETTER, Verdict.WORSE) else case.note,
        )
    return table


def what_changed_table(changed: WhatChanged) -> Table | None:
    """The machine settings and the capability verdicts that differ between the sides, shown above
    their cases; None where nothing the runs recorded differs."""
    rows = [(s.title, formats.setting_values(s.base), formats.setting_values(s.new)) for s in changed.changed_settings]
    rows += [(f"{c.area} / {c.name}", probed_verdict(c.status_before), probed_verdict(c.status_after))
             for c in changed.capabilities]
    if not rows:
        return None
    table = Table(title="What changed besides the numbers", expand=False)
    for name in ("setting or capability", "base", "new"):
        _add_column(table, name, "left", wrap=name in ("base", "new"), prose=True)
    for row in rows:
        table.add_row(*row)
    return table


def change_interval(case: CaseComparison) -> str:
    """The 95% interval of the change, '-21.0% .. -19.0%'; empty where there is none."""
    if case.ci_low is None or case.ci_high is None or not (math.isfinite(case.ci_low) and math.isfinite(case.ci_high)):
        return ""
    return f"{case.ci_low - 1.0:+.1%} .. {case.ci_high - 1.0:+.1%}"


def verdict_counts(comparison: Comparison) -> str:
    counts: dict[Verdict, int] = {}
    for case in comparison.cases:
        counts[case.verdict] = counts.get(case.verdict, 0) + 1
    return ", ".join(f"{counts[v]} {v.value}" for v in Verdict if counts.get(v))
