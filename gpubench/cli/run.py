"""`gpubench run`: parse the flags, run the job (gpubench.bench.core.job), render, exit."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

try:  # recent typer vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from gpubench.bench.core.settings import RunSettings, Setting, SettingError
from gpubench.cli.common import emit_json
from gpubench.errors import Interrupted, UserError

# the flag that sets each run-wide setting (a test checks that every setting has one)
FLAGS: dict[Setting, str] = {
    Setting.TARGET: "--target",
    Setting.VERIFY: "--verify",
    Setting.DROP_CACHE: "--drop-cache",
    Setting.VS_FIO: "--vs-fio",
    Setting.ALLOW_DEVICE_WRITE: "--allow-device-write",
    Setting.SCRATCH: "--scratch",
}


def run_command(
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="KEY", help="Run only this benchmark (repeatable, or KEY,KEY)."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="KEY", help="Leave this benchmark out (repeatable, or KEY,KEY)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, few repetitions: a smoke test (20 s to a minute on a 2-vCPU VM; memtier sizes its arrays from the last-level cache)."),
    full: bool = typer.Option(False, "--full", help="The whole parameter matrix, more repetitions, tighter spread."),
    db: Optional[Path] = typer.Option(None, "--db", metavar="PATH", help="Result history (default: $GPUBENCH_DB, else $XDG_DATA_HOME/gpubench/results.db)."),
    label: str = typer.Option("", "--label", help="A name for this run, e.g. 'kernel 6.12'."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", metavar="[BENCH.]KEY=VALUE", help="Set a benchmark parameter, e.g. -p iouring.bs=4k -p iouring.qd=32 (repeatable; each KEY once)."),
    target: Optional[Path] = typer.Option(None, "--target", metavar="PATH", help="Directory, file or block device the I/O benchmarks (iouring, psync; gds: a directory) use (default: a scratch directory); an existing file or device is only read, unless --allow-device-write for a device."),
    verify: bool = typer.Option(False, "--verify", help="The I/O benchmarks (iouring, psync) write a checksummed pattern and fail on any mismatch."),
    drop_cache: bool = typer.Option(False, "--drop-cache", help="Drop the scratch file's page cache before reads: cold cache (iouring, psync, gds)."),
    vs_fio: bool = typer.Option(False, "--vs-fio", help="Run the same I/O jobs (iouring, psync) through fio and store its figures beside gpubench's (fio's without verification, also with --verify)."),
    allow_device_write: bool = typer.Option(False, "--allow-device-write", help="Allow writes when --target is a block device (destroys its data; iouring, psync)."),
    scratch: Optional[Path] = typer.Option(None, "--scratch", metavar="DIR", help="Where cases keep their temporary files (default: $TMPDIR); what runs that are gone left there is removed."),
    telemetry: bool = typer.Option(True, "--telemetry/--no-telemetry", help="Sample power, temperature and clocks around each case."),
    telemetry_hz: float = typer.Option(10.0, "--telemetry-hz", min=0.1, max=1000.0, help="Telemetry samples per second (CPU frequency is read at most once a second)."),
    telemetry_replay: Optional[Path] = typer.Option(None, "--telemetry-replay", metavar="TRACE", help="Replay a recorded telemetry trace instead of sampling (see gpubench telemetry record)."),
    cool_down: bool = typer.Option(False, "--cool-down", help="Before each case, wait until temperatures are back near idle (needs a temperature or power reading)."),
    pre_warm: bool = typer.Option(False, "--pre-warm", help="Bring the device to a steady state before measuring (without a temperature or power reading: one unjudged run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored run as JSON only on stdout."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=1, max=50, metavar="N", help="Measure every case in N rounds spread over the run (default 3; 5 with --full); compare tests the rounds."),
    repeat: int = typer.Option(1, "--repeat", min=1, max=100, metavar="N", help="Make N runs back to back, each stored on its own: compare them as a set (gpubench compare 1,2,3 ...) to tell a change from run-to-run noise."),
    no_report: bool = typer.Option(False, "--no-report", help="Write no HTML or JSON report (see --reports-dir)."),
    reports_dir: Path = typer.Option(Path("reports"), "--reports-dir", metavar="DIR", help="Where the HTML and JSON reports go."),
    profile: Optional[str] = typer.Option(None, "--profile", metavar="health", help="health: a fixed quick set (under a minute) for Slurm's HealthCheckProgram or a prolog; one JSON verdict line on stdout, exit 0 healthy, 1 unhealthy, 2 could not run."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="FILE|RUN", help="With --profile health: the node's earlier health run to compare with (an export, or a run in --db: number, uid or label:NAME)."),
) -> None:
    """Probe, plan and run every benchmark that applies here; store the results and write a report.

    Benchmarks whose needs are unmet are recorded as WAIVED with the reason. Every case is
    measured in rounds spread over the run (each round visits every case once); within a round it
    is warmed up, then repeated until its spread settles (or a cap). Each case's result is
    committed to the history at the end of each round; Ctrl-C, a kill or a closed terminal stops
    cleanly and keeps what finished.
    --json prints the stored run (with its number, `id`, as compare takes it); with --repeat N, a
    list of the N runs.
    Exit status: 0 all ran (or were waived), 1 a case failed, bad input or no report, 2 usage,
    130 interrupted."""
    from gpubench.bench.core.job import EXIT_INTERRUPTED, JobOptions, exit_status, run_series
    from gpubench.bench.core.runner import parse_params, select
    from gpubench.results.store import default_db_path

    if (profile, baseline) != (None, None):
        from gpubench.fleet.health import health_main

        fixed = {"--only": only, "--skip": skip, "--quick": quick, "--full": full, "--param": param, "--rounds": rounds,
                 "--repeat": repeat > 1, "--json": as_json}
        raise typer.Exit(health_main(profile, db, baseline, label, fixed))
    if quick and full:
        raise click_exc.UsageError("--quick and --full exclude each other")
    if not label.isprintable():  # control characters, or bytes that are not UTF-8
        raise UserError(f"--label {label!r}: use printable UTF-8 text")
    settings = RunSettings(target=target, verify=verify, drop_cache=drop_cache, vs_fio=vs_fio,
                           allow_device_write=allow_device_write, scratch=scratch)
    opts = JobOptions(
        db=db or default_db_path(),
        keys=tuple(select(only or [], skip or [])),
        size="quick" if quick else "full" if full else "default",
        label=label,
        params=parse_params(param or []),
        settings=settings,
        telemetry=telemetry,
        telemetry_hz=telemetry_hz,
        telemetry_replay=telemetry_replay,
        cool_down=cool_down,
        pre_warm=pre_warm,
        rounds=rounds,
    )
    if not opts.keys:
        raise UserError("no benchmark selected (check --only and --skip)")
    if not no_report:
        from gpubench.files import check_output_directory

        check_output_directory(reports_dir, "--reports-dir")
    problems: list[str] = []
    try:
        finished = run_series(opts, repeat, lambda index: _progress(index, repeat),
                              lambda stored: problems.extend(_show_run(stored, None if no_report else reports_dir, as_json, opts.db)))
    except SettingError as e:
        raise UserError(e.worded(FLAGS[e.setting])) from None
    if as_json:
        documents = [{"id": r.id, **r.to_dict()} for r in finished]  # the id is this history's, for compare
        emit_json(documents[0] if repeat == 1 else documents)
    for problem in problems:
        typer.echo(f"gpubench: error: {problem}", err=True)
    if repeat > 1:
        ids = ",".join(str(r.id) for r in finished)
        typer.echo(f"gpubench: stored runs {ids}; compare them as one side: gpubench compare {ids} OTHER_RUNS", err=True)
    status = exit_status(finished, bool(problems))
    if status == EXIT_INTERRUPTED:
        raise Interrupted(f"run {finished[-1].id} interrupted; completed results are kept")
    if status:
        raise typer.Exit(status)


def _progress(index: int, repeat: int):  # type: ignore[no-untyped-def]
    from gpubench.cli.progress import StderrProgress

    if repeat > 1:
        typer.echo(f"gpubench: run {index + 1} of {repeat}", err=True)
    return StderrProgress()


def _show_run(stored, reports_dir: Path | None, as_json: bool, db: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Write the run's reports and print its report (not with --json); the problems."""
    paths, problems = [], []
    if reports_dir is not None:
        from gpubench.report.html import write_run_reports

        try:
            paths = list(write_run_reports(stored, reports_dir))
        except UserError as e:
            problems.append(f"results are stored, but {e}")
    if not as_json:
        from gpubench.cli.report import show_run

        show_run(stored, db, paths)
    for p in paths if as_json else ():
        typer.echo(f"report: {p}", err=True)
    return problems


def register(app: typer.Typer, calibrate_app: typer.Typer) -> None:
    app.command("run")(run_command)
