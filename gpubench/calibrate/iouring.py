"""How gpubench's io_uring loop compares with fio's io_uring engine on this machine.

One interleaved run (gpubench.calibrate.paired): every round measures each case once with
gpubench and once with fio (the order alternates between rounds and cases, so drift of a noisy
disk hits both), on one shared file. The ratio per round is gpubench/fio; the median ratio, its
confidence interval and its range over rounds are reported against the goals. fio runs with its
default options, plus --invalidate=0 for the warm page-cache case.

Warm means warm for both sides: the O_DIRECT cases' fio runs drop the file's cache (fio's default
invalidate=1), and some machines reclaim page cache continuously even with memory free. So the
file's pages are pinned (mlock) for the whole calibration when the limits allow, the file is read
once more before every warm measurement, and the share of it in the page cache is recorded before
and after each warm measurement, for gpubench and fio alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpubench.bench.core.interface import BenchFailure, Context, Waived
from gpubench.bench.core.settings import RunSettings
from gpubench.bench.engines import fio, iofile
from gpubench.bench.io.iouring import IoUring
from gpubench.calibrate.paired import Arm, Goal, Judged, PairedRatios, interleave
from gpubench.errors import UserError
from gpubench.probe.model import Profile

GPUBENCH, FIO = "gpubench", "fio"
FACTS = ("buffers", "files", "ring", "reap_batch")  # what gpubench's loop says of itself


@dataclass(frozen=True)
class CalibrationCase:
    label: str
    pattern: str
    bs: int
    qd: int
    direct: bool
    jobs: int
    goal: float  # gpubench/fio at least this

    @property
    def key(self) -> str:
        return f"{self.label}, {self.jobs} job{'s' if self.jobs > 1 else ''}"


def calibration_cases(cores: int | None = None) -> list[CalibrationCase]:
    cores = cores or os.cpu_count() or 1
    kinds = [
        ("4 KiB randread QD32 buffered warm", "randread", 4096, 32, False, 1.3),
        ("4 KiB randread QD32 O_DIRECT", "randread", 4096, 32, True, 1.0),
        ("128 KiB seq read QD8 O_DIRECT", "read", 131072, 8, True, 0.95),
    ]
    job_counts = [1] if cores == 1 else [1, cores]
    return [CalibrationCase(label, p, bs, qd, direct, jobs, goal)
            for label, p, bs, qd, direct, goal in kinds for jobs in job_counts]


@dataclass(frozen=True)
class Measured:
    """One measurement of one side: MB/s, what gpubench's loop said of itself, and (warm cases) the
    share of the file in the page cache before and after it."""

    mbps: float
    facts: dict[str, Any] = field(default_factory=dict)
    resident: tuple[float, float] | None = None


@dataclass(frozen=True)
class CaseOutcome(Judged):
    case: CalibrationCase
    gpubench: tuple[Measured, ...]
    fio: tuple[Measured, ...]

    @property
    def gpubench_mbps(self) -> list[float]:
        return [m.mbps for m in self.gpubench]

    @property
    def fio_mbps(self) -> list[float]:
        return [m.mbps for m in self.fio]

    @property
    def paired(self) -> PairedRatios:
        return PairedRatios(tuple(self.gpubench_mbps), tuple(self.fio_mbps))

    @property
    def goal(self) -> Goal:
        return Goal(self.case.goal)

    @property
    def least_resident(self) -> float | None:
        shares = [x for m in self.gpubench + self.fio if m.resident for x in m.resident]
        return min(shares) if shares else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.case),
            "case": self.case.key,
            "gpubench_mbps": self.gpubench_mbps,
            "fio_mbps": self.fio_mbps,
            **self.paired.to_dict(),
            "gpubench_median_mbps": statistics.median(self.gpubench_mbps) if self.gpubench else None,
            "fio_median_mbps": statistics.median(self.fio_mbps) if self.fio else None,
            "goal_met": self.met,
            "gpubench_facts": self.gpubench[-1].facts if self.gpubench else {},
            "gpubench_resident": [list(m.resident) for m in self.gpubench if m.resident],
            "fio_resident": [list(m.resident) for m in self.fio if m.resident],
        }


@dataclass(frozen=True)
class Calibration:
    runtime: float
    rounds: int
    file_size: int
    filesystem: str
    fio_version: str
    outcomes: tuple[CaseOutcome, ...]
    page_cache: str = ""  # "pinned (mlock)" or why the warm file could not be pinned

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime_s": self.runtime, "rounds": self.rounds, "file_size": self.file_size,
            "filesystem": self.filesystem, "fio_version": self.fio_version, "cores": os.cpu_count(),
            "page_cache": self.page_cache,
            "cases": [o.to_dict() for o in self.outcomes],
        }


def default_directory() -> Path:
    for candidate in (Path(tempfile.gettempdir()), Path("/var/tmp")):
        mount = iofile.mount_of(candidate)
        if candidate.is_dir() and os.access(candidate, os.W_OK) and (
                mount is None or mount.fstype not in iofile.MEMORY_FILESYSTEMS):
            return candidate
    raise UserError("no disk-backed temporary directory found for O_DIRECT; give one with --dir")


def _check_directory(directory: Path, file_size: int) -> str:
    """The filesystem type of a directory fit for the calibration's file, or a UserError saying why not."""
    if not directory.is_dir():
        raise UserError(f"--dir {directory}: not a directory")
    mount = iofile.mount_of(directory)
    fstype = mount.fstype if mount else "unknown"
    if fstype in iofile.MEMORY_FILESYSTEMS:
        raise UserError(f"--dir {directory} is on {fstype}: O_DIRECT needs a disk-backed filesystem")
    free = iofile.free_bytes(directory)
    if free < file_size * 1.1:
        raise UserError(f"--dir {directory} has {free >> 20} MiB free; the calibration needs {file_size >> 20} MiB")
    return fstype


def calibrate(runtime: float, rounds: int, directory: Path | None = None, file_size: int = 1 << 30,
              progress: Callable[[str], None] = lambda m: None,
              cases: list[CalibrationCase] | None = None) -> Calibration:
    fio_bin = fio.require_fio()
    from gpubench.probe.iouring import binding_selftest

    binding = binding_selftest()
    if not binding.get("ring"):
        raise UserError(f"io_uring cannot be used here: {binding.get('error') or 'no ring could be created'}")
    directory = directory or default_directory()
    fstype = _check_directory(directory, file_size)
    cases = cases or calibration_cases()
    version = _fio_version(fio_bin)
    progress(f"writing a {iofile.format_size(file_size)} file in {directory}")
    path = iofile.create_scratch(directory, file_size, 1 << 20, "data")
    page_cache = ""
    try:
        iofile.sync_filesystem(path)
        with ExitStack() as stack:
            if any(not c.direct for c in cases):
                progress("pinning the file in the page cache for the warm cases")
                pin = stack.enter_context(iofile.PinnedPages(path, file_size))
                page_cache = "pinned (mlock)" if pin.pinned else f"not pinned: {pin.why_not}"
            sides = _Sides(path, file_size, runtime, fio_bin, directory, stack)
            comparisons = [(Arm(GPUBENCH, sides.gpubench(c)), Arm(FIO, sides.fio(c))) for c in cases]

            def before(r: int, c: int, arm: Arm[Measured]) -> None:
                progress(f"round {r + 1}/{rounds}: {cases[c].key}: {arm.name}")

            measured = interleave(rounds, comparisons, before)
    finally:
        iofile.remove_scratch(path)
    outcomes = tuple(CaseOutcome(c, tuple(ours), tuple(theirs)) for c, (ours, theirs) in zip(cases, measured))
    return Calibration(runtime, rounds, file_size, fstype, version, outcomes, page_cache)


class _Sides:
    """Builds each case's two measurements on the shared file."""

    def __init__(self, path: Path, file_size: int, runtime: float, fio_bin: str, scratch: Path, stack: ExitStack):
        self.path, self.file_size, self.runtime, self.fio_bin = path, file_size, runtime, fio_bin
        self.scratch, self.stack = scratch, stack
        self.profile = Profile("/", ())

    def gpubench(self, c: CalibrationCase) -> Callable[[], Measured]:
        bench = IoUring()
        options = {"pattern": c.pattern, "bs": str(c.bs), "qd": str(c.qd),
                   "jobs": str(c.jobs), "direct": "1" if c.direct else "0", "runtime": str(self.runtime)}
        (case,) = bench.cases(self.profile, "default", options, RunSettings(target=self.path))
        try:
            measure = self.stack.enter_context(bench.prepare(case, Context(scratch=self.scratch, profile=self.profile)))
        except (Waived, BenchFailure) as e:
            raise UserError(f"{c.key}: {e}") from None

        def once() -> tuple[float, dict[str, Any]]:
            sample = measure()
            return sample.value, {k: v for k, v in sample.extra.items() if k in FACTS}

        return self._warmed(c, once)

    def fio(self, c: CalibrationCase) -> Callable[[], Measured]:
        job = fio.FioJob(filename=str(self.path), rw=c.pattern, bs=c.bs, iodepth=c.qd, numjobs=c.jobs,
                         direct=c.direct, size=self.file_size, runtime=self.runtime, invalidate=c.direct)

        def once() -> tuple[float, dict[str, Any]]:
            try:
                return fio.run_fio(job, self.fio_bin).bw_mbps, {}
            except fio.FioError as e:
                raise UserError(f"{c.key}: {e}") from None

        return self._warmed(c, once)

    def _warmed(self, c: CalibrationCase, once: Callable[[], tuple[float, dict[str, Any]]]) -> Callable[[], Measured]:
        """A warm case reads the file into the page cache first and records how much of it stayed."""
        if c.direct:
            return lambda: Measured(*once())

        def measure() -> Measured:
            iofile.warm_file(self.path, self.file_size)
            before = iofile.resident_fraction(self.path, self.file_size)
            mbps, facts = once()
            return Measured(mbps, facts, (before, iofile.resident_fraction(self.path, self.file_size)))

        return measure


def _fio_version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
