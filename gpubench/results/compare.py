"""Compare two sides (one run or several each) case by case: their levels, the ratio with a 95%
confidence interval, a p-value and a verdict.

A case is matched by (benchmark, case); run with other parameters or units on the two sides it is
not comparable. The verdict is `better` or `worse` only when both hold: the test finds the sides
different at p < ALPHA, and the ratio moves beyond the threshold in the direction the unit calls
good or bad. Anything else is `same`: a real but tiny change is not worth failing a build over,
and a large change the test cannot tell from noise is not evidence. A case that ran in the base
and was waived or failed in the new side (or in one of its runs) is a lost capability.

gpubench measures every case in several rounds spread over a run (gpubench.bench.core.runner), and a
side may hold several runs. Where a case's samples come in groups, the rounds of its one run, or
the runs of a side that holds several (each run one group: the rounds of one run lie closer in
time than runs do), groups and not samples are the unit: samples taken back to back cannot show
how far the machine moves between rounds or runs, which on a shared host can be far more than
their own spread. The ratio is that of the geometric means of the group medians; the test is
Student's t on the logarithms of the group medians (the two sides share one variance: same
machine, same noise; it needs three groups in all); the 95% interval is the t interval of that
difference. The p-values of these cases are adjusted with Holm's step-down method over all the
cases of the comparison so tested, so that the chance of calling anything better or worse when
nothing changed stays near ALPHA for the whole comparison, not per case: what a CI gate needs.

Samples decide where there are no groups (runs stored without rounds) or where the group medians
of each side are all equal (a coarse metric: no spread between groups to test against): the
Mann-Whitney U test (two-sided) over the samples, the ratio of their medians, and a percentile
bootstrap interval (each side resampled with replacement BOOTSTRAP_ROUNDS times, with a fixed
seed, so the same two runs always give the same interval). With few samples the exact rank test
cannot reach p < ALPHA at all (3 against 3 gives at best p = 0.1): such a case is called `same`,
and its note says why, rather than guessed at.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from gpubench.results.model import WHOLE_BENCHMARK, CaseComparison, Comparison, Result, ResultStatus, Run, Verdict
from gpubench.results.stats import summarize

ALPHA = 0.05
BOOTSTRAP_ROUNDS = 4000
BOOTSTRAP_SEED = 20240917


def compare(base: Run | Sequence[Run], new: Run | Sequence[Run], threshold: float = 0.05) -> Comparison:
    """Every case of either side, in the base side's order, then the new side's additions."""
    if not (0.0 <= threshold < 1.0) or math.isnan(threshold):
        raise ValueError(f"threshold must be a fraction in [0, 1), got {threshold}")
    base_runs, new_runs = _runs(base), _runs(new)
    base_sides = [_by_key(run.results) for run in base_runs]
    base_keys: dict[tuple[str, str], Result] = {}
    for side in base_sides:
        for key, result in side.items():
            base_keys.setdefault(key, result)
    new_sides = [_with_whole_waivers(_by_key(run.results), base_keys) for run in new_runs]
    keys = list(base_keys)
    for side in new_sides:
        keys += [k for k in side if k not in keys]
    pools = [
        (_pool([side.get(key) for side in base_sides], base_runs, "base"), _pool([side.get(key) for side in new_sides], new_runs, "new"))
        for key in keys
    ]
    cases = [compare_case(base_pool, new_pool, threshold) for base_pool, new_pool in pools]
    grouped = [i for i, case in enumerate(cases) if case.p_value is not None and case.units]
    adjusted = holm([cases[i].p_value for i in grouped])  # type: ignore[misc]
    for i, p_value in zip(grouped, adjusted):
        cases[i] = _judge_groups(cases[i], p_value, len(grouped), threshold)
    return Comparison(base_side=base_runs, new_side=new_runs, threshold=threshold, cases=tuple(cases))


def _runs(side: Run | Sequence[Run]) -> tuple[Run, ...]:
    runs = (side,) if isinstance(side, Run) else tuple(side)
    if not runs:
        raise ValueError("each side of a comparison needs at least one run")
    return runs


@dataclass(frozen=True)
class Pooled:
    """One side of a case: a single run's result, or several runs' results as one, and the groups
    its samples came in (the rounds of its runs, or the runs themselves) when there are several."""

    result: Result | None
    groups: tuple[tuple[float, ...], ...] = ()
    units: str = ""  # what a group is: "rounds" or "runs"
    problem: str = ""  # why these runs cannot stand together
    lost: tuple[tuple[str, Result], ...] = ()  # where only some of its runs ran the case: the others (run, result)

    @property
    def medians(self) -> tuple[float, ...]:
        """Each group's median (no groups: the one median of all samples)."""
        groups = self.groups or ((self.result.samples,) if self.result is not None and self.result.samples else ())
        return tuple(statistics.median(g) for g in groups)


def _groups(results: Sequence[Result]) -> tuple[tuple[tuple[float, ...], ...], str]:
    """Several runs: each run is a group (the rounds of one run lie closer in time than runs do,
    so they would understate the noise between runs). One run: its rounds, if it has several."""
    if len(results) > 1:
        return tuple(r.samples for r in results), "runs"
    rounds = results[0].by_round()
    return (rounds, "rounds") if len(rounds) > 1 else ((), "")


@dataclass(frozen=True)
class _SideCase:
    """One case on one side, before pooling: each run's result (None where it lacks the case)."""

    side: str  # "base" or "new"
    names: tuple[str, ...]  # how each run is named to the user
    results: tuple[Result | None, ...]

    @property
    def present(self) -> list[Result]:
        return [r for r in self.results if r is not None]

    def named(self) -> list[tuple[str, Result]]:
        return [(name, r) for name, r in zip(self.names, self.results) if r is not None]


def _missing_runs(facts: _SideCase) -> Pooled | None:
    missing = [name for name, r in zip(facts.names, facts.results) if r is None]
    if not missing:
        return None
    return Pooled(facts.present[0], problem=f"missing from {facts.side} run {', '.join(missing)}")


def _mixed_statuses(facts: _SideCase) -> Pooled | None:
    statuses: dict[str, list[str]] = {}
    for name, r in facts.named():
        statuses.setdefault(r.status.value, []).append(name)
    if len(statuses) < 2:
        return None
    ran = next((r for r in facts.present if r.status is ResultStatus.OK), facts.present[0])
    lost = tuple((name, r) for name, r in facts.named() if r.status in (ResultStatus.WAIVED, ResultStatus.FAILED))
    problem = f"the {facts.side} runs disagree: " + "; ".join(f"{s} in {', '.join(n)}" for s, n in statuses.items())
    return Pooled(ran, problem=problem, lost=lost)


def _ran_differently(facts: _SideCase) -> Pooled | None:
    (first_name, first), *others = facts.named()
    for name, r in others:
        if (r.params, r.unit, r.higher_is_better) != (first.params, first.unit, first.higher_is_better):
            how = _params_difference(first.params, r.params)
            return Pooled(first, problem=f"{facts.side} runs {first_name} and {name} ran this case differently: {how}")
    return None


def _not_measured(facts: _SideCase) -> Pooled | None:
    first = facts.present[0]
    if first.status is not ResultStatus.OK:
        return Pooled(first)
    empty = [name for name, r in facts.named() if not r.samples]
    return Pooled(first, problem=f"no samples in {facts.side} run {', '.join(empty)}") if empty else None


# Why the runs of one side cannot stand together as one, in the order they are looked for.
_POOL_OBSTACLES: tuple[Callable[[_SideCase], Pooled | None], ...] = (_missing_runs, _mixed_statuses, _ran_differently, _not_measured)


def _pool(results: list[Result | None], runs: Sequence[Run], side: str) -> Pooled:
    if len(results) == 1:
        result = results[0]
        if result is None or result.status is not ResultStatus.OK or not result.samples:
            return Pooled(result)
        return Pooled(result, *_groups([result]))
    facts = _SideCase(side, tuple(run.ident for run in runs), tuple(results))
    present = facts.present
    if not present:
        return Pooled(None)
    for obstacle in _POOL_OBSTACLES:
        found = obstacle(facts)
        if found is not None:
            return found
    samples = tuple(v for r in present for v in r.samples)
    pooled = replace(
        present[0],
        samples=samples,
        sample_metrics=tuple(m for r in present for m in r.sample_metrics),
        summary=summarize(samples),
        started=min(r.started for r in present),
        ended=max(r.ended for r in present),
    )
    return Pooled(pooled, *_groups(present))


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


@dataclass(frozen=True)
class _Unjudged:
    """Why a case gets no ratio: its verdict and note (and, for a capability lost in some of the
    new runs, the result that lost it)."""

    verdict: Verdict
    note: str
    new: Result | None = None


def _reason(result: Result) -> str:
    return f": {result.reason}" if result.reason else ""


def _only_in_one_side(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    if base_pool.result is None:
        return _Unjudged(Verdict.NOT_COMPARABLE, "only in the new run")
    if new_pool.result is None:
        return _Unjudged(Verdict.NOT_COMPARABLE, "missing from the new run")
    return None


def _lost_in_some_new_runs(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    base = base_pool.result
    if base is None or base.status is not ResultStatus.OK or base_pool.problem or not new_pool.lost:
        return None
    where = "; ".join(f"{r.status.value} in new run {name}{_reason(r)}" for name, r in new_pool.lost)
    return _Unjudged(Verdict.LOST, f"lost capability: ran in the base, {where}", new=new_pool.lost[0][1])


def _side_problem(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    problem = base_pool.problem or new_pool.problem
    return _Unjudged(Verdict.NOT_COMPARABLE, problem) if problem else None


def _lost_in_new(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    base, new = base_pool.result, new_pool.result
    assert base is not None and new is not None
    if base.status is ResultStatus.OK and new.status in (ResultStatus.WAIVED, ResultStatus.FAILED):
        return _Unjudged(Verdict.LOST, f"lost capability: ran in the base run, {new.status.value} in the new run{_reason(new)}")
    return None


def _not_ok(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    for side, result in (("base", base_pool.result), ("new", new_pool.result)):
        assert result is not None
        if result.status is not ResultStatus.OK:
            return _Unjudged(Verdict.NOT_COMPARABLE, f"{result.status.value} in the {side} run{_reason(result)}")
    return None


def _ran_otherwise(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    base, new = base_pool.result, new_pool.result
    assert base is not None and new is not None
    if base.unit != new.unit:
        return _Unjudged(Verdict.NOT_COMPARABLE, f"units differ: {base.unit} vs {new.unit}")
    if base.higher_is_better != new.higher_is_better:
        return _Unjudged(Verdict.NOT_COMPARABLE, "the two runs disagree on whether higher is better")
    if base.params != new.params:
        return _Unjudged(Verdict.NOT_COMPARABLE, "parameters differ: " + _params_difference(base.params, new.params))
    return None


def _no_positive_medians(base_pool: Pooled, new_pool: Pooled) -> _Unjudged | None:
    base, new = base_pool.result, new_pool.result
    assert base is not None and new is not None
    if not base.samples or not new.samples:
        return _Unjudged(Verdict.NOT_COMPARABLE, f"no samples in the {'base' if not base.samples else 'new'} run")
    base_median, new_median = statistics.median(base.samples), statistics.median(new.samples)
    if base_median <= 0 or new_median <= 0:
        return _Unjudged(Verdict.NOT_COMPARABLE, f"a ratio needs positive medians (base {base_median:g}, new {new_median:g})")
    return None


# Why a case cannot be measured, in the order it is looked for: the first that applies decides.
_CASE_OBSTACLES: tuple[Callable[[Pooled, Pooled], _Unjudged | None], ...] = (
    _only_in_one_side, _lost_in_some_new_runs, _side_problem, _lost_in_new, _not_ok, _ran_otherwise, _no_positive_medians,
)


def compare_case(base_pool: Pooled, new_pool: Pooled, threshold: float) -> CaseComparison:
    """One case. Where groups (rounds or runs) are the unit, it is measured but not judged: its
    p-value is the group test's own, which compare() adjusts over all such cases before judging."""
    base, new = base_pool.result, new_pool.result
    either = base or new
    if either is None:
        raise ValueError("nothing to compare")
    case = CaseComparison(benchmark=either.benchmark, case=either.case, unit=either.unit, higher_is_better=either.higher_is_better,
                          verdict=Verdict.SAME, base=base, new=new)
    for obstacle in _CASE_OBSTACLES:
        unjudged = obstacle(base_pool, new_pool)
        if unjudged is not None:
            return replace(case, verdict=unjudged.verdict, note=unjudged.note, new=unjudged.new or new)
    assert base is not None and new is not None
    if "runs" in (base_pool.units, new_pool.units):  # runs against runs: one run's rounds count as that run
        base_pool, new_pool = (replace(p, groups=(), units="") if p.units == "rounds" else p for p in (base_pool, new_pool))
    if (base_pool.groups or new_pool.groups) and all(m > 0 for m in base_pool.medians + new_pool.medians) and _groups_vary(base_pool, new_pool):
        return _over_groups(case, base_pool, new_pool)  # judged by compare(), over all such cases
    return _over_samples(case, base.samples, new.samples, threshold)


def _over_samples(case: CaseComparison, base: Sequence[float], new: Sequence[float], threshold: float) -> CaseComparison:
    """Samples as the unit: the ratio of medians, a bootstrap interval, the rank test."""
    ci_low, ci_high = ratio_confidence_interval(base, new)
    measured = replace(case, ratio=statistics.median(new) / statistics.median(base), ci_low=ci_low, ci_high=ci_high,
                       p_value=rank_test(base, new))
    smallest_p = smallest_possible_p(len(base), len(new))
    if smallest_p >= ALPHA:
        return replace(measured, note=f"too few samples to tell ({len(base)} vs {len(new)}: p can't go below {smallest_p:.2g})")
    return _judge(measured, threshold, "within the noise", "")


def _groups_vary(*pools: Pooled) -> bool:
    """Whether the group medians of some side differ: where every group of each side has the same
    median, there is no spread between groups to test against, and the samples have to decide."""
    return any(len(set(pool.medians)) > 1 for pool in pools)


def _over_groups(case: CaseComparison, base_pool: Pooled, new_pool: Pooled) -> CaseComparison:
    """Rounds (or runs) as the unit: Student's t on the logarithms of their medians."""
    from scipy import stats

    base_logs = [math.log(m) for m in base_pool.medians]
    new_logs = [math.log(m) for m in new_pool.medians]
    difference = statistics.fmean(new_logs) - statistics.fmean(base_logs)
    freedom = len(base_logs) + len(new_logs) - 2  # >= 1: one side has several groups
    squares = sum((x - statistics.fmean(base_logs)) ** 2 for x in base_logs) + sum((x - statistics.fmean(new_logs)) ** 2 for x in new_logs)
    error = math.sqrt(squares / freedom) * math.sqrt(1 / len(base_logs) + 1 / len(new_logs))  # > 0: _groups_vary
    p_value = float(2 * stats.t.sf(abs(difference) / error, freedom))
    margin = float(stats.t.ppf(0.975, freedom)) * error
    return replace(
        case,
        units="runs" if "runs" in (base_pool.units, new_pool.units) else "rounds",
        base_medians=base_pool.medians,
        new_medians=new_pool.medians,
        ratio=math.exp(difference),
        ci_low=math.exp(difference - margin),
        ci_high=math.exp(difference + margin),
        p_value=p_value,
    )


def _judge_groups(case: CaseComparison, p_value: float, family: int, threshold: float) -> CaseComparison:
    """The verdict of a case tested over groups, with its p-value adjusted over `family` cases."""
    case = replace(case, p_value=p_value)
    how = f" ({len(case.base_medians)} vs {len(case.new_medians)} {case.units}"
    how += f", Holm-adjusted over {family} cases)" if family > 1 else ")"
    return _judge(case, threshold, f"within the noise between {case.units}{how}", how)


def _judge(case: CaseComparison, threshold: float, noise: str, how: str) -> CaseComparison:
    assert case.ratio is not None and case.p_value is not None
    change = case.ratio - 1.0
    improved = change > threshold if case.higher_is_better else change < -threshold
    degraded = change < -threshold if case.higher_is_better else change > threshold
    if case.p_value < ALPHA and (improved or degraded):
        verdict = Verdict.BETTER if improved else Verdict.WORSE
        return replace(case, verdict=verdict, note=f"{change:+.1%} beyond the {threshold:.1%} threshold, p = {case.p_value:.3g}{how}")
    if case.p_value < ALPHA:
        return replace(case, verdict=Verdict.SAME, note=f"significant, but within the {threshold:.1%} threshold")
    return replace(case, verdict=Verdict.SAME, note=noise)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the smallest p times m, the next times m - 1, ..., kept
    non-decreasing in that order and at most 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


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
