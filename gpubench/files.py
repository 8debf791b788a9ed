"""Writing the user's files: whole or not at all, and never over a file that is already there."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
