from __future__ import annotations

import random
import statistics

import pytest

from gpubench.results import stats
from gpubench.results.stats import median_ci_coverage, median_ci_ranks, summarize


def test_single_sample_is_its_own_summary() -> None:
    s = summarize([42.0])
    assert (s.n, s.median, s.mean, s.stdev, s.q1, s.q3, s.ci_low, s.ci_high, s.minimum, s.maximum) == (
        1, 42.0, 42.0, 0.0, 42.0, 42.0, 42.0, 42.0, 42.0, 42.0,
    )


def test_known_values() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s.n == 5
    assert s.median == 3.0
    assert s.mean == 3.0
    assert s.stdev == pytest.approx(statistics.stdev([1, 2, 3, 4, 5]))
    assert (s.q1, s.q3) == (2.0, 4.0)
    assert (s.minimum, s.maximum) == (1.0, 5.0)
    # n = 5 is too few for a 95% order-statistics interval: the documented fallback is the range
    assert (s.ci_low, s.ci_high) == (1.0, 5.0)


def test_order_statistic_ranks_match_binomial_tables() -> None:
    # classic table values for the 95% distribution-free CI of the median
    assert median_ci_ranks(6) == (1, 6)
    assert median_ci_ranks(9) == (2, 8)
    assert median_ci_ranks(10) == (2, 9)
    assert median_ci_ranks(20) == (6, 15)
    assert median_ci_ranks(30) == (10, 21)
    for n in range(6, 200):
        assert median_ci_coverage(n) >= 0.95
        low, _ = median_ci_ranks(n)
        # one rank further in would drop below 95%: the interval is the tightest with full coverage
        tighter = 1.0 - 2.0 * sum(__import__("math").comb(n, k) for k in range(low + 1)) / 2**n
        assert tighter < 0.95


def test_small_n_falls_back_to_range_and_reports_true_coverage() -> None:
    for n in range(2, 6):
        assert median_ci_ranks(n) == (1, n)
        assert median_ci_coverage(n) == pytest.approx(1 - 2 * 0.5**n)


def test_normal_approximation_agrees_with_exact_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    exact = [median_ci_ranks(n) for n in (400, 777, 1000)]
    monkeypatch.setattr(stats, "_EXACT_BINOMIAL_LIMIT", 10)
    approx = [median_ci_ranks(n) for n in (400, 777, 1000)]
    for (el, eh), (al, ah) in zip(exact, approx):
        assert abs(el - al) <= 1 and abs(eh - ah) <= 1


def test_interval_brackets_median_and_is_unsorted_input_safe() -> None:
    rng = random.Random(7)
    data = [rng.lognormvariate(0, 0.3) for _ in range(50)]
    s = summarize(data)
    ordered = sorted(data)
    low, high = median_ci_ranks(50)
    assert (s.ci_low, s.ci_high) == (ordered[low - 1], ordered[high - 1])
    assert s.ci_low <= s.median <= s.ci_high
    assert s.q1 <= s.median <= s.q3


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_rejects_empty_and_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(bad)
