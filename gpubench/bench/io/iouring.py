"""File I/O through io_uring (`iouring`) and through positional reads and writes (`psync`).

Both run in the same harness so the comparison is fair: the same scratch file, offsets, block
size and latency accounting; only the engine differs. A job is one process with one ring (or,
for psync, `qd` threads); jobs > 1 run in separate processes and their figures are merged:
throughputs add up, latency histograms add up. The liburing binding is used only through
gpubench.bench.engines.uring, and only after the probe loaded it safely in a child process.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

from gpubench.bench.engines import iofile
from gpubench.bench.core.interface import BenchFailure, Case, Context, Sample, Waived
from gpubench.bench.engines.iofile import JobSpec, JobTotals, LatencyHistogram
from gpubench.bench.core.params import FALSE_WORDS, TRUE_WORDS, check_options, parse_bool, parse_size, record_from_params
from gpubench.errors import UserError
from gpubench.probe.model import Profile, Status
from gpubench.probe.views import IoUringView

MAX_QUEUE_DEPTH = 4096  # gpubench's ring ceiling (the kernel itself allows 32768 SQ entries)
MAX_PSYNC_THREADS = 256
MIN_DIO_ALIGNMENT = 512  # the smallest logical block any device has; the real figure is checked in prepare

PSYNC_OPTION_KEYS = (
    "target", "verify", "drop_cache", "vs_fio", "allow_device_write",
    "pattern", "bs", "qd", "jobs", "direct", "size", "runtime", "io_size", "mix",
)
OPTION_KEYS = PSYNC_OPTION_KEYS + ("registered", "sqpoll")  # iouring's: the ring's own on top


# --- parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class IoParams:
    """One case's parameters, validated; what results store (via Case.params)."""

    engine: str  # "iouring" or "psync"
    pattern: str
    bs: int
    qd: int  # ring depth for iouring; threads per job for psync
    jobs: int
    direct: bool
    size: int  # bytes of the scratch file (or of an existing target) the jobs address
    runtime: float  # seconds per repetition
    io_size: int = 0  # bytes per repetition instead of runtime; 0: runtime-bounded
    mix: int = 70  # randrw: percentage of reads
    registered: bool = True  # iouring: register buffers and the file when the kernel allows
    sqpoll: bool = False
    verify: bool = False
    drop_cache: bool = False
    vs_fio: bool = False
    target: str | None = None  # None: the scratch directory the pipeline gives
    allow_device_write: bool = False

    @property
    def read_percent(self) -> int:
        return {"read": 100, "randread": 100, "write": 0, "randwrite": 0}.get(self.pattern, self.mix)

    @property
    def writes(self) -> bool:
        return self.read_percent < 100

    def case_name(self) -> str:
        parts = [self.pattern, iofile.format_size(self.bs), f"qd{self.qd}", f"j{self.jobs}",
                 "direct" if self.direct else "buffered"]
        if self.pattern == "randrw":
            parts.insert(1, f"mix{self.mix}")
        if self.engine == "iouring" and not self.registered:
            parts.append("unreg")
        if self.sqpoll:
            parts.append("sqpoll")
        if self.drop_cache and not self.direct:
            parts.append("cold")
        if self.verify:
            parts.append("verify")
        return "-".join(parts)

    def to_params(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.pop("engine")
        return d

    @classmethod
    def from_params(cls, engine: str, params: Mapping[str, Any]) -> IoParams | None:
        """The case a stored iouring or psync result ran (to_params read back); None for another version's."""
        return record_from_params(cls, params, engine=engine)


def _flag(options: dict[str, str], key: str, default: bool) -> bool:
    raw = options.get(key)
    return default if raw is None or raw == "" else parse_bool("iouring", key, raw)


def _list(options: dict[str, str], key: str) -> list[str] | None:
    raw = options.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    return [part.strip() for part in str(raw).split(",") if part.strip()]


def _ints(values: list[str], key: str) -> list[int]:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            raise UserError(f"{key}={v!r}: expected a whole number") from None
    return out


def _direct_values(values: list[str]) -> list[bool]:
    out = []
    for v in values:
        word = v.lower()
        if word in TRUE_WORDS + ("direct",):
            out.append(True)
        elif word in FALSE_WORDS + ("buffered",):
            out.append(False)
        else:
            raise UserError(f"direct={v!r}: expected 1 (O_DIRECT) or 0 (buffered)")
    return out


# The matrices per size: (pattern, bs, qd, jobs, direct). psync's qd is its thread count.
def _matrix(engine: str, size: str) -> list[tuple[str, int, int, int, bool]]:
    cores = os.cpu_count() or 1
    k4, k128 = 4096, 128 * 1024
    if engine == "iouring":
        if size == "quick":
            return [("randread", k4, 32, 1, False), ("randread", k4, 32, 1, True), ("read", k128, 8, 1, True)]
        base = [
            ("randread", k4, 32, 1, False), ("randread", k4, 32, 1, True), ("read", k128, 8, 1, True),
            ("randwrite", k4, 32, 1, True), ("write", k128, 8, 1, True), ("randrw", k4, 32, 1, True),
            ("randread", k4, 32, cores, True), ("read", k128, 8, cores, True),
        ]
        if size == "full":
            base += [(p, k4, qd, 1, True) for p in ("randread",) for qd in (1, 8, 128)]
            base += [("randread", k4, 32, cores, False), ("read", 1 << 20, 4, 1, True), ("write", k128, 8, 1, False)]
        return base
    if size == "quick":
        return [("randread", k4, 1, 1, False), ("randread", k4, 1, 1, True)]
    base = [
        ("randread", k4, 1, 1, False), ("randread", k4, 1, 1, True), ("read", k128, 1, 1, True),
        ("randwrite", k4, 1, 1, True), ("write", k128, 1, 1, True), ("randrw", k4, 1, 1, True),
        ("randread", k4, 1, cores, True),
    ]
    if size == "full":
        base += [("randread", k4, 8, 1, True), ("randread", k4, 1, cores, False), ("write", k128, 1, 1, False)]
    return base


DEFAULT_FILE_SIZE = {"quick": 64 << 20, "default": 256 << 20, "full": 1 << 30}
DEFAULT_RUNTIME = {"quick": 0.25, "default": 1.0, "full": 2.0}


def plan_cases(engine: str, size: str, options: dict[str, str]) -> list[IoParams]:
    """The cases for a size with the user's overrides, every value validated."""
    check_options(engine, options, OPTION_KEYS if engine == "iouring" else PSYNC_OPTION_KEYS)
    if size not in DEFAULT_FILE_SIZE:
        raise UserError(f"unknown size {size!r}; choose from {', '.join(DEFAULT_FILE_SIZE)}")
    matrix = _matrix(engine, size)
    patterns = _list(options, "pattern")
    if patterns:
        for p in patterns:
            if p not in iofile.PATTERNS:
                raise UserError(f"pattern={p!r}: unknown pattern; choose from {', '.join(iofile.PATTERNS)}")
        matrix = [(p, *rest) for p in patterns for rest in dict.fromkeys(row[1:] for row in matrix)]
    overrides: dict[int, list] = {}
    if (v := _list(options, "bs")) is not None:
        overrides[1] = [parse_size("iouring", "bs", x, default_unit="") for x in v]
    if (v := _list(options, "qd")) is not None:
        overrides[2] = _ints(v, "qd")
    if (v := _list(options, "jobs")) is not None:
        overrides[3] = _ints(v, "jobs")
    if (v := _list(options, "direct")) is not None:
        overrides[4] = _direct_values(v)
    for index, values in overrides.items():
        matrix = [row[:index] + (value,) + row[index + 1:] for row in matrix for value in values]
    matrix = list(dict.fromkeys(matrix))

    file_size = parse_size("iouring", "size", options["size"], default_unit="") if options.get("size") else DEFAULT_FILE_SIZE[size]
    try:
        runtime = float(options["runtime"]) if options.get("runtime") else DEFAULT_RUNTIME[size]
    except ValueError:
        raise UserError(f"runtime={options['runtime']!r}: expected seconds, e.g. 0.5") from None
    if not 0 < runtime <= 3600:
        raise UserError(f"runtime={runtime:g}: expected more than 0 and at most 3600 seconds")
    io_size = parse_size("iouring", "io_size", options["io_size"], default_unit="") if options.get("io_size") else 0
    try:
        mix = int(options.get("mix") or 70)
    except ValueError:
        raise UserError(f"mix={options['mix']!r}: expected the percentage of reads, 1 to 99") from None
    if not 1 <= mix <= 99:
        raise UserError(f"mix={mix}: expected the percentage of reads, 1 to 99")
    common = dict(
        size=file_size, runtime=runtime, io_size=io_size, mix=mix,
        registered=_flag(options, "registered", True), sqpoll=_flag(options, "sqpoll", False),
        verify=_flag(options, "verify", False), drop_cache=_flag(options, "drop_cache", False),
        vs_fio=_flag(options, "vs_fio", False), target=options.get("target") or None,
        allow_device_write=_flag(options, "allow_device_write", False),
    )
    target_info = _inspect_target(common["target"]) if common["target"] else None
    cases = []
    for pattern, bs, qd, jobs, direct in matrix:
        p = IoParams(engine, pattern, bs, qd, jobs, direct, **common)
        _validate(p, target_info)
        cases.append(p)
    names = [p.case_name() for p in cases]
    if len(set(names)) != len(names):  # cannot happen with distinct rows; guards the naming scheme
        raise UserError(f"{engine}: two cases share a name: {sorted(n for n in names if names.count(n) > 1)[0]}")
    return cases


@dataclass(frozen=True)
class TargetInfo:
    path: Path
    kind: str  # "dir", "file" or "block"
    size: int  # bytes for a file or block device, 0 for a directory
    alignment: iofile.DioAlignment


def _inspect_target(target: str) -> TargetInfo:
    path = Path(target).expanduser()
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"target={target}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        kind, size = "dir", 0
    elif stat.S_ISBLK(st.st_mode):
        kind, size = "block", iofile.block_device_size(path)
    elif stat.S_ISREG(st.st_mode):
        kind, size = "file", st.st_size
    else:
        raise UserError(f"target={target}: not a directory, regular file or block device")
    return TargetInfo(path, kind, size, iofile.dio_alignment(path))


def _validate(p: IoParams, target: TargetInfo | None, alignment: iofile.DioAlignment | None = None) -> None:
    what = p.engine
    if p.bs <= 0:
        raise UserError(f"{what}: bs must be at least 1 byte")
    if p.bs > 64 << 20:
        raise UserError(f"{what}: bs={iofile.format_size(p.bs)} is above the 64 MiB gpubench allows per I/O")
    if p.jobs < 1:
        raise UserError(f"{what}: jobs={p.jobs}: at least one job is needed")
    if p.jobs > 1024:
        raise UserError(f"{what}: jobs={p.jobs}: at most 1024 jobs")
    if p.qd < 1:
        raise UserError(f"{what}: qd={p.qd}: the queue depth must be at least 1")
    if p.engine == "iouring" and p.qd > MAX_QUEUE_DEPTH:
        raise UserError(f"iouring: qd={p.qd} is beyond the ring limit of {MAX_QUEUE_DEPTH} entries")
    if p.engine == "psync" and p.qd > MAX_PSYNC_THREADS:
        raise UserError(f"psync: qd={p.qd} threads per job; at most {MAX_PSYNC_THREADS}")
    import psutil

    buffers = p.jobs * p.qd * p.bs  # one buffer per I/O in flight
    available = psutil.virtual_memory().available
    if buffers > available // 2:
        raise UserError(f"{what}: jobs={p.jobs} x qd={p.qd} x bs={iofile.format_size(p.bs)} needs {buffers / 2**30:,.1f} GiB "
                        f"of I/O buffers, more than half the {available / 2**30:,.1f} GiB of memory available")
    align = alignment or (target.alignment if target else None)
    if p.direct:
        need = align.offset if align else MIN_DIO_ALIGNMENT
        source = f" ({align.source} of {target.path if target else 'the target'})" if align else ""
        if p.bs % need:
            raise UserError(f"{what}: bs={p.bs} is not a multiple of the O_DIRECT alignment {need} bytes{source}")
    if p.verify and p.bs < iofile.MIN_VERIFY_BLOCK:
        raise UserError(f"{what}: verify needs bs of at least {iofile.MIN_VERIFY_BLOCK} bytes (header and CRC)")
    span = _span(p, target)
    regions = _regions(p)
    if span < p.bs * regions:
        each = (f", jobs={p.jobs}" + (f" and {p.qd} threads per job" if p.engine == "psync" else "")
                + ": each works on a region of its own, of one block at least") if regions > 1 else ""
        raise UserError(f"{what}: size {span} bytes is too small for bs={p.bs}{each}")
    blocks_per_job = span // regions // p.bs
    if p.verify and p.engine == "iouring" and blocks_per_job < p.qd:
        raise UserError(f"{what}: verify keeps one I/O per block in flight: size {span} bytes gives each job "
                        f"{blocks_per_job} blocks of bs={p.bs}, fewer than qd={p.qd}")
    if p.io_size and p.io_size < p.bs:
        raise UserError(f"{what}: io_size={p.io_size} is smaller than one block ({p.bs})")


def _regions(p: IoParams) -> int:
    """How many disjoint regions the file is split into (iofile.regions): one per job, and within
    a psync job one per thread; 1 where jobs share the whole file."""
    if not iofile.needs_own_region(p.pattern, p.verify, p.writes):
        return 1
    return p.jobs * (p.qd if p.engine == "psync" else 1)


def _span(p: IoParams, target: TargetInfo | None) -> int:
    if target and target.kind in ("file", "block"):
        return min(p.size, target.size) if p.size and target.kind == "block" else target.size
    return p.size


# --- the benchmarks --------------------------------------------------------------------------

class _FileBenchmark:
    key: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = OPTION_KEYS
    description: ClassVar[str]
    engine: ClassVar[str]

    def cases(self, profile: Profile, size: str, options: dict[str, str]) -> list[Case]:
        return [Case(p.case_name(), p.to_params(), "MB/s") for p in plan_cases(self.engine, size, options)]

    def prepare(self, case: Case, ctx: Context):
        return _prepare(IoParams(self.engine, **case.params), ctx)


class IoUring(_FileBenchmark):
    key: ClassVar[str] = "iouring"
    engine: ClassVar[str] = "iouring"
    description: ClassVar[str] = (
        "File reads and writes through io_uring (liburing): throughput, IOPS and completion "
        "latency per pattern, block size, queue depth and job count; O_DIRECT or buffered"
    )

    def requires(self, profile: Profile) -> str | None:
        return iouring_waiver(profile)


class Psync(_FileBenchmark):
    key: ClassVar[str] = "psync"
    engine: ClassVar[str] = "psync"
    options: ClassVar[tuple[str, ...]] = PSYNC_OPTION_KEYS
    description: ClassVar[str] = (
        "The baseline: positional reads and writes (preadv/pwritev) from threads, one I/O per "
        "thread in flight, on the same files and patterns as iouring"
    )

    def requires(self, profile: Profile) -> str | None:
        return None


def iouring_waiver(profile: Profile) -> str | None:
    """Why io_uring cannot be measured on the probed machine, or None."""
    view = IoUringView.from_profile(profile)
    if view.config == "n":
        return "the kernel was built without io_uring (CONFIG_IO_URING is not set)"
    if view.disabled == 2:
        return ("io_uring is switched off: sysctl kernel.io_uring_disabled = 2 "
                "(sysctl -w kernel.io_uring_disabled=0 allows it)")
    if view.kernel is not None and view.kernel.status is Status.NO:
        return view.kernel.why or "the probe found io_uring unavailable"
    binding = view.binding
    if binding is None or not binding.probed:
        why = binding.why if binding is not None else "the probe did not check it"
        return f"the liburing binding was not checked in a child process ({why}); run the iouring probe area"
    if not view.binding_loaded:
        reason = view.binding_error or binding.why or "it failed to load"
        return f"the liburing binding cannot be used here: {reason}" + (f" ({binding.fix})" if binding.fix else "")
    if not view.binding_ring:
        err = view.binding_errno
        how = os.strerror(err) if err else view.binding_error or "unknown error"
        if view.disabled == 1:
            return (f"no io_uring ring could be created ({how}): sysctl kernel.io_uring_disabled = 1 "
                    f"limits rings to kernel.io_uring_group and CAP_SYS_ADMIN")
        return f"no io_uring ring could be created ({how})"
    return None


# --- prepare and measure ---------------------------------------------------------------------

@contextmanager
def _prepare(p: IoParams, ctx: Context) -> Iterator[Callable[[], Sample]]:
    target = _inspect_target(p.target) if p.target else TargetInfo(
        Path(ctx.scratch), "dir", 0, iofile.dio_alignment(Path(ctx.scratch)))
    _validate(p, target)
    if target.kind == "block":
        fstype = "block device"  # its node's filesystem (/dev: devtmpfs) says nothing about the device
        if (p.writes or p.verify) and not p.allow_device_write:
            raise Waived(f"{target.path} is a block device: {p.pattern}{' with verify' if p.verify else ''} would "
                         f"overwrite its data; run with --allow-device-write if that is intended")
    else:
        if target.kind == "file" and (p.writes or p.verify):
            raise Waived(f"{target.path} is an existing file: {p.pattern}{' with verify' if p.verify else ''} would "
                         f"overwrite it, and gpubench writes only to files it creates; give a directory for the write cases")
        mount = iofile.mount_of(target.path)
        fstype = mount.fstype if mount else "unknown"
    if p.direct and fstype in iofile.MEMORY_FILESYSTEMS:
        raise Waived(f"O_DIRECT on {target.path} ({fstype}): {fstype} keeps files in memory, so there is no "
                     f"device to bypass the cache for; give a directory on a disk-backed filesystem "
                     f"(e.g. target=/var/tmp)")
    created: Path | None = None
    pool: _Jobs | None = None
    try:
        span = _span(p, target)
        if target.kind == "dir":
            fill = "verify" if p.verify else ("data" if p.read_percent > 0 else "none")
            ctx.progress(f"creating a {iofile.format_size(span)} scratch file in {target.path}")
            try:
                created = iofile.create_scratch(target.path, span, p.bs, fill)
            except iofile.DiskFull as e:
                raise BenchFailure(str(e)) from None
            except OSError as e:
                raise BenchFailure(f"cannot create a scratch file in {target.path}: {e.strerror}") from None
            path = created
        else:
            path = target.path
            if p.verify:  # a block device the user let gpubench write: the reads need the pattern
                ctx.progress(f"writing the verify pattern over {iofile.format_size(span)} of {path}")
                iofile.write_pattern(path, span, p.bs)
        span -= span % p.bs
        if p.direct:
            iofile.sync_filesystem(path)
        spec = JobSpec(
            path=str(path), pattern=p.pattern, block_size=p.bs, queue_depth=p.qd, direct=p.direct, span=span,
            read_percent=p.read_percent, seconds=p.runtime, io_limit=p.io_size, verify=p.verify,
            registered_buffers=p.registered, registered_files=p.registered, sqpoll=p.sqpoll,
        )
        pool = _Jobs(p, spec, fstype)
        measure = _Measure(p, spec, pool, ctx, Path(path), fstype)
        yield measure
    finally:
        if pool is not None:
            pool.close()
        iofile.remove_scratch(created)


class _Measure:
    """One repetition per call. Attributes a test may use: `path` (the file measured) and
    `before_readback` (called with the path after the jobs ran and before verify reads it back)."""

    def __init__(self, p: IoParams, spec: JobSpec, pool: _Jobs, ctx: Context, path: Path, fstype: str):
        self.p, self.spec, self.pool, self.ctx, self.path, self.fstype = p, spec, pool, ctx, path, fstype
        self.before_readback: Callable[[Path], None] | None = None
        self.generation = 0
        self.fio: dict | None = None

    def __call__(self) -> Sample:
        p = self.p
        self.generation += 1
        if p.drop_cache and p.read_percent > 0 and not p.direct:
            iofile.drop_cache_for_cold_reads(self.path, self.spec.span)
        elif p.drop_cache:
            iofile.drop_path_cache(self.path)
        elif p.read_percent > 0 and not p.direct:
            # warm means warm at every repetition: anything between repetitions (another case,
            # memory pressure) may have evicted pages
            iofile.warm_file(self.path, self.spec.span)
        seconds = p.runtime if not p.io_size else 3600.0  # io_size bounds the repetition instead
        left = self.ctx.time_left()
        if left < seconds:
            seconds = max(0.05, left)
        totals = self.pool.run(seconds, self.generation)
        sample = self._sample(totals)
        if p.verify:
            if self.before_readback is not None:
                self.before_readback(self.path)
            problem = _read_back(self.path, self.spec)
            if problem:
                raise BenchFailure(f"verify failed: {problem}")
        if p.vs_fio and self.fio is None:
            from gpubench.bench.engines import fio

            unverified = ", without verification (fio cannot check gpubench's pattern)" if p.verify else ""
            self.ctx.progress(f"running the same job through fio (io_uring and psync){unverified}")
            self.fio = fio.cross_check(p, str(self.path), self.spec.span, seconds)
            if p.verify and p.writes:  # fio's writes replaced the pattern the next repetitions verify
                iofile.write_pattern(self.path, self.spec.span, self.spec.block_size)
        if self.fio is not None:
            sample.extra["fio"] = self.fio
        return sample

    def _sample(self, totals: list[JobTotals]) -> Sample:
        for t in totals:
            if t.problem:
                raise BenchFailure(t.problem)
        hist = LatencyHistogram()
        for t in totals:
            hist.merge(t.histogram)
        moved = sum(t.bytes for t in totals)
        ios = sum(t.ios for t in totals)
        mbps = sum(t.bytes / t.seconds for t in totals if t.seconds > 0) / 1e6
        iops = sum(t.ios / t.seconds for t in totals if t.seconds > 0)
        metrics = {
            "iops": iops,
            "bytes": float(moved),
            "ios": float(ios),
            "reads": float(sum(t.reads for t in totals)),
            "writes": float(sum(t.writes for t in totals)),
            "seconds": max((t.seconds for t in totals), default=0.0),
            "lat_p50_us": hist.percentile(50) / 1000,
            "lat_p90_us": hist.percentile(90) / 1000,
            "lat_p99_us": hist.percentile(99) / 1000,
            "lat_p999_us": hist.percentile(99.9) / 1000,
            "lat_max_us": hist.max_ns / 1000,
        }
        facts = totals[0].facts if totals else {}
        extra = {"engine": self.p.engine, "filesystem": self.fstype, "file": "scratch" if self.p.target is None
                 else "target", **facts}
        if self.p.engine == "iouring" and "unregistered:" in str(facts.get("buffers", "")):
            extra["fallback"] = facts["buffers"]
        return Sample(mbps, metrics, extra)


def _read_back(path: Path, spec: JobSpec) -> str | None:
    """Read every block of the span and check its verify header and CRC."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, spec.span, os.POSIX_FADV_SEQUENTIAL)
        buf = bytearray(spec.block_size)
        for offset in range(0, spec.span, spec.block_size):
            n = os.preadv(fd, [buf], offset)
            if n != spec.block_size:
                return f"read-back of offset {offset} returned {n} bytes"
            problem = iofile.block_problem(buf, offset)
            if problem:
                return problem
    finally:
        os.close(fd)
    return None


# --- jobs: in this process for one job, in child processes for more --------------------------

def _job_specs(p: IoParams, spec: JobSpec) -> list[JobSpec]:
    """One spec per job, each with its own random seed and, where jobs need one
    (iofile.needs_own_region), its own region of the file."""
    return [replace(spec, seed=1 + j * 7919, base=base, span=span)
            for j, (base, span) in enumerate(iofile.regions(spec, p.jobs))]


def _open_engine(engine: str, spec: JobSpec):
    if engine == "iouring":
        from gpubench.bench.engines.uring import UringJob

        return UringJob(spec)
    return PsyncJob(spec)


def _translate_open_error(e: OSError, p: IoParams, path: str, fstype: str) -> Exception:
    if p.direct and e.errno == errno.EINVAL:
        return Waived(f"O_DIRECT refused on {path} ({fstype}): give a directory on a filesystem that "
                      f"supports it (e.g. ext4, xfs)")
    if p.sqpoll and e.errno in (errno.EPERM, errno.EINVAL, errno.EACCES):
        return Waived(f"an SQPOLL ring could not be created ({os.strerror(e.errno)}): kernels before 5.11 need "
                      f"root (CAP_SYS_ADMIN), later ones CAP_SYS_NICE for a pinned thread; run without sqpoll")
    if e.errno == errno.ENOSPC:
        return BenchFailure(_no_space(path))
    return BenchFailure(f"cannot open the {p.engine} job on {path}: {os.strerror(e.errno or 0)}")


def _no_space(path: str) -> str:
    try:
        free = f"{iofile.free_bytes(Path(path).parent)} bytes free"
    except OSError:
        free = "free space unknown"
    return f"no space left on the filesystem of {path} ({free}); choose another target or a smaller size"


class _Jobs:
    """The jobs of one case. One job runs in this process; more run as child processes
    (`python -m gpubench.bench.io.iouring job`), each talking over its own socket."""

    def __init__(self, p: IoParams, spec: JobSpec, fstype: str):
        self.p, self.fstype = p, fstype
        self.specs = _job_specs(p, spec)
        self.local = None
        self.children: list[tuple[subprocess.Popen, Connection]] = []
        try:
            if p.jobs == 1:
                self.local = _open_engine(p.engine, self.specs[0])
            else:
                for s in self.specs:
                    self.children.append(_start_child())
                for s, (_, conn) in zip(self.specs, self.children):
                    conn.send(("open", p.engine, s))
                for _, conn in self.children:
                    self._expect(conn, "ready")
        except OSError as e:
            self.close()
            raise _translate_open_error(e, p, spec.path, fstype) from None
        except BaseException:
            self.close()
            raise

    def _expect(self, conn: Connection, kind: str) -> Any:
        try:
            message = conn.recv()
        except EOFError:
            raise BenchFailure(f"a {self.p.engine} job process ended unexpectedly") from None
        if message[0] == kind:
            return message[1]
        if message[0] == "oserror":
            raise OSError(message[1], message[2])
        raise BenchFailure(f"a {self.p.engine} job failed: {message[1]}")

    def run(self, seconds: float, generation: int) -> list[JobTotals]:
        try:
            if self.local is not None:
                return [self.local.run(seconds, self.p.io_size, generation)]
            for _, conn in self.children:
                conn.send(("run", seconds, self.p.io_size, generation))
            return [self._expect(conn, "totals") for _, conn in self.children]
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise BenchFailure(_no_space(self.specs[0].path)) from None
            raise BenchFailure(f"I/O error on {self.specs[0].path}: {os.strerror(e.errno or 0)}") from None

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
        for _, conn in self.children:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + 5.0  # one grace period for all of them, not one each
        for proc, conn in self.children:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            conn.close()
        self.children = []


def _start_child() -> tuple[subprocess.Popen, Connection]:
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpubench.bench.io.iouring", "job", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, Connection(ours.detach())


def _job_process(fd: int) -> None:
    """A job in its own process: open the engine, then run repetitions as the parent asks."""
    conn = Connection(fd)
    job = None
    try:
        message = conn.recv()
        if message[0] != "open":
            return
        try:
            job = _open_engine(message[1], message[2])
        except OSError as e:
            conn.send(("oserror", e.errno or 0, str(e)))
            return
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
            return
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message[0] != "run":
                return
            _, seconds, io_limit, generation = message
            try:
                conn.send(("totals", job.run(seconds, io_limit, generation)))
            except OSError as e:
                conn.send(("oserror", e.errno or 0, str(e)))
            except Exception as e:
                conn.send(("error", f"{type(e).__name__}: {e}"))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return
    finally:
        if job is not None:
            job.close()
        conn.close()


# --- the psync engine ------------------------------------------------------------------------

class PsyncJob:
    """`qd` threads, each with one I/O in flight through os.preadv / os.pwritev."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.fd = os.open(spec.path, spec.open_flags())
        self.facts = {"threads": spec.queue_depth}

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def run(self, seconds: float, io_limit: int = 0, generation: int = 1) -> JobTotals:
        spec = self.spec
        n = spec.queue_depth
        ios = iofile.io_count(io_limit, spec.block_size)
        ios_each = [ios // n + (i < ios % n) for i in range(n)]  # the job's I/Os, shared out
        specs = [replace(spec, seed=spec.seed * 131 + i, base=base, span=span)
                 for i, (base, span) in enumerate(iofile.regions(spec, n))]
        if n == 1:
            results = [self._thread(specs[0], seconds, ios, generation)]
        else:
            # every thread sets up before any starts, and all run to one deadline, so that the
            # job's time spans all of their I/O (not one thread's, set up while others ran)
            started: list[int] = []
            start_line = threading.Barrier(n, action=lambda: started.append(time.perf_counter_ns()))

            def ready() -> int:
                start_line.wait()
                return started[0]

            results: list[Any] = [None] * n

            def work(i: int) -> None:
                try:
                    results[i] = self._thread(specs[i], seconds, ios_each[i], generation, ready)
                except BaseException as e:
                    start_line.abort()  # the others stop waiting for this one
                    results[i] = e

            threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise next((e for e in failures if not isinstance(e, threading.BrokenBarrierError)), failures[0])
        total = JobTotals(facts=dict(self.facts))
        for r, _, _ in results:
            total.reads += r.reads
            total.writes += r.writes
            total.bytes += r.bytes
            total.histogram.merge(r.histogram)
            total.problem = total.problem or r.problem
        total.seconds = (max(end for _, _, end in results) - min(start for _, start, _ in results)) / 1e9
        return total

    def _thread(self, spec: JobSpec, seconds: float, ios: int, generation: int,
                ready: Callable[[], int] = time.perf_counter_ns) -> tuple[JobTotals, int, int]:
        """One thread's I/O, from when `ready` returns the start line (perf_counter ns) until
        `seconds` after it; its totals, and when it started and ended."""
        from gpubench.bench.engines.iofile import block_problem, offsets, pattern_block, primed, read_choices

        fd, bs, verify = self.fd, spec.block_size, spec.verify
        buf = iofile.aligned_buffer(bs)
        if spec.writes:
            buf[:] = os.urandom(bs)
        bufs = [buf]
        preadv, pwritev, clock = os.preadv, os.pwritev, time.perf_counter_ns
        next_offset = primed(offsets(spec))
        mixed = 0 < spec.read_percent < 100
        all_reads = spec.read_percent >= 100
        next_is_read = primed(read_choices(spec))
        lat: dict[int, int] = {}
        reads = writes = 0
        lat_max = 0
        problem = ""
        done = 0
        line = ready()
        start = now = clock()
        stop = line + int(seconds * 1e9)
        while now < stop and done < ios:
            off = next_offset()
            is_read = next_is_read() if mixed else all_reads
            if not is_read and verify:
                buf[:] = pattern_block(off, bs, generation)
            t0 = clock()
            n = preadv(fd, bufs, off) if is_read else pwritev(fd, bufs, off)
            now = clock()
            if n != bs:
                problem = str(iofile.io_error("read" if is_read else "write", off, bs, n, spec.path))
                break
            if is_read:
                reads += 1
                if verify:
                    mismatch = block_problem(buf, off)
                    if mismatch:
                        problem = f"verify failed: {mismatch}"
                        break
            else:
                writes += 1
            d = now - t0
            if d > lat_max:
                lat_max = d
            d >>= 5
            lat[d] = lat.get(d, 0) + 1
            done += 1
        hist = LatencyHistogram()
        hist.add_raw(lat, lat_max, 5)
        return JobTotals(reads, writes, (reads + writes) * bs, (now - start) / 1e9, hist, {}, problem), start, now


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "job":
        sys.exit("usage: python -m gpubench.bench.io.iouring job FD (started by the iouring and psync benchmarks)")
    _job_process(int(sys.argv[2]))
