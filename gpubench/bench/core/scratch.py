"""Scratch space that cleans up after a gpubench that is gone.

Every scratch directory (and every scratch file the I/O benchmarks place) holds an flock its
owner keeps while it is alive; the kernel drops it when the owner exits, however it exits
(SIGKILL, a crash). An entry appears under its final name only once it is locked: it is created
under a pending name, locked, then renamed. So at the next run, an entry of ours whose lock can be
taken belongs to no living gpubench and is removed (`sweep`); one whose lock is held, by another
run, user or container sharing the directory, is never touched.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DIR_PREFIX = "gpubench-scratch-"
FILE_PREFIX = "gpubench-io-"  # scratch files the I/O benchmarks place (in a target directory too)
PENDING_PREFIX = ".gpubench-pending-"
PENDING_GRACE_S = 60.0  # an unlocked pending entry younger than this may be about to be locked
# the names gpubench gives (mkdtemp's eight characters; the file's pid and eight hex digits): a
# sweep touches nothing else, whoever named it alike
_DIR_NAME = re.compile(re.escape(DIR_PREFIX) + r"[a-z0-9_]{8}")
_FILE_NAME = re.compile(re.escape(FILE_PREFIX) + r"\d+-[0-9a-f]{8}\.dat")
_PENDING_NAME = re.compile(re.escape(PENDING_PREFIX) + f"(?:[a-z0-9_]{{8}}|{_FILE_NAME.pattern})")


@dataclass(frozen=True)
class Removed:
    path: Path
    nbytes: int


def lock(fd: int, wait: bool = True) -> bool:
    """flock `fd` exclusively; without `wait`, False when another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


class ScratchDir:
    """A private directory for one case, locked while it exists; removed with everything in it on
    exit, whatever happens."""

    def __init__(self, root: Path | None = None):
        parent = Path(root) if root is not None else Path(tempfile.gettempdir())
        pending = Path(tempfile.mkdtemp(prefix=PENDING_PREFIX, dir=parent))
        self.fd = os.open(pending, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            lock(self.fd)
            self.path = parent / (DIR_PREFIX + pending.name.removeprefix(PENDING_PREFIX))
            os.rename(pending, self.path)
        except BaseException:
            os.close(self.fd)
            shutil.rmtree(pending, ignore_errors=True)
            raise

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            shutil.rmtree(self.path, ignore_errors=True)
            os.close(self.fd)  # after the removal: until then the directory is ours
            self.fd = -1


def create_locked_file(directory: Path) -> tuple[Path, int]:
    """A new scratch file in `directory` (mode 0600), open read-write and locked; (path, fd). The
    caller keeps the fd, and so the lock, for as long as the file is in use."""
    name = f"{FILE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.dat"
    pending = directory / f"{PENDING_PREFIX}{name}"
    fd = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        lock(fd)
        path = directory / name
        os.rename(pending, path)
    except BaseException:
        os.close(fd)
        _unlink(pending)
        raise
    return path, fd


def sweep(directory: Path) -> list[Removed]:
    """Remove what a gpubench that is gone left in `directory`: scratch directories and scratch
    files that are ours (this user's, named as gpubench names them) and whose lock can be taken.
    What cannot be read or removed is left as it is."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        if _ours(entry):
            gone = _remove_if_unlocked(Path(entry.path))
            if gone is not None:
                removed.append(gone)
    return removed


def _ours(entry: os.DirEntry) -> bool:
    """A scratch entry of this user's, under a final name or pending long enough to be left over."""
    name = entry.name
    named = bool(_DIR_NAME.fullmatch(name) or _FILE_NAME.fullmatch(name))
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if entry.is_symlink() or st.st_uid != os.geteuid():
        return False
    stale_pending = bool(_PENDING_NAME.fullmatch(name)) and time.time() - st.st_mtime > PENDING_GRACE_S
    return named or stale_pending


def _remove_if_unlocked(path: Path) -> Removed | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not lock(fd, wait=False):
            return None  # a live gpubench holds it
        nbytes = _size(path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        return Removed(path, nbytes)
    except OSError:
        return None
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.lstat().st_size
    total = 0
    for parent, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
