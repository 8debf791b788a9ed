"""`gpubench report RUN`: the report of one stored run, made here or imported, as text, JSON,
Markdown or HTML; `gpubench run` prints and writes its own through the same functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

import typer

from gpubench.cli.common import UsageError, emit_json

DbOpt = typer.Option(None, "--db", metavar="PATH", help="Result history (default: $GPUBENCH_DB, else $XDG_DATA_HOME/gpubench/results.db).")


def report_command(
    run: str = typer.Argument(..., metavar="RUN", help="Run number, 'latest', or 6+ hex digits of its uid (imported runs too)."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE", help="Also write the HTML report (one self-contained file) to FILE."),
    as_json: bool = typer.Option(False, "--json", help="Print the run and its headline as JSON only on stdout."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the report as Markdown (a CI step summary takes it as is)."),
    force: bool = typer.Option(False, "--force", help="Replace the --html file if it exists."),
    db: Optional[Path] = DbOpt,
) -> None:
    """Show one stored run: what this kernel cannot do and the fix, each data path's best figure
    against the limit the machine states and against its baseline path for the same job, then one
    table per benchmark. Runs imported from other machines are reported the same way."""
    from gpubench.files import check_output_path, write_user_file
    from gpubench.results.store import Store, default_db_path

    if as_json and markdown:
        raise UsageError("--json and --markdown exclude each other")
    if html is not None:
        check_output_path(html, force)
    path = db if db is not None else default_db_path()
    with Store.open(path, create=False, readonly=True) as store:
        found = store.get_run(run)
    if html is not None:
        from gpubench.report.html import render_run_html

        write_user_file(html, render_run_html(found), force)
        typer.echo(f"wrote {html}", err=True)
    if as_json:
        from gpubench.report.headline import run_document

        emit_json(run_document(found))
    elif markdown:
        from gpubench.report.run_markdown import run_markdown

        sys.stdout.write(run_markdown(found))
    else:
        show_run(found, history=path)


def show_run(run, history: Path | None, reports: Sequence[Path] = ()) -> None:  # type: ignore[no-untyped-def]
    """The run's report on stdout, fitted to the terminal."""
    from gpubench.report.terminal import print_run_report, stdout_console

    print_run_report(stdout_console(), run, str(history) if history else "", [str(p) for p in reports])


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    app.command("report")(report_command)
