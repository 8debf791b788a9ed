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

COMMANDS_DIR = ".gpubench/commands"
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

    def bytes(self, path: str, limit: int = 8 << 20) -> bytes | None:
        """File contents, None when absent; SourceError when present but unreadable."""
        try:
            with open(self._path(path), "rb") as f:
                chunks, size = [], 0
                while size < limit and (chunk := f.read(65536)):  # procfs refuses huge reads
                    chunks.append(chunk)
                    size += len(chunk)
                data = b"".join(chunks)[:limit]
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
        if self.recording is not None:
            self.recording.files[path] = data
        return data

    def text(self, path: str) -> str | None:
        data = self.bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def value(self, path: str) -> str | None:
        """A one-line sysfs/procfs attribute, stripped."""
        t = self.text(path)
        return None if t is None else t.strip()

    def listdir(self, path: str) -> list[str]:
        """Entry names, sorted; [] when the directory is absent."""
        p = self._path_or_none(path)
        try:
            names = sorted(os.listdir(p)) if p else []
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as e:
            raise SourceError(f"cannot list {path}: {e.strerror or e}") from None
        if self.recording is not None and names:
            self.recording.dirs[path] = [(n, os.path.isdir(os.path.join(p, n))) for n in names]
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
        if self.live:
            out = run()
        else:
            f = self.root / COMMANDS_DIR / f"{name}.json"
            try:
                out = json.loads(f.read_text())
            except FileNotFoundError:
                out = None
            except (OSError, ValueError) as e:
                raise SourceError(f"cannot read recorded {name}: {e}") from None
        if self.recording is not None and out is not None:
            self.recording.commands[name] = out
        self._command_cache[name] = out
        return out
