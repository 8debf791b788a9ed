from __future__ import annotations

import random
from dataclasses import replace

import pytest

from gpubench.results.compare import compare, holm, ratio_confidence_interval, smallest_possible_p
from gpubench.results.model import Result, ResultStatus, Run, Verdict
from tests.factories import CHASE, IO_CASES, RANDREAD, RANDWRITE, SEQREAD, failed, interrupted, measured, noisy, planned, run_of, waived, waived_benchmark


def _one(base_result, new_result, threshold: float = 0.05):
    comparison = compare(run_of((base_result,)), run_of((new_result,)), threshold)
    (case,) = comparison.cases
    return case


def test_twenty_percent_slowdown_with_small_spread_is_worse() -> None:
    case = _one(measured(samples=noisy(1000.0, seed=1)), measured(samples=noisy(800.0, seed=2)))
    assert case.verdict is Verdict.WORSE
    assert case.ratio == pytest.approx(0.8, abs=0.02)
    assert case.ci_low < case.ratio < case.ci_high < 0.9
    assert case.p_value < 0.001


def test_lower_is_better_units_flip_the_direction() -> None:
    slower = _one(
        measured(CHASE, noisy(10.0, seed=3)),
        measured(CHASE, noisy(12.0, seed=4)),
    )
    assert slower.verdict is Verdict.WORSE
    faster = _one(
        measured(CHASE, noisy(10.0, seed=3)),
        measured(CHASE, noisy(8.0, seed=4)),
    )
    assert faster.verdict is Verdict.BETTER


def test_improvement_is_better() -> None:
    assert _one(measured(samples=noisy(100.0, seed=5)), measured(samples=noisy(130.0, seed=6))).verdict is Verdict.BETTER


def test_noise_from_one_distribution_is_same() -> None:
    rng = random.Random(11)
    base = tuple(rng.gauss(500.0, 25.0) for _ in range(20))
    new = tuple(rng.gauss(500.0, 25.0) for _ in range(20))
    case = _one(measured(samples=base), measured(samples=new))
    assert case.verdict is Verdict.SAME
    assert case.p_value > 0.05
    assert case.ci_low < 1.0 < case.ci_high
    assert "within the noise" in case.note


def test_significant_but_below_threshold_is_same() -> None:
    case = _one(measured(samples=noisy(1000.0, spread=0.001, seed=1)), measured(samples=noisy(980.0, spread=0.001, seed=2)))
    assert case.p_value < 0.05
    assert case.verdict is Verdict.SAME
    assert "within the 5.0% threshold" in case.note
    # the same change counts with a smaller threshold
    assert _one(case.base, case.new, threshold=0.01).verdict is Verdict.WORSE


def test_too_few_samples_for_the_rank_test_is_same_and_said() -> None:
    case = _one(measured(samples=(100.0, 101.0, 99.0)), measured(samples=(50.0, 51.0, 49.0)))
    assert smallest_possible_p(3, 3) == pytest.approx(0.1)
    assert case.verdict is Verdict.SAME
    assert case.ratio == pytest.approx(0.5)
    assert "too few samples" in case.note


def test_params_or_unit_mismatch_is_not_comparable() -> None:
    base = measured(RANDREAD, noisy(100.0))
    larger_file = planned("iouring", RANDREAD.name, options={"size": "2G"})  # run with -p iouring.size=2G
    case = _one(base, measured(larger_file, noisy(50.0)))
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert case.note == "parameters differ: size 1073741824 -> 2147483648"
    assert case.ratio is None
    # units are the benchmark's, but an imported run of another gpubench version may use others
    case = _one(base, replace(measured(RANDREAD, noisy(50.0)), unit="GiB/s"))
    assert case.verdict is Verdict.NOT_COMPARABLE and "units differ" in case.note


def test_ok_to_waived_is_a_lost_capability() -> None:
    case = _one(measured(samples=noisy(100.0)), waived(reason="io_uring disabled by sysctl"))
    assert case.verdict is Verdict.LOST
    assert "lost capability" in case.note and "io_uring disabled by sysctl" in case.note


def test_waived_failed_or_missing_sides_are_not_comparable() -> None:
    ok = measured(samples=noisy(100.0))
    assert _one(waived(), ok).verdict is Verdict.NOT_COMPARABLE
    assert _one(failed(reason="EIO"), ok).verdict is Verdict.NOT_COMPARABLE
    comparison = compare(run_of((measured(RANDREAD),)), run_of((measured(SEQREAD),)))
    assert [(c.case, c.verdict, c.note) for c in comparison.cases] == [
        (RANDREAD.name, Verdict.NOT_COMPARABLE, "missing from the new run"),
        (SEQREAD.name, Verdict.NOT_COMPARABLE, "only in the new run"),
    ]


def test_a_ratio_of_medians_that_are_not_positive_is_not_comparable() -> None:
    # no benchmark measures a negative figure and import refuses one, but compare takes any Run
    negative = _one(measured(samples=(-5.0, -5.1, -4.9)), measured(samples=(-11.0, -11.1, -10.9)))
    assert negative.verdict is Verdict.NOT_COMPARABLE and negative.note == "a ratio needs positive medians (base -5, new -11)"
    zero = _one(measured(samples=(0.0, 0.0, 0.0)), measured(samples=noisy(10.0)))
    assert zero.verdict is Verdict.NOT_COMPARABLE and zero.ratio is None


def test_regressions_collects_worse_and_lost() -> None:
    base = run_of((measured(RANDREAD, noisy(100.0, seed=1)), measured(SEQREAD, noisy(100.0, seed=2)), measured(RANDWRITE)))
    new = run_of((measured(RANDREAD, noisy(70.0, seed=3)), waived(SEQREAD), measured(RANDWRITE)))
    comparison = compare(base, new)
    assert [c.case for c in comparison.regressions] == [RANDREAD.name, SEQREAD.name]


def test_bootstrap_interval_is_reproducible() -> None:
    base, new = noisy(100.0, seed=8), noisy(90.0, seed=9)
    assert ratio_confidence_interval(base, new) == ratio_confidence_interval(base, new)


def test_threshold_is_validated() -> None:
    with pytest.raises(ValueError):
        compare(run_of(), run_of(), threshold=-0.1)


def test_a_benchmark_waived_whole_is_a_lost_capability_for_each_case_it_ran():
    samples = (10.0, 10.5, 9.8, 10.1, 10.3)
    h2d, d2h = (planned("memcpy", name, snapshot="nvidia-multigpu", scale="quick") for name in ("h2d-pinned-ce-32M-gpu0", "d2h-pinned-ce-32M-gpu0"))
    base = run_of((measured(h2d, samples), measured(d2h, samples)), snapshot="nvidia-multigpu")
    new = run_of((waived_benchmark("memcpy", "no NVIDIA GPU found"),))
    cmp = compare(base, new)
    assert [(c.case, c.verdict) for c in cmp.cases] == [(h2d.name, Verdict.LOST), (d2h.name, Verdict.LOST)]
    assert "no NVIDIA GPU found" in cmp.cases[0].note
    assert len(cmp.regressions) == 2


def test_ok_then_failed_is_a_regression():
    base = run_of((measured(RANDREAD, (10.0, 10.5, 9.8, 10.1, 10.3)),))
    cmp = compare(base, run_of((failed(RANDREAD, "verify mismatch"),)))
    assert cmp.cases[0].verdict is Verdict.LOST and "failed in the new run: verify mismatch" in cmp.cases[0].note
    assert cmp.regressions


def _runs(*sample_sets: tuple[float, ...], first_id: int = 1) -> list[Run]:
    return [run_of((measured(RANDREAD, samples),), id=i) for i, samples in enumerate(sample_sets, start=first_id)]


def _sides(base_sets, new_sets, threshold: float = 0.05):
    base = _runs(*base_sets)
    new = _runs(*new_sets, first_id=11)
    comparison = compare(base, new, threshold)
    (case,) = comparison.cases
    return comparison, case


def test_a_machine_that_moves_between_runs_is_same_when_each_side_has_several_runs() -> None:
    # each run tight (1%), but the machine sits 30% higher in some runs than in others: the
    # situation one run per side calls a change
    low, high = 1000.0, 1300.0
    single = _one(measured(samples=noisy(low, seed=1)), measured(samples=noisy(high, seed=2)))
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
    cases = IO_CASES[:10]

    def side(levels: list[float], first_id: int) -> list[Run]:
        return [
            run_of(tuple(measured(c, noisy(level * (1 + 0.01 * i), seed=first_id * 100 + i)) for i, c in enumerate(cases)), id=first_id + j)
            for j, level in enumerate(levels)
        ]

    base, new = side([1000.0, 1100.0, 1050.0], 1), side([900.0, 960.0, 930.0], 11)
    comparison = compare(base, new)
    single_case = compare([replace(r, results=r.results[:1]) for r in base], [replace(r, results=r.results[:1]) for r in new])
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
    new = [run_of(base[0].results, id=4)]
    (case,) = compare([*base, run_of((waived(),), id=3)], new).cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert case.note == "the base runs disagree: ok in 1, 2; waived in 3"
    longer = planned("iouring", RANDREAD.name, options={"runtime": "3"})  # the same case of a run with -p iouring.runtime=3
    (case,) = compare(base, [new[0], run_of((measured(longer),), id=5)]).cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert case.note == "new runs 4 and 5 ran this case differently: runtime 2.0 -> 3.0"
    absent = run_of((measured(SEQREAD),), id=6)
    cases = {c.case: c for c in compare(base, [new[0], absent]).cases}
    assert cases[RANDREAD.name].note == "missing from new run 6"
    # a run holds no ok result without samples, but an edited export could say so
    hollow = run_of((replace(measured(), samples=(), sample_metrics=(), summary=None),), id=7)
    (case,) = compare(base, [new[0], hollow]).cases
    assert case.note == "no samples in new run 7"


def test_an_empty_side_is_refused() -> None:
    with pytest.raises(ValueError):
        compare([], run_of())


def _in_rounds(*levels: float, seed: int = 0) -> Result:
    return measured(rounds=[noisy(level, n=3, seed=seed + number) for number, level in enumerate(levels, start=1)])


def test_the_rounds_of_one_run_are_the_unit() -> None:
    moving = _one(_in_rounds(1000.0, 1300.0, 1000.0, seed=1), _in_rounds(1300.0, 1300.0, 1000.0, seed=5))
    assert moving.units == "rounds" and moving.verdict is Verdict.SAME
    assert moving.note == "within the noise between rounds (3 vs 3 rounds)"
    assert moving.base_medians == pytest.approx((1000.0, 1300.0, 1000.0), rel=0.02)
    slower = _one(_in_rounds(1000.0, 1020.0, 990.0, seed=1), _in_rounds(800.0, 810.0, 790.0, seed=5))
    assert slower.verdict is Verdict.WORSE and "(3 vs 3 rounds)" in slower.note
    # the same samples without their rounds are judged sample by sample, and call the move a change
    flat = _one(
        measured(samples=_in_rounds(1000.0, 1000.0, 1000.0, seed=1).samples),
        measured(samples=_in_rounds(1300.0, 1300.0, 1300.0, seed=5).samples),
    )
    assert flat.units == "" and flat.verdict is Verdict.BETTER


def test_with_several_runs_the_runs_are_the_unit_not_their_rounds() -> None:
    base = [run_of((_in_rounds(1000.0, 1010.0, seed=i),), id=i) for i in (1, 2)]
    new = [run_of((_in_rounds(1005.0, 995.0, seed=i),), id=i) for i in (3, 4)]
    (case,) = compare(base, new).cases
    assert case.units == "runs" and len(case.base_medians) == 2 and case.verdict is Verdict.SAME
    (against_one,) = compare(base, new[:1]).cases
    assert against_one.units == "runs" and len(against_one.new_medians) == 1


def _rounds_of(*rounds: tuple[float, ...]) -> Result:
    return measured(rounds=rounds)


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
    new = [run_of((failed(reason="I/O error"),), id=4), *_runs(noisy(1000.0, seed=5), noisy(1000.0, seed=6), first_id=5)]
    comparison = compare(base, new)
    (case,) = comparison.cases
    assert case.verdict is Verdict.LOST
    assert case.note == "lost capability: ran in the base, failed in new run 4: I/O error"
    assert case.new is not None and case.new.status is ResultStatus.FAILED
    assert comparison.regressions == (case,)
    (case,) = compare(base, [*new[1:], run_of((interrupted(),), id=7)]).cases
    assert case.verdict is Verdict.NOT_COMPARABLE


def test_runs_of_one_side_that_disagree_are_counted_as_unjudged() -> None:
    """A base side whose runs disagree cannot be judged, whichever of its runs comes first; a
    note has to say so, or a CI gate passes the case silently."""
    base = [run_of((waived(),), id=3), *_runs(noisy(1000.0, seed=1), noisy(1000.0, seed=2))]
    new = _runs(noisy(1000.0, seed=5), noisy(1000.0, seed=6), first_id=4)
    comparison = compare(base, new)
    (case,) = comparison.cases
    assert case.verdict is Verdict.NOT_COMPARABLE
    assert comparison.unmatched == (case,)
