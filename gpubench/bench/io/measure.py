"""Preparing an I/O case (its file, its jobs) and measuring one repetition of it.

iouring and psync run in this same harness so the comparison is fair: the same scratch file,
offsets, block size and latency accounting; only the engine differs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from gpubench.bench.core.interface import BenchFailure, Context, Sample, Waived
from gpubench.bench.engines import iofile
from gpubench.bench.engines.iojob import JobSpec, JobTotals, LatencyHistogram
from gpubench.bench.io.plan import IoParams, Target, check_case, span_of
from gpubench.bench.io.pool import JobPool


@contextmanager
def prepare(p: IoParams, ctx: Context) -> Iterator[Callable[[], Sample]]:
    """The case's file and jobs, set up; yields a callable that measures one repetition. The
    scratch file and the jobs go away on exit, whatever happens."""
    target = Target.of(p.target) if p.target else Target.scratch(Path(ctx.scratch))
    check_case(p, target)
    fstype = _filesystem(p, target)
    created: Path | None = None
    pool: JobPool | None = None
    try:
        span = span_of(p, target)
        if target.kind == "dir":
            path = created = _create_scratch(p, target.path, span, ctx)
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
        pool = JobPool(p, spec, fstype)
        yield Measure(p, spec, pool, ctx, Path(path), fstype)
    finally:
        if pool is not None:
            pool.close()
        iofile.remove_scratch(created)


def _filesystem(p: IoParams, target: Target) -> str:
    """The filesystem the case's file lives on; Waived where the case must not or cannot run there."""
    writes = f"{p.pattern}{' with verify' if p.verify else ''}"
    if target.kind == "block":
        if (p.writes or p.verify) and not p.allow_device_write:
            raise Waived(f"{target.path} is a block device: {writes} would overwrite its data; run with "
                         f"--allow-device-write if that is intended")
        return "block device"  # its node's filesystem (/dev: devtmpfs) says nothing about the device
    if target.kind == "file" and (p.writes or p.verify):
        raise Waived(f"{target.path} is an existing file: {writes} would overwrite it, and gpubench writes only to "
                     f"files it creates; give a directory for the write cases")
    mount = iofile.mount_of(target.path)
    fstype = mount.fstype if mount else "unknown"
    if p.direct and fstype in iofile.MEMORY_FILESYSTEMS:
        raise Waived(f"O_DIRECT on {target.path} ({fstype}): {fstype} keeps files in memory, so there is no "
                     f"device to bypass the cache for; give a directory on a disk-backed filesystem "
                     f"(e.g. target=/var/tmp)")
    return fstype


def _create_scratch(p: IoParams, directory: Path, span: int, ctx: Context) -> Path:
    fill = "verify" if p.verify else ("data" if p.read_percent > 0 else "none")
    ctx.progress(f"creating a {iofile.format_size(span)} scratch file in {directory}")
    try:
        return iofile.create_scratch(directory, span, p.bs, fill)
    except iofile.DiskFull as e:
        raise BenchFailure(str(e)) from None
    except OSError as e:
        raise BenchFailure(f"cannot create a scratch file in {directory}: {e.strerror}") from None


class Measure:
    """One repetition per call. Attributes a test may use: `path` (the file measured) and
    `before_readback` (called with the path after the jobs ran and before verify reads it back)."""

    def __init__(self, p: IoParams, spec: JobSpec, pool: JobPool, ctx: Context, path: Path, fstype: str):
        self.p, self.spec, self.pool, self.ctx, self.path, self.fstype = p, spec, pool, ctx, path, fstype
        self.before_readback: Callable[[Path], None] | None = None
        self.generation = 0
        self.fio: dict | None = None

    def __call__(self) -> Sample:
        p = self.p
        self.generation += 1
        self._settle_page_cache()
        seconds = p.runtime if not p.io_size else 3600.0  # io_size bounds the repetition instead
        left = self.ctx.time_left()
        if left < seconds:
            seconds = max(0.05, left)
        totals = self.pool.run(seconds, self.generation)
        sample = self._sample(totals)
        if p.verify:
            self._read_back()
        if p.vs_fio and self.fio is None:
            self._cross_check(seconds)
        if self.fio is not None:
            sample.extra["fio"] = self.fio
        return sample

    def _settle_page_cache(self) -> None:
        """Cold: drop the file's pages (Waived when they stay); warm: read it all again (anything
        between repetitions, another case or memory pressure, may have evicted pages)."""
        p = self.p
        if p.drop_cache and p.read_percent > 0 and not p.direct:
            iofile.drop_cache_for_cold_reads(self.path, self.spec.span)
        elif p.drop_cache:
            iofile.drop_path_cache(self.path)
        elif p.read_percent > 0 and not p.direct:
            iofile.warm_file(self.path, self.spec.span)

    def _read_back(self) -> None:
        if self.before_readback is not None:
            self.before_readback(self.path)
        problem = read_back(self.path, self.spec)
        if problem:
            raise BenchFailure(f"verify failed: {problem}")

    def _cross_check(self, seconds: float) -> None:
        from gpubench.bench.engines import fio

        p = self.p
        unverified = ", without verification (fio cannot check gpubench's pattern)" if p.verify else ""
        self.ctx.progress(f"running the same job through fio (io_uring and psync){unverified}")
        self.fio = fio.cross_check(p, str(self.path), self.spec.span, seconds)
        if p.verify and p.writes:  # fio's writes replaced the pattern the next repetitions verify
            iofile.write_pattern(self.path, self.spec.span, self.spec.block_size)

    def _sample(self, totals: list[JobTotals]) -> Sample:
        for t in totals:
            if t.problem:
                raise BenchFailure(t.problem)
        hist = LatencyHistogram()
        for t in totals:
            hist.merge(t.histogram)
        metrics = {
            "iops": sum(t.ios / t.seconds for t in totals if t.seconds > 0),
            "bytes": float(sum(t.bytes for t in totals)),
            "ios": float(sum(t.ios for t in totals)),
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
        extra = {"engine": self.p.engine, "filesystem": self.fstype,
                 "file": "scratch" if self.p.target is None else "target", **facts}
        if self.p.engine == "iouring" and "unregistered:" in str(facts.get("buffers", "")):
            extra["fallback"] = facts["buffers"]
        mbps = sum(t.bytes / t.seconds for t in totals if t.seconds > 0) / 1e6
        return Sample(mbps, metrics, extra)


def read_back(path: Path, spec: JobSpec) -> str | None:
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
