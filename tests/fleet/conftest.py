"""A real Slurm cluster of three nodes for the fleet tests, started once per session and removed
at its end (or by its watchdog, should the session die): n2 runs in a cgroup with a quarter of one
CPU (the slow node); each node reads extra environment for its tasks from a file a test may
write (the node that loses a capability gets a broken liburing first on its PYTHONPATH)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.fleet import slurm_cluster

NODES = ("n1", "n2", "n3")
SLOW_NODE, SLOW_SHARE = "n2", 0.25  # its quick chase run takes ~45 s (3 s elsewhere): throttling costs more than the share here


@dataclass
class Slurm:
    cluster: slurm_cluster.Cluster
    env_dir: Path

    @contextlib.contextmanager
    def node_env(self, node: str, **variables: str) -> Iterator[None]:
        """Tasks on `node` get these variables (through the cluster's TaskProlog) inside the block."""
        path = self.env_dir / node
        path.write_text("".join(f"export {name}={value}\n" for name, value in variables.items()))
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def gpubench(self, *args: str, cwd: Path, timeout: float = 300, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        command = [*prefix, sys.executable, "-m", "gpubench", *args]
        return self.cluster.client(command, timeout, env=self.cluster.client_env({"NO_COLOR": "1"}), cwd=cwd)


SKIPPED: list[str] = []  # why the cluster could not be made, for the end of the test session's report


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    reason = slurm_cluster.unavailable()
    if reason and reason.startswith("missing") and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"a Slurm cluster cannot be made: {reason}; ci/test.sh installs what it needs")
    if reason:
        SKIPPED.append(reason)
        pytest.skip(f"a Slurm cluster cannot be made here: {reason}")
    work = Path(tempfile.mkdtemp(prefix="gpubench-slurm-"))
    work.chmod(0o755)
    env_dir = work / "node-env"
    env_dir.mkdir()
    prolog = f'f="{env_dir}/$(hostname)"\n[ -r "$f" ] && cat "$f"\nexit 0\n'
    with slurm_cluster.cluster(work, NODES, {SLOW_NODE: SLOW_SHARE}, task_prolog=prolog, remove_work=True) as made:
        yield Slurm(made, env_dir)
    assert not os.path.exists(work)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if SKIPPED:
        terminalreporter.write_line(f"fleet: the Slurm tests were skipped: {SKIPPED[0]}")
