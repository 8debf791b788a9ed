"""Where probes read from: the live machine, or a recorded snapshot laid out as a file tree.

Every read goes through a Source, so that `gpubench snapshot` can record exactly what the probes
read, and `--root` can replay it. Command outputs (child-process checks, library calls) are
recorded as JSON under `.gpubench/commands/` in the snapshot tree.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpubench.files import Contents, NotRegularFile, read_regular_file

COMMANDS_DIR = ".gpubench/commands"
# A snapshot kept as a directory in version control (which keeps no empty folders) marks a folder
# the probe found empty with this file; listing the folder does not show it.
EMPTY_MARKER = ".gpubench-empty"
FILE_LIMIT = 8 << 20  # beyond any file the probes read (a kernel config is a few hundred KiB)
VALUE_LIMIT = 64 << 10  # a one-line attribute; /proc/cmdline is at most a few KiB
NOT_REGULAR = "not a regular file (a FIFO, socket or device is never opened)"
REDACTED = "(redacted)"
# Lines whose value identifies one physical device: never written into a snapshot.
SERIAL_KEYS = ("uuid", "serial", "board id", "hostname")


class SourceError(Exception):
    """A file exists but cannot be read."""


@dataclass
class Recording:
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    present: dict[str, bool] = field(default_factory=dict)  # path -> is_dir, for bare existence checks
    commands: dict[str, Any] = field(default_factory=dict)


def redact(text: bytes) -> bytes:
    out = []
    for line in text.decode("utf-8", "replace").splitlines(keepends=True):
        key = line.split(":", 1)[0].strip().lower()
        if ":" in line and any(k in key for k in SERIAL_KEYS):
            out.append(f"{line.split(':', 1)[0]}: {REDACTED}\n")
        else:
            out.append(line)
    return "".join(out).encode()


class Source:
    def __init__(self, root: str | os.PathLike[str] = "/", record: bool = False, name: str | None = None):
        self.root = Path(root)
        self.name = name or str(self.root)  # what the user named: an archive is read from a temporary copy
        self.live = self.root.resolve() == Path("/")
        self.recording = Recording() if record else None
        self.cuts: list[tuple[str, int]] = []  # (path, limit) of every read cut at its limit
        # One probe reads each file and folder once: every check sees the same contents, and a
        # recording holds what they all saw. A read that failed is tried again.
        self._files: dict[tuple[str, int], Contents | None] = {}
        self._listings: dict[str, list[str]] = {}
        self._command_cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Source({str(self.root)!r})"

    def _path(self, path: str) -> Path:
        if self.live:
            return Path(path)
        p = self.root / path.lstrip("/")
        # A snapshot may not point the probe at files outside itself.
        real = os.path.realpath(p)
        base = os.path.realpath(self.root)
        if real != base and not real.startswith(base + os.sep):
            raise FileNotFoundError(errno.ENOENT, "outside the snapshot", str(p))
        return p

    def bytes(self, path: str, limit: int = FILE_LIMIT) -> bytes | None:
        """File contents, None when absent; SourceError when present but unreadable or not a
        regular file (a FIFO or a device in a snapshot is never opened). A file longer than
        `limit` is cut there, and the cut is noted in `cuts` for the evidence of each check that read it."""
        if (path, limit) not in self._files:
            self._files[(path, limit)] = self._read(path, limit, path)
        contents = self._files[(path, limit)]
        if contents is None:
            return None
        if contents.cut:
            self.cuts.append((path, limit))
        if self.recording is not None:
            self.recording.files[path] = contents.data
        return contents.data

    def _read(self, path: str, limit: int, what: str) -> Contents | None:
        try:
            return read_regular_file(self._path(path), limit)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except NotRegularFile:
            raise SourceError(f"cannot read {what}: {NOT_REGULAR}") from None
        except OSError as e:
            raise SourceError(f"cannot read {what}: {e.strerror or e}") from None

    def text(self, path: str, limit: int = FILE_LIMIT) -> str | None:
        data = self.bytes(path, limit)
        return None if data is None else data.decode("utf-8", "replace")

    def value(self, path: str) -> str | None:
        """A one-line sysfs/procfs attribute, stripped."""
        t = self.text(path, VALUE_LIMIT)
        return None if t is None else t.strip()

    def listdir(self, path: str) -> list[str]:
        """Entry names, sorted; [] when the directory is absent."""
        if path not in self._listings:
            self._listings[path] = self._list(path)
        return list(self._listings[path])

    def _list(self, path: str) -> list[str]:
        p = self._path_or_none(path)
        try:
            names = sorted(n for n in os.listdir(p) if n != EMPTY_MARKER) if p else []
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as e:
            raise SourceError(f"cannot list {path}: {e.strerror or e}") from None
        if self.recording is not None and names:
            self.recording.dirs[path] = [(n, os.path.isdir(os.path.join(p, n))) for n in names]
        elif self.recording is not None and p and os.path.isdir(p):  # an empty folder is evidence too
            self.recording.present[path] = True
        return names

    def exists(self, path: str) -> bool:
        p = self._path_or_none(path)
        found = bool(p) and os.path.lexists(p)
        if self.recording is not None and found:
            self.recording.present[path] = os.path.isdir(p)
        return found

    def readlink(self, path: str) -> str | None:
        """The link's target as written; the link itself is never followed, only its folder checked."""
        parent = self._path_or_none(os.path.dirname(path.rstrip("/")) or "/")
        p = parent / os.path.basename(path.rstrip("/")) if parent else None
        try:
            target = os.readlink(p) if p else None
        except OSError:
            return None
        if self.recording is not None and target is not None:
            self.recording.links[path] = target
        return target

    def _path_or_none(self, path: str) -> Path | None:
        try:
            return self._path(path)
        except FileNotFoundError:
            return None

    def command(self, name: str, run: Callable[[], Any]) -> Any:
        """The output of a live check (`run()`), or its recorded output when replaying.

        Returns None when replaying a snapshot that did not record it."""
        if name in self._command_cache:
            return self._command_cache[name]
        out = run() if self.live else self._recorded_command(name)
        if self.recording is not None and out is not None:
            self.recording.commands[name] = out
        self._command_cache[name] = out
        return out

    def _recorded_command(self, name: str) -> Any:
        """A recorded command output; None when it was not recorded. Read like every other file:
        inside the snapshot, a regular file, within the limit."""
        what = f"recorded {name}"
        contents = self._read(f"/{COMMANDS_DIR}/{name}.json", FILE_LIMIT, what)
        if contents is None:
            return None
        if contents.cut:
            raise SourceError(f"cannot read {what}: longer than {FILE_LIMIT // 2**20} MiB")
        try:
            return json.loads(contents.data)
        except ValueError as e:
            raise SourceError(f"cannot read {what}: {e}") from None
