"""The user's files: read within a size limit; written whole or not at all, never over a file that is
already there; and the mount a path lives on."""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpubench.errors import UserError


MAX_READ_BYTES = 512 * 2**20  # beyond any export or trace gpubench writes


def read_user_file(path: Path, what: str) -> bytes:
    """The bytes of a file the user named, `what` it should be (for the messages); at most
    MAX_READ_BYTES, also from a device or a pipe, whose size no stat tells. Every failure is one
    UserError."""
    path = Path(path).expanduser()
    limit = MAX_READ_BYTES
    try:
        with open(path, "rb") as source:
            data = source.read(limit + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; give {what}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise UserError(f"{path} is larger than {limit // 2**20} MiB: not {what}")
    return data


class NotRegularFile(OSError):
    """A FIFO, socket, device node or directory where a file was expected: never opened."""


@dataclass(frozen=True)
class Contents:
    data: bytes  # at most the limit asked for
    cut: bool  # the file holds more than that


def read_regular_file(path: str | os.PathLike[str], limit: int) -> Contents:
    """At most `limit` bytes of a regular file. Anything else (a FIFO, whose open would wait for a
    writer; a device, whose open can act on the hardware; a socket) raises NotRegularFile before it
    is opened; the open is non-blocking as well, and what it opened is checked again, so that a
    file swapped for a FIFO in between cannot hang the read either."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotRegularFile(f"{os.fspath(path)}: not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{os.fspath(path)}: not a regular file")
        chunks, size = [], 0
        while size <= limit and (chunk := f.read(65536)):  # procfs answers huge reads in pieces
            chunks.append(chunk)
            size += len(chunk)
    data = b"".join(chunks)
    return Contents(data[:limit], len(data) > limit)


def write_new(path: Path, data: str | bytes, replace: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, sync it, then give it the name in one step.

    Readers see no file or the whole file. Without `replace`, FileExistsError is raised rather
    than replace a file, including one created while this one was being written. Other problems
    raise OSError."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        if replace:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: the check and the rename are two steps
            if os.path.lexists(path):
                raise FileExistsError(path) from None
            os.rename(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


NAME_TAKEN = "already exists; choose another name or remove it first"  # for outputs with no --force


def _followed(path: Path) -> Path:
    """The file a link points to (so that replacing it keeps the link), else the path itself."""
    return path.resolve() if path.is_symlink() and path.exists() else path


def is_stream(path: Path) -> bool:
    """A device, pipe or socket (or a link to one, as /dev/stdout is): written into, never replaced,
    since it holds no file to lose."""
    return path.exists() and not path.is_file() and not path.is_dir()


def write_user_file(path: Path, data: str | bytes, replace: bool = False, taken: str = "") -> None:
    """write_new for a file the user named: every failure is one UserError line. `taken` is what
    to say when the name is already in use (default: pass --force). A link to a file is followed,
    so that `replace` replaces the file and keeps the link; a stream (is_stream) is written into."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name")
    try:
        if is_stream(path):
            with open(path, "wb") as out:
                out.write(data.encode("utf-8") if isinstance(data, str) else data)
            return
        write_new(_followed(path), data, replace=replace)
    except FileExistsError:
        raise UserError(f"{path} {taken or 'already exists; pass --force to replace it'}") from None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def check_output_path(path: Path, replace: bool = False, taken: str = "") -> None:
    """Refuse, before any work is done or shown, an output file write_user_file would refuse or
    fail on: a name in use (unless `replace`; `taken` as there), a directory, or a directory to
    put it in that is missing, not a directory or not writable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name")
    if is_stream(path):
        return
    if path.exists() and not replace:
        raise UserError(f"{path} {taken or 'already exists; pass --force to replace it'}")
    parent = _followed(path).parent
    if not parent.exists():
        raise UserError(f"cannot write {path}: no directory {parent}")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: directory {parent} is not writable")


def check_output_directory(directory: Path, option: str) -> None:
    """Refuse, before any work is done, a directory to write into (created if missing) that
    cannot be: a file by that name, or a nearest existing ancestor that is not a writable directory."""
    directory = Path(directory).expanduser()
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        whose = "" if existing == directory else f" ({existing} is a file)"
        raise UserError(f"{option} {directory} is not a directory{whose}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {directory}: {existing} is not writable")


# --- the filesystem under a path --------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    mountpoint: str
    fstype: str
    source: str


def mount_of(path: Path, mountinfo: str = "/proc/self/mountinfo") -> Mount | None:
    """The mount a path lives on, matched by device number (then by the longest mount point)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    by_dev, by_prefix = None, None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        mount = Mount(mountpoint, tail[0], tail[1])
        inside = real == mountpoint or real.startswith(mountpoint.rstrip("/") + "/")
        if fields[2] == dev and inside:
            if by_dev is None or len(mountpoint) > len(by_dev.mountpoint):
                by_dev = mount
        if inside and (by_prefix is None or len(mountpoint) >= len(by_prefix.mountpoint)):
            by_prefix = mount
    return by_dev or by_prefix
