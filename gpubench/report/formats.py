"""How numbers, times and p-values read, the same in the terminal and in HTML."""

from __future__ import annotations

import datetime as _dt
import math
import statistics

from gpubench.numbers import number
from gpubench.results.model import machine_speed_readings


def when(timestamp: float | None, missing: str = "") -> str:
    """Local time with its zone."""
    if not timestamp:
        return missing
    return _dt.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None, missing: str = "") -> str:
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return missing
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def p_value(p: float | None, missing: str = "") -> str:
    if p is None or math.isnan(p):
        return missing
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def run_name(run) -> str:  # type: ignore[no-untyped-def]
    """'run 4 (kernel 6.8)': the local number, else the uid's start, and the label when there is one."""
    return f"run {run.ident}" + (f" ({run.label})" if run.label else "")


def run_line(run, results: int) -> str:  # type: ignore[no-untyped-def]
    """'run 3 (kernel 6.8), started 2026-01-01 12:00:00 UTC, 8 results': a run as housekeeping names it."""
    return f"{run_name(run)}, started {when(run.started)}, {results} result{'' if results == 1 else 's'}"


def side_name(runs) -> str:  # type: ignore[no-untyped-def]
    """One run by its name; several as 'runs 1,2,3', with their label when they share one."""
    if len(runs) == 1:
        return run_name(runs[0])
    idents = ",".join(r.ident for r in runs)
    labels = {r.label for r in runs}
    shared = labels.pop() if len(labels) == 1 else ""
    return f"runs {idents}" + (f" ({shared})" if shared else "")


MACHINE_REFERENCE = "a fixed CPU reference timed before every repetition"  # see gpubench.bench.core.hostspeed


def machine_speed(run) -> str | None:  # type: ignore[no-untyped-def]
    """The machine's own speed through a run, by the machine reference: its median and 10th-90th
    percentile (how steady the machine was); None for runs without it."""
    speeds = machine_speed_readings([run])
    if len(speeds) < 2:
        return None
    tenth, *_, ninetieth = statistics.quantiles(speeds, n=10)
    return (f"{number(statistics.median(speeds))} MB/s by {MACHINE_REFERENCE} "
            f"(10th-90th percentile {number(tenth)}-{number(ninetieth)})")


def machine_speed_note(comparison) -> str | None:  # type: ignore[no-untyped-def]
    """A sentence when the machine itself ran at a different speed on the two sides, beyond the
    comparison's threshold and not too small to show as a whole percent, by the machine reference;
    else None."""
    base, new = comparison.machine_speeds
    if not base or not new or abs(new / base - 1) <= max(comparison.threshold, 0.005):
        return None
    return (f"by {MACHINE_REFERENCE}, the machine itself ran {abs(new / base - 1):.0%} "
            f"{'faster' if new > base else 'slower'} in {side_name(comparison.new_side)} than in "
            f"{side_name(comparison.base_side)}: {new:,.0f} vs {base:,.0f} MB/s. Cases that lean on the CPU move with "
            f"it. The kernel (CPU governor, mitigations) moves it, and so does a virtual machine's host; processes "
            f"sharing this machine's CPUs do not, as it times the CPU while it runs")


def sample_count(result) -> str:  # type: ignore[no-untyped-def]
    """'9' or, when the samples came in several rounds, '9 in 3 rounds'."""
    rounds = len(result.by_round()) if result.samples else 0
    return f"{len(result.samples)} in {rounds} rounds" if rounds > 1 else str(len(result.samples))


def side_value(case, side: str, with_unit: bool = False) -> str:  # type: ignore[no-untyped-def]
    """One side of a compared case: the value its ratio compares, else why there is none."""
    result = case.base if side == "base" else case.new
    if result is None:
        return "missing"
    level = case.level(side)
    if level is None:
        return result.status.value
    return f"{number(level)} {result.unit}" if with_unit else number(level)


NOT_AVAILABLE = "—"  # a figure or a time there is none of
NOT_RECORDED = "not recorded"  # a fact the run did not store (an older gpubench, a run that never ended)


def setting_values(values) -> str:  # type: ignore[no-untyped-def]
    """A side's values of a setting (WhatChanged): 'none' where recorded as absent, 'not recorded'
    where a run did not record it; several runs' joined."""
    return " | ".join("none" if v == "" else NOT_RECORDED if v is None else v for v in values)
