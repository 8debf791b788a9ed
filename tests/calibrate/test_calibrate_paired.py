"""The interleaving and the ratio statistics every calibration uses."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from typer.testing import CliRunner

from gpubench.calibrate.paired import Arm, Goal, PairedRatios, interleave


def test_every_arm_goes_first_equally_often_across_rounds_and_comparisons():
    order: list[tuple[int, int, str]] = []

    def arm(name: str) -> Arm[str]:
        return Arm(name, lambda: name)

    comparisons = [(arm("a"), arm("b")), (arm("a"), arm("b")), (arm("x"), arm("y"), arm("z"))]
    results = interleave(6, comparisons, lambda r, c, a: order.append((r, c, a.name)))
    assert results == [[["a"] * 6, ["b"] * 6], [["a"] * 6, ["b"] * 6], [["x"] * 6, ["y"] * 6, ["z"] * 6]]
    assert [name for r, c, name in order if r == 0] == ["a", "b", "b", "a", "z", "x", "y"]
    assert [name for r, c, name in order if r == 1] == ["b", "a", "a", "b", "x", "y", "z"]
    firsts = Counter((c, name) for i, (r, c, name) in enumerate(order) if i == 0 or order[i - 1][:2] != (r, c))
    assert firsts == {(0, "a"): 3, (0, "b"): 3, (1, "a"): 3, (1, "b"): 3, (2, "x"): 2, (2, "y"): 2, (2, "z"): 2}


def test_a_drift_of_the_machine_cancels_in_the_paired_ratios():
    """The machine slows by 10% a measurement; both sides do the same work. Each round's ratio sits
    near 1 because its two measurements are taken back to back, whichever goes first."""
    clock = iter(range(100))

    def slowing() -> float:
        return 100.0 * 0.9 ** next(clock)

    ((ours, theirs),) = interleave(6, [(Arm("ours", slowing), Arm("ref", slowing))])
    paired = PairedRatios(tuple(ours), tuple(theirs))
    assert sorted(set(round(r, 6) for r in paired.ratios)) == [0.9, round(1 / 0.9, 6)]
    assert paired.median == pytest.approx(1.0, abs=0.06)


def test_paired_ratios_give_the_median_its_interval_quartiles_and_range():
    paired = PairedRatios((10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0), (10.0,) * 7)
    d = paired.to_dict()
    assert d["ratios"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert (d["ratio_median"], d["ratio_min"], d["ratio_max"]) == (4.0, 1.0, 7.0)
    assert (d["ratio_q1"], d["ratio_q3"]) == (2.5, 5.5)
    assert d["ratio_ci_low"] <= 4.0 <= d["ratio_ci_high"]
    assert paired.percent().median == pytest.approx(300.0)


def test_a_reference_that_measured_nothing_has_no_ratio():
    paired = PairedRatios((5.0, 6.0), (0.0, 3.0))
    assert paired.ratios == (2.0,)
    empty = PairedRatios((5.0,), (0.0,))
    assert empty.summary is None and math.isnan(empty.median)
    assert empty.to_dict() == {"ratios": [], **{f"ratio_{k}": None for k in ("median", "ci_low", "ci_high", "q1", "q3", "min", "max")}}
    with pytest.raises(ValueError):
        empty.percent()


@pytest.mark.parametrize(
    "goal,ratio,met,text",
    [
        (Goal(0.95), 0.95, True, ">= 0.95x fio"),
        (Goal(0.95), 0.949, False, ">= 0.95x fio"),
        (Goal(0.10, two_sided=True), 1.09, True, "within 10% of fio"),
        (Goal(0.10, two_sided=True), 0.89, False, "within 10% of fio"),
        (Goal(1.0), math.nan, False, ">= 1x fio"),
    ],
)
def test_a_goal_is_held_by_the_median_ratio(goal, ratio, met, text):
    assert goal.met(ratio) is met
    assert goal.text("fio") == text


def test_the_calibrate_commands_are_one_module_with_their_options():
    from gpubench.cli import app

    runner = CliRunner()
    for command, options in (("iouring", ("--runtime", "--rounds", "--dir", "--size", "--json")),
                             ("memtier", ("--size", "--threads", "--rounds", "--hops", "--best-of", "--json")),
                             ("telemetry", ("--seconds", "--rounds", "--hz", "--workload", "--json"))):
        res = runner.invoke(app, ["calibrate", command, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        assert all(option in res.output for option in options), (command, res.output)
