"""The `gpubench` command line. Thin: parse, call, render, exit code."""

from __future__ import annotations

import os
import sys

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


calibrate_app = typer.Typer(
    no_args_is_help=True,
    help="Check gpubench's own measuring loops against reference tools (fio, C) in one interleaved run on this machine.",
)
app.add_typer(calibrate_app, name="calibrate")

# Modules that add their own commands with register(app, calibrate_app); each keeps heavy imports
# inside its commands.
COMMAND_MODULES: tuple[str, ...] = (
    "gpubench.cli.probe",
    "gpubench.cli.run",
    "gpubench.cli.history",
    "gpubench.cli.calibrate",
    "gpubench.cli.telemetry",
    "gpubench.cli.report",
    "gpubench.cli.fleet",
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
