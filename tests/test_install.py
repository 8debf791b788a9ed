"""The offline install the README gives: a wheelhouse built with `pip wheel` on a connected
machine, then `pip install --no-index --find-links` into a fresh environment that reaches no
index. Building the wheelhouse needs an index or pip's cache (the liburing binding is built from
source once, then cached); where it cannot be built, the test says why and skips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pip_environment() -> dict[str, str]:
    """This environment without pip settings of its own (extra indexes, find-links, constraints)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def test_gpubench_installs_from_a_wheelhouse_without_an_index(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(ROOT), "-w", str(wheelhouse)],
                           capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        last = (built.stderr.strip().splitlines() or [f"exit status {built.returncode}"])[-1]
        pytest.skip(f"cannot build a wheelhouse here (no index or cache reachable?): {last}")
    assert any(wheelhouse.glob("gpubench-*.whl")) and any(wheelhouse.glob("liburing-*.whl"))

    offline = tmp_path / "offline"
    venv.create(offline, with_pip=True)
    python = offline / "bin" / "python"
    # --isolated: no configuration file or PIP_* variable may add an index or a wheel directory
    installed = subprocess.run([str(python), "-m", "pip", "--isolated", "install", "-q", "--no-index",
                                "--find-links", str(wheelhouse), "gpubench"],
                               capture_output=True, text=True, timeout=900, env=_pip_environment(), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    clean = {k: v for k, v in _pip_environment().items() if k != "PYTHONPATH"}  # the installed copy, not this tree
    version = subprocess.run([str(offline / "bin" / "gpubench"), "--version"], capture_output=True, text=True,
                             timeout=120, env=clean, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("gpubench "), version.stderr
    selftest = subprocess.run([str(python), "-m", "gpubench.bench.engines.uring_binding", "selftest"],
                              capture_output=True, text=True, timeout=120, env=clean, cwd=tmp_path)
    assert selftest.returncode == 0, selftest.stderr
    assert json.loads(selftest.stdout)["loaded"] is True  # the binding built into the wheelhouse loads
    where = subprocess.run([str(python), "-c", "import gpubench; print(gpubench.__file__)"], capture_output=True,
                           text=True, timeout=60, env=clean, cwd=tmp_path)
    assert where.stdout.startswith(str(offline)), where.stdout
