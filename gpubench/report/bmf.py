"""A run in Bencher's metric format (BMF JSON), for `bencher run --adapter json`: one entry per
benchmark and case ("iouring/randread-4k-qd32-j1-direct"), holding one measure named after the
result's unit ("mb-per-s", "gb-per-s", "ns", "us"), with the median as `value` and the bounds of
its 95% confidence interval as `lower_value` and `upper_value`.

Bencher creates a measure named by a slug it does not know yet the first time it sees it. Only
results with samples appear (BMF has no word for waived or failed: JUnit and the JSON export carry
those). A repeated case keeps its first result, as compare does. Whether a higher value is better
is for the measure's thresholds in Bencher to say: a lower boundary on the throughput measures,
an upper one on the latency ones.
"""

from __future__ import annotations

import re

from gpubench.results.jsonio import json_text
from gpubench.results.model import ResultStatus, Run

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def measure_slug(unit: str) -> str:
    """'MB/s' -> 'mb-per-s', 'µs' -> 'us': a Bencher measure slug (lowercase letters, digits, hyphens)."""
    text = unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("/", " per ")
    return _NOT_SLUG.sub("-", text).strip("-") or "value"


def run_bmf(run: Run) -> str:
    document: dict[str, dict[str, dict[str, float]]] = {}
    for result in run.results:
        name = f"{result.benchmark}/{result.case}"
        if name in document or result.status is not ResultStatus.OK or result.summary is None:
            continue
        s = result.summary
        document[name] = {measure_slug(result.unit): {"value": s.median, "lower_value": s.ci_low, "upper_value": s.ci_high}}
    return json_text(document)
