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
from gpubench.errors import UserError

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


calibrate_app = typer.Typer(
    no_args_is_help=True,
    help="Check gpubench's own measuring loops against reference tools (fio, C) in one interleaved run on this machine.",
)
app.add_typer(calibrate_app, name="calibrate")

# Modules that add their own commands with register(app, calibrate_app); each keeps heavy imports
# inside its commands.
COMMAND_MODULES: tuple[str, ...] = (
    "gpubench.cli.run",
    "gpubench.cli.history",
    "gpubench.cli.calibrate",
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
