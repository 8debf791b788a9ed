from __future__ import annotations

import random

import pytest
from history_factories import build_result, build_run, noisy

from gpubench.results.compare import compare, holm, ratio_confidence_interval, smallest_possible_p
from gpubench.results.model import Result, ResultStatus, Run, RunStatus, Verdict
from gpubench.results.stats import summarize


def _one(base_result, new_result, threshold: float = 0.05):
    comparison = compare(build_run((base_result,)), build_run((new_result,)), threshold)
    (case,) = comparison.cases
    return case


def test_twenty_percent_slowdown_with_small_spread_is_worse() -> None:
    case = _one(build_result(samples=noisy(1000.0, seed=1)), build_result(samples=noisy(800.0, seed=2)))
    assert case.verdict is Verdict.WORSE
    assert case.ratio == pytest.approx(0.8, abs=0.02)
    assert case.ci_low < case.ratio < case.ci_high < 0.9
    assert case.p_value < 0.001


def test_lower_is_better_units_flip_the_direction() -> None:
    slower = _one(
        build_result(samples=noisy(10.0, seed=3), unit="us", higher_is_better=False),
        build_result(samples=noisy(12.0, seed=4), unit="us", higher_is_better=False),
    )
    assert slower.verdict is Verdict.WORSE
    faster = _one(
        build_result(samples=noisy(10.0, seed=3), unit="us", higher_is_better=False),
        build_result(samples=noisy(8.0, seed=4), unit="us", higher_is_better=False),
    )
    assert faster.verdict is Verdict.BETTER


def test_improvement_is_better() -> None:
    assert _one(build_result(samples=noisy(100.0, seed=5)), build_result(samples=noisy(130.0, seed=6))).verdict is Verdict.BETTER


def test_noise_from_one_distribution_is_same() -> None:
    rng = random.Random(11)
    base = tuple(rng.gauss(500.0, 25.0) for _ in range(20))
    new = tuple(rng.gauss(500.0, 25.0) for _ in range(20))
    case = _one(build_result(samples=base), build_result(samples=new))
    assert case.verdict is Verdict.SAME
    assert case.p_value > 0.05
    assert case.ci_low < 1.0 < case.ci_high
    assert "within the noise" in case.note


def test_significant_but_below_threshold_is_same() -> None:
    case = _one(build_result(samples=noisy(1000.0, spread=0.001, seed=1)), build_result(samples=noisy(980.0, spread=0.001, seed=2)))
    assert case.p_value < 0.05
    assert case.verdict is Verdict.SAME
    assert "within the 5.0% threshold" in case.note
    # the same change counts with a smaller threshold
    assert _one(case.base, case.new, threshold=0.01).verdict is Verdict.WORSE


def test_too_few_samples_for_the_rank_test_is_same_and_said() -> None:
    case = _one(build_result(samples=(100.0, 101.0, 99.0)), build_result(samples=(50.0, 51.0, 49.0)))
    assert smallest_possible_p(3, 3) == pytest.approx(0.1)
    assert case.verdict is Verdict.SAME
    assert case.ratio == pytest.approx(0.5)
    assert "too few samples" in case.note


def test_params_or_unit_mismatch_is_not_comparable() -> None:
    base = build_result(samples=noisy(100.0))
    other_params = build_result(samples=noisy(50.0), params={**base.params, "queue_depth": 1})
    case = _one(base, other_params)
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert "queue_depth 32 -> 1" in case.note
    assert case.ratio is None
    case = _one(base, build_result(samples=noisy(50.0), unit="GiB/s"))
    assert case.verdict is Verdict.NOT_COMPARABLE and "units differ" in case.note


def test_ok_to_waived_is_a_lost_capability() -> None:
    case = _one(build_result(samples=noisy(100.0)), build_result(status=ResultStatus.WAIVED, reason="io_uring disabled by sysctl"))
    assert case.verdict is Verdict.LOST
    assert "lost capability" in case.note and "io_uring disabled by sysctl" in case.note


def test_waived_failed_or_missing_sides_are_not_comparable() -> None:
    ok = build_result("a", samples=noisy(100.0))
    assert _one(build_result("a", status=ResultStatus.WAIVED), ok).verdict is Verdict.NOT_COMPARABLE
    assert _one(build_result("a", status=ResultStatus.FAILED, reason="EIO"), ok).verdict is Verdict.NOT_COMPARABLE
    comparison = compare(build_run((build_result("only-base"),)), build_run((build_result("only-new"),)))
    assert [(c.case, c.verdict, c.note) for c in comparison.cases] == [
        ("only-base", Verdict.NOT_COMPARABLE, "missing from the new run"),
        ("only-new", Verdict.NOT_COMPARABLE, "only in the new run"),
    ]


def test_a_ratio_of_medians_that_are_not_positive_is_not_comparable() -> None:
    negative = _one(build_result("a", samples=(-5.0, -5.1, -4.9)), build_result("a", samples=(-11.0, -11.1, -10.9)))
    assert negative.verdict is Verdict.NOT_COMPARABLE and negative.note == "a ratio needs positive medians (base -5, new -11)"
    zero = _one(build_result("a", samples=(0.0, 0.0, 0.0)), build_result("a", samples=noisy(10.0)))
    assert zero.verdict is Verdict.NOT_COMPARABLE and zero.ratio is None


def test_regressions_collects_worse_and_lost() -> None:
    base = build_run((build_result("a", samples=noisy(100.0, seed=1)), build_result("b", samples=noisy(100.0, seed=2)), build_result("c")))
    new = build_run(
        (
            build_result("a", samples=noisy(70.0, seed=3)),
            build_result("b", status=ResultStatus.WAIVED),
            build_result("c"),
        )
    )
    comparison = compare(base, new)
    assert [c.case for c in comparison.regressions] == ["a", "b"]


def test_bootstrap_interval_is_reproducible() -> None:
    base, new = noisy(100.0, seed=8), noisy(90.0, seed=9)
    assert ratio_confidence_interval(base, new) == ratio_confidence_interval(base, new)


def test_threshold_is_validated() -> None:
    with pytest.raises(ValueError):
        compare(build_run(), build_run(), threshold=-0.1)


def test_a_benchmark_waived_whole_is_a_lost_capability_for_each_case_it_ran():
    from dataclasses import replace as _replace

    from gpubench.bench.core.runner import waived_result
    from gpubench.results.model import Verdict

    samples = (10.0, 10.5, 9.8, 10.1, 10.3)
    ok = Result("memcpy", "h2d-pinned", {"size": 1}, "GB/s", True, ResultStatus.OK, samples=samples, summary=summarize(samples))
    base = Run("a" * 32, "", 0.0, 1.0, RunStatus.COMPLETE, {}, {}, (ok, _replace(ok, case="d2h-pinned")))
    new = _replace(base, uid="b" * 32, results=(waived_result("memcpy", "no NVIDIA GPU found"),))
    cmp = compare(base, new)
    assert [(c.case, c.verdict) for c in cmp.cases] == [("h2d-pinned", Verdict.LOST), ("d2h-pinned", Verdict.LOST)]
    assert "no NVIDIA GPU found" in cmp.cases[0].note
    assert len(cmp.regressions) == 2


def test_ok_then_failed_is_a_regression():
    from dataclasses import replace as _replace

    from gpubench.results.model import Verdict

    samples = (10.0, 10.5, 9.8, 10.1, 10.3)
    ok = Result("iouring", "read", {}, "MB/s", True, ResultStatus.OK, samples=samples, summary=summarize(samples))
    base = Run("a" * 32, "", 0.0, 1.0, RunStatus.COMPLETE, {}, {}, (ok,))
    failed = _replace(ok, status=ResultStatus.FAILED, reason="verify mismatch", samples=(), summary=None)
    cmp = compare(base, _replace(base, uid="b" * 32, results=(failed,)))
    assert cmp.cases[0].verdict is Verdict.LOST and "failed in the new run: verify mismatch" in cmp.cases[0].note
    assert cmp.regressions


def _runs(*sample_sets: tuple[float, ...], case: str = "randread-4k") -> list[Run]:
    return [build_run((build_result(case, samples=samples),), id=i) for i, samples in enumerate(sample_sets, start=1)]


def _sides(base_sets, new_sets, threshold: float = 0.05):
    base = _runs(*base_sets)
    new = [build_run(r.results, id=r.id + 10) for r in _runs(*new_sets)]
    comparison = compare(base, new, threshold)
    (case,) = comparison.cases
    return comparison, case


def test_a_machine_that_moves_between_runs_is_same_when_each_side_has_several_runs() -> None:
    # each run tight (1%), but the machine sits 30% higher in some runs than in others: the
    # situation one run per side calls a change
    low, high = 1000.0, 1300.0
    single = _one(build_result(samples=noisy(low, seed=1)), build_result(samples=noisy(high, seed=2)))
    assert single.verdict is Verdict.BETTER
    assert single.level("base") == single.base.summary.median and single.base_level is None
    comparison, case = _sides(
        [noisy(low, seed=1), noisy(high, seed=2), noisy(low, seed=3)],
        [noisy(high, seed=4), noisy(high, seed=5), noisy(low, seed=6)],
    )
    assert case.verdict is Verdict.SAME
    assert case.note == "within the noise between runs (3 vs 3 runs)"
    assert case.p_value > 0.05 and case.ci_low < 1.0 < case.ci_high
    assert case.base_medians == pytest.approx((low, high, low), rel=0.02)
    # the ratio is that of the geometric means of the run medians
    assert case.ratio == pytest.approx((high * high * low) ** (1 / 3) / (low * high * low) ** (1 / 3), rel=0.02)
    assert case.ratio == pytest.approx(case.level("new") / case.level("base"))
    assert case.level("base") == pytest.approx((low * high * low) ** (1 / 3), rel=0.02)
    assert len(case.base.samples) == 36 and len(case.new.samples) == 36
    assert [r.id for r in comparison.base_side] == [1, 2, 3]
    assert [r.id for r in comparison.new_side] == [11, 12, 13]


def test_a_change_beyond_the_run_to_run_noise_is_found() -> None:
    comparison, case = _sides(
        [noisy(1000.0, seed=1), noisy(1030.0, seed=2), noisy(1010.0, seed=3)],
        [noisy(800.0, seed=4), noisy(810.0, seed=5)],
    )
    assert case.verdict is Verdict.WORSE
    assert case.note.startswith("-20.") and "beyond the 5.0% threshold" in case.note and "(3 vs 2 runs)" in case.note
    assert case.ci_low < case.ratio < case.ci_high < 0.9
    assert comparison.regressions == (case,)
    # one new run against three: the base runs alone tell the noise
    _, against_one = _sides([noisy(1000.0, seed=1), noisy(1030.0, seed=2), noisy(1010.0, seed=3)], [noisy(800.0, seed=4)])
    assert against_one.verdict is Verdict.WORSE
    assert against_one.new_medians == pytest.approx((800.0,), rel=0.01)


def test_the_same_change_on_a_noisier_machine_is_not_called() -> None:
    _, case = _sides(
        [noisy(1000.0, seed=1), noisy(1400.0, seed=2), noisy(900.0, seed=3)],
        [noisy(800.0, seed=4), noisy(1150.0, seed=5), noisy(760.0, seed=6)],
    )
    assert case.ratio == pytest.approx(0.83, abs=0.02)
    assert case.verdict is Verdict.SAME and case.p_value > 0.05
    assert case.note == "within the noise between runs (3 vs 3 runs)"


def test_holm_adjusts_over_every_case_of_the_comparison() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []
    # ten cases whose run-level p is modest on its own: after the adjustment none is called
    names = [f"case{i}" for i in range(10)]

    def side(levels: list[float], first_id: int) -> list[Run]:
        return [
            build_run(tuple(build_result(n, samples=noisy(level * (1 + 0.01 * i), seed=first_id * 100 + i)) for i, n in enumerate(names)), id=first_id + j)
            for j, level in enumerate(levels)
        ]

    base, new = side([1000.0, 1100.0, 1050.0], 1), side([900.0, 960.0, 930.0], 11)
    comparison = compare(base, new)
    single_case = compare([build_run(r.results[:1], id=r.id) for r in base], [build_run(r.results[:1], id=r.id) for r in new])
    (alone,) = single_case.cases
    assert alone.verdict is Verdict.WORSE and alone.p_value < 0.05
    first = comparison.cases[0]
    assert first.p_value == pytest.approx(min(1.0, 10 * alone.p_value), rel=0.3) and first.p_value >= 0.05
    assert {c.verdict for c in comparison.cases} == {Verdict.SAME}
    assert "Holm-adjusted over 10 cases" in first.note


def test_the_interval_over_runs_is_wider_than_within_one() -> None:
    one = ratio_confidence_interval(noisy(1000.0, seed=1), noisy(1000.0, seed=2))
    _, case = _sides([noisy(1000.0, seed=1), noisy(1200.0, seed=3)], [noisy(1000.0, seed=2), noisy(1150.0, seed=4)])
    assert case.ci_high - case.ci_low > 5 * (one[1] - one[0])
    assert case.ci_low < 1.0 < case.ci_high


def test_runs_of_one_side_that_disagree_are_not_comparable() -> None:
    base = _runs(noisy(1000.0, seed=1), noisy(1000.0, seed=2))
    waived = build_run((build_result(status=ResultStatus.WAIVED),), id=3)
    new = [build_run(base[0].results, id=4)]
    (case,) = compare([*base, waived], new).cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert case.note == "the base runs disagree: ok in 1, 2; waived in 3"
    other_params = build_run((build_result(params={"block_size": 8192}),), id=5)
    (case,) = compare(base, [new[0], other_params]).cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert "new runs 4 and 5 ran this case differently: block_size" in case.note
    absent = build_run((build_result("other"),), id=6)
    cases = {c.case: c for c in compare(base, [new[0], absent]).cases}
    assert cases["randread-4k"].note == "missing from new run 6"
    hollow = build_run((build_result(samples=(), summary=None),), id=7)
    (case,) = compare(base, [new[0], hollow]).cases
    assert case.note == "no samples in new run 7"


def test_an_empty_side_is_refused() -> None:
    with pytest.raises(ValueError):
        compare([], build_run())


def _in_rounds(*levels: float, seed: int = 0) -> Result:
    samples, metrics = [], []
    for number, level in enumerate(levels, start=1):
        for value in noisy(level, n=3, seed=seed + number):
            samples.append(value)
            metrics.append({"iops": value, "round": number})
    return build_result(samples=tuple(samples), sample_metrics=tuple(metrics))


def test_the_rounds_of_one_run_are_the_unit() -> None:
    moving = _one(_in_rounds(1000.0, 1300.0, 1000.0, seed=1), _in_rounds(1300.0, 1300.0, 1000.0, seed=5))
    assert moving.units == "rounds" and moving.verdict is Verdict.SAME
    assert moving.note == "within the noise between rounds (3 vs 3 rounds)"
    assert moving.base_medians == pytest.approx((1000.0, 1300.0, 1000.0), rel=0.02)
    slower = _one(_in_rounds(1000.0, 1020.0, 990.0, seed=1), _in_rounds(800.0, 810.0, 790.0, seed=5))
    assert slower.verdict is Verdict.WORSE and "(3 vs 3 rounds)" in slower.note
    # the same samples without their rounds are judged sample by sample, and call the move a change
    flat = _one(
        build_result(samples=_in_rounds(1000.0, 1000.0, 1000.0, seed=1).samples),
        build_result(samples=_in_rounds(1300.0, 1300.0, 1300.0, seed=5).samples),
    )
    assert flat.units == "" and flat.verdict is Verdict.BETTER


def test_with_several_runs_the_runs_are_the_unit_not_their_rounds() -> None:
    base = [build_run((_in_rounds(1000.0, 1010.0, seed=i),), id=i) for i in (1, 2)]
    new = [build_run((_in_rounds(1005.0, 995.0, seed=i),), id=i) for i in (3, 4)]
    (case,) = compare(base, new).cases
    assert case.units == "runs" and len(case.base_medians) == 2 and case.verdict is Verdict.SAME
    (against_one,) = compare(base, new[:1]).cases
    assert against_one.units == "runs" and len(against_one.new_medians) == 1


def _rounds_of(*rounds: tuple[float, ...]) -> Result:
    samples = tuple(v for r in rounds for v in r)
    metrics = tuple({"iops": v, "round": n} for n, r in enumerate(rounds, start=1) for v in r)
    return build_result(samples=samples, sample_metrics=metrics)


def test_rounds_with_equal_medians_fall_back_to_the_samples_not_to_p_zero() -> None:
    # every round of a side has the same median, so the rounds show no spread to test against;
    # that is no proof of a change: the samples within the rounds overlap and decide
    base = _rounds_of((5.0, 10.0, 15.0), (5.0, 10.0, 15.0), (5.0, 10.0, 15.0))
    new = _rounds_of((6.0, 11.0, 16.0), (6.0, 11.0, 16.0), (6.0, 11.0, 16.0))
    case = _one(base, new)
    assert case.verdict is Verdict.SAME and case.units == "" and case.p_value > 0.05
    # clearly apart, the samples say so
    far = _one(base, _rounds_of((19.0, 20.0, 25.0), (19.0, 20.0, 25.0), (19.0, 20.0, 25.0)))
    assert far.verdict is Verdict.BETTER and far.p_value < 0.05


def test_a_case_lost_in_some_of_the_new_runs_is_a_lost_capability() -> None:
    base = _runs(noisy(1000.0, seed=1), noisy(1000.0, seed=2), noisy(1000.0, seed=3))
    failed = build_run((build_result(status=ResultStatus.FAILED, reason="I/O error"),), id=4)
    new = [failed, *(build_run(r.results, id=r.id + 4) for r in _runs(noisy(1000.0, seed=5), noisy(1000.0, seed=6)))]
    comparison = compare(base, new)
    (case,) = comparison.cases
    assert case.verdict is Verdict.LOST
    assert case.note == "lost capability: ran in the base, failed in new run 4: I/O error"
    assert case.new is not None and case.new.status is ResultStatus.FAILED
    assert comparison.regressions == (case,)
    interrupted = build_run((build_result(status=ResultStatus.INTERRUPTED),), id=7)
    (case,) = compare(base, [*new[1:], interrupted]).cases
    assert case.verdict is Verdict.NOT_COMPARABLE


def test_runs_of_one_side_that_disagree_are_counted_as_unjudged() -> None:
    """A base side whose runs disagree cannot be judged, whichever of its runs comes first; a
    note has to say so, or a CI gate passes the case silently."""
    waived = build_run((build_result(status=ResultStatus.WAIVED),), id=3)
    base = [waived, *_runs(noisy(1000.0, seed=1), noisy(1000.0, seed=2))]
    new = [build_run(r.results, id=r.id + 3) for r in _runs(noisy(1000.0, seed=5), noisy(1000.0, seed=6))]
    comparison = compare(base, new)
    (case,) = comparison.cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert comparison.unmatched == (case,)
