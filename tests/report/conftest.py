"""Synthetic runs and comparisons for the report tests: every status, verdict and chart kind appears."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from gpubench.results.compare import compare
from gpubench.results.model import Comparison, Result, ResultStatus, Run, RunStatus
from gpubench.results.stats import summarize
from gpubench.telemetry.series import SeriesKey
from gpubench.telemetry.summary import TelemetrySummary

STARTED = 1_700_000_000.0


def measured(benchmark: str, case: str, centre: float, spread: float, unit: str, seed: int, *, n: int = 15, higher_is_better: bool = True, **extra: object) -> Result:
    rng = random.Random(seed)
    samples = [centre * (1 + rng.gauss(0, spread)) for _ in range(n)]
    return Result(
        benchmark=benchmark,
        case=case,
        params=dict(extra.pop("params", {})),  # type: ignore[arg-type]
        unit=unit,
        higher_is_better=higher_is_better,
        status=ResultStatus.OK,
        samples=tuple(samples),
        summary=summarize(samples),
        started=STARTED + seed,
        ended=STARTED + seed + 2,
        **extra,  # type: ignore[arg-type]
    )


def not_run(benchmark: str, case: str, status: ResultStatus, reason: str, unit: str = "MB/s") -> Result:
    return Result(benchmark=benchmark, case=case, params={}, unit=unit, higher_is_better=True, status=status, reason=reason)


def telemetry_summary() -> TelemetrySummary:
    """What the telemetry session stores for a GPU case: its own summary of a synthetic 10 Hz trace
    (idle, a 10 s plateau with power-cap throttling, cooldown), so the report sees the real shape."""
    from gpubench.telemetry.phases import summarize
    from gpubench.telemetry.trace import Reading, Trace

    K = SeriesKey.parse
    readings = []
    for k in range(220):
        t = k / 10
        running = 5 <= t < 15
        power = (410.0 if running else 70.0) + 4 * math.sin(k / 3)
        temp = 33.0 + (min(t - 5, 10) * 3.2 if t >= 5 else 0) - (max(t - 15, 0) * 2.5)
        readings.append(Reading(t, {K("gpu0.power_w"): power, K("gpu0.temp_c"): temp, K("gpu0.sm_clock_mhz"): 1980.0 if running else 345.0}, ("sw_power_cap",) if running and k % 9 == 0 else ()))
    marks = {"baseline_start": 0.0, "start": 5.0, "end": 15.0, "cooldown_end": 22.0}
    return summarize(Trace({"samplers": ["nvml"]}, tuple(readings), marks), bytes_moved=2.5e10)


PROFILE = {
    "root": "/",
    "capabilities": [
        {"area": "kernel", "name": "kernel.release", "status": "yes", "evidence": [{"source": "/proc/sys/kernel/osrelease", "value": "6.8.0-45-generic"}], "why": "6.8 has every path gpubench measures", "fix": "", "details": {}},
        {"area": "iouring", "name": "iouring.enabled", "status": "partial", "evidence": [{"source": "/proc/sys/kernel/io_uring_disabled", "value": "1"}], "why": "io_uring is limited to the io_uring_group", "fix": "sysctl kernel.io_uring_disabled=0", "details": {}},
        {"area": "gpu", "name": "gpu.nvidia", "status": "no", "evidence": [{"source": "/proc/driver/nvidia/version", "value": "missing"}], "why": "no NVIDIA driver is loaded", "fix": "install the NVIDIA driver", "details": {}},
        {"area": "gds", "name": "gds.nvidia_fs", "status": "unknown", "evidence": [], "why": "cannot read /proc/driver/nvidia-fs without the module", "fix": "", "details": {}},
    ],
}

METADATA = {
    "hostname": "box-1",
    "kernel": {"release": "6.8.0-45-generic", "cmdline": "BOOT_IMAGE=/vmlinuz quiet iommu=pt"},
    "cpu": {"model": "AMD EPYC 7763 64-Core Processor", "count": 16, "governor": "performance", "smt": True},
    "memory_gib": 125.7,
    "numa_nodes": [0, 1],
    "gpus": [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "cuda": "12.4"}],
    "versions": {"python": "3.11.2", "gpubench": "0.1.0", "numpy": "1.26.4"},
}


def make_run(label: str = "kernel 6.8 baseline", *, slowdown: float = 1.0, seed: int = 0, status: RunStatus = RunStatus.COMPLETE) -> Run:
    results = (
        measured("uring", "read-4k-qd1", 410.0 / slowdown, 0.02, "MB/s", seed + 1, params={"bs": 4096, "qd": 1}),
        measured("uring", "read-128k-qd32", 5200.0 / slowdown, 0.03, "MB/s", seed + 2, params={"bs": 131072, "qd": 32}),
        measured("uring", "read-1m-qd32-direct", 6100.0 / slowdown, 0.015, "MB/s", seed + 3, params={"bs": 1048576, "qd": 32, "direct": True}),
        measured("uring", "latency-4k", 38.0 * slowdown, 0.05, "µs", seed + 4, higher_is_better=False, params={"bs": 4096}),
        not_run("uring", "read-4k-sqpoll", ResultStatus.WAIVED, "SQPOLL needs CAP_SYS_NICE on kernels before 5.11"),
        measured("memcpy", "h2d-pinned-256m", 24.1 / slowdown, 0.01, "GB/s", seed + 5, n=30, params={"size": "256M", "pinned": True}, telemetry=telemetry_summary()),
        not_run("memcpy", "p2p-gpu0-gpu1", ResultStatus.WAIVED, "needs two GPUs; this machine has one", unit="GB/s"),
        not_run("gds", "cufile-read-1m", ResultStatus.FAILED, "cuFileRead returned -5 (EIO)"),
    )
    return Run(
        uid=f"{seed:02x}" + "3f9c2b7a41d04e2b9a6e8d1c5b7f0a",
        label=label,
        started=STARTED + seed * 3600,
        ended=None if status is RunStatus.RUNNING else STARTED + seed * 3600 + 312.5,
        status=status,
        metadata=METADATA,
        profile=PROFILE,
        results=results,
        id=7 + seed,
    )


@pytest.fixture(scope="module")
def sample_run() -> Run:
    return make_run()


@pytest.fixture(scope="module")
def run_html(sample_run: Run) -> str:
    from gpubench.report.html import render_run_html

    return render_run_html(sample_run)


@pytest.fixture(scope="module")
def comparison_html(sample_comparison: Comparison) -> str:
    from gpubench.report.html import render_comparison_html

    return render_comparison_html(sample_comparison)


def rescaled(result: Result, factor: float) -> Result:
    samples = [v * factor for v in result.samples]
    return replace(result, samples=tuple(samples), summary=summarize(samples))


@pytest.fixture(scope="module")
def sample_comparison() -> Comparison:
    """Base vs a run 20% slower, except: one case faster, one unchanged, one capability lost."""
    base = make_run("kernel 6.8", seed=0)
    new = make_run("kernel 6.11-rc2", slowdown=1.2, seed=1)
    base_by_case = {r.case: r for r in base.results}
    changed = {
        "read-4k-qd1": lambda r: rescaled(r, 1.5),
        "h2d-pinned-256m": lambda r: rescaled(base_by_case[r.case], 1.01),
        "read-128k-qd32": lambda r: not_run(r.benchmark, r.case, ResultStatus.WAIVED, "io_uring_disabled=2 on this kernel"),
    }
    results = tuple(changed[r.case](r) if r.case in changed else r for r in new.results)
    capabilities = [dict(c, status="no", why="io_uring is disabled by sysctl") if c["name"] == "iouring.enabled" else c for c in PROFILE["capabilities"]]  # type: ignore[union-attr]
    metadata = dict(METADATA, kernel={"release": "6.11.0-rc2", "cmdline": METADATA["kernel"]["cmdline"]})  # type: ignore[index]
    new = replace(new, results=results, profile={"root": "/", "capabilities": capabilities}, metadata=metadata)
    return compare(base, new, threshold=0.05)


@pytest.fixture
def run_factory():
    """make_run(label, slowdown=, seed=, status=) for tests that need their own run."""
    return make_run


@pytest.fixture
def comparison_factory():
    """gpubench.results.compare.compare(base, new, threshold=) for tests that need their own comparison."""
    return compare
