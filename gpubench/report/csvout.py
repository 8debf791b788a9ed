"""A run's results as CSV: one row per result, summary columns, raw samples in one JSON column."""

from __future__ import annotations

import csv
import io
import json

from gpubench.results.model import Run

COLUMNS = (
    "run_uid", "run_label", "benchmark", "case", "params", "unit", "higher_is_better", "status", "reason",
    "n", "median", "ci_low", "ci_high", "mean", "stdev", "q1", "q3", "min", "max", "started", "ended", "samples",
)


def run_csv(run: Run) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in run.results:
        s = result.summary
        stats = (
            [s.n, s.median, s.ci_low, s.ci_high, s.mean, s.stdev, s.q1, s.q3, s.minimum, s.maximum]
            if s
            else [len(result.samples)] + [""] * 9
        )
        writer.writerow(
            [
                run.uid,
                run.label,
                result.benchmark,
                result.case,
                json.dumps(result.params, sort_keys=True),
                result.unit,
                str(result.higher_is_better).lower(),
                result.status.value,
                result.reason,
                *(repr(v) if isinstance(v, float) else v for v in stats),
                repr(result.started),
                repr(result.ended),
                json.dumps(list(result.samples)),
            ]
        )
    return out.getvalue()
