"""Rich terminal rendering. Colour only on a TTY; NO_COLOR is honoured by rich itself."""

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


def stdout_console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped into a file or a CI log: wider than the 80-column default
    return console


def _short(value: str, width: int = EVIDENCE_WIDTH) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def profile_table(profile: Profile) -> Table:
    title = "Capabilities" + ("" if profile.root in ("/", "") else f" (snapshot {profile.root})")
    table = Table(title=title, show_lines=True, expand=False)
    table.add_column("area", style="dim", no_wrap=True)
    table.add_column("capability", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("evidence", ratio=3)
    table.add_column("why / fix", ratio=2)
    for cap in profile.capabilities:
        evidence = Text("\n".join(_short(f"{e.source}: {e.value}") for e in cap.evidence))
        advice = Text(cap.why)
        if cap.fix:
            advice.append(("\n" if cap.why else "") + "fix: ", style="bold")
            advice.append(cap.fix)
        table.add_row(cap.area, cap.name, Text(cap.status.value, style=STATUS_STYLE[cap.status]), evidence, advice)
    return table


RESULT_STYLE = {"ok": "green", "waived": "yellow", "failed": "bold red", "interrupted": "magenta"}


def run_summary(run) -> Table:
    """One row per result of a run: what a user reads first after `gpubench run`."""
    title = f"Run {run.id if run.id is not None else run.uid[:8]}" + (f" - {run.label}" if run.label else "")
    table = Table(title=f"{title} ({run.status.value})", expand=False)
    for name, justify in (("benchmark", "left"), ("case", "left"), ("status", "left"), ("median", "right"),
                          ("95% CI", "right"), ("n", "right"), ("note", "left")):
        table.add_column(name, justify=justify)
    for r in run.results:
        s = r.summary
        table.add_row(
            r.benchmark,
            "" if r.case == "*" else r.case,
            Text(r.status.value, style=RESULT_STYLE.get(r.status.value, "")),
            f"{s.median:,.4g} {r.unit}" if s else "",
            f"{s.ci_low:,.4g} - {s.ci_high:,.4g}" if s else "",
            str(s.n) if s else "",
            r.reason,
        )
    return table
