"""The notes of a comparison: what a reader of its verdicts must also know (printed on stderr, in
compare --json's "notes" and under compare --markdown's tables): the machine ran at another
speed, a verdict rests on one run per side, cases were not judged, runs were interrupted."""

from __future__ import annotations

from typing import Sequence

from gpubench.report.formats import machine_speed_note, side_name
from gpubench.results.model import Comparison, RunStatus, Verdict


def comparison_notes(comparisons: Sequence[Comparison]) -> list[str]:
    speed = [note for note in map(machine_speed_note, comparisons) if note]
    return speed + _single_run_notes(comparisons) + _incomplete_notes(comparisons)


def _which(comparison: Comparison, comparisons: Sequence[Comparison]) -> str:
    """'1 -> 3: ' to open a note about one of several comparisons; nothing when there is one."""
    return f"{side_name(comparison.base_side)} -> {side_name(comparison.new_side)}: " if len(comparisons) > 1 else ""


def _single_run_notes(comparisons: Sequence[Comparison]) -> list[str]:
    """One line per comparison where a better or worse rests on one run per side: the rounds of a
    run lie seconds apart, and a machine that drifts for longer than a run moves all of them together."""
    notes = []
    for comparison in comparisons:
        judged = [case for case in comparison.cases
                  if case.verdict in (Verdict.BETTER, Verdict.WORSE) and case.units != "runs"]
        if not judged:
            continue
        basis = "one run of one round per side" if any(not case.units for case in judged) else "the rounds of one run per side"
        notes.append(f"{_which(comparison, comparisons)}{len(judged)} case(s) were judged better or worse on {basis}, "
                     f"so how far this machine moves between runs is unknown; to rule that out, compare several runs "
                     f"per side (gpubench run --repeat 3, then e.g. compare 1,2,3 4,5,6)")
    return notes


def _incomplete_notes(comparisons: Sequence[Comparison]) -> list[str]:
    """Lines for cases missing from a side or run differently on the two, one for interrupted runs:
    none is judged, so a CI log must say that the gate passed without them."""
    notes = [f"{_which(c, comparisons)}{len(c.missing)} case(s) not compared because one side lacks them "
             f"(verdict 'not comparable'); no regression is reported for them" for c in comparisons if c.missing]
    for c in comparisons:
        if c.unmatched:
            why = sorted({case.note.split(":")[0].split(" (")[0] for case in c.unmatched})
            notes.append(f"{_which(c, comparisons)}{len(c.unmatched)} case(s) not compared although both sides ran them "
                         f"(verdict 'not comparable'; its note says why, here: {', '.join(why)}); no regression is reported for them")
    runs = {run.uid: run for c in comparisons for run in c.base_side + c.new_side}
    interrupted = [str(run.id) for run in runs.values() if run.status is RunStatus.INTERRUPTED]
    if interrupted:
        one = len(interrupted) == 1
        notes.append(f"{'run' if one else 'runs'} {', '.join(interrupted)} {'was' if one else 'were'} interrupted: "
                     f"compared only as far as {'it' if one else 'they'} got")
    return notes
