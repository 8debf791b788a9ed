"""Stopping a process group gpubench started: gently, then for good, the whole group."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gpubench.processes import stop_group


def _group(script: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_a_leader_that_ends_on_sigterm_is_not_killed() -> None:
    process = _group("import time; print('ready', flush=True); time.sleep(60)")
    stop_group(process, grace_s=5.0)
    assert process.returncode == -15


def test_a_leader_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    process = _group("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)")
    started = time.monotonic()
    stop_group(process, grace_s=0.5)
    assert process.returncode == -9 and time.monotonic() - started < 5


def test_what_the_group_started_goes_too_even_when_its_leader_is_gone() -> None:
    # the leader starts a child in its group, prints the child's pid and exits (a zombie until reaped)
    process = _group("import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                     "print('ready', flush=True); print(c.pid, flush=True)")
    assert process.stdout is not None
    child = int(process.stdout.readline())
    time.sleep(0.2)
    stop_group(process, grace_s=5.0)
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)
