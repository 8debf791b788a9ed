"""Running gpubench's commands in tests: in this process through typer's CliRunner (stdout and
stderr apart), or as `python -m gpubench` in a child, for what must end as one line on stderr
through gpubench.cli.main()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

from gpubench.cli import app
from gpubench.results.model import Run
from gpubench.results.store import Store

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env={"NO_COLOR": "1", **(env or {})})


def gpubench(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GPUBENCH_DB"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True, text=True, env=env, timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess, expected: str, code: int = 1) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpubench: error: ") and expected in lines[0], lines[0]


def fill(db: Path, *runs: Run) -> list[int]:
    """Import `runs` into the history at `db` (created if missing); their local numbers."""
    with Store.open(db) as store:
        return [store.import_run(run) for run in runs]
