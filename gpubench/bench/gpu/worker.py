"""Each GPU benchmark runs its cases in a child process of its own.

A CUDA fault is sticky: after an illegal memory access or a failed launch, every later CUDA call
of the process fails with the same error, and a bad pointer in a driver call can end the process.
So the case is set up, measured and torn down in a child process (python -m ... worker): a fault
fails that case, with its error, and the child is replaced; the benchmark's other cases and the
other GPU benchmarks run in fresh CUDA contexts. A child that has not answered HANG_GRACE_S past
its case's deadline (a hung GPU, a file system that stopped) is stopped and the case FAILED. This
process never imports CuPy.

One child at a time: it serves the consecutive cases of one benchmark (in a run of several
rounds, each round starts it again), and is stopped when the run moves on to another GPU
benchmark, after a case that failed (a fault may have left its context broken), by stop(), and
when this process exits. Before a child is started, the checks that need no GPU
(GpuBenchmark.waiver, CuPy installed) may waive the case here.

Protocol, over a socket pair with pickled messages: ("open", key, case, ctx) sets the case up,
("measure",) returns a Sample, ("close",) tears it down. Replies: ("ok", value), ("raised", kind,
text), and ("progress", text) while it works. The child's stdout goes to stderr, so nothing it
prints lands in --json output; Ctrl-C reaches this process only (the child runs in its own
session) and stops the child with SIGTERM, which unwinds its case (scratch files removed).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any, Callable, ClassVar, Iterator

from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.errors import UserError, unexpected

STOP_GRACE_S = 10.0  # for a child to unwind its case after SIGTERM (or to exit when told)
HANG_GRACE_S = 300.0  # past the case's deadline, a child that has not answered is stopped: a hung GPU
_BOOT = "import sys; sys.path[:0] = sys.argv[2:]; from gpubench.bench.gpu.worker import serve; serve(int(sys.argv[1]))"


class GpuBenchmark:
    """What memcpy, p2p, gds and hmm share: prepare() waives here what needs no GPU, then runs the
    case in the benchmark's child process, where prepare_here() sets it up."""

    key: ClassVar[str]

    def waiver(self, case: Case, ctx: Context) -> str | None:
        """Why this case cannot run, judged without CUDA (None: try it)."""
        return None

    def prepare_here(self, case: Case, ctx: Context) -> Any:
        raise NotImplementedError

    def prepare(self, case: Case, ctx: Context) -> Any:
        from gpubench.bench.gpu import common as g

        reason = self.waiver(case, ctx) or g.cupy_missing()
        if reason:
            raise Waived(reason)
        return in_child(self.key, case, ctx)


# --- this process -----------------------------------------------------------------------------

def _discard(text: str) -> None:
    """The progress callback a context crosses to the child with (the child sends its own)."""


class Worker:
    """One child process serving the cases of one benchmark."""

    def __init__(self, key: str):
        self.key, self.healthy = key, True
        ours, theirs = socket.socketpair()
        with ours, theirs:
            try:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", _BOOT, str(theirs.fileno()), *sys.path],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True,
                )
            except OSError as e:
                raise BenchFailure(f"cannot start the {key} worker process: {e}") from None
            self.conn = Connection(ours.detach())

    def call(self, request: tuple, ctx: Context) -> Any:
        """Send a request and wait for its reply (up to HANG_GRACE_S past the case's deadline),
        passing progress messages on."""
        reply = None
        patience = None if ctx.deadline == float("inf") else max(0.0, ctx.time_left()) + HANG_GRACE_S
        try:
            self.conn.send(request)
            while self.conn.poll(patience):
                reply = self.conn.recv()
                if reply[0] != "progress":
                    break
                ctx.progress(reply[1])
                reply = None
        except (EOFError, OSError):
            _retire(self)
            raise BenchFailure(f"the {self.key} worker process {self._ending()} during {request[0]}") from None
        except BaseException:  # Ctrl-C, a kill: the child unwinds its case and goes
            _retire(self, urgent=True)
            raise
        if reply is None:  # a hung GPU or file system
            _retire(self, urgent=True)
            raise BenchFailure(f"the {self.key} worker process did not answer ({request[0]}) "
                               f"{HANG_GRACE_S:.0f} s past the case's deadline: stopped")
        if reply[0] == "raised":
            raise _rebuilt(reply[1], reply[2])
        return reply[1]

    def _ending(self) -> str:
        try:
            code = self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    @property
    def alive(self) -> bool:
        return self.healthy and self.process.poll() is None

    def stop(self, urgent: bool = False) -> None:
        """End the child: told (its pipe closes), then SIGTERM, then SIGKILL."""
        self.healthy = False
        self.conn.close()
        if urgent and self.process.poll() is None:
            self.process.terminate()
        for last in (False, True):
            try:
                self.process.wait(STOP_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                (self.process.kill if last else self.process.terminate)()
        self.process.wait()


_current: Worker | None = None


def _worker_for(key: str) -> Worker:
    global _current
    if _current is not None and (_current.key != key or not _current.alive):
        stop()
    if _current is None:
        _current = Worker(key)
    return _current


def stop() -> None:
    """Stop the child process, if one runs (at the end of a run, and when this process exits)."""
    if _current is not None:
        _retire(_current)


def _retire(worker: Worker, urgent: bool = False) -> None:
    global _current
    if _current is worker:
        _current = None
    worker.stop(urgent)


atexit.register(stop)


def _rebuilt(kind: str, text: str) -> Exception:
    return {"waived": Waived, "user": UserError}.get(kind, BenchFailure)(text)


@contextmanager
def in_child(key: str, case: Case, ctx: Context) -> Iterator[Callable[[], Sample]]:
    """Set the case up in the benchmark's child process; yields what measures one repetition. A
    case that ends in anything but success or a waiver retires the child."""
    worker = _worker_for(key)
    try:
        worker.call(("open", key, case, replace(ctx, progress=_discard, telemetry=None)), ctx)
    except Waived:
        raise
    except BaseException:
        _retire(worker)  # a fault may have left its CUDA context broken
        raise
    ended: BaseException | None = None
    try:
        yield lambda: worker.call(("measure",), ctx)
    except BaseException as e:
        ended = e
        raise
    finally:
        healthy = ended is None or isinstance(ended, Waived)
        try:
            if worker.alive:
                worker.call(("close",), ctx)
        except BaseException:
            healthy = False
            if ended is None:  # the case's own error, if any, is the one to report
                _retire(worker)
                raise
        if not healthy:
            _retire(worker)


# --- the child process ------------------------------------------------------------------------

def _described(error: BaseException) -> tuple[str, str]:
    if isinstance(error, Waived):
        return "waived", str(error)
    if isinstance(error, UserError):
        return "user", str(error)
    if isinstance(error, BenchFailure):
        return "failed", str(error)
    return "failed", unexpected(error)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(fd: int) -> None:
    """The child's loop: one case at a time, until its parent closes the pipe."""
    from gpubench.bench.core import registry

    os.dup2(2, 1)  # what CUDA libraries print goes to stderr, never into the parent's --json output
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    conn = Connection(fd)
    stack, measure = ExitStack(), None
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            try:
                if request[0] == "open":
                    _, key, case, ctx = request
                    ctx.progress = lambda text: conn.send(("progress", text))
                    measure = stack.enter_context(registry.load(key).prepare_here(case, ctx))
                    reply: tuple = ("ok", None)
                elif request[0] == "measure":
                    reply = ("ok", measure())  # type: ignore[misc]
                else:
                    measure = None
                    stack.close()
                    reply = ("ok", None)
            except Exception as e:
                reply = ("raised", *_described(e))
            conn.send(reply)
    except KeyboardInterrupt:
        pass
    finally:
        stack.close()
