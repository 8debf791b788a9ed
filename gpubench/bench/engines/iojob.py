"""One I/O job: what it does to its file (the spec, its offsets and read/write choices, the regions
jobs and threads split a file into) and what it reports (totals and a latency histogram that jobs
merge). The engines (uring, psync) run jobs; the I/O benchmarks plan and merge them."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from gpubench.bench.engines.iofile import free_space


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


class IoFailure(Exception):
    """An I/O returned an error or a short transfer; the message says which and where."""

    def __init__(self, message: str, err: int = 0):
        super().__init__(message)
        self.errno = err


def io_error(op: str, offset: int, size: int, res: int, path: str) -> IoFailure:
    if res == -errno.ENOSPC:
        free = free_space(Path(path).parent)
        return IoFailure(f"{op} at offset {offset} of {path}: no space left on the device ({free})", errno.ENOSPC)
    if res < 0:
        return IoFailure(f"{op} of {size} bytes at offset {offset} of {path} failed: {os.strerror(-res)}", -res)
    return IoFailure(f"{op} of {size} bytes at offset {offset} of {path} moved only {res} bytes")
