"""How gpubench's io_uring loop compares with fio's io_uring engine on this machine.

One interleaved run: every round measures each case once with gpubench and once with fio (the
order alternates between rounds, so drift of a noisy disk hits both), on one shared file. The
ratio per round is gpubench/fio; the median ratio and its spread over rounds are reported against
the goals. fio runs with its default options, plus --invalidate=0 for the warm page-cache case.

Warm means warm for both sides: the O_DIRECT cases' fio runs drop the file's cache (fio's default
invalidate=1), and some machines reclaim page cache continuously even with memory free. So the
file's pages are pinned (mlock) for the whole calibration when the limits allow, the file is read
once more before every warm measurement, and the share of it in the page cache is recorded before
and after each warm measurement, for gpubench and fio alike.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from gpubench.bench.engines import fio
from gpubench.bench.engines import iofile
from gpubench.bench.core.interface import BenchFailure, Context, Waived
from gpubench.bench.core.settings import RunSettings
from gpubench.bench.io.iouring import IoUring
from gpubench.errors import UserError
from gpubench.probe.model import Profile


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


@dataclass
class CaseOutcome:
    case: CalibrationCase
    gpubench_mbps: list[float] = field(default_factory=list)
    fio_mbps: list[float] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    # warm cases: (before, after) page-cache residency of the file, per round, per side
    gpubench_resident: list[tuple[float, float]] = field(default_factory=list)
    fio_resident: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [g / f for g, f in zip(self.gpubench_mbps, self.fio_mbps) if f > 0]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def met(self) -> bool:
        return self.ratio >= self.case.goal

    def to_dict(self) -> dict:
        r = self.ratios
        return {
            **asdict(self.case),
            "case": self.case.key,
            "gpubench_mbps": self.gpubench_mbps,
            "fio_mbps": self.fio_mbps,
            "ratios": r,
            "ratio_median": self.ratio,
            "ratio_min": min(r) if r else None,
            "ratio_max": max(r) if r else None,
            "gpubench_median_mbps": statistics.median(self.gpubench_mbps) if self.gpubench_mbps else None,
            "fio_median_mbps": statistics.median(self.fio_mbps) if self.fio_mbps else None,
            "goal_met": self.met,
            "gpubench_facts": self.facts,
            "gpubench_resident": self.gpubench_resident,
            "fio_resident": self.fio_resident,
        }

    @property
    def least_resident(self) -> float | None:
        shares = [x for pair in self.gpubench_resident + self.fio_resident for x in pair]
        return min(shares) if shares else None


@dataclass
class Calibration:
    runtime: float
    rounds: int
    file_size: int
    filesystem: str
    fio_version: str
    outcomes: list[CaseOutcome]
    page_cache: str = ""  # "pinned (mlock)" or why the warm file could not be pinned

    def to_dict(self) -> dict:
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


def calibrate(runtime: float, rounds: int, directory: Path | None = None, file_size: int = 1 << 30,
              progress: Callable[[str], None] = lambda m: None,
              cases: list[CalibrationCase] | None = None) -> Calibration:
    fio_bin = fio.require_fio()
    from gpubench.probe.iouring import binding_selftest

    binding = binding_selftest()
    if not binding.get("ring"):
        raise UserError(f"io_uring cannot be used here: {binding.get('error') or 'no ring could be created'}")
    directory = directory or default_directory()
    if not directory.is_dir():
        raise UserError(f"--dir {directory}: not a directory")
    mount = iofile.mount_of(directory)
    fstype = mount.fstype if mount else "unknown"
    if fstype in iofile.MEMORY_FILESYSTEMS:
        raise UserError(f"--dir {directory} is on {fstype}: O_DIRECT needs a disk-backed filesystem")
    free = iofile.free_bytes(directory)
    if free < file_size * 1.1:
        raise UserError(f"--dir {directory} has {free >> 20} MiB free; the calibration needs {file_size >> 20} MiB")
    cases = cases or calibration_cases()
    version = _fio_version(fio_bin)
    profile = Profile("/", ())
    progress(f"writing a {iofile.format_size(file_size)} file in {directory}")
    path = iofile.create_scratch(directory, file_size, 1 << 20, "data")
    outcomes = [CaseOutcome(c) for c in cases]
    page_cache = ""
    try:
        iofile.sync_filesystem(path)
        with ExitStack() as stack:
            if any(not c.direct for c in cases):
                progress("pinning the file in the page cache for the warm cases")
                pin = stack.enter_context(iofile.PinnedPages(path, file_size))
                page_cache = "pinned (mlock)" if pin.pinned else f"not pinned: {pin.why_not}"
            measures = []
            for c in cases:
                bench = IoUring()
                options = {"pattern": c.pattern, "bs": str(c.bs), "qd": str(c.qd),
                           "jobs": str(c.jobs), "direct": "1" if c.direct else "0", "runtime": str(runtime)}
                (case,) = bench.cases(profile, "default", options, RunSettings(target=path))
                ctx = Context(scratch=directory, profile=profile)
                try:
                    measures.append(stack.enter_context(bench.prepare(case, ctx)))
                except (Waived, BenchFailure) as e:
                    raise UserError(f"{c.key}: {e}") from None
            for r in range(rounds):
                for i, (c, measure, outcome) in enumerate(zip(cases, measures, outcomes)):
                    job = fio.FioJob(filename=str(path), rw=c.pattern, bs=c.bs, iodepth=c.qd, numjobs=c.jobs,
                                     direct=c.direct, size=file_size, runtime=runtime, invalidate=c.direct)
                    order = ("gpubench", "fio") if (r + i) % 2 == 0 else ("fio", "gpubench")
                    for who in order:
                        progress(f"round {r + 1}/{rounds}: {c.key}: {who}")
                        if not c.direct:
                            iofile.warm_file(path, file_size)
                            before = iofile.resident_fraction(path, file_size)
                        if who == "gpubench":
                            sample = measure()
                            outcome.gpubench_mbps.append(sample.value)
                            outcome.facts = {k: v for k, v in sample.extra.items() if k in ("buffers", "files", "ring",
                                                                                            "reap_batch")}
                        else:
                            try:
                                outcome.fio_mbps.append(fio.run_fio(job, fio_bin).bw_mbps)
                            except fio.FioError as e:
                                raise UserError(f"{c.key}: {e}") from None
                        if not c.direct:
                            shares = (before, iofile.resident_fraction(path, file_size))
                            (outcome.gpubench_resident if who == "gpubench" else outcome.fio_resident).append(shares)
    finally:
        iofile.remove_scratch(path)
    return Calibration(runtime, rounds, file_size, fstype, version, outcomes, page_cache)


def _fio_version(binary: str) -> str:
    import subprocess

    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def calibration_table(cal: Calibration):
    from rich.table import Table

    table = Table(title=f"gpubench io_uring vs fio {cal.fio_version} ({cal.rounds} interleaved rounds x "
                        f"{cal.runtime:g} s, {iofile.format_size(cal.file_size)} file on {cal.filesystem})")
    for name, justify in (("case", "left"), ("jobs", "right"), ("gpubench MB/s", "right"), ("fio MB/s", "right"),
                          ("ratio", "right"), ("spread (min-max)", "right"), ("goal", "right"), ("", "left"),
                          ("cached", "right")):
        table.add_column(name, justify=justify)
    for o in cal.outcomes:
        r = o.ratios
        table.add_row(
            o.case.label, str(o.case.jobs),
            f"{statistics.median(o.gpubench_mbps):.0f}" if o.gpubench_mbps else "-",
            f"{statistics.median(o.fio_mbps):.0f}" if o.fio_mbps else "-",
            f"{o.ratio:.2f}x", f"{min(r):.2f}-{max(r):.2f}" if r else "-", f">= {o.case.goal:g}x",
            "met" if o.met else "missed",
            "-" if o.least_resident is None else f"{o.least_resident:.0%}",
        )
    if cal.page_cache:
        table.caption = (f"warm file: {cal.page_cache}; cached = the least share of the file in the page cache "
                         f"before or after any warm measurement")
    return table
