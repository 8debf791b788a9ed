"""Rich terminal rendering. Colour only on a TTY; NO_COLOR is honoured by rich itself.

Consoles never read markup or emoji codes in strings: labels, reasons and case names are data,
and a "[/x]" or ":fire:" in one must print as it is. Styles are given with rich.text.Text instead."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from gpubench.probe.model import Profile, Status, printable
from gpubench.report import formats
from gpubench.results.model import ResultStatus

if TYPE_CHECKING:
    from gpubench.report.headline import PathRow, Shortfall
    from gpubench.report.sections import Section
    from gpubench.results.model import Run

STATUS_STYLE = {
    Status.YES: "bold green",
    Status.NO: "bold red",
    Status.PARTIAL: "bold yellow",
    Status.UNKNOWN: "magenta",
}


EVIDENCE_WIDTH = 100  # the table shortens long values; --json carries them whole
RESULT_COUNT_STYLE: dict[ResultStatus, str] = {
    ResultStatus.OK: "green",
    ResultStatus.WAIVED: "yellow",
    ResultStatus.FAILED: "bold red",
    ResultStatus.INTERRUPTED: "magenta",
}
PROSE_WIDTH = 80  # the widest a column of sentences (why / fix, reason, note) grows before it wraps
PATH_WIDTH = 28  # the headline's path and job column
PROSE_FLOOR = 24  # on a narrow terminal, sentences wrap down to this before other columns give way
PIPED_WIDTH = 1000  # not a terminal: rich would assume 80 columns and cut cells short


def stdout_console() -> Console:
    """Piped into a file or a CI log (and COLUMNS unset), a table takes the width its cells need;
    only its prose columns wrap, at PROSE_WIDTH."""
    console = Console(highlight=False, soft_wrap=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def _short(value: str, width: int = EVIDENCE_WIDTH) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def stderr_console() -> Console:
    """Messages wrap at word boundaries on a terminal; in a log each stays one line."""
    console = Console(stderr=True, highlight=False, markup=False, emoji=False)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


# What a table can best do without where its words cannot all fit (their headers, as the tables
# in this package name them): the probe's evidence even before sentences move under the table,
# the others after; --json carries them all
LEAVE_OUT_BEFORE_NOTES = ("evidence",)
LEAVE_OUT_AFTER_NOTES = ("n", "p", "95% CI", "unit", "took", "uid")


def fit(table: Table, width: int) -> Table:
    """Give the columns that may wrap widths that fit the table into `width`, where rich alone
    would shrink every column alike, cutting numbers to "…" and pushing the edge off-screen. They
    give way in steps, the widest first in each: sentences (a column with a max_width) wrap down
    to PROSE_FLOOR, then every column wraps down to its longest word; where that is still too
    wide, the cells lose their padding and the steps are taken again, then a sentence's long words
    (paths) fold. No case name or number is split: where all that is not enough, sentences move
    under the table as numbered notes (the probe's evidence is left out before), then the columns
    of LEAVE_OUT_AFTER_NOTES are left out, one by one, and the caption says so; only a table with
    none of them left folds its words. Cells are str or Text, as every table here makes them."""
    notes: list[str] = []
    left_out: list[str] = []
    while (widths := _fitted_widths(table, width, fold=False)) is None:
        evidence = _column(table, LEAVE_OUT_BEFORE_NOTES)
        prose = next((c for c in table.columns if _sentences(c)), None)  # a column moved to notes is no longer one
        drop = evidence or _column(table, LEAVE_OUT_AFTER_NOTES)
        if prose is not None and evidence is None:
            _to_notes(prose, notes)
        elif drop is not None and len(table.columns) > 2:
            table.columns.remove(drop)
            left_out.append(str(drop.header))
        else:
            widths = _fitted_widths(table, width, fold=True)
            break
    for column, column_width in zip(table.columns, widths or ()):
        if not column.no_wrap:
            column.width = column_width
    caption = [f"[{n}] {text}" for n, text in enumerate(notes, 1)]
    if left_out:
        caption.append(f"not shown at {width} columns: {', '.join(left_out)} (a wider terminal or --json shows them)")
    if caption:
        table.caption, table.caption_justify = "\n".join(caption), "left"
    return table


def _column(table: Table, headers: Sequence[str]) -> Column | None:
    """The table's column of the first of `headers` it has."""
    by_header = {str(c.header): c for c in table.columns}
    return next((by_header[h] for h in headers if h in by_header), None)


def _sentences(column: Column) -> bool:
    """A column of sentences: one that wraps at PROSE_WIDTH (a max_width) and has a cell longer
    than PROSE_FLOOR (a column of dates or short words wraps at its words like any other)."""
    lines = (line for cell in column.cells for line in (cell.plain if isinstance(cell, Text) else str(cell)).split("\n"))
    return bool(column.max_width) and any(cell_len(line) > PROSE_FLOOR for line in lines)


def _to_notes(column: Column, notes: list[str]) -> None:
    """Move a column of sentences under the table: each cell becomes the number of its note (the
    same text, the same number), a blank cell stays blank."""
    cells = []
    for cell in column.cells:
        text = cell.plain if isinstance(cell, Text) else str(cell)
        if text.strip():
            if text not in notes:
                notes.append(text)
            cells.append(f"[{notes.index(text) + 1}]")
        else:
            cells.append("")
    column._cells = cells  # type: ignore[attr-defined]
    column.max_width = None


def _fitted_widths(table: Table, width: int, fold: bool) -> list[int] | None:
    """Column widths that fit `width`, dropping the cells' padding if need be; None where the
    words do not fit (with `fold`, words fold down to the column's header or min_width instead)."""
    natural, prose, word, prose_fold, floor = [], [], [], [], []
    for column in table.columns:
        header = cell_len(str(column.header))
        lines = [line for cell in column.cells for line in (Text(cell) if isinstance(cell, str) else cell).split("\n")]
        longest = max([header] + [cell_len(w) for line in lines for w in line.plain.split()])
        widest = min(max([header] + [line.cell_len for line in lines]), column.max_width or width)
        natural.append(widest)
        floor.append(min(max(header, column.min_width or 0), widest))
        word.append(min(max(longest, floor[-1]), widest))
        sentences = _sentences(column)
        prose.append(min(max(word[-1], PROSE_FLOOR), widest) if sentences else widest)
        prose_fold.append(min(max(floor[-1], PROSE_FLOOR), widest) if sentences else word[-1])
        if sentences:  # never wrapped narrower than PROSE_FLOOR: they move under the table instead
            word[-1] = prose[-1]
    may_wrap = [not column.no_wrap for column in table.columns]
    steps = (prose, word, prose_fold) + ((floor,) if fold else ())
    inside_rules = width - (len(natural) + 1)
    for padding, budget in ((True, inside_rules - 2 * len(natural)), (False, inside_rules)):  # a space each side of every cell
        widths = _give_way(natural, steps, may_wrap, budget)
        if sum(widths) <= budget:
            table.padding = (0, 1) if padding else (0, 0)
            return widths
    if not fold:
        return None
    table.padding = (0, 0)
    return widths


def _give_way(natural: list[int], limits: tuple[list[int], ...], may_wrap: list[bool], budget: int) -> list[int]:
    """Narrow the columns that may wrap until they fit `budget`, step by step, each step down to its
    limits, the widest column first."""
    widths = list(natural)
    for limit in limits:
        while sum(widths) > budget:
            shrinkable = [i for i, wraps in enumerate(may_wrap) if wraps and widths[i] > limit[i]]
            if not shrinkable:
                break
            widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    return widths


def profile_table(profile: Profile) -> Table:
    title = "Capabilities" + ("" if profile.root in ("/", "") else f" (snapshot {profile.root})")
    table = Table(title=title, show_lines=True, expand=False)
    table.add_column("area", style="dim", no_wrap=True)
    table.add_column("capability", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("evidence", ratio=3, overflow="fold")
    table.add_column("why / fix", ratio=2, max_width=PROSE_WIDTH, overflow="fold")
    for cap in profile.capabilities:
        evidence = Text("\n".join(_short(printable(f"{e.source}: {e.value}")) for e in cap.evidence))
        advice = Text(printable(cap.why))
        if cap.fix:
            advice.append(("\n" if cap.why else "") + "fix: ", style="bold")
            advice.append(printable(cap.fix))
        table.add_row(cap.area, cap.name, Text(cap.status.value, style=STATUS_STYLE[cap.status]), evidence, advice)
    return table



# ------------------------------------------------------------------------------- a run's report


def print_run_report(console: Console, run: Run, history: str = "", reports: Sequence[str] = ()) -> None:
    """A stored run as `gpubench report` and the end of `gpubench run` show it: who and where, the
    headline (what is missing and the fix; each data path against its limit and its baseline),
    one compact table per benchmark, what did not run and why, and where the history is."""
    from gpubench.report import headline as hl
    from gpubench.report import sections as sec
    from gpubench.report import telemetry as tel

    width = console.width
    head = hl.build(run)
    console.print(Text(run_heading(run), style="bold"))
    console.print(machine_line(run), style="dim")
    if head.shortfalls:
        console.print(fit(shortfall_table(head.shortfalls), width))
    if head.paths:
        console.print(fit(paths_table(head.paths), width))
    telemetry = tel.of_run(run)
    by_bench = {b.benchmark: b for b in telemetry.benchmarks}
    for section in sec.sections(run):
        console.print()
        console.print(Text(section_heading(section), style="bold"))
        if section.shared:
            console.print(Text("the same in every case: " + ", ".join(f"{k} {v}" for k, v in section.shared), style="dim"))
        console.print(fit(section_table(section), width))
        if section.benchmark in by_bench:
            console.print(Text(tel.line(by_bench[section.benchmark]), style="dim"))
    for group in sec.not_run(run):
        console.print(Text(f"{group.status.value}: {group.names()}: {group.reason}"))
    if telemetry.unreadable:
        console.print(Text("telemetry sources not readable here: " + "; ".join(f"{s} ({why})" for s, why in telemetry.unreadable), style="dim"))
    _print_footer(console, run, history, reports)


def run_heading(run: Run) -> str:
    took = f", took {formats.duration(run.ended - run.started)}" if run.ended else ""
    return f"gpubench {formats.run_name(run)}: {run.status.value}, {formats.when(run.started)}{took}"


def machine_line(run: Run) -> str:
    meta = run.metadata
    cpus = f"{meta.get('cpu_count')} CPUs" if meta.get("cpu_count") else ""
    memory = f"{meta['memory_bytes'] / 2**30:.1f} GiB" if isinstance(meta.get("memory_bytes"), (int, float)) else ""
    counts: dict[str, int] = {}
    for gpu in meta.get("gpus") or []:
        counts[str(gpu)] = counts.get(str(gpu), 0) + 1
    gpus = ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items()) or "no GPU"
    parts = [f"kernel {meta.get('kernel')}" if meta.get("kernel") else "", str(meta.get("cpu_model") or ""), cpus, memory, gpus,
             f"host {meta.get('hostname')}" if meta.get("hostname") else ""]
    return " · ".join(p for p in parts if p)


def shortfall_table(shortfalls: Sequence[Shortfall]) -> Table:
    table = Table(title="Not (fully) there, and the fix", title_justify="left", expand=False)
    table.add_column("capability", overflow="fold")
    table.add_column("verdict", no_wrap=True)
    table.add_column("fix", max_width=PROSE_WIDTH, overflow="fold")
    for s in shortfalls:
        table.add_row(s.name, Text(s.status.value, style=STATUS_STYLE[s.status]), s.fix or s.why)
    return table


def paths_table(paths: Sequence[PathRow]) -> Table:
    """A row per data path: what was measured, its best figure, then the limit the machine states
    and the baseline path for the same job, one under the other."""
    table = Table(title="Data paths: the best figure, the limit the machine states, the baseline path for the same job",
                  title_justify="left", expand=False, show_lines=True)
    table.add_column("path", max_width=PATH_WIDTH, overflow="fold")
    table.add_column("best", justify="right", overflow="fold")
    table.add_column("against", max_width=PROSE_WIDTH, overflow="fold")
    for row in paths:
        path = Text(row.path, style="bold")
        path.append("\n" + row.job, style="dim")
        against = Text("limit: ", style="bold")
        against.append(row.limit_text)
        if row.limit is not None:
            against.append(f" ({row.limit.source})", style="dim")
        for v in row.versus:
            against.append("\nvs ", style="bold")
            against.append(v.text)
        if not row.versus:
            against.append("\nbaseline: ", style="bold")
            against.append(row.no_versus)
        table.add_row(path, row.best_text, against)
    return table


def section_heading(section: Section) -> str:
    rounds = f", {section.rounds} rounds" if section.rounds and section.rounds > 1 else ""
    return f"{section.benchmark}: {len(section.rows)} case{'s' if len(section.rows) != 1 else ''}{rounds}"


def section_table(section: Section) -> Table:
    """A row per case: the median with its 95% CI, the samples, and where the family has one, the
    baseline path for the same job or the firmware's figure."""
    from gpubench.report.headline import ratio_text

    notes: list[str] = []
    table = Table(expand=False, caption_justify="left")
    table.add_column("case", overflow="fold")
    table.add_column("median", justify="right", overflow="fold")
    table.add_column("95% CI", justify="right", overflow="fold")
    table.add_column("n", justify="right", overflow="fold")
    if section.versus_what:
        table.add_column(f"vs {section.versus_what}", justify="right", overflow="fold")
    if section.claims:
        table.add_column("advertised", justify="right", max_width=PROSE_WIDTH, overflow="fold")
    for row in section.rows:
        r, s = row.result, row.result.summary
        median: str | Text = row.median_text
        if r.status is not ResultStatus.OK:
            median = Text(row.median_text + (f" ({r.status.value})" if s else ""), style=RESULT_COUNT_STYLE[r.status])
        cells: list = [r.case, median, row.ci_text(), str(len(r.samples))]
        if section.versus_what:
            v, note = row.versus, row.versus.note if row.versus else row.no_versus
            if note and note not in notes:
                notes.append(note)
            cells.append(" ".join(t for t in (ratio_text(v.ratio) if v else "—", f"[{notes.index(note) + 1}]" if note else "") if t))
        if section.claims:
            cells.append(row.claim_text)
        table.add_row(*cells)
    if notes:
        table.caption = "\n".join(f"[{n}] {note}" for n, note in enumerate(notes, 1))
    return table


def _print_footer(console: Console, run: Run, history: str, reports: Sequence[str]) -> None:
    speed = formats.machine_speed(run)
    if speed:
        console.print(f"machine speed: {speed}")
    if history:
        console.print(f"history: run {run.ident} in {history} (gpubench show {run.ident}; gpubench report {run.ident} --html FILE; "
                      f"gpubench compare OTHER {run.ident})")
    for path in reports:
        console.print(f"report: {path}")
