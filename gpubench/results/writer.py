"""Who writes a running run, and whether that process still exists.

A run is stored as `running` with the hostname, pid, process start time and boot id of the process
writing it. When that process is provably gone the run reads as interrupted; a run written on
another host cannot be checked from here and counts as alive.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class WriterIdentity:
    """Who is writing a running run: enough to tell later whether that process still exists."""

    hostname: str
    pid: int
    pid_start: int | None
    boot_id: str | None

    def describe(self) -> str:
        """'process 1234 on this machine', or on which other host."""
        if self.hostname == socket.gethostname():
            return f"process {self.pid} on this machine"
        return f"process {self.pid} on {self.hostname}, which cannot be checked from here"

    @classmethod
    def current(cls) -> WriterIdentity:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start_ticks(pid), _boot_id())


def _boot_id() -> str | None:
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], start time is [19])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _process_start_ticks(pid: int) -> int | None:
    fields = _proc_stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def writer_is_gone(hostname: str | None, pid: int | None, pid_start: int | None, boot_id: str | None) -> bool:
    """True when the process that stored a run as running provably no longer exists.

    A run written on another host cannot be checked from here and counts as alive."""
    if pid is None:
        return True
    if hostname is not None and hostname != socket.gethostname():
        return False
    current_boot = _boot_id()
    if boot_id and current_boot and boot_id != current_boot:
        return True
    if Path("/proc/self/stat").exists():
        fields = _proc_stat_fields(pid)
        if fields is None:
            return True
        if fields[0] in ("Z", "X"):  # exited, not yet reaped
            return True
        return pid_start is not None and _process_start_ticks(pid) != pid_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
