"""History commands: list, show, export, import, compare, and the housekeeping ones, delete and prune.

Only `import` may create the result database; `import`, `delete` and `prune` write it; the others
open it read-only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from gpubench.cli.common import JsonOpt, UsageError, emit_json
from gpubench.errors import UserError
from gpubench.files import check_output_path, write_user_file
from gpubench.report.exports import ExportFormat

DbOpt = typer.Option(
    None, "--db", metavar="PATH", help="Result history (default: $GPUBENCH_DB, else $XDG_DATA_HOME/gpubench/results.db)."
)
ForceOpt = typer.Option(False, "--force", help="Replace output files that already exist.")


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
        emit_json([listing.to_dict() for listing in listings])
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
    fmt: ExportFormat = typer.Option(..., "--format", "-f", case_sensitive=False, help="json (importable), csv, junit, prometheus (node_exporter textfile) or bmf (Bencher metric format)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write here (atomically) instead of stdout; - means stdout."),
    force: bool = ForceOpt,
    db: Optional[Path] = DbOpt,
) -> None:
    """Export one run: JSON (to import elsewhere), CSV, JUnit XML, a Prometheus textfile or Bencher's BMF JSON."""
    from gpubench.report.exports import render_export

    with _open_readonly(db) as store:
        found = store.get_run(run)
    text = render_export(found, fmt)
    if output is None or str(output) == "-":
        _emit(text)
    else:
        write_user_file(output, text, force)
        typer.echo(f"wrote {output}", err=True)


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
    markdown: bool = typer.Option(False, "--markdown", help="Print GitHub-flavoured Markdown on stdout instead of tables, e.g. >> \"$GITHUB_STEP_SUMMARY\"."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="OUT", help="Also write an HTML report (with several NEW: OUT-<run>.html each)."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="OUT", help="Also write JUnit XML (worse or lost = failure)."),
    force: bool = ForceOpt,
    db: Optional[Path] = DbOpt,
) -> None:
    """Compare runs case by case: medians, ratio with its 95% CI, p-value, verdict.

    Each run measures every case in rounds spread over the run, and the rounds, not the samples,
    are compared: a t-test on the logarithms of their medians, Holm-adjusted over the cases; the
    base and new columns are the geometric means of those medians. A side may be several runs of one configuration, e.g. `compare 1,2,3 4,5,6` or label:NAME.

    Notes on stderr (with --json, also in its "notes"; with --markdown, also under the tables)
    count the cases missing from a side or run with other parameters (not judged), name
    interrupted runs, say when a better or worse rests on one run per side, and when the machine
    itself ran at another speed on the two sides (a fixed CPU reference timed before every
    repetition). --json also says what changed besides the numbers (what_changed: kernel, boot
    command line, governor, THP, drivers, capability verdicts); the terminal table and --markdown
    show what differs, above the cases.

    Exit status: 0 done, 3 a regression with --fail-on-regression, 1 error, 2 usage."""
    fraction = parse_threshold(threshold)
    if as_json and markdown:
        raise UsageError("--json and --markdown exclude each other")
    from gpubench.report.notes import comparison_notes
    from gpubench.results.compare import compare
    from gpubench.results.gate import Gate
    from gpubench.results.selection import ComparisonSides

    with _open_readonly(db) as store:
        sides = ComparisonSides.select(store, base, new)
    html_targets = [] if html is None else _per_side(html, sides.new)
    _check_outputs(html_targets + ([junit] if junit is not None else []), force)
    comparisons = [compare(sides.base, side, fraction) for side in sides.new]
    notes = comparison_notes(comparisons)
    pages = _comparison_pages(comparisons, html_targets, junit)  # rendered whole before anything is written
    if as_json:
        from gpubench.results.jsonio import comparisons_to_json

        _emit(comparisons_to_json(comparisons, notes))
    elif markdown:
        from gpubench.report.markdown import comparisons_markdown

        _emit(comparisons_markdown(comparisons, notes))
    else:
        _print_comparisons(comparisons)
    for target, page in pages:
        write_user_file(target, page, force)
        typer.echo(f"wrote {target}", err=True)
    if notes:
        from rich.text import Text

        from gpubench.report.terminal import stderr_console

        console = stderr_console()  # wraps at a word in a terminal, one line per note into a pipe or a log
        for note in notes:
            console.print(Text(f"note: {note}"))
    gate = Gate.of(comparisons, fraction, fail_on_regression)
    if gate.failed:
        typer.echo(f"{gate.regressions} regression(s) beyond the {fraction:.1%} threshold", err=True)
    raise typer.Exit(gate.exit_code)


def _per_side(path: Path, new_sides) -> list[Path]:  # type: ignore[no-untyped-def]
    """One file for one NEW side; OUT-<runs>.html for each of several."""
    if len(new_sides) == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{'+'.join(str(r.id) for r in side)}{path.suffix or '.html'}") for side in new_sides]


def _check_outputs(targets: List[Path], force: bool) -> None:
    """Every output file named once, and each either new or --force'd, before any work is done."""
    for index, requested in enumerate(targets):
        if any(requested.resolve() == other.resolve() for other in targets[:index]):
            raise UserError(f"{requested} is named for two outputs; give --html and --junit different files, and each NEW once")
        check_output_path(requested, force)


def _comparison_pages(comparisons, html_targets: List[Path], junit: Optional[Path]) -> list[tuple[Path, str]]:  # type: ignore[no-untyped-def]
    pages = []
    if html_targets:
        from gpubench.report.html import render_comparison_html

        pages += [(target, render_comparison_html(c)) for target, c in zip(html_targets, comparisons)]
    if junit is not None:
        from gpubench.report.junit import comparison_junit

        pages.append((junit, comparison_junit(comparisons)))
    return pages


def _print_comparisons(comparisons) -> None:  # type: ignore[no-untyped-def]
    from gpubench.report.tables import comparison_table, verdict_counts, what_changed_table
    from gpubench.report.terminal import fit, stdout_console
    from gpubench.results.changes import what_changed

    console = stdout_console()
    for comparison in comparisons:
        changed = what_changed_table(what_changed(comparison))
        if changed is not None:
            console.print(fit(changed, console.width))
        console.print(fit(comparison_table(comparison), console.width))
        console.print(verdict_counts(comparison))


def delete_command(
    run: str = typer.Argument(
        ..., metavar="RUN", help="A run number, 'latest' or 6+ hex digits of its uid; several as 1,2,3; or label:NAME, every complete run so labelled."
    ),
    db: Optional[Path] = DbOpt,
) -> None:
    """Delete runs and their results from the history, and say which.

    A run still in progress (its process alive, or on another host) is refused, and then nothing
    is deleted.

    Exit status: 0 deleted, 1 error (nothing deleted), 2 usage."""
    from gpubench.report.formats import run_line
    from gpubench.results.selection import RunSelection
    from gpubench.results.store import Store

    selection = RunSelection.parse(run, "RUN")
    path = _db(db)
    with Store.open(path, create=False) as store:
        runs = selection.resolve(store)
        store.delete_runs([found.id for found in runs])
    _emit("".join(f"deleted {run_line(found, len(found.results))} from {path}\n" for found in runs))


def prune_command(
    keep: Optional[int] = typer.Option(None, "--keep", min=0, metavar="N", help="Keep the N most recently started runs."),
    older_than: Optional[str] = typer.Option(None, "--older-than", metavar="AGE", help="Delete only runs started longer ago than AGE: a number and s, m, h, d or w, e.g. 30d."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deleted, and delete nothing."),
    db: Optional[Path] = DbOpt,
) -> None:
    """Delete old runs so the history stops growing: those beyond the N most recent (--keep), those
    older than AGE (--older-than), or with both, those beyond N that are also older than AGE.

    Prints one line per deleted run. A run still in progress is kept, and said so. SQLite reuses
    the space freed; the file does not shrink.

    Exit status: 0 done, 1 error (nothing deleted), 2 usage."""
    import time

    from gpubench.report.formats import run_line
    from gpubench.results.housekeeping import PrunePolicy, parse_age, plan_prune
    from gpubench.results.store import Store

    if keep is None and older_than is None:
        raise UsageError("prune needs --keep N, --older-than AGE, or both")
    try:
        policy = PrunePolicy(keep, None if older_than is None else parse_age(older_than))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--older-than") from None
    path = _db(db)
    with Store.open(path, create=False) as store:
        plan = plan_prune(store.list_runs(), policy, time.time())
        if not dry_run:
            store.delete_runs([listing.run.id for listing in plan.delete])
    verb = "would delete" if dry_run else "deleted"
    lines = [f"{verb} {run_line(listing.run, listing.n_results)}" for listing in plan.delete]
    lines += [f"kept {run_line(listing.run, listing.n_results)}: still in progress" for listing in plan.in_progress]
    if dry_run:
        lines.append(f"nothing deleted (--dry-run): {len(plan.delete)} of {plan.total} runs in {path} would go")
    else:
        lines.append(f"pruned {len(plan.delete)} of {plan.total} runs from {path}; {plan.kept} kept")
    _emit("".join(line + "\n" for line in lines))


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("compare")(compare_command)
    app.command("delete")(delete_command)
    app.command("prune")(prune_command)
