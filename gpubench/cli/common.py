"""Options and output shared by the command modules."""

from __future__ import annotations

import sys

import typer

try:  # recent typer vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError

__all__ = ["JsonOpt", "UsageError", "emit_json"]

JsonOpt = typer.Option(False, "--json", help="Print JSON only on stdout.")


def emit_json(data: object) -> None:
    """The one thing a --json command prints on stdout."""
    from gpubench.results.jsonio import json_text

    sys.stdout.write(json_text(data))
    sys.stdout.flush()
