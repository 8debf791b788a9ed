"""Rich terminal rendering. Colour only on a TTY; NO_COLOR is honoured by rich itself.

Consoles never read markup or emoji codes in strings: labels, reasons and case names are data,
and a "[/x]" or ":fire:" in one must print as it is. Styles are given with rich.text.Text instead."""

from __future__ import annotations

import os

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gpubench.probe.model import Profile, Status, printable

STATUS_STYLE = {
    Status.YES: "bold green",
    Status.NO: "bold red",
    Status.PARTIAL: "bold yellow",
    Status.UNKNOWN: "magenta",
}


EVIDENCE_WIDTH = 100  # the table shortens long values; --json carries them whole
PROSE_WIDTH = 80  # the widest a column of sentences (why / fix, reason, note) grows before it wraps
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


def fit(table: Table, width: int) -> Table:
    """Give the columns that may wrap widths that fit the table into `width`, where rich alone
    would shrink every column alike, cutting numbers to "…" and pushing the edge off-screen. They
    give way in three steps, the widest first in each: sentences (a column with a max_width) wrap
    down to PROSE_FLOOR, then every column wraps down to its longest word, then words fold down
    to the column's header or its min_width. Where that is still too wide, the cells lose their
    padding and the steps are taken again. Cells are str or Text, as every table here makes them."""
    natural, prose, word, floor = [], [], [], []
    for column in table.columns:
        header = cell_len(str(column.header))
        lines = [line for cell in column.cells for line in (Text(cell) if isinstance(cell, str) else cell).split("\n")]
        longest = max([header] + [cell_len(w) for line in lines for w in line.plain.split()])
        widest = min(max([header] + [line.cell_len for line in lines]), column.max_width or width)
        natural.append(widest)
        floor.append(min(max(header, column.min_width or 0), widest))
        word.append(min(max(longest, floor[-1]), widest))
        prose.append(min(max(word[-1], PROSE_FLOOR), widest) if column.max_width else widest)
    may_wrap = [not column.no_wrap for column in table.columns]
    inside_rules = width - (len(natural) + 1)
    padded = inside_rules - 2 * len(natural)  # a space each side of every cell
    widths = _give_way(natural, (prose, word, floor), may_wrap, padded)
    if sum(widths) > padded:
        table.padding = (0, 0)
        widths = _give_way(natural, (prose, word, floor), may_wrap, inside_rules)
    if widths != natural:
        for column, column_width in zip(table.columns, widths):
            if not column.no_wrap:
                column.width = column_width
    return table


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

