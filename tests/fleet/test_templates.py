"""The Slurm health templates act on gpubench's verdict: drain an unhealthy node, let a job start
where the check could not run. gpubench, scontrol and logger are stand-ins here that record
what they were asked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "ci" / "templates"
VERDICT = {"node": "gpu07", "verdict": "unhealthy", "exit": 1, "reasons": ["memtier/triad-cpu0-mem0: 20 GB/s against 50 in the baseline (0.40x)"]}


def _stand_ins(tmp_path: Path, status: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    scripts = {
        "gpubench": f"echo \"gpubench $*\" >> {calls}\necho '{json.dumps(VERDICT)}'\nexit {status}\n",
        "scontrol": f"echo \"scontrol $*\" >> {calls}\n",
        "logger": f"echo \"logger $*\" >> {calls}\n",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURMD_NODENAME": "gpu07", "SLURM_JOB_ID": "42"}


def _calls(tmp_path: Path) -> str:
    path = tmp_path / "calls"
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("status, drained", [(0, False), (1, True), (2, False)])
def test_the_health_check_program_drains_an_unhealthy_node_with_the_reason(tmp_path: Path, status: int, drained: bool) -> None:
    done = subprocess.run(["bash", str(TEMPLATES / "slurm-healthcheck.sh")], env=_stand_ins(tmp_path, status), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    calls = _calls(tmp_path)
    assert "gpubench run --profile health --db /var/lib/gpubench/health.db" in calls
    assert ("state=drain reason=gpubench health: memtier/triad-cpu0-mem0: 20 GB/s" in calls) is drained


@pytest.mark.parametrize("status, exit_code", [(0, 0), (1, 1), (2, 0)])
def test_the_prolog_keeps_jobs_off_an_unhealthy_node_only(tmp_path: Path, status: int, exit_code: int) -> None:
    done = subprocess.run(["bash", str(TEMPLATES / "slurm-prolog-health.sh")], env=_stand_ins(tmp_path, status), capture_output=True, text=True, timeout=30)
    assert done.returncode == exit_code, done.stderr
    assert "logger -t gpubench-health node gpu07 job 42:" in _calls(tmp_path)
