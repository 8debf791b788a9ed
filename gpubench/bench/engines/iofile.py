"""The files and blocks the I/O benchmarks work on.

Scratch files (created, preallocated, filled once, removed), what the filesystem under a path is
and what O_DIRECT alignment it wants, dropping a file's page cache without root, the verify
pattern (a header with the block's offset and a CRC-32 per block, as fio's verify= does).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import stat
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpubench.bench.core import params, scratch
from gpubench.bench.core.interface import Waived
from gpubench.files import mount_of

PATTERNS = ("read", "write", "randread", "randwrite", "randrw")
SCRATCH_PREFIX = scratch.FILE_PREFIX


def format_size(n: int) -> str:
    """Bytes as the shortest exact binary unit, as case names use it: 4096 -> '4k', 1048576 -> '1m'."""
    return params.format_size(n).lower().removesuffix("b")


# --- the filesystem under a path --------------------------------------------------------------

# filesystems whose files live in memory: O_DIRECT there measures nothing (old kernels refuse it)
MEMORY_FILESYSTEMS = ("tmpfs", "ramfs", "devtmpfs", "hugetlbfs")

_STATX_DIOALIGN = 0x2000
_AT_FDCWD = -100


class _Statx(ctypes.Structure):
    _fields_ = [
        ("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("attributes", ctypes.c_uint64),
        ("nlink", ctypes.c_uint32), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
        ("mode", ctypes.c_uint16), ("_spare0", ctypes.c_uint16), ("ino", ctypes.c_uint64),
        ("size", ctypes.c_uint64), ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64),
        ("_times", ctypes.c_uint8 * 64), ("rdev_major", ctypes.c_uint32), ("rdev_minor", ctypes.c_uint32),
        ("dev_major", ctypes.c_uint32), ("dev_minor", ctypes.c_uint32), ("mnt_id", ctypes.c_uint64),
        ("dio_mem_align", ctypes.c_uint32), ("dio_offset_align", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 96),
    ]


@dataclass(frozen=True)
class DioAlignment:
    memory: int  # buffer address alignment
    offset: int  # file offset and length alignment
    source: str  # where the figures came from


def dio_alignment(path: Path) -> DioAlignment:
    """O_DIRECT alignment for a file (or, for a directory, for files created in it).

    statx(STATX_DIOALIGN) answers on Linux >= 6.1 for regular files on filesystems that report it
    (a directory reports none: an empty file made there is asked instead); otherwise the
    filesystem's block size is used, which is never smaller than what the device needs."""
    if Path(path).is_dir():
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".gpubench-dio-") as probe:
                return dio_alignment(Path(probe.name))
        except OSError:
            pass  # not writable here: the block size below
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = _Statx()
        rc = libc.statx(_AT_FDCWD, os.fsencode(str(path)), 0, _STATX_DIOALIGN, ctypes.byref(buf))
        if rc == 0 and buf.mask & _STATX_DIOALIGN and buf.dio_offset_align:
            return DioAlignment(buf.dio_mem_align, buf.dio_offset_align, "statx(STATX_DIOALIGN)")
    except (AttributeError, OSError):
        pass
    bsize = os.statvfs(path).f_bsize
    return DioAlignment(bsize, bsize, "filesystem block size (statvfs)")


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def free_space(directory: Path) -> str:
    """The space free on `directory`'s filesystem, in words: 'N bytes free' or 'free space unknown'."""
    try:
        return f"{free_bytes(directory)} bytes free"
    except OSError:
        return "free space unknown"


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def block_device_size(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def drop_file_cache(fd: int) -> None:
    """Write back and evict this file's pages (no root needed; other files are untouched)."""
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def drop_path_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        drop_file_cache(fd)
    finally:
        os.close(fd)


COLD_MAX_RESIDENT = 0.05  # the share of a file left in the page cache that still counts as cold


def drop_cache_for_cold_reads(path: Path | str, span: int) -> None:
    """Drop [0, span) of the file from the page cache and check that it went (resident_fraction):
    raise Waived when more than COLD_MAX_RESIDENT of it stayed, so that a cold case never reports
    warm reads. A memory filesystem (tmpfs) keeps every page; elsewhere pages another process
    holds mapped or locked stay too."""
    drop_path_cache(Path(path))
    resident = resident_fraction(path, span)
    if resident > COLD_MAX_RESIDENT:
        mount = None if is_block_device(Path(path)) else mount_of(Path(path))
        memory = f" on {mount.fstype}, which keeps files in memory" if mount and mount.fstype in MEMORY_FILESYSTEMS else ""
        raise Waived(f"the page cache could not be dropped for {path}{memory} ({resident:.0%} still resident): "
                     f"cold reads would be warm")


def warm_file(path: Path, span: int) -> None:
    """Read [0, span) of the file once, so that buffered reads measure the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, span, os.POSIX_FADV_WILLNEED)
        buf = bytearray(1 << 20)
        offset = 0
        while offset < span:
            n = os.preadv(fd, [buf], offset)
            if n <= 0:
                break
            offset += n
    finally:
        os.close(fd)


def _libc_mapping():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def _map_read_only(libc, path: Path | str, span: int) -> int | None:
    import mmap

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        address = libc.mmap(None, span, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    return None if address in (None, ctypes.c_void_p(-1).value) else address


def resident_fraction(path: Path | str, span: int) -> float:
    """The share of [0, span) of a file that is in the page cache now (mincore on a read-only
    mapping; nothing is read). -1.0 when the kernel cannot say."""
    import mmap

    if span <= 0:
        return 1.0
    libc = _libc_mapping()
    address = _map_read_only(libc, path, span)
    if address is None:
        return -1.0
    try:
        pages = -(-span // mmap.PAGESIZE)
        vector = (ctypes.c_ubyte * pages)()
        if libc.mincore(address, span, vector) != 0:
            return -1.0
        return sum(b & 1 for b in bytes(vector)) / pages
    finally:
        libc.munmap(address, span)


class PinnedPages:
    """Holds [0, span) of a file in the page cache (mlock of a read-only mapping, which also
    reads in what is missing) until closed. Some machines reclaim page cache continuously, even
    with memory free, and a 'warm' run then turns partly cold while it runs. Pinning needs
    CAP_IPC_LOCK or an RLIMIT_MEMLOCK above span; `why_not` says why it could not pin."""

    def __init__(self, path: Path | str, span: int):
        self.span, self.address, self.why_not = span, None, ""
        libc = self._libc = _libc_mapping()
        address = _map_read_only(libc, path, span)
        if address is None:
            self.why_not = f"mmap failed ({os.strerror(ctypes.get_errno())})"
            return
        if libc.mlock(address, span) != 0:
            err = ctypes.get_errno()
            libc.munmap(address, span)
            self.why_not = f"mlock of {span} bytes refused ({os.strerror(err)})"
            return
        self.address = address

    @property
    def pinned(self) -> bool:
        return self.address is not None

    def close(self) -> None:
        if self.address is not None:
            self._libc.munmap(self.address, self.span)  # unmapping also unlocks
            self.address = None

    def __enter__(self) -> PinnedPages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


BUFFER_ALIGNMENT = 4096  # O_DIRECT wants the device's logical block size: never more than a page


def aligned_buffer(size: int) -> memoryview:
    """`size` writable bytes that start on a BUFFER_ALIGNMENT boundary, whatever the size.

    A view of the start of a bytearray that was over-allocated and then had the prefix before
    the boundary deleted (CPython moves the start of the data instead of copying). The bytearray
    keeps at least BUFFER_ALIGNMENT bytes: CPython reallocates one shrunk below half its
    allocation, and the copy loses the boundary. While the view exists the bytearray cannot be
    resized; `.obj` is the bytearray itself, for calls that take only bytes or bytearray."""
    length = max(size, BUFFER_ALIGNMENT)
    raw = bytearray(length + BUFFER_ALIGNMENT)
    del raw[: -buffer_address(raw) % BUFFER_ALIGNMENT]
    del raw[length:]
    return memoryview(raw)[:size]


def buffer_address(buf: bytearray | memoryview) -> int:
    view = (ctypes.c_char * 1).from_buffer(buf)
    try:
        return ctypes.addressof(view)
    finally:
        del view


# --- the verify pattern ----------------------------------------------------------------------

_HEADER = struct.Struct("<8sQQI")  # magic, offset, generation, crc32 of the rest of the block
VERIFY_MAGIC = b"gpubench"
MIN_VERIFY_BLOCK = 64


def pattern_block(offset: int, size: int, generation: int = 0) -> bytes:
    """The block a verified job writes at `offset`: a header naming the offset, then a payload
    derived from it, all covered by a CRC-32 kept in the header."""
    seed = struct.pack("<Q", (offset * 0x9E3779B97F4A7C15 + generation) & 0xFFFFFFFFFFFFFFFF)
    body_len = size - _HEADER.size
    body = (seed * (body_len // 8 + 1))[:body_len]
    head = _HEADER.pack(VERIFY_MAGIC, offset, generation, 0)[: _HEADER.size - 4]
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + struct.pack("<I", crc) + body


def block_problem(block: bytes | bytearray | memoryview, offset: int) -> str | None:
    """None when the block is intact and belongs at `offset`; otherwise what is wrong."""
    magic, stored_offset, _generation, crc = _HEADER.unpack_from(block, 0)
    if magic != VERIFY_MAGIC:
        return f"block at offset {offset}: no verify header (found {bytes(magic)!r})"
    if stored_offset != offset:
        return f"block at offset {offset}: header says offset {stored_offset}"
    mv = memoryview(block)
    actual = zlib.crc32(mv[_HEADER.size :], zlib.crc32(mv[: _HEADER.size - 4]))
    if actual != crc:
        return f"block at offset {offset}: CRC-32 {actual:#010x}, expected {crc:#010x}"
    return None


# --- scratch files ---------------------------------------------------------------------------

_LOCKS: dict[str, int] = {}  # scratch file -> the open, locked descriptor that marks it in use

class DiskFull(Exception):
    """No space left where the scratch file goes (the message names the path and free space)."""


def _disk_full(directory: Path, wanted: int) -> DiskFull:
    return DiskFull(f"no space left on {directory} for a {wanted}-byte scratch file ({free_space(directory)}); "
                    f"choose another target or a smaller size")


def check_free_space(directory: Path, size: int) -> None:
    """Refuse a scratch file larger than the space free in `directory`, before anything is written
    (filling the filesystem first would hurt everything else on it)."""
    try:
        free = free_bytes(directory)
    except OSError:
        return  # the filesystem cannot say; creating the file will tell
    if size > free:
        raise _disk_full(directory, size)


def create_scratch(directory: Path, size: int, block: int, fill: str, generation: int = 0,
                   write: Callable[[int, bytes, int], int] | None = None) -> Path:
    """Create, preallocate and (for fill 'data' or 'verify') write a scratch file; fsync it.

    fill 'none' leaves the preallocated extents unwritten (enough for write jobs); 'data' writes
    non-zero bytes once so reads touch real blocks; 'verify' writes the verify pattern.
    A file larger than the free space is refused before it is created (DiskFull).
    On any failure the partial file is removed before the error propagates."""
    check_free_space(directory, size)
    path, fd = scratch.create_locked_file(directory)
    _LOCKS[str(path)] = fd  # the lock says the file is in use until remove_scratch (gpubench.bench.core.scratch)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise _disk_full(directory, size) from None
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
        if fill != "none":
            _fill(fd, directory, size, block, fill, generation, write or os.pwrite)
        os.fsync(fd)
    except BaseException:
        remove_scratch(path)
        raise
    return path


def _fill(fd: int, directory: Path, size: int, block: int, fill: str, generation: int,
          pwrite: Callable[[int, bytes, int], int]) -> None:
    """Write [0, size): random bytes for fill 'data', the verify pattern for fill 'verify'."""
    chunk = 1 << 20 if fill == "data" else block
    filler = secrets.token_bytes(chunk) if fill == "data" else b""
    offset = 0
    while offset < size:
        data = pattern_block(offset, block, generation) if fill == "verify" else filler[: min(chunk, size - offset)]
        try:
            done = pwrite(fd, data, offset)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise _disk_full(directory, size) from None
            raise
        if done <= 0:
            raise _disk_full(directory, size)
        offset += done


def write_pattern(path: Path, size: int, block: int) -> None:
    """Write the verify pattern over [0, size) of an existing file again, and sync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _fill(fd, path.parent, size - size % block, block, "verify", 0, os.pwrite)
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_scratch(path: Path | None) -> None:
    """Remove a scratch file (gone already: nothing to do), then give up its lock."""
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = _LOCKS.pop(str(path), None)
    if fd is not None:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """syncfs() for the filesystem holding `path` (settles writeback before O_DIRECT reads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (AttributeError, OSError):
        os.sync()
    finally:
        os.close(fd)
