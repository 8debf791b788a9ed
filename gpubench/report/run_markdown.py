"""A stored run's report as GitHub-flavoured Markdown (`gpubench report RUN --markdown`): the same
headline and per-benchmark tables as the terminal, for a CI step summary ($GITHUB_STEP_SUMMARY
takes it as it is)."""

from __future__ import annotations

from typing import Sequence

from gpubench.report import formats
from gpubench.report import headline as hl
from gpubench.report import sections as sec
from gpubench.report import telemetry as tel
from gpubench.report.markdown import cell
from gpubench.report.terminal import machine_line, run_heading
from gpubench.results.model import Run


class Marked(str):
    """Cell text already written as Markdown (its data escaped by cell), so not escaped again."""


def table(header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """A GFM table; every cell is data and escaped (report.markdown.cell) unless it is Marked."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(c if isinstance(c, Marked) else cell(str(c)) for c in row) + " |" for row in rows]
    return lines + [""]


def run_markdown(run: Run) -> str:
    head = hl.build(run)
    out = [f"## {cell(run_heading(run))}", "", cell(machine_line(run)), ""]
    if head.shortfalls:
        out += ["### Not (fully) there, and the fix", ""]
        out += table(("capability", "verdict", "fix"), [(f"{s.area} / {s.name}", s.status.value, s.fix or s.why) for s in head.shortfalls])
    if head.paths:
        out += ["### Data paths", "", "The best figure, the limit the machine states, the baseline path for the same job.", ""]
        rows = []
        for row in head.paths:
            versus = "; ".join(v.text for v in row.versus) or row.no_versus
            rows.append((Marked(f"**{cell(row.path)}**: {cell(row.job)}"), row.best_text, row.limit_text, versus))
        out += table(("path", "best", "limit", "vs baseline"), rows, right=(1,))
    telemetry = tel.of_run(run)
    by_bench = {b.benchmark: b for b in telemetry.benchmarks}
    for section in sec.sections(run):
        out += _section(section)
        if section.benchmark in by_bench:
            out += [cell(tel.line(by_bench[section.benchmark])) + ".", ""]
    for group in sec.not_run(run):
        out += [f"- {group.status.value}: {cell(group.names())}: {cell(group.reason)}"]
    if telemetry.unreadable:
        out += ["", "Telemetry sources not readable here: " + cell("; ".join(f"{s} ({why})" for s, why in telemetry.unreadable)) + "."]
    speed = formats.machine_speed(run)
    if speed:
        out += ["", f"Machine speed: {speed}."]
    return "\n".join(out).rstrip("\n") + "\n"


def _section(section: sec.Section) -> list[str]:
    from gpubench.report.terminal import section_heading

    out = [f"### {cell(section_heading(section))}", ""]
    if section.shared:
        out += ["The same in every case: " + cell(", ".join(f"{k} {v}" for k, v in section.shared)) + ".", ""]
    header = ["case", "median", "95% CI", "n"] + ([f"vs {section.versus_what}"] if section.versus_what else []) + (["advertised"] if section.claims else [])
    rows = []
    for row in section.rows:
        r = row.result
        cells: list[object] = [r.case, row.median_text, row.ci_text(" – "), len(r.samples)]
        if section.versus_what:
            v = row.versus
            cells.append(f"{hl.ratio_text(v.ratio)}" + (f" ({v.note})" if v.note else "") if v else row.no_versus)
        if section.claims:
            cells.append(row.claim_text)
        rows.append(cells)
    return out + table(header, rows, right=(1, 2, 3))
