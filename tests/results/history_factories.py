"""Runs and results for the history tests, built the way the run pipeline builds them."""

from __future__ import annotations

import random
import uuid
from typing import Any

from gpubench.results.model import Result, ResultStatus, Run, RunStatus
from gpubench.results.stats import summarize
from gpubench.telemetry.summary import TelemetryStatus, TelemetrySummary


def build_result(
    case: str = "randread-4k",
    samples: tuple[float, ...] = (100.0, 101.0, 99.0, 100.5, 99.5),
    status: ResultStatus = ResultStatus.OK,
    benchmark: str = "uring",
    **overrides: Any,
) -> Result:
    fields: dict[str, Any] = dict(
        benchmark=benchmark,
        case=case,
        params={"block_size": 4096, "queue_depth": 32, "direct": True},
        unit="MiB/s",
        higher_is_better=True,
        status=status,
        reason="" if status is ResultStatus.OK else "no O_DIRECT on tmpfs",
        samples=samples if status is ResultStatus.OK else (),
        sample_metrics=tuple({"iops": s * 256.0} for s in samples) if status is ResultStatus.OK else (),
        extra={"engine": "io_uring"},
        summary=summarize(samples) if status is ResultStatus.OK and samples else None,
        telemetry=TelemetrySummary(samplers=("hwmon",), status=TelemetryStatus.OK, max_temp_c=51.5),
        started=1700000000.25,
        ended=1700000003.5,
    )
    fields.update(overrides)
    return Result(**fields)


def build_run(results: tuple[Result, ...] = (), label: str = "kernel 6.8", status: RunStatus = RunStatus.COMPLETE, **overrides: Any) -> Run:
    fields: dict[str, Any] = dict(
        uid=uuid.uuid4().hex,
        label=label,
        started=1700000000.0,
        ended=1700000100.0,
        status=status,
        metadata={"kernel": "6.8.0-45-generic", "cpu_model": "AMD EPYC 7763", "cpu_count": 16, "packages": {"numpy": "2.1"}},
        profile={"root": "/", "capabilities": [{"name": "io_uring", "status": "yes"}]},
        results=results,
    )
    fields.update(overrides)
    return Run(**fields)


def noisy(center: float, n: int = 12, spread: float = 0.01, seed: int = 1) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(center * (1.0 + rng.uniform(-spread, spread)) for _ in range(n))
