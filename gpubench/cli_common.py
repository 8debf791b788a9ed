"""Options and output shared by the command modules."""

from __future__ import annotations

import json
import sys

import typer

JsonOpt = typer.Option(False, "--json", help="Print JSON only on stdout.")


def emit_json(data: object) -> None:
    """The one thing a --json command prints on stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()
