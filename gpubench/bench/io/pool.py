"""The jobs of one I/O case: one in this process, or one child process each, talking over a socket.

Children are started as `python -m gpubench.bench.io.pool job FD` (ENTRY_POINT), with FD their
end of a socket pair; the parent sends ("open", engine, spec), then ("run", seconds, io_limit,
generation) per repetition, then ("stop",), and merges the JobTotals each sends back.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from gpubench.bench.core.interface import BenchFailure, Waived
from gpubench.bench.engines import iofile, iojob
from gpubench.bench.engines.iojob import JobSpec, JobTotals
from gpubench.bench.engines.psync import PsyncJob
from gpubench.bench.io.plan import IoParams
from gpubench.errors import unexpected

ENTRY_POINT = "gpubench.bench.io.pool"  # this module, as `python -m` runs it


def _job_specs(p: IoParams, spec: JobSpec) -> list[JobSpec]:
    """One spec per job, each with its own random seed and, where jobs need one
    (iojob.needs_own_region), its own region of the file."""
    return [replace(spec, seed=1 + j * 7919, base=base, span=span)
            for j, (base, span) in enumerate(iojob.regions(spec, p.jobs))]


def _open_engine(engine: str, spec: JobSpec):
    if engine == "iouring":
        from gpubench.bench.engines.uring import UringJob

        return UringJob(spec)
    return PsyncJob(spec)


def _translate_open_error(e: OSError, p: IoParams, path: str, fstype: str) -> Exception:
    if p.direct and e.errno == errno.EINVAL:
        return Waived(f"O_DIRECT refused on {path} ({fstype}): give a directory on a filesystem that "
                      f"supports it (e.g. ext4, xfs)")
    if p.sqpoll and e.errno in (errno.EPERM, errno.EINVAL, errno.EACCES):
        return Waived(f"an SQPOLL ring could not be created ({os.strerror(e.errno)}): kernels before 5.11 need "
                      f"root (CAP_SYS_ADMIN), later ones CAP_SYS_NICE for a pinned thread; run without sqpoll")
    if e.errno == errno.ENOSPC:
        return BenchFailure(_no_space(path))
    return BenchFailure(f"cannot open the {p.engine} job on {path}: {os.strerror(e.errno or 0)}")


def _no_space(path: str) -> str:
    free = iofile.free_space(Path(path).parent)
    return f"no space left on the filesystem of {path} ({free}); choose another target or a smaller size"


class JobPool:
    """The jobs of one case. One job runs in this process; more run as child processes
    (`python -m gpubench.bench.io.pool job FD`), each talking over its own socket."""

    def __init__(self, p: IoParams, spec: JobSpec, fstype: str):
        self.p, self.fstype = p, fstype
        self.specs = _job_specs(p, spec)
        self.local = None
        self.children: list[tuple[subprocess.Popen, Connection]] = []
        try:
            if p.jobs == 1:
                self.local = _open_engine(p.engine, self.specs[0])
            else:
                for s in self.specs:
                    self.children.append(_start_child())
                for s, (_, conn) in zip(self.specs, self.children):
                    conn.send(("open", p.engine, s))
                for _, conn in self.children:
                    self._expect(conn, "ready")
        except OSError as e:
            self.close()
            raise _translate_open_error(e, p, spec.path, fstype) from None
        except BaseException:
            self.close()
            raise

    def _expect(self, conn: Connection, kind: str) -> Any:
        try:
            message = conn.recv()
        except EOFError:
            raise BenchFailure(f"a {self.p.engine} job process ended unexpectedly") from None
        if message[0] == kind:
            return message[1]
        if message[0] == "oserror":
            raise OSError(message[1], message[2])
        raise BenchFailure(f"a {self.p.engine} job failed: {message[1]}")

    def run(self, seconds: float, generation: int) -> list[JobTotals]:
        try:
            if self.local is not None:
                return [self.local.run(seconds, self.p.io_size, generation)]
            for _, conn in self.children:
                conn.send(("run", seconds, self.p.io_size, generation))
            return [self._expect(conn, "totals") for _, conn in self.children]
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise BenchFailure(_no_space(self.specs[0].path)) from None
            raise BenchFailure(f"I/O error on {self.specs[0].path}: {os.strerror(e.errno or 0)}") from None

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
        for _, conn in self.children:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + 5.0  # one grace period for all of them, not one each
        for proc, conn in self.children:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            conn.close()
        self.children = []


def _start_child() -> tuple[subprocess.Popen, Connection]:
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", ENTRY_POINT, "job", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, Connection(ours.detach())


def _job_process(fd: int) -> None:
    """A job in its own process: open the engine, then run repetitions as the parent asks."""
    conn = Connection(fd)
    job = None
    try:
        message = conn.recv()
        if message[0] != "open":
            return
        try:
            job = _open_engine(message[1], message[2])
        except OSError as e:
            conn.send(("oserror", e.errno or 0, str(e)))
            return
        except Exception as e:
            conn.send(("error", unexpected(e)))
            return
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message[0] != "run":
                return
            _, seconds, io_limit, generation = message
            try:
                conn.send(("totals", job.run(seconds, io_limit, generation)))
            except OSError as e:
                conn.send(("oserror", e.errno or 0, str(e)))
            except Exception as e:
                conn.send(("error", unexpected(e)))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return
    finally:
        if job is not None:
            job.close()
        conn.close()


USAGE = "usage: python -m gpubench.bench.io.pool job FD (started by the iouring and psync benchmarks)"

if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(USAGE)
    elif len(sys.argv) != 3 or sys.argv[1] != "job" or not sys.argv[2].isdigit():
        sys.exit(USAGE)
    else:
        _job_process(int(sys.argv[2]))
