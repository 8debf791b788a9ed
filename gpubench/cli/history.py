"""History commands: list, show, export, import, compare.

Only `import` may create or write the result database; the others open it read-only.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gpubench.cli.common import JsonOpt, emit_json
from gpubench.errors import UserError
from gpubench.files import check_output_path, write_user_file

DbOpt = typer.Option(
    None, "--db", metavar="PATH", help="Result history (default: $GPUBENCH_DB, else $XDG_DATA_HOME/gpubench/results.db)."
)
ForceOpt = typer.Option(False, "--force", help="Replace output files that already exist.")


class ExportFormat(str, enum.Enum):
    JSON = "json"
    CSV = "csv"
    JUNIT = "junit"
    PROMETHEUS = "prometheus"


def _db(path: Optional[Path]) -> Path:
    from gpubench.results.store import default_db_path

    return path if path is not None else default_db_path()


def _open_readonly(path: Optional[Path]):  # type: ignore[no-untyped-def]
    from gpubench.results.store import Store

    return Store.open(_db(path), create=False, readonly=True)


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05. A bare number of 1 or more is refused as ambiguous."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a threshold: give a percentage like 5% or a fraction like 0.05", param_hint="--threshold") from None
    if not raw.endswith("%") and 1.0 <= value < 100.0:
        raise typer.BadParameter(f"{text!r} is ambiguous: write {raw}% for a percentage, or a fraction below 1", param_hint="--threshold")
    if not (0.0 <= value < 1.0):
        raise typer.BadParameter(f"{text!r} must be at least 0% and below 100%", param_hint="--threshold")
    return value


def _emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def list_command(
    db: Optional[Path] = DbOpt,
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, max=2**63 - 1, help="Show only the N most recent runs."),
    as_json: bool = JsonOpt,
) -> None:
    """List the stored runs, most recent first."""
    path = _db(db)
    if not path.exists():
        typer.echo(f"no result history at {path} yet: `gpubench run` creates it", err=True)
        if as_json:
            emit_json([])
        return
    with _open_readonly(path) as store:
        listings = store.list_runs(limit)
    if as_json:
        rows = [
            {
                "id": e.run.id,
                "uid": e.run.uid,
                "label": e.run.label,
                "started": e.run.started,
                "ended": e.run.ended,
                "status": e.run.status.value,
                "results": e.counts,
                "kernel": e.run.metadata.get("kernel"),
                "hostname": e.run.metadata.get("hostname"),
            }
            for e in listings
        ]
        emit_json(rows)
        return
    from gpubench.report.tables import runs_table
    from gpubench.report.terminal import fit, stdout_console

    if not listings:
        typer.echo(f"no runs in {path} yet", err=True)
        return
    console = stdout_console()
    console.print(fit(runs_table(listings), console.width))


def show_command(
    run: str = typer.Argument(..., metavar="RUN", help="Run number, 'latest', or 6+ hex digits of its uid."),
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one run: where and when it ran, and each result with its median and 95% CI."""
    with _open_readonly(db) as store:
        found = store.get_run(run)
    if as_json:
        emit_json(found.to_dict())
        return
    from gpubench.report.tables import results_table, run_header
    from gpubench.report.terminal import fit, stdout_console

    console = stdout_console()
    console.print(run_header(found))
    console.print(fit(results_table(found), console.width))


def export_command(
    run: str = typer.Argument(..., metavar="RUN", help="Run number, 'latest', or 6+ hex digits of its uid."),
    fmt: ExportFormat = typer.Option(..., "--format", "-f", case_sensitive=False, help="json (importable), csv, junit or prometheus (node_exporter textfile)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write here (atomically) instead of stdout; - means stdout."),
    force: bool = ForceOpt,
    db: Optional[Path] = DbOpt,
) -> None:
    """Export one run: JSON (to import elsewhere), CSV, JUnit XML or a Prometheus textfile."""
    with _open_readonly(db) as store:
        found = store.get_run(run)
    text = render_export(found, fmt)
    if output is None or str(output) == "-":
        _emit(text)
    else:
        write_user_file(output, text, force)
        typer.echo(f"wrote {output}", err=True)


def render_export(run, fmt: ExportFormat) -> str:  # type: ignore[no-untyped-def]
    if fmt is ExportFormat.JSON:
        from gpubench.results.jsonio import run_to_json

        return run_to_json(run)
    if fmt is ExportFormat.CSV:
        from gpubench.report.csvout import run_csv

        return run_csv(run)
    if fmt is ExportFormat.JUNIT:
        from gpubench.report.junit import run_junit

        return run_junit(run)
    if fmt is ExportFormat.PROMETHEUS:
        from gpubench.report.prometheus import run_textfile

        return run_textfile(run)
    raise AssertionError(f"unhandled export format {fmt}")


def import_command(
    files: List[Path] = typer.Argument(..., metavar="FILE|DIR...", help="JSON exports (`gpubench export RUN --format json`) or runs' JSON reports; a directory stands for its *.json files."),
    db: Optional[Path] = DbOpt,
) -> None:
    """Add runs exported on other machines to this history.

    A run already in the history (the same uid) is skipped, so importing the same files again, or
    a directory that has grown, adds only what is new. A file that cannot be read is named on
    stderr and the others are still imported; the exit status is then 1."""
    from gpubench.results.merge import merge_exports

    path = _db(db)
    problems, counts = [], {"added": 0, "skipped": 0}
    for item in merge_exports(path, files):
        if item.run is None:
            problems.append(item.problem)
            typer.echo(f"gpubench: error: {item.problem}", err=True)
            continue
        label = f" ({item.run.label})" if item.run.label else ""
        if item.added:
            counts["added"] += 1
            _emit(f"imported run {item.run.uid[:12]}{label} as run {item.run_id} into {path}\n")
        else:
            counts["skipped"] += 1
            _emit(f"skipped run {item.run.uid[:12]}{label}: already in {path} as run {item.run_id}\n")
    if counts["added"] + counts["skipped"] + len(problems) > 1:
        typer.echo(f"imported {counts['added']} run(s), skipped {counts['skipped']} already there"
                   + (f", {len(problems)} could not be read" if problems else ""), err=True)
    if problems:
        raise typer.Exit(1)


def compare_command(
    base: str = typer.Argument(
        ..., metavar="BASE", help="The reference: a run number, 'latest' or uid prefix; several runs as 1,2,3; or label:NAME, every complete run so labelled (NAME is the rest of the argument, commas included)."
    ),
    new: List[str] = typer.Argument(..., metavar="NEW", help="One or more runs to compare with BASE, each given as BASE is."),
    threshold: str = typer.Option("5%", "--threshold", metavar="PCT", help="Smallest change that counts, e.g. 5% or 0.05."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit 3 when any case is significantly worse or lost."),
    as_json: bool = JsonOpt,
    html: Optional[Path] = typer.Option(None, "--html", metavar="OUT", help="Also write an HTML report (with several NEW: OUT-<run>.html each)."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="OUT", help="Also write JUnit XML (worse or lost = failure)."),
    force: bool = ForceOpt,
    db: Optional[Path] = DbOpt,
) -> None:
    """Compare runs case by case: medians, ratio with its 95% CI, p-value, verdict.

    Each run measures every case in rounds spread over the run, and the rounds, not the samples,
    are compared: a t-test on the logarithms of their medians, Holm-adjusted over the cases; the
    base and new columns are the geometric means of those medians. A side may be several runs of one configuration, e.g. `compare 1,2,3 4,5,6` or label:NAME.

    Notes on stderr (with --json, also in its "notes") count the cases missing from a side or run
    with other parameters (not judged), name interrupted runs, say when a better or worse rests on one run per side, and when
    the machine itself ran at another speed on the two sides (a fixed CPU reference timed before
    every repetition).

    Exit status: 0 done, 3 a regression with --fail-on-regression, 1 error, 2 usage."""
    fraction = parse_threshold(threshold)
    from gpubench.report.formats import machine_speed_note
    from gpubench.results.compare import compare

    with _open_readonly(db) as store:
        base_runs = _side(store, base, "BASE")
        new_sides = [_side(store, ref, "NEW") for ref in new]
    base_uids = {run.uid for run in base_runs}
    for side in new_sides:
        shared = [run for run in side if run.uid in base_uids]
        if shared:
            raise UserError(f"run {shared[0].id} is on both sides of the comparison")
    html_targets = [] if html is None else [
        html if len(new_sides) == 1 else html.with_name(f"{html.stem}-{'+'.join(str(r.id) for r in side)}{html.suffix or '.html'}")
        for side in new_sides
    ]
    targets = html_targets + ([junit] if junit is not None else [])
    for index, requested in enumerate(targets):
        if any(requested.resolve() == other.resolve() for other in targets[:index]):
            raise UserError(f"{requested} is named for two outputs; give --html and --junit different files, and each NEW once")
        check_output_path(requested, force)
    comparisons = [compare(base_runs, side, fraction) for side in new_sides]
    notes = [n for n in map(machine_speed_note, comparisons) if n] + _single_run_notes(comparisons) + _incomplete_notes(comparisons)

    html_pages = []
    if html_targets:
        from gpubench.report.html import render_comparison_html

        html_pages = [(target, render_comparison_html(c)) for target, c in zip(html_targets, comparisons)]
    junit_text = None
    if junit is not None:
        from gpubench.report.junit import comparison_junit

        junit_text = comparison_junit(comparisons)

    if as_json:
        from gpubench.results.jsonio import comparisons_to_json

        _emit(comparisons_to_json(comparisons, notes))
    else:
        from gpubench.report.tables import comparison_table, verdict_counts
        from gpubench.report.terminal import fit, stdout_console

        console = stdout_console()
        for comparison in comparisons:
            console.print(fit(comparison_table(comparison), console.width))
            console.print(verdict_counts(comparison))
    for target, page in html_pages:
        write_user_file(target, page, force)
        typer.echo(f"wrote {target}", err=True)
    if junit is not None and junit_text is not None:
        write_user_file(junit, junit_text, force)
        typer.echo(f"wrote {junit}", err=True)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    regressions = sum(len(c.regressions) for c in comparisons)
    if regressions and fail_on_regression:
        typer.echo(f"{regressions} regression(s) beyond the {fraction:.1%} threshold", err=True)
        raise typer.Exit(3)


def _which(comparison, comparisons) -> str:  # type: ignore[no-untyped-def]
    """'1 -> 3: ' to open a note about one of several comparisons; nothing when there is one."""
    from gpubench.report.formats import side_name

    return f"{side_name(comparison.base_side)} -> {side_name(comparison.new_side)}: " if len(comparisons) > 1 else ""


def _single_run_notes(comparisons) -> list[str]:  # type: ignore[no-untyped-def]
    """One line per comparison where a better or worse rests on one run per side: the rounds of a
    run lie seconds apart, and a machine that drifts for longer than a run moves all of them together."""
    from gpubench.results.model import Verdict

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


def _incomplete_notes(comparisons) -> list[str]:  # type: ignore[no-untyped-def]
    """Lines for cases missing from a side or run differently on the two, one for interrupted runs:
    none is judged, so a CI log must say that the gate passed without them."""
    from gpubench.results.model import RunStatus

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


def _side(store, refs: str, which: str) -> list:  # type: ignore[no-untyped-def]
    """The runs one side of a comparison names: 'latest', '4', '1,2,3' or 'label:kernel 6.8'."""
    names = [refs.strip()] if refs.strip().startswith("label:") else [ref.strip() for ref in refs.split(",")]
    if not all(names):
        raise UserError(f"{which} {refs!r}: an empty run name; separate runs with commas, e.g. 1,2,3")
    runs = []
    for name in names:
        if name.startswith("label:") and not name[len("label:"):].strip():
            raise UserError(f"{which} {refs!r} names no label; give label:NAME (labels are in: gpubench list)")
        runs += _labelled(store, name[len("label:"):]) if name.startswith("label:") else [store.get_run(name)]
    seen: set[str] = set()
    for run in runs:
        if run.uid in seen:
            raise UserError(f"{which} {refs!r} names run {run.id} twice")
        seen.add(run.uid)
    return runs


def _labelled(store, label: str) -> list:  # type: ignore[no-untyped-def]
    """Every complete run with exactly this label, oldest first."""
    runs = store.complete_runs_labelled(label)
    if not runs:
        raise UserError(f"no complete run labelled {label!r} (see: gpubench list)")
    return runs


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("compare")(compare_command)
