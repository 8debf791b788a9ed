"""The `gpubench` command line. Thin: parse, call, render, exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

try:  # recent typer vendors click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from gpubench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Probe what this kernel can do for GPU data paths, then measure how fast each path really is.\n\n"
    "Start with `gpubench probe`; `gpubench run` probes, plans and runs every benchmark that applies.",
)

AreaOpt = typer.Option(None, "--area", "-a", metavar="AREA", help="Probe only this area (repeatable): kernel, iouring, gpu, hmm, p2p, gds, cxl, iommu.")


def _emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


@app.command()
def probe(
    root: Optional[Path] = typer.Option(None, "--root", metavar="DIR|TAR", help="Read a recorded snapshot (directory or .tar.gz) instead of this machine."),
    area: Optional[List[str]] = AreaOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON only on stdout."),
) -> None:
    """Show what this kernel can do for GPU data paths: a verdict per capability, with evidence and a fix."""
    from gpubench.probe import Source, probe as run_probe
    from gpubench.probe.snapshot import open_root

    def show(src: Source) -> None:
        profile = run_probe(src, area)
        if as_json:
            _emit_json(profile.to_dict())
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
    out: Path = typer.Argument(..., help="Archive to write, e.g. mybox.tar.gz (never overwritten)."),
    area: Optional[List[str]] = AreaOpt,
    hostname: bool = typer.Option(False, "--hostname", help="Also record the hostname (left out by default)."),
) -> None:
    """Record exactly the files and command outputs the probes read, so `probe --root OUT` replays them.

    No environment, no serial numbers or UUIDs, no hostname unless asked."""
    from gpubench.probe.snapshot import record, snapshot_meta, write_snapshot

    if out.exists():
        raise UserError(f"{out} already exists; choose another name or remove it first")
    profile, rec = record(area, hostname)
    n = write_snapshot(rec, out, snapshot_meta(profile, area))
    typer.echo(f"wrote {out} ({n} entries); replay with: gpubench probe --root {out}", err=True)


@app.command()
def run(
    root: Optional[Path] = typer.Option(None, "--root", help="Plan from a recorded snapshot instead of this machine."),
) -> None:
    """Probe, then run every benchmark that applies to this machine."""
    from gpubench.probe import Source, probe as run_probe
    from gpubench.report.terminal import profile_table, stderr_console, stdout_console

    profile = run_probe(Source(root or "/"))
    stdout_console().print(profile_table(profile))
    stderr_console().print("No benchmark is available yet: this version of gpubench only probes.")


# Modules that add their own commands with register(app); each keeps heavy imports inside its commands.
COMMAND_MODULES: tuple[str, ...] = ()


def _register_commands() -> None:
    from importlib import import_module

    for name in COMMAND_MODULES:
        import_module(name).register(app)


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
        _fail(e.format_message() + hint, 2)
    except click_exc.Abort:
        _fail("interrupted", 130)
    except click_exc.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"gpubench: error: {message}\n")
    sys.exit(code)
