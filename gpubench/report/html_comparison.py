"""What the HTML comparison page shows, as plain values for its template: first what changed
between the sides (the machine settings the runs recorded, the capability verdicts of their
probes, the cases that moved), then every case per benchmark with its notes numbered under the
table, so that no note squeezes a column.

What changed is gpubench.results.changes' typed record (the run metadata of each side and the
capability diff of gpubench.probe.diff), as `compare --json` and `--markdown` carry it."""

from __future__ import annotations

import math
from typing import Any, Sequence

from gpubench.probe.model import probed_verdict
from gpubench.report import formats
from gpubench.results.changes import WhatChanged
from gpubench.results.model import CaseComparison, Comparison, ResultStatus, Verdict

VERDICT_CLASS = {
    Verdict.BETTER: "better",
    Verdict.WORSE: "worse",
    Verdict.SAME: "same",
    Verdict.NOT_COMPARABLE: "not-comparable",
    Verdict.LOST: "lost",
}
MEDIAN_MEANS = ("base and new are the values the ratio compares: for each side, the geometric mean of the medians of its "
                "rounds (of its runs, where a side holds several), or the median of all its samples where a side has no rounds; "
                "so a run's value here can differ a little from the median `gpubench show` gives.")


def _setting_row(s) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"title": s.title, "base": formats.setting_values(s.base), "new": formats.setting_values(s.new)}


def setting_rows(changed: WhatChanged) -> tuple[list[dict[str, str]], list[str], int]:
    """The settings that differ between the sides, the ones a side did not record, and how many
    were the same."""
    differ = [_setting_row(s) for s in changed.changed_settings]
    unrecorded = [s.title for s in changed.unrecorded_settings]
    return differ, unrecorded, len(changed.settings) - len(differ) - len(unrecorded)


def capability_rows(changed: WhatChanged) -> list[dict[str, str]] | None:
    """The verdicts that differ between the sides' probes; None where a side stored none."""
    if not all(changed.probed):
        return None
    rows = []
    for change in changed.capabilities:
        latest = change.after or change.before
        rows.append({
            "area": change.area, "name": change.name,
            "base": probed_verdict(change.status_before), "new": probed_verdict(change.status_after),
            "why": latest.why if latest else "", "lost": "lost" if change.lost else "gained" if change.gained else "",
        })
    return rows


def _notes(case: CaseComparison) -> list[str]:
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
    return notes


def case_row(case: CaseComparison, notes: list[str]) -> dict[str, Any]:
    """A case's cells; its notes join `notes` (the table's, numbered in order, shared by equal
    texts) and the row keeps their numbers."""
    ratio = case.ratio if case.ratio is not None and math.isfinite(case.ratio) else None
    refs = []
    for note in _notes(case):
        if note not in notes:
            notes.append(note)
        refs.append(notes.index(note) + 1)
    has_ci = case.ci_low is not None and case.ci_high is not None
    return {
        "benchmark": case.benchmark,
        "case": case.case,
        "direction": "higher is better" if case.higher_is_better else "lower is better",
        "base": formats.side_value(case, "base", with_unit=True),
        "new": formats.side_value(case, "new", with_unit=True),
        "ratio": f"{ratio:.3f}" if ratio is not None else formats.NOT_AVAILABLE,
        "change": f"{(ratio - 1) * 100:+.1f}%" if ratio is not None else "",
        "ci": f"{case.ci_low:.3f} – {case.ci_high:.3f}" if has_ci else formats.NOT_AVAILABLE,
        "p": formats.p_value(case.p_value, formats.NOT_AVAILABLE),
        "verdict": case.verdict.value,
        "verdict_class": VERDICT_CLASS[case.verdict],
        "refs": refs,
        "units": case.units,
        "base_medians": " · ".join(formats.number(m, formats.NOT_AVAILABLE) for m in case.base_medians),
        "new_medians": " · ".join(formats.number(m, formats.NOT_AVAILABLE) for m in case.new_medians),
    }


def sections(comparison: Comparison, chart: Any) -> list[dict[str, Any]]:
    groups: dict[str, list[CaseComparison]] = {}
    for case in comparison.cases:
        groups.setdefault(case.benchmark, []).append(case)
    out = []
    for benchmark, cases in groups.items():
        notes: list[str] = []
        rows = [case_row(c, notes) for c in cases]
        with_ratio = [c for c in cases if c.ratio is not None and math.isfinite(c.ratio)]
        out.append({"benchmark": benchmark, "rows": rows, "notes": notes, "svg": chart(with_ratio) if with_ratio else None})
    return out


def moved(comparison: Comparison) -> list[dict[str, Any]]:
    """The cases called better, worse or lost, the largest change first."""
    cases: Sequence[CaseComparison] = [c for c in comparison.cases if c.verdict in (Verdict.BETTER, Verdict.WORSE, Verdict.LOST)]
    ordered = sorted(cases, key=lambda c: (c.verdict is not Verdict.LOST, -abs(math.log(c.ratio)) if c.ratio and c.ratio > 0 else 0.0))
    return [case_row(c, []) | {"why": c.note} for c in ordered]
