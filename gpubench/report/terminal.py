"""Rich terminal rendering. Colour only on a TTY; NO_COLOR is honoured by rich itself.

Consoles never read markup in strings: labels, reasons and case names are data, and a "[/x]" in
one must print as it is. Styles are given with rich.text.Text instead."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gpubench.probe.model import Profile, Status

STATUS_STYLE = {
    Status.YES: "bold green",
    Status.NO: "bold red",
    Status.PARTIAL: "bold yellow",
    Status.UNKNOWN: "magenta",
}


EVIDENCE_WIDTH = 100  # the table shortens long values; --json carries them whole
PROSE_WIDTH = 80  # the widest a column of sentences (why / fix, reason, note) grows before it wraps
PIPED_WIDTH = 1000  # not a terminal: rich would assume 80 columns and cut cells short


def stdout_console() -> Console:
    """Piped into a file or a CI log (and COLUMNS unset), a table takes the width its cells need;
    only its prose columns wrap, at PROSE_WIDTH."""
    console = Console(highlight=False, soft_wrap=False, markup=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def _short(value: str, width: int = EVIDENCE_WIDTH) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def stderr_console() -> Console:
    """Messages wrap at word boundaries on a terminal; in a log each stays one line."""
    console = Console(stderr=True, highlight=False, markup=False)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def profile_table(profile: Profile) -> Table:
    title = "Capabilities" + ("" if profile.root in ("/", "") else f" (snapshot {profile.root})")
    table = Table(title=title, show_lines=True, expand=False)
    table.add_column("area", style="dim", no_wrap=True)
    table.add_column("capability", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("evidence", ratio=3, overflow="fold")
    table.add_column("why / fix", ratio=2, max_width=PROSE_WIDTH, overflow="fold")
    for cap in profile.capabilities:
        evidence = Text("\n".join(_short(f"{e.source}: {e.value}") for e in cap.evidence))
        advice = Text(cap.why)
        if cap.fix:
            advice.append(("\n" if cap.why else "") + "fix: ", style="bold")
            advice.append(cap.fix)
        table.add_row(cap.area, cap.name, Text(cap.status.value, style=STATUS_STYLE[cap.status]), evidence, advice)
    return table

