"""Summary statistics of one result's raw samples.

The confidence interval of the median is distribution-free: the interval between two order
statistics x(l) <= median <= x(n+1-l), with l the largest index for which the binomial
probability of fewer than l samples falling below the true median is at most 2.5%. Its coverage
is therefore at least 95% for any continuous distribution, with no assumption of normality.

That interval exists from n = 6 on (the chance that all n samples fall on one side of the median
is 2 * 0.5**n, below 5% only from n = 6). For n = 2..5 the interval falls back to [min, max],
whose coverage is 1 - 2 * 0.5**n (50% at n = 2, 94% at n = 5): the widest statement the data
can support, honest about being short of 95%. For n = 1 it is the single value.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from gpubench.results.model import Summary

CONFIDENCE = 0.95
# Beyond this many samples the binomial tail is computed with the normal approximation,
# which is then accurate to well under one rank.
_EXACT_BINOMIAL_LIMIT = 1000


def summarize(values: Sequence[float]) -> Summary:
    """Median, mean, spread, quartiles and a 95% confidence interval of the median."""
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("cannot summarise an empty set of samples")
    if any(not math.isfinite(v) for v in data):
        raise ValueError("samples must be finite numbers")
    n = len(data)
    if n == 1:
        q1 = q3 = data[0]
    else:
        q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    low, high = median_ci_ranks(n)
    return Summary(
        n=n,
        median=statistics.median(data),
        mean=statistics.fmean(data),
        stdev=statistics.stdev(data) if n > 1 else 0.0,
        q1=q1,
        q3=q3,
        ci_low=data[low - 1],
        ci_high=data[high - 1],
        minimum=data[0],
        maximum=data[-1],
    )


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """1-based ranks (l, u) of the order statistics bounding the median's confidence interval.

    Falls back to (1, n), the sample range, when n is too small for the requested coverage."""
    if n < 1:
        raise ValueError("n must be at least 1")
    tail = (1.0 - confidence) / 2.0
    if n > _EXACT_BINOMIAL_LIMIT:
        # P(X <= l-1) <= tail with X ~ Binomial(n, 1/2) ~ Normal(n/2, sqrt(n)/2), continuity corrected
        z = statistics.NormalDist().inv_cdf(1.0 - tail)
        low = max(1, math.floor(n / 2.0 - z * math.sqrt(n) / 2.0 + 0.5))
        return low, n + 1 - low
    total = 2**n
    cumulative = 0
    low = 0  # largest l with P(X <= l-1) <= tail
    for k in range(n + 1):
        cumulative += math.comb(n, k)
        if cumulative / total <= tail:
            low = k + 1
        else:
            break
    if low == 0:
        return 1, n
    return low, n + 1 - low


def median_ci_coverage(n: int, confidence: float = CONFIDENCE) -> float:
    """The exact coverage of the interval median_ci_ranks(n) gives (for continuous data)."""
    low, _ = median_ci_ranks(n, confidence)
    if n > _EXACT_BINOMIAL_LIMIT:
        return confidence
    below = sum(math.comb(n, k) for k in range(low)) / 2**n
    return 1.0 - 2.0 * below
