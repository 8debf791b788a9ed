"""What the sample charts draw."""

from __future__ import annotations

from gpubench.report.charts import _round_lanes
from gpubench.results.model import Result, ResultStatus
from gpubench.results.stats import summarize


def test_sample_charts_put_each_round_in_its_own_row_first_on_top() -> None:
    samples = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    result = Result("memtier", "copy", {}, "GB/s", True, ResultStatus.OK, samples=samples,
                    sample_metrics=tuple({"round": r} for r in (1, 1, 2, 2, 3, 3)), summary=summarize(samples))
    lanes = _round_lanes(result)
    assert [values for values, _ in lanes] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    bands = [(min(offsets), max(offsets)) for _, offsets in lanes]
    assert all(upper[0] > lower[1] for upper, lower in zip(bands, bands[1:]))  # no overlap, first on top
    assert -0.32 <= bands[-1][0] and bands[0][1] <= 0.32
    (single,) = _round_lanes(Result("memtier", "copy", {}, "GB/s", True, ResultStatus.OK, samples=samples, summary=summarize(samples)))
    assert single[0] == list(samples)
