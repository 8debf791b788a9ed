"""Compare two runs case by case: medians, their ratio with a 95% confidence interval, a rank test.

A case is matched by (benchmark, case). The verdict is `better` or `worse` only when both hold:
the Mann-Whitney U test (two-sided) finds the two sample sets different at p < ALPHA, and the
ratio of medians moves beyond the threshold in the direction the unit calls good or bad. Anything
else is `same`: a real but tiny change is not worth failing a build over, and a large change the
test cannot tell from noise is not evidence.

With few samples the exact rank test cannot reach p < ALPHA at all (3 against 3 gives at best
p = 0.1): such a case is called `same`, and its note says why, rather than guessed at.

The confidence interval of the ratio is a percentile bootstrap: each side is resampled with
replacement BOOTSTRAP_ROUNDS times, and the 2.5% and 97.5% quantiles of new median / base median
are taken. The random generator has a fixed seed, so the same two runs always give the same
interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Sequence

from gpubench.results.model import WHOLE_BENCHMARK, CaseComparison, Comparison, Result, ResultStatus, Run, Verdict

ALPHA = 0.05
BOOTSTRAP_ROUNDS = 4000
BOOTSTRAP_SEED = 20240917


def compare(base: Run, new: Run, threshold: float = 0.05) -> Comparison:
    """Every case of either run, in the base run's order, then the new run's additions."""
    if not (0.0 <= threshold < 1.0) or math.isnan(threshold):
        raise ValueError(f"threshold must be a fraction in [0, 1), got {threshold}")
    base_by_key = _by_key(base.results)
    new_by_key = _with_whole_waivers(_by_key(new.results), base_by_key)
    keys = list(base_by_key) + [k for k in new_by_key if k not in base_by_key]
    cases = tuple(compare_case(base_by_key.get(k), new_by_key.get(k), threshold) for k in keys)
    return Comparison(base=base, new=new, threshold=threshold, cases=cases)


def _by_key(results: Sequence[Result]) -> dict[tuple[str, str], Result]:
    by_key: dict[tuple[str, str], Result] = {}
    for result in results:
        by_key.setdefault(result.key, result)  # a repeated case keeps its first result
    return by_key


def _with_whole_waivers(new: dict[tuple[str, str], Result], base: dict[tuple[str, str], Result]) -> dict[tuple[str, str], Result]:
    """A benchmark waived as a whole (case WHOLE_BENCHMARK) stands for each case it ran in the base
    run, so that those show as lost capabilities rather than as missing."""
    out = dict(new)
    for (bench, case), result in new.items():
        if case != WHOLE_BENCHMARK or result.status is not ResultStatus.WAIVED:
            continue
        covered = [key for key in base if key[0] == bench and key[1] != WHOLE_BENCHMARK and key not in new]
        for key in covered:
            out[key] = replace(result, case=key[1], unit=base[key].unit, higher_is_better=base[key].higher_is_better)
        if covered:
            del out[(bench, case)]
    return out


def compare_case(base: Result | None, new: Result | None, threshold: float) -> CaseComparison:
    if base is None and new is None:
        raise ValueError("nothing to compare")
    either = base or new
    assert either is not None

    def verdict(v: Verdict, note: str, **numbers: float | None) -> CaseComparison:
        return CaseComparison(
            benchmark=either.benchmark,
            case=either.case,
            unit=either.unit,
            higher_is_better=either.higher_is_better,
            verdict=v,
            base=base,
            new=new,
            note=note,
            **numbers,
        )

    if base is None:
        return verdict(Verdict.NOT_COMPARABLE, "only in the new run")
    if new is None:
        return verdict(Verdict.NOT_COMPARABLE, "missing from the new run")
    if base.status is ResultStatus.OK and new.status in (ResultStatus.WAIVED, ResultStatus.FAILED):
        why = f": {new.reason}" if new.reason else ""
        return verdict(Verdict.LOST, f"lost capability: ran in the base run, {new.status.value} in the new run{why}")
    for side, result in (("base", base), ("new", new)):
        if result.status is not ResultStatus.OK:
            why = f": {result.reason}" if result.reason else ""
            return verdict(Verdict.NOT_COMPARABLE, f"{result.status.value} in the {side} run{why}")
    if base.unit != new.unit:
        return verdict(Verdict.NOT_COMPARABLE, f"units differ: {base.unit} vs {new.unit}")
    if base.higher_is_better != new.higher_is_better:
        return verdict(Verdict.NOT_COMPARABLE, "the two runs disagree on whether higher is better")
    if base.params != new.params:
        return verdict(Verdict.NOT_COMPARABLE, "parameters differ: " + _params_difference(base.params, new.params))
    if not base.samples or not new.samples:
        side = "base" if not base.samples else "new"
        return verdict(Verdict.NOT_COMPARABLE, f"no samples in the {side} run")
    base_median = statistics.median(base.samples)
    new_median = statistics.median(new.samples)
    if base_median == 0:
        return verdict(Verdict.NOT_COMPARABLE, "the base median is zero: no ratio")

    ratio = new_median / base_median
    ci_low, ci_high = ratio_confidence_interval(base.samples, new.samples)
    p_value = rank_test(base.samples, new.samples)
    numbers = dict(ratio=ratio, ci_low=ci_low, ci_high=ci_high, p_value=p_value)

    change = ratio - 1.0
    improved = change > threshold if base.higher_is_better else change < -threshold
    degraded = change < -threshold if base.higher_is_better else change > threshold
    effect = f"{change:+.1%}"
    smallest_p = smallest_possible_p(len(base.samples), len(new.samples))
    if smallest_p >= ALPHA:
        return verdict(
            Verdict.SAME,
            f"too few samples to tell ({len(base.samples)} vs {len(new.samples)}: p can't go below {smallest_p:.2g})",
            **numbers,
        )
    if p_value < ALPHA and (improved or degraded):
        return verdict(Verdict.BETTER if improved else Verdict.WORSE, f"{effect} beyond the {threshold:.1%} threshold, p = {p_value:.3g}", **numbers)
    if p_value < ALPHA:
        return verdict(Verdict.SAME, f"significant, but within the {threshold:.1%} threshold", **numbers)
    return verdict(Verdict.SAME, "within the noise", **numbers)


def _params_difference(base: dict, new: dict) -> str:
    parts = []
    for key in sorted(set(base) | set(new), key=str):
        if base.get(key, "<unset>") != new.get(key, "<unset>"):
            parts.append(f"{key} {base.get(key, '<unset>')} -> {new.get(key, '<unset>')}")
    return ", ".join(parts)


def rank_test(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value; 1.0 when every value is tied (no evidence of a change)."""
    from scipy.stats import mannwhitneyu

    if len(set(base) | set(new)) == 1:
        return 1.0
    p = float(mannwhitneyu(list(base), list(new), alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def smallest_possible_p(n_base: int, n_new: int) -> float:
    """The smallest two-sided p-value the exact rank test can give for these sample counts:
    when the two sets do not overlap at all, 2 / C(n_base + n_new, n_base)."""
    return min(1.0, 2.0 / math.comb(n_base + n_new, n_base))


def ratio_confidence_interval(base: Sequence[float], new: Sequence[float]) -> tuple[float, float]:
    """95% percentile-bootstrap interval of median(new) / median(base), with a fixed seed."""
    import numpy as np

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    base_arr = np.asarray(base, dtype=float)
    new_arr = np.asarray(new, dtype=float)
    base_medians = np.median(rng.choice(base_arr, size=(BOOTSTRAP_ROUNDS, base_arr.size)), axis=1)
    new_medians = np.median(rng.choice(new_arr, size=(BOOTSTRAP_ROUNDS, new_arr.size)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = new_medians / base_medians
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return (math.nan, math.nan)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return float(low), float(high)
