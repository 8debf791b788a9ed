"""The files and blocks the I/O benchmarks work on.

Scratch files (created, preallocated, filled once, removed), what the filesystem under a path is
and what O_DIRECT alignment it wants, dropping a file's page cache without root, the verify
pattern (a header with the block's offset and a CRC-32 per block, as fio's verify= does), the
description of one job, and the latency histogram the jobs merge.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from gpubench.bench.core import params
from gpubench.bench.core.interface import Waived

PATTERNS = ("read", "write", "randread", "randwrite", "randrw")
SCRATCH_PREFIX = "gpubench-io-"

def format_size(n: int) -> str:
    """Bytes as the shortest exact binary unit, as case names use it: 4096 -> '4k', 1048576 -> '1m'."""
    return params.format_size(n).lower().removesuffix("b")


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

class DiskFull(Exception):
    """No space left where the scratch file goes (the message names the path and free space)."""


def _disk_full(directory: Path, wanted: int, free: int | None = None) -> DiskFull:
    if free is None:
        try:
            free = free_bytes(directory)
        except OSError:
            free = -1
    have = f"{free} bytes free" if free >= 0 else "free space unknown"
    return DiskFull(f"no space left on {directory} for a {wanted}-byte scratch file ({have}); "
                    f"choose another target or a smaller size")


def check_free_space(directory: Path, size: int) -> None:
    """Refuse a scratch file larger than the space free in `directory`, before anything is written
    (filling the filesystem first would hurt everything else on it)."""
    try:
        free = free_bytes(directory)
    except OSError:
        return  # the filesystem cannot say; creating the file will tell
    if size > free:
        raise _disk_full(directory, size, free)


def create_scratch(directory: Path, size: int, block: int, fill: str, generation: int = 0,
                   write: Callable[[int, bytes, int], int] | None = None) -> Path:
    """Create, preallocate and (for fill 'data' or 'verify') write a scratch file; fsync it.

    fill 'none' leaves the preallocated extents unwritten (enough for write jobs); 'data' writes
    non-zero bytes once so reads touch real blocks; 'verify' writes the verify pattern.
    A file larger than the free space is refused before it is created (DiskFull).
    On any failure the partial file is removed before the error propagates."""
    check_free_space(directory, size)
    path = directory / f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.dat"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
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
        os.close(fd)
        remove_scratch(path)
        raise
    os.close(fd)
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
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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


# --- one job ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobSpec:
    """What one job (one process, one ring or one set of threads) does to one file."""

    path: str
    pattern: str  # one of PATTERNS
    block_size: int
    queue_depth: int
    direct: bool
    span: int  # bytes of the file the job addresses, from offset 0
    read_percent: int = 100  # randrw: share of reads; read/randread 100; write/randwrite 0
    seconds: float = 1.0
    io_limit: int = 0  # bytes per repetition; 0 means run for `seconds`
    verify: bool = False
    registered_buffers: bool = True
    registered_files: bool = False
    sqpoll: bool = False
    seed: int = 1
    start_offset: int = 0  # where a sequential job begins, relative to base
    base: int = 0  # the job addresses [base, base + span) of the file
    allow_write: bool = True  # False for a target the user owns: writes are refused
    generation: int = 1  # stamped into blocks written under verify

    @property
    def random(self) -> bool:
        return self.pattern.startswith("rand")

    @property
    def writes(self) -> bool:
        return self.read_percent < 100

    @property
    def blocks(self) -> int:
        return self.span // self.block_size

    def open_flags(self) -> int:
        flags = (os.O_RDWR if self.writes else os.O_RDONLY) | os.O_CLOEXEC
        return flags | os.O_DIRECT if self.direct else flags


def needs_own_region(pattern: str, verify: bool, writes: bool) -> bool:
    """Whether each of the jobs (or threads) sharing a file gets a region of it to itself:
    sequential ones, so that N of them do not read the same blocks N times (all but the first
    from the page cache), and verified writers, so that none reads a block another one is
    rewriting. Random readers share the whole file, each with its own seed."""
    return not pattern.startswith("rand") or (verify and writes)


def regions(spec: JobSpec, count: int) -> list[tuple[int, int]]:
    """(base, span) for each of `count` jobs or threads sharing spec's part of the file: equal,
    disjoint, whole-block regions when they need their own, else the whole part for each."""
    if not needs_own_region(spec.pattern, spec.verify, spec.writes):
        return [(spec.base, spec.span)] * count
    region = spec.span // count // spec.block_size * spec.block_size
    return [(spec.base + i * region, region) for i in range(count)]


UNBOUNDED = 1 << 62  # the I/O count of a repetition that only its time bounds


def io_count(io_limit: int, block_size: int) -> int:
    """How many I/Os a repetition bounded by io_limit bytes issues: the whole blocks in it,
    rounded down, in every engine and loop alike. UNBOUNDED for io_limit 0 (time-bounded)."""
    return io_limit // block_size if io_limit > 0 else UNBOUNDED


def offsets(spec: JobSpec) -> Iterator[int]:
    """Endless offsets: sequential from start_offset (wrapping), or uniform random blocks."""
    bs, blocks, base = spec.block_size, spec.blocks, spec.base
    if spec.random:
        import numpy as np

        rng = np.random.default_rng(spec.seed)
        while True:
            yield from (rng.integers(0, blocks, size=65536, dtype=np.int64) * bs + base).tolist()
    block = spec.start_offset // bs % blocks
    while True:
        yield from range(base + block * bs, base + blocks * bs, bs)
        block = 0


def read_choices(spec: JobSpec) -> Iterator[bool]:
    """Endless read (True) / write (False) choices honouring read_percent."""
    if spec.read_percent >= 100 or spec.read_percent <= 0:
        only = spec.read_percent >= 100
        while True:
            yield only
    import numpy as np

    rng = np.random.default_rng(spec.seed ^ 0x5EED)
    while True:
        yield from (rng.integers(0, 100, size=65536) < spec.read_percent).tolist()


def primed(iterator: Iterator) -> Callable[[], object]:
    """`next` of an iterator whose set-up cost (imports, the first random batch) is already paid,
    so it does not land inside a measured interval."""
    import itertools

    first = next(iterator)
    return itertools.chain([first], iterator).__next__


# --- completion latency ----------------------------------------------------------------------

SUB_BUCKETS = 32  # per power of two: about 3 % resolution


def bucket_of(ns: int) -> int:
    if ns < 2 * SUB_BUCKETS:
        return max(ns, 0)
    shift = ns.bit_length() - 6
    return shift * SUB_BUCKETS + (ns >> shift)


def bucket_value(index: int) -> float:
    """The middle of a bucket, in ns."""
    if index < 2 * SUB_BUCKETS:
        return float(index)
    shift = index // SUB_BUCKETS - 1
    mantissa = index - shift * SUB_BUCKETS
    return ((mantissa << shift) + ((mantissa + 1) << shift)) / 2


@dataclass
class LatencyHistogram:
    """Completion latencies in log-linear ns buckets; jobs merge theirs by adding counts."""

    counts: dict[int, int] = field(default_factory=dict)
    max_ns: int = 0

    def add_raw(self, raw: dict[int, int], max_ns: int, quantum_shift: int) -> None:
        """Fold in counts keyed by ns >> quantum_shift (what the measuring loops keep)."""
        half = (1 << quantum_shift) >> 1
        for q, n in raw.items():
            b = bucket_of((q << quantum_shift) + half)
            self.counts[b] = self.counts.get(b, 0) + n
        self.max_ns = max(self.max_ns, max_ns)

    def merge(self, other: LatencyHistogram) -> None:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.max_ns = max(self.max_ns, other.max_ns)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> float:
        """The latency (ns) below which p percent of completions fall."""
        total = self.total
        if not total:
            return 0.0
        rank = p / 100 * total
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(bucket_value(b), float(self.max_ns))
        return float(self.max_ns)

    def to_dict(self) -> dict:
        return {"counts": {str(k): v for k, v in sorted(self.counts.items())}, "max_ns": self.max_ns}

    @classmethod
    def from_dict(cls, d: dict) -> LatencyHistogram:
        return cls({int(k): int(v) for k, v in d.get("counts", {}).items()}, int(d.get("max_ns", 0)))


@dataclass
class JobTotals:
    """What one job did in one repetition."""

    reads: int = 0
    writes: int = 0
    bytes: int = 0
    seconds: float = 0.0
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    facts: dict = field(default_factory=dict)  # e.g. registered buffers or the fallback taken
    problem: str = ""  # a verify mismatch or an I/O error, empty when none

    @property
    def ios(self) -> int:
        return self.reads + self.writes


class VerifyMismatch(Exception):
    pass


class IoFailure(Exception):
    """An I/O returned an error or a short transfer; the message says which and where."""

    def __init__(self, message: str, err: int = 0):
        super().__init__(message)
        self.errno = err


def io_error(op: str, offset: int, size: int, res: int, path: str) -> IoFailure:
    if res == -errno.ENOSPC:
        try:
            free = f"{free_bytes(Path(path).parent)} bytes free"
        except OSError:
            free = "free space unknown"
        return IoFailure(f"{op} at offset {offset} of {path}: no space left on the device ({free})", errno.ENOSPC)
    if res < 0:
        return IoFailure(f"{op} of {size} bytes at offset {offset} of {path} failed: {os.strerror(-res)}", -res)
    return IoFailure(f"{op} of {size} bytes at offset {offset} of {path} moved only {res} bytes")
