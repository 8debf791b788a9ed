"""Stopping what gpubench started in a process group of its own (srun under salloc, QEMU under
virtme-ng): gently first, then for good, and never leaving a zombie."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the process group `process` leads (also when the leader is gone and others of the
    group are not); SIGKILL where it lingers past `grace_s`; then reap the leader."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()
