"""Comparisons as GitHub-flavoured Markdown, for a CI job's summary page (GitHub Actions takes it
as is: `gpubench compare ... --markdown >> "$GITHUB_STEP_SUMMARY"`).

Per comparison: a heading, the verdict counts, what changed besides the numbers (settings that
differ, capability verdicts that differ), and one table row per case. A case's note is a numbered
footnote under its table (cases with the same note share one), so that no note squeezes a column;
the comparison's notes follow last. Text in cells is escaped, so a case name cannot break a table.
"""

from __future__ import annotations

import re
from typing import Sequence

from gpubench.probe.model import probed_verdict
from gpubench.report import formats
from gpubench.report.tables import change_interval, format_change, verdict_counts
from gpubench.results.changes import what_changed
from gpubench.results.model import CaseComparison, Comparison, Verdict

COLUMNS = ("benchmark", "case", "unit", "base", "new", "change", "95% CI", "p", "verdict", "note")
ALIGN = ("---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---", "---")
_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")
STRONG = frozenset({Verdict.WORSE, Verdict.LOST})


def cell(text: str) -> str:
    """Text that stays inside its table cell, literally: Markdown's own characters escaped, lines joined."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _case_row(case: CaseComparison, footnote: str) -> str:
    verdict = cell(case.verdict.value)
    return _row([
        cell(case.benchmark), cell(case.case), cell(case.unit + ("" if case.higher_is_better else " (lower)")),
        cell(formats.side_value(case, "base")), cell(formats.side_value(case, "new")), cell(format_change(case.ratio)),
        cell(change_interval(case)), cell(formats.p_value(case.p_value)), f"**{verdict}**" if case.verdict in STRONG else verdict, footnote,
    ])


def _what_changed(comparison: Comparison) -> list[str]:
    changed = what_changed(comparison)
    lines = []
    if changed.changed_settings:
        lines += ["", "What changed on the machine:", "", _row(["setting", "base", "new"]), _row(["---"] * 3)]
        lines += [_row([cell(s.title), cell(formats.setting_values(s.base)), cell(formats.setting_values(s.new))])
                  for s in changed.changed_settings]
    if changed.capabilities:
        lines += ["", "Capability verdicts that changed:", ""]
        lines += [f"- {cell(c.area)} / {cell(c.name)}: {probed_verdict(c.status_before)} -> "
                  f"{probed_verdict(c.status_after)}" for c in changed.capabilities]
    return lines


def comparison_markdown(comparison: Comparison) -> str:
    title = f"{cell(formats.side_name(comparison.base_side))} → {cell(formats.side_name(comparison.new_side))}"
    lines = [f"### gpubench: {title}", "",
             f"Threshold {comparison.threshold:.1%}: {verdict_counts(comparison)}; {len(comparison.regressions)} regression(s)."]
    lines += _what_changed(comparison)
    lines += ["", _row(COLUMNS), _row(ALIGN)]
    footnotes: dict[str, int] = {}  # note -> its number: cases with the same note share it
    for case in comparison.cases:
        shown = case.note and case.verdict not in (Verdict.BETTER, Verdict.WORSE)
        number = footnotes.setdefault(case.note, len(footnotes) + 1) if shown else 0
        lines.append(_case_row(case, f"[{number}]" if number else ""))
    if footnotes:
        lines.append("")
        lines += [f"{number}. {cell(note)}" for note, number in footnotes.items()]
    return "\n".join(lines) + "\n"


def comparisons_markdown(comparisons: Sequence[Comparison], notes: Sequence[str] = ()) -> str:
    """Every comparison, then the notes compare prints on stderr."""
    parts = [comparison_markdown(c) for c in comparisons]
    if notes:
        parts.append("**Notes**\n\n" + "".join(f"- {cell(note)}\n" for note in notes))
    return "\n".join(parts)
