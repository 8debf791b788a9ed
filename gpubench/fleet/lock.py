"""One gpubench run at a time on a node: an exclusive flock on a node-local file.

Fleet runs and health checks take it, whoever runs them: the file is made readable and writable by
all (a lock needs only an open file, so another user's lock file is opened read-only), in a
directory with the sticky bit as /tmp has. The kernel releases the lock when the holder exits,
however it ends, so a crashed run never leaves the node locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from gpubench.errors import UserError

DEFAULT_NODE_DIR = Path("/var/tmp/gpubench")
NODE_DIR_ENV = "GPUBENCH_NODE_DIR"
POLL_S = 0.5


class NodeBusy(UserError):
    """Another gpubench run held the node's lock for as long as this one could wait."""


def node_dir(given: Path | None = None) -> Path:
    """Where a node keeps its fleet history and lock: `given`, else $GPUBENCH_NODE_DIR, else
    /var/tmp/gpubench (node-local storage: SQLite's locking is not to be trusted on NFS)."""
    if given is not None:
        return Path(given).expanduser()
    from_env = os.environ.get(NODE_DIR_ENV)
    return Path(from_env).expanduser() if from_env else DEFAULT_NODE_DIR


def host_name() -> str:
    """This machine's short name: what the lock and the node's history are named by."""
    return socket.gethostname().split(".")[0] or "localhost"


def lock_path(directory: Path) -> Path:
    return directory / f"{host_name()}.lock"


def prepare_node_dir(directory: Path) -> None:
    """Create the directory, shared by every user of the node (mode 1777), if it is missing."""
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if directory.stat().st_uid == os.geteuid():
            directory.chmod(0o1777)
    except OSError as e:
        raise UserError(f"cannot create the node directory {directory}: {e.strerror or e}") from None


@contextlib.contextmanager
def node_lock(directory: Path, wait_s: float | None = None, on_wait: Callable[[str], None] = lambda why: None) -> Iterator[None]:
    """Hold the node's lock inside the block. Waits for another holder up to `wait_s` seconds
    (None: as long as it takes), telling `on_wait` who holds it once, then raises NodeBusy naming
    the holder."""
    prepare_node_dir(directory)
    path = lock_path(directory)
    fd = _open(path)
    try:
        give_up = None if wait_s is None else time.monotonic() + wait_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                held = f"another gpubench run holds this node ({_holder(path)}; lock {path})"
                if give_up is not None and time.monotonic() >= give_up:
                    raise NodeBusy(held) from None
                if not waited:
                    on_wait(held)
                    waited = True
                time.sleep(POLL_S)
        _record_holder(fd)
        yield
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: reading is enough to lock it
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as e:
            raise UserError(f"cannot open the node lock {path}: {e.strerror or e}") from None
    except OSError as e:
        raise UserError(f"cannot open the node lock {path}: {e.strerror or e}") from None
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o666)
    return fd


def _record_holder(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "holder unknown"
    except OSError:
        return "holder unknown"
