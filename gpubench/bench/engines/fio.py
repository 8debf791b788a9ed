"""The same job through fio, for a cross-check: is a slow number the kernel or the tool?

fio runs with --output-format=json and --group_reporting (its jobs merged into one figure, as
gpubench merges its own); its figures are read back into plain dicts stored beside gpubench's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from gpubench.errors import UserError

PERCENTILES = {"50.000000": "p50", "90.000000": "p90", "99.000000": "p99", "99.900000": "p999"}


@dataclass(frozen=True)
class FioJob:
    filename: str
    rw: str  # fio's names: read, write, randread, randwrite, randrw
    bs: int
    iodepth: int
    numjobs: int
    direct: bool
    size: int
    runtime: float
    ioengine: str = "io_uring"
    rwmixread: int = 70
    invalidate: bool = True  # fio's default drops the file's cache before each job
    io_size: int = 0
    offset_increment: int = 0  # job k starts at k * offset_increment (regions of their own)

    def command(self, fio: str = "fio") -> list[str]:
        cmd = [
            fio, "--name=gpubench", f"--filename={self.filename}", f"--ioengine={self.ioengine}",
            f"--rw={self.rw}", f"--bs={self.bs}", f"--iodepth={self.iodepth}", f"--numjobs={self.numjobs}",
            f"--direct={int(self.direct)}", f"--size={self.size}", "--group_reporting", "--output-format=json",
        ]
        if self.offset_increment:
            cmd.append(f"--offset_increment={self.offset_increment}")
        if self.io_size:
            cmd.append(f"--io_size={self.io_size}")
        else:
            cmd += ["--time_based", f"--runtime={max(1, round(self.runtime * 1000))}ms"]
        if self.rw == "randrw":
            cmd.append(f"--rwmixread={self.rwmixread}")
        if not self.invalidate:
            cmd.append("--invalidate=0")
        return cmd


@dataclass(frozen=True)
class Direction:
    bw_mbps: float  # MB/s (10^6 bytes), as gpubench reports
    iops: float
    ios: int
    bytes: int
    clat_us: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, p999, max, mean


@dataclass(frozen=True)
class FioFigures:
    version: str
    read: Direction | None
    write: Direction | None
    usr_cpu: float
    sys_cpu: float
    error: int

    @property
    def bw_mbps(self) -> float:
        return sum(d.bw_mbps for d in (self.read, self.write) if d)

    @property
    def iops(self) -> float:
        return sum(d.iops for d in (self.read, self.write) if d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bw_mbps"], d["iops"] = self.bw_mbps, self.iops
        return d


def fio_binary() -> str | None:
    return shutil.which("fio")


def require_fio() -> str:
    path = fio_binary()
    if path is None:
        raise UserError("fio is not installed (no 'fio' on PATH): install it, e.g. apt install fio or dnf install fio")
    return path


def _direction(d: dict[str, Any]) -> Direction | None:
    if not d or not d.get("total_ios"):
        return None
    clat = d.get("clat_ns") or {}
    pct = clat.get("percentile") or {}
    lat = {name: pct[key] / 1000 for key, name in PERCENTILES.items() if key in pct}
    if "max" in clat:
        lat["max"] = clat["max"] / 1000
    if "mean" in clat:
        lat["mean"] = clat["mean"] / 1000
    return Direction(d.get("bw_bytes", 0) / 1e6, float(d.get("iops", 0.0)), int(d["total_ios"]),
                     int(d.get("io_bytes", 0)), lat)


def parse_fio_json(text: str) -> FioFigures:
    """fio's --output-format=json output (warnings printed before the JSON are skipped)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in fio's output")
    data = json.loads(text[start:])
    jobs = data.get("jobs") or []
    if not jobs:
        raise ValueError("fio's output has no jobs")
    if len(jobs) > 1:  # without --group_reporting: merge the jobs the way group reporting does
        raise ValueError("fio's output has one entry per job; run it with --group_reporting")
    job = jobs[0]
    return FioFigures(
        version=data.get("fio version", "unknown"),
        read=_direction(job.get("read", {})),
        write=_direction(job.get("write", {})),
        usr_cpu=float(job.get("usr_cpu", 0.0)),
        sys_cpu=float(job.get("sys_cpu", 0.0)),
        error=int(job.get("error", 0)),
    )


class FioError(Exception):
    pass


def run_fio(job: FioJob, fio: str | None = None, timeout: float | None = None) -> FioFigures:
    binary = fio or require_fio()
    limit = timeout if timeout is not None else job.runtime * 3 + 60
    try:
        proc = subprocess.run(job.command(binary), capture_output=True, text=True, timeout=limit,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FioError(f"fio did not finish within {limit:.0f} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise FioError(f"fio failed: {last}")
    try:
        figures = parse_fio_json(proc.stdout)
    except ValueError as e:
        raise FioError(f"cannot read fio's output: {e}") from None
    if figures.error:
        raise FioError(f"fio reported error {figures.error}")
    return figures


def job_for(params: Any, filename: str, span: int, seconds: float, ioengine: str) -> FioJob:
    """The fio job matching a gpubench iouring/psync case (an IoParams). Where gpubench's jobs
    work on regions of the file of their own (iojob.regions), so do fio's."""
    from gpubench.bench.engines import iojob

    psync = ioengine == "psync"
    numjobs = params.jobs * (params.qd if psync and params.engine == "psync" else 1)
    own = numjobs > 1 and iojob.needs_own_region(params.pattern, params.verify, params.writes)
    region = span // numjobs // params.bs * params.bs if own else span
    return FioJob(
        filename=filename, rw=params.pattern, bs=params.bs,
        iodepth=1 if psync else params.qd, numjobs=numjobs,
        direct=params.direct, size=region, runtime=seconds, ioengine=ioengine, rwmixread=params.mix,
        invalidate=params.direct or params.drop_cache, io_size=params.io_size,
        offset_increment=region if own else 0,
    )


def cross_check(params: Any, filename: str, span: int, seconds: float) -> dict[str, Any]:
    """fio's figures for the same job with ioengine io_uring and psync; {"skipped": why} without fio.

    fio never verifies here (its verify= cannot check gpubench's pattern, and it verifies in a
    pass of its own): each engine's figures say "verify": false, to set beside the case's verify."""
    binary = fio_binary()
    if binary is None:
        return {"skipped": "fio is not installed"}
    out: dict[str, Any] = {}
    for engine in ("io_uring", "psync"):
        job = job_for(params, filename, span, seconds, engine)
        try:
            figures = run_fio(job, binary)
            options = [a for a in job.command("fio")[1:] if not a.startswith("--filename=")]
            out[engine] = figures.to_dict() | {"options": options, "verify": False}
        except FioError as e:
            out[engine] = {"error": str(e)}
    return out
