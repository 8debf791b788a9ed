"""Fleet commands: `fleet run` (every node through Slurm) and `fleet report` (merge and judge)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import List, Optional

import typer

from gpubench.errors import UserError

fleet_app = typer.Typer(
    no_args_is_help=True,
    help="Run gpubench on many nodes through Slurm, then find the node that is off: slower than its identical peers, a capability lost, a rule broken.",
)

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
RUN_OPTIONS_SET_HERE = ("--db", "--json", "--repeat", "--help")


def parse_duration(text: str, option: str) -> float:
    """'90', '90s', '15m' or '2h' -> seconds."""
    found = DURATION.match(text or "")
    if not found or float(found[1]) <= 0:
        raise typer.BadParameter(f"{text!r}: give a duration such as 90s, 15m or 2h", param_hint=option)
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]


def check_run_args(args: list[str]) -> None:
    """The node's `gpubench run` options, parsed here before a node starts: a typo fails once,
    not on every node."""
    from gpubench.cli import app

    for arg in args:
        name = arg.split("=", 1)[0]
        if name in RUN_OPTIONS_SET_HERE:
            raise typer.BadParameter(f"{name} is set by fleet run itself (each node keeps its history in --node-dir and exports its run)", param_hint="RUN OPTIONS")
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    try:
        command.make_context("gpubench run", list(args), resilient_parsing=False)
    except (typer.BadParameter, typer.Exit) as e:
        raise typer.BadParameter(f"gpubench run {' '.join(args)}: {getattr(e, 'message', e)}", param_hint="RUN OPTIONS") from None
    except Exception as e:  # click's UsageError for an unknown option or a missing value
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        raise typer.BadParameter(f"gpubench run {' '.join(args)}: {message}", param_hint="RUN OPTIONS") from None


class FleetProgress:
    """Nodes done / running / failed on stderr: one live line on a terminal, a line per change in a log."""

    def __init__(self) -> None:
        from gpubench.report.terminal import stderr_console

        self.console = stderr_console()
        self.live = None

    def __enter__(self) -> FleetProgress:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live("starting", console=self.console, transient=True, refresh_per_second=4)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def counts(self, counts, elapsed_s: float) -> None:  # type: ignore[no-untyped-def]
        of = "?" if counts.expected is None else str(counts.expected)
        waiting = "" if counts.waiting is None else f", {counts.waiting} not started"
        line = f"nodes: {counts.ok} done, {counts.running} running, {counts.failed} failed{waiting} (of {of}) after {elapsed_s:.0f} s"
        if self.live is not None:
            self.live.update(line)
        else:
            self.console.print(line)

    def message(self, text: str) -> None:
        self.console.print(text)


@fleet_app.command("run")
def run_command(
    run_args: Optional[List[str]] = typer.Argument(None, metavar="-- [RUN OPTIONS]", help="Options for `gpubench run` on every node, after --, e.g. -- --quick --only memtier."),
    nodes: Optional[str] = typer.Option(None, "--nodes", "-w", metavar="LIST", help="Slurm host list of the nodes, e.g. gpu[01-16]."),
    count: Optional[int] = typer.Option(None, "-N", "--node-count", min=1, metavar="COUNT", help="Any COUNT nodes Slurm picks."),
    partition: Optional[str] = typer.Option(None, "--partition", "-p", metavar="P", help="Slurm partition for the allocation."),
    time_limit: Optional[str] = typer.Option(None, "--time", "-t", metavar="T", help="Slurm time limit of the allocation (default: from --max-time)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="A new directory on storage every node shares (default: ./fleet-YYYYMMDD-HHMMSS)."),
    max_time: Optional[str] = typer.Option(None, "--max-time", metavar="DURATION", help="Bound the whole fleet run, e.g. 10m: nodes stop their runs in time to export what they finished."),
    node_dir: Optional[Path] = typer.Option(None, "--node-dir", metavar="DIR", help="Node-local directory for each node's history and run lock (default: $GPUBENCH_NODE_DIR, else /var/tmp/gpubench)."),
) -> None:
    """Run `gpubench run` on every node through Slurm, one task per node, and collect the exports.

    Outside an allocation it makes one with salloc, whole nodes to itself; inside one (an sbatch script) it uses
    it. Each node runs with a private history on node-local storage, holding a per-node lock, and
    writes DIR/<node>.json; its output is in DIR/logs/<node>.out and how it ended in
    DIR/logs/<node>.status.json. A node that fails, times out or never reports is listed as such.
    Then: gpubench fleet report DIR.

    Exit status: 0 every node ran, 1 some node did not (or an error), 2 usage, 130 interrupted."""
    from gpubench.fleet.launch import LaunchOptions, launch

    if nodes and count:
        raise typer.BadParameter("give --nodes or -N, not both", param_hint="--nodes")
    args = list(run_args or [])
    check_run_args(args)
    opts = LaunchOptions(
        out=out or Path(f"fleet-{time.strftime('%Y%m%d-%H%M%S')}"),
        run_args=tuple(args),
        nodes=nodes,
        count=count,
        partition=partition,
        time_limit=time_limit,
        max_time=parse_duration(max_time, "--max-time") if max_time else None,
        node_dir=node_dir,
    )
    with FleetProgress() as progress:
        statuses = launch(opts, progress)
    from gpubench.report.fleet_tables import launch_table
    from gpubench.report.terminal import fit, stdout_console

    console = stdout_console()
    console.print(fit(launch_table(statuses.values()), console.width))
    typer.echo(f"judge the nodes: gpubench fleet report {opts.out}", err=True)
    if any(s.state.value != "ok" for s in statuses.values()):
        raise typer.Exit(1)


@fleet_app.command("report")
def report_command(
    inputs: List[Path] = typer.Argument(..., metavar="DIR|FILE...", help="A fleet run's directory (its node exports and status files), or node exports and directories of them."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="RUNS|FILE", help="What the rules' max_drop compares with: an export, a directory of exports, or runs in the fleet history (1,2 or label:NAME)."),
    rules: Optional[Path] = typer.Option(None, "--rules", metavar="FILE", help="TOML rules every node must meet (min, max, max_drop per case; capabilities that must be yes)."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="OUT", help="Also write the report as self-contained HTML."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="OUT", help="Also write JUnit XML: one testcase per node, a failure for each flagged one."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON only on stdout."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the report as Markdown on stdout."),
    db: Optional[Path] = typer.Option(None, "--db", metavar="PATH", help="The history every node's run is merged into (default: DIR/fleet.db)."),
    z: float = typer.Option(3.5, "--z", min=0.5, max=100.0, metavar="Z", help="Robust z-score beyond which a node is an outlier (in groups of 5 nodes or more)."),
    relative: str = typer.Option("10%", "--relative", metavar="PCT", help="And at least this much worse than its group's median (alone in groups of fewer than 5)."),
    force: bool = typer.Option(False, "--force", help="Replace --html and --junit files that already exist."),
) -> None:
    """Merge every node's run into one history and find the nodes that are off.

    Nodes are grouped by hardware signature (CPU model, GPU model and count, memory size); per
    case each node is set against its group's median: ratio and robust z-score (MAD). A node is
    flagged when it is an outlier the worse way, lost a case or a capability its peers have,
    breaks a rule, or did not finish (failed, timed out, never reported).

    Exit status: 0 no node flagged, 3 some node flagged, 1 error or nothing to judge, 2 usage."""
    from gpubench.files import check_output_path, write_user_file
    from gpubench.fleet.collect import baseline_values, collect, default_db
    from gpubench.fleet.judge import judge
    from gpubench.fleet.model import Thresholds
    from gpubench.fleet.rules import load_rules

    if as_json and markdown:
        raise typer.BadParameter("--json and --markdown both print the report: give one", param_hint="--markdown")
    thresholds = Thresholds(z=z, relative=_relative(relative))
    targets = [p for p in (html, junit) if p is not None]
    if len(targets) == 2 and html.resolve() == junit.resolve():  # type: ignore[union-attr]
        raise UserError(f"{html} is named for both --html and --junit")
    for target in targets:
        check_output_path(target, force)
    ruleset = load_rules(rules) if rules is not None else None
    if ruleset is not None and ruleset.needs_baseline and baseline is None:
        raise UserError(f"rule {ruleset.needs_baseline[0]!r} has max_drop, which needs --baseline")
    history = db or default_db(inputs)
    with _merge_progress() as merged:
        collected = collect(inputs, history, merged)
    typer.echo(f"merged {len(collected.runs)} node run(s) into {history} ({collected.added} new)", err=True)
    values, uids = baseline_values(baseline, history) if baseline is not None else ({}, ())
    report = judge(collected, thresholds, ruleset, values, uids)
    _print_report(report, as_json, markdown)
    if html is not None:
        from gpubench.report.fleet_html import render_fleet_html

        write_user_file(html, render_fleet_html(report), force)
        typer.echo(f"wrote {html}", err=True)
    if junit is not None:
        from gpubench.report.fleet_junit import fleet_junit

        write_user_file(junit, fleet_junit(report), force)
        typer.echo(f"wrote {junit}", err=True)
    if report.flagged:
        typer.echo(f"{len(report.flagged)} of {len(report.nodes)} node(s) flagged: {', '.join(n.node for n in report.flagged[:20])}"
                   + (" ..." if len(report.flagged) > 20 else ""), err=True)
        raise typer.Exit(3)


def _relative(text: str) -> float:
    from gpubench.cli.history import parse_threshold

    try:
        return parse_threshold(text)
    except typer.BadParameter as e:
        raise typer.BadParameter(e.message, param_hint="--relative") from None


def _print_report(report, as_json: bool, markdown: bool) -> None:  # type: ignore[no-untyped-def]
    import sys

    if as_json:
        from gpubench.report.fleet_json import report_json

        sys.stdout.write(report_json(report))
    elif markdown:
        from gpubench.report.fleet_tables import report_markdown

        sys.stdout.write(report_markdown(report))
    else:
        from gpubench.report.fleet_tables import report_tables, summary_lines, to_rich
        from gpubench.report.terminal import fit, stdout_console

        console = stdout_console()
        for line in summary_lines(report):
            console.print(line)
        for table in report_tables(report, terminal=True):
            console.print(fit(to_rich(table), console.width))
    sys.stdout.flush()


@contextlib.contextmanager
def _merge_progress():  # type: ignore[no-untyped-def]
    """A live count of the exports merged, on a terminal."""
    from gpubench.report.terminal import stderr_console

    console = stderr_console()
    if not console.is_terminal:
        yield lambda count: None
        return
    with console.status("merging node exports") as status:
        yield lambda count: status.update(f"merging node exports: {count}")


@fleet_app.command("node", hidden=True)
def node_command(
    run_args: Optional[List[str]] = typer.Argument(None),
    out: Path = typer.Option(..., "--out"),
    node_dir: Optional[Path] = typer.Option(None, "--node-dir"),
    deadline: Optional[float] = typer.Option(None, "--deadline"),
) -> None:
    """What fleet run starts on each node (through srun): run, export, report."""
    from gpubench.fleet.layout import FleetDir
    from gpubench.fleet.lock import host_name, node_dir as resolve_node_dir
    from gpubench.fleet.node import NodeTask, run_node_task

    task = NodeTask(
        fleet=FleetDir(out),
        node=os.environ.get("SLURMD_NODENAME") or host_name(),
        run_args=tuple(run_args or ()),
        node_dir=resolve_node_dir(node_dir),
        deadline=deadline,
        step_nodes=os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST") or "",
    )
    raise typer.Exit(run_node_task(task))


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")
