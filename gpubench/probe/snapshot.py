"""`gpubench snapshot`: record exactly what the probes read, as a tar.gz that `--root` replays."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from gpubench import __version__
from gpubench.errors import UserError
from gpubench.files import NAME_TAKEN, write_user_file
from gpubench.probe import Profile, probe
from gpubench.probe.source import COMMANDS_DIR, Recording, Source, redact

HOSTNAME = "/proc/sys/kernel/hostname"
MARKER = ".gpubench/snapshot.json"  # in every archive `gpubench snapshot` has written
# far beyond what the probes read (a recording holds a few MB): an archive that claims more is refused before unpacking
MAX_UNPACKED_BYTES = 256 * 2**20
MAX_ENTRIES = 200_000
_FS_UUID = re.compile(rb"\b((?:PART)?UUID)=[0-9A-Za-z-]+")
_UUID = re.compile(rb"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")  # a GPU's, wherever it is printed


def record(areas: Iterable[str] | None = None, hostname: bool = False) -> tuple[Profile, Recording]:
    src = Source("/", record=True)
    profile = probe(src, areas)
    if hostname:
        src.value(HOSTNAME)
    return profile, src.recording  # type: ignore[return-value]


def scrub(path: str, data: bytes) -> bytes:
    """No serial numbers or UUIDs leave the machine, nor the arguments handed to init."""
    if path.endswith(".gz"):
        return data
    if path == "/proc/cmdline" and b" -- " in data:
        data = data.split(b" -- ", 1)[0] + b" -- (init arguments redacted)\n"
    return _UUID.sub(b"(redacted)", _FS_UUID.sub(rb"\1=(redacted)", redact(data)))


def write_snapshot(rec: Recording, out: Path, meta: dict) -> int:
    """Write the archive whole, under a name nobody has taken. Returns the number of entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        n = _fill(tar, rec, meta)
    write_user_file(out, buffer.getvalue(), taken=NAME_TAKEN)
    return n


def _fill(tar: tarfile.TarFile, rec: Recording, meta: dict) -> int:
    entries: dict[str, tuple[str, bytes | str]] = {}  # name -> (kind, payload)

    def add(path: str, kind: str, payload: bytes | str = b"") -> None:
        name = path.lstrip("/")
        parts = name.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), ("dir", b""))
        if kind != "placeholder" or name not in entries:
            entries[name] = ("file", b"") if kind == "placeholder" else (kind, payload)

    for path, children in rec.dirs.items():
        add(path, "dir")
        for child, is_dir in children:
            add(f"{path.rstrip('/')}/{child}", "dir" if is_dir else "placeholder")
    for path, is_dir in rec.present.items():
        add(path, "dir" if is_dir else "placeholder")
    for path, target in rec.links.items():
        add(path, "link", target)
    for path, data in rec.files.items():
        add(path, "file", scrub(path, data))
    for name, output in rec.commands.items():
        add(f"{COMMANDS_DIR}/{name}.json", "file", json.dumps(output, indent=1, sort_keys=True).encode())
    add(MARKER, "file", json.dumps(meta, indent=1, sort_keys=True).encode())
    for parent in {name.rsplit("/", 1)[0] for name in entries if "/" in name}:
        if entries[parent][0] == "link":  # read through as well as read as a link: a folder, or no entry could be unpacked below it
            entries[parent] = ("dir", b"")

    _write_entries(tar, entries)
    return len(entries)


def _write_entries(tar: tarfile.TarFile, entries: dict[str, tuple[str, bytes | str]]) -> None:
    now = time.time()
    for name in sorted(entries):
        kind, payload = entries[name]
        info = tarfile.TarInfo(name)
        info.mtime = int(now)
        if kind == "dir":
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        elif kind == "link":
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(payload), 0o777
            tar.addfile(info)
        else:
            data = payload if isinstance(payload, bytes) else payload.encode()
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def snapshot_meta(profile: Profile, areas: Iterable[str] | None) -> dict:
    kernel = next((c for c in profile.capabilities if c.name == "kernel"), None)
    return {
        "gpubench": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "areas": list(areas) if areas else "all",
        "release": kernel.details.get("release") if kernel else None,
    }


@contextmanager
def open_root(path: Path) -> Iterator[Source]:
    """A Source over a snapshot directory or a snapshot archive (unpacked to a temporary dir)."""
    path = Path(path)
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise UserError(f"--root {path}: directory is not readable")
        if not any((path / name).exists() for name in ("proc", "sys", MARKER)):
            raise UserError(f"--root {path}: no proc/ or sys/ in it; give a root filesystem or a snapshot made by `gpubench snapshot`")
        yield Source(path)
        return
    if not path.exists():
        raise UserError(f"--root {path}: no such directory or snapshot archive")
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError as e:
        raise UserError(f"--root {path}: cannot read it ({e.strerror or e})") from None
    except (EOFError, tarfile.TarError) as e:
        raise UserError(f"--root {path}: damaged archive ({e or 'cut short'})") from None
    if not is_tar:
        raise UserError(f"--root {path}: not a directory, nor a snapshot archive made by `gpubench snapshot`")
    with tempfile.TemporaryDirectory(prefix="gpubench-root-") as tmp:
        _unpack(path, Path(tmp))
        yield Source(tmp, name=str(path))


def _unpack(archive: Path, dest: Path) -> None:
    """A snapshot's regular files, directories and symlinks only; nothing may land outside `dest`.

    Members are read one header at a time and placed as they come, so that an archive past the
    limits is refused as soon as it passes them (after at most MAX_ENTRIES + 1 headers), never
    listed whole first. Links are kept as written (the probes only read their targets, never
    follow them out of the snapshot), so no entry may be created through a link: each one's folder
    must resolve inside `dest` before it is made, and files are created with O_EXCL | O_NOFOLLOW."""
    entries = unpacked = 0
    marked = False
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                entries += 1
                unpacked += member.size if member.isfile() else 0
                if entries > MAX_ENTRIES or unpacked > MAX_UNPACKED_BYTES:
                    raise UserError(f"--root {archive}: more than a snapshot holds (at most {MAX_ENTRIES} entries, "
                                    f"{MAX_UNPACKED_BYTES // 2**20} MiB unpacked; refused at entry {entries}, {unpacked / 2**20:.0f} MiB)")
                marked = marked or member.isfile() and os.path.normpath(member.name) == MARKER
                _place(tar, member, dest, archive)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"--root {archive}: damaged archive ({e})") from None
    if not marked:
        raise UserError(f"--root {archive}: not a snapshot archive made by `gpubench snapshot` (it has no {MARKER})")


def _inside(path: Path, dest: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(dest)
    return real == base or real.startswith(base + os.sep)


def _place(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    name = os.path.normpath(member.name)
    if name == ".":
        return
    if name.startswith(("/", "..")) or not (member.isdir() or member.isfile() or member.issym()):
        raise UserError(f"--root {archive}: unsafe entry {member.name!r} in the archive")
    target = dest / name
    if not _inside(target.parent, dest) or os.path.islink(target):  # checked before any folder is made
        raise UserError(f"--root {archive}: entry {member.name!r} would be written through a link")
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
    elif member.issym():
        os.symlink(member.linkname, target)
    else:
        data = tar.extractfile(member)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            if data is not None:
                shutil.copyfileobj(data, out)
