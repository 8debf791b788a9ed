"""The JSON report written beside a run's HTML: the whole run, raw samples included, schema-versioned."""

from __future__ import annotations

import json

from gpubench.results.model import Run


def run_json(run: Run) -> str:
    """Run.to_dict() (which carries schema_version) as indented JSON, ending with a newline."""
    return json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n"
