"""The `gpubench` command line. Thin: parse, call, render, exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

try:  # recent typer vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from gpubench.cli.common import JsonOpt, emit_json
from gpubench.errors import Interrupted, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Probe what this kernel can do for GPU data paths, then measure how fast each path really is.\n\n"
    "Start with `gpubench probe`; `gpubench run` probes, plans and runs every benchmark that applies.",
)



def _print_version(value: bool) -> None:
    if value:
        from gpubench import __version__

        typer.echo(f"gpubench {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


AreaOpt = typer.Option(None, "--area", "-a", metavar="AREA", help="Probe only this area (repeatable): kernel, iouring, gpu, hmm, p2p, gds, cxl, iommu.")



@app.command()
def probe(
    root: Optional[Path] = typer.Option(None, "--root", metavar="DIR|TAR", help="Read a recorded snapshot instead of this machine: a directory, or an archive written by `gpubench snapshot`."),
    area: Optional[List[str]] = AreaOpt,
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="VMLINUZ|PACKAGE", help="Boot this kernel image (or Debian package, e.g. linux-image-6.12-amd64, fetched and unpacked, never installed) in QEMU, probe inside, and show its verdicts beside the running kernel's (or the --root snapshot's) with what differs."),
    modules: Optional[Path] = typer.Option(None, "--modules", metavar="DIR", help="With --kernel: its lib/modules/RELEASE directory (default: beside the image, as a package lays it out)."),
    kernel_config: Optional[Path] = typer.Option(None, "--kernel-config", metavar="FILE", help="With --kernel: its config-RELEASE (default: beside the image); the VM's config-based verdicts need it."),
    topology: Optional[str] = typer.Option(None, "--topology", metavar="host|two-nodes|lower-tier|cxl|FILE", help="With --kernel: the VM's NUMA nodes: a mirror of this machine's (host, the default), a built-in one, or a JSON description."),
    as_json: bool = JsonOpt,
) -> None:
    """Show what this kernel can do for GPU data paths: a verdict per capability, with evidence and a fix."""
    if kernel is not None or modules or kernel_config or topology:
        from gpubench.cli.probe_kernel import probe_kernel

        return probe_kernel(root, area, kernel, modules, kernel_config, topology, as_json)
    from gpubench.probe import Source, probe as run_probe
    from gpubench.probe.snapshot import open_root

    def show(src: Source) -> None:
        profile = run_probe(src, area)
        if as_json:
            emit_json(profile.to_dict())
        else:
            from gpubench.report.terminal import profile_table, stdout_console

            stdout_console().print(profile_table(profile))

    if root is None:
        show(Source("/"))
    else:
        with open_root(root) as src:
            show(src)


@app.command()
def snapshot(
    out: Path = typer.Argument(..., metavar="OUT", help="Archive to write, e.g. mybox.tar.gz (never overwritten)."),
    area: Optional[List[str]] = AreaOpt,
    hostname: bool = typer.Option(False, "--hostname", help="Also record the hostname (left out by default)."),
) -> None:
    """Record exactly the files and command outputs the probes read, so `probe --root OUT` replays them.

    No environment, no serial numbers or UUIDs, no hostname unless asked."""
    from gpubench.files import NAME_TAKEN, check_output_path
    from gpubench.probe.snapshot import record, snapshot_meta, write_snapshot

    if str(out) == "-":
        raise UserError("snapshot writes an archive file: give its name, e.g. mybox.tar.gz (or /dev/stdout to pipe it)")
    check_output_path(out, taken=NAME_TAKEN)
    profile, rec = record(area, hostname)
    n = write_snapshot(rec, out, snapshot_meta(profile, area))
    typer.echo(f"wrote {out} ({n} entries); replay with: gpubench probe --root {out}", err=True)


@app.command()
def run(
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="KEY", help="Run only this benchmark (repeatable, or KEY,KEY)."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="KEY", help="Leave this benchmark out (repeatable, or KEY,KEY)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, few repetitions: a smoke test (about 20 s on a 2-vCPU VM)."),
    full: bool = typer.Option(False, "--full", help="The whole parameter matrix, more repetitions, tighter spread."),
    db: Optional[Path] = typer.Option(None, "--db", metavar="PATH", help="Result history (default: $GPUBENCH_DB, else $XDG_DATA_HOME/gpubench/results.db)."),
    label: str = typer.Option("", "--label", help="A name for this run, e.g. 'kernel 6.12'."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", metavar="[BENCH.]KEY=VALUE", help="Set a benchmark parameter, e.g. -p iouring.bs=4k -p iouring.qd=32 (repeatable; each KEY once)."),
    target: Optional[Path] = typer.Option(None, "--target", metavar="PATH", help="Directory, file or block device the I/O benchmarks use (default: a scratch directory); an existing file or device is only read, unless --allow-device-write for a device."),
    verify: bool = typer.Option(False, "--verify", help="I/O benchmarks write a checksummed pattern and fail on any mismatch."),
    drop_cache: bool = typer.Option(False, "--drop-cache", help="Drop the scratch file's page cache before reads (cold cache)."),
    vs_fio: bool = typer.Option(False, "--vs-fio", help="Run the same I/O jobs through fio and store its figures beside gpubench's (fio's without verification, also with --verify)."),
    allow_device_write: bool = typer.Option(False, "--allow-device-write", help="Allow writes when --target is a block device (destroys its data)."),
    scratch: Optional[Path] = typer.Option(None, "--scratch", metavar="DIR", help="Where cases keep their temporary files (default: $TMPDIR)."),
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
) -> None:
    """Probe, plan and run every benchmark that applies here; store the results and write a report.

    Benchmarks whose needs are unmet are recorded as WAIVED with the reason. Every case is
    measured in rounds spread over the run (each round visits every case once); within a round it
    is warmed up, then repeated until its spread settles (or a cap). Each case's result is
    committed to the history at the end of each round; Ctrl-C stops cleanly and keeps what finished.
    --json prints the stored run (with its number, `id`, as compare takes it); with --repeat N, a
    list of the N runs.
    Exit status: 0 all ran (or were waived), 1 a case failed, bad input or no report, 2 usage,
    130 interrupted."""
    from gpubench.bench.core.runner import parse_params, select
    from gpubench.bench.core.job import JobOptions, run_job
    from gpubench.cli.progress import StderrProgress
    from gpubench.results.model import ResultStatus, RunStatus
    from gpubench.results.store import default_db_path

    if quick and full:
        raise click_exc.UsageError("--quick and --full exclude each other")
    if not label.isprintable():  # control characters, or bytes that are not UTF-8
        raise UserError(f"--label {label!r}: use printable UTF-8 text")
    params = parse_params(param or [])
    flags = {"verify": verify, "drop_cache": drop_cache, "vs_fio": vs_fio, "allow_device_write": allow_device_write}
    generic = params.setdefault("*", {})
    generic.update({k: "1" for k, on in flags.items() if on})
    if target is not None:
        generic["target"] = str(target)
    opts = JobOptions(
        db=db or default_db_path(),
        keys=tuple(select(only or [], skip or [])),
        size="quick" if quick else "full" if full else "default",
        label=label,
        params=params,
        scratch=scratch,
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
    finished: list = []
    problems: list[str] = []
    for index in range(repeat):
        if repeat > 1:
            typer.echo(f"gpubench: run {index + 1} of {repeat}", err=True)
        with StderrProgress() as progress:
            stored = run_job(opts, progress)
        finished.append(stored)
        problems += _show_run(stored, None if no_report else reports_dir, as_json)
        if stored.status is RunStatus.INTERRUPTED:
            break
    if as_json:
        documents = [{"id": r.id, **r.to_dict()} for r in finished]  # the id is this history's, for compare
        emit_json(documents[0] if repeat == 1 else documents)
    for problem in problems:
        typer.echo(f"gpubench: error: {problem}", err=True)
    if repeat > 1:
        ids = ",".join(str(r.id) for r in finished)
        typer.echo(f"gpubench: stored runs {ids}; compare them as one side: gpubench compare {ids} OTHER_RUNS", err=True)
    if finished[-1].status is RunStatus.INTERRUPTED:
        raise Interrupted(f"run {finished[-1].id} interrupted; completed results are kept")
    if problems or any(r.status is ResultStatus.FAILED for run in finished for r in run.results):
        raise typer.Exit(1)


def _show_run(stored, reports_dir: Path | None, as_json: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """Write the run's reports and print its table (the table only without --json); the problems."""
    paths, problems = [], []
    if reports_dir is not None:
        try:
            paths = _write_reports(stored, reports_dir)
        except UserError as e:
            problems.append(str(e))
    if not as_json:
        from gpubench.report.formats import machine_speed
        from gpubench.report.tables import results_table
        from gpubench.report.terminal import fit, stdout_console

        console = stdout_console()
        console.print(fit(results_table(stored), console.width))
        speed = machine_speed(stored)
        if speed:
            console.print(f"machine speed: {speed}")
        for p in paths:
            console.print(f"report: {p}")
    for p in paths if as_json else ():
        typer.echo(f"report: {p}", err=True)
    return problems


def _write_reports(run, directory: Path) -> list[Path]:
    from gpubench.report.html import write_run_reports

    try:
        return list(write_run_reports(run, directory))
    except UserError as e:
        raise UserError(f"results are stored, but {e}") from None


calibrate_app = typer.Typer(
    no_args_is_help=True,
    help="Check gpubench's own measuring loops against reference tools (fio, C) in one interleaved run on this machine.",
)
app.add_typer(calibrate_app, name="calibrate")

# Modules that add their own commands with register(app, calibrate_app); each keeps heavy imports
# inside its commands.
COMMAND_MODULES: tuple[str, ...] = (
    "gpubench.cli.history",
    "gpubench.cli.calibrate",
    "gpubench.cli.calibrate_memtier",
    "gpubench.cli.telemetry",
)


def _register_commands() -> None:
    from importlib import import_module

    for name in COMMAND_MODULES:
        import_module(name).register(app, calibrate_app)


_register_commands()


def main() -> None:
    try:
        rc = app(standalone_mode=False)
    except UserError as e:
        _fail(str(e), e.exit_code)
    except click_exc.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            sys.stderr.write(e.format_message() + "\n")
            sys.exit(2)
        hint = f" (see: {e.ctx.command_path} --help)" if e.ctx else ""
        _fail(" ".join(e.format_message().split()) + hint, 2)  # click lists choices one per line
    except typer.Abort:
        _fail("interrupted", 130)
    except typer.Exit as e:
        rc = e.exit_code
    except click_exc.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except OSError as e:  # standard output on a full disk, say (a file's errors name the file)
        if e.filename is not None:
            _fail(f"{e.filename}: {e.strerror or e}", 1)
        _silence_stdout()
        _fail(f"cannot write to standard output: {e.strerror or e}", 1)
    if rc == 130:  # typer's answer to a Ctrl-C it caught; gpubench's own commands raise Interrupted
        _fail("interrupted", 130)
    sys.exit(rc if isinstance(rc, int) else 0)


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush of what could not
    be written does not print a traceback of its own."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"gpubench: error: {message}\n")
    sys.exit(code)
