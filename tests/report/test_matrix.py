"""Pairwise (GPU to GPU) results drawn as matrices in the run report, from results of the cases the
p2p benchmark plans on a recorded four-GPU machine."""

from __future__ import annotations

from dataclasses import replace

from gpubench.bench.gpu.p2p import PairParams
from gpubench.report.html import render_run_html
from gpubench.report.matrix import NOT_MEASURED, pair_matrices
from gpubench.results.model import Result
from tests.factories import RANDREAD, measured, planned, run_of, waived

MODEL = "NVIDIA H100 80GB HBM3"
THREE_GPUS = {"pairs": "0-1,0-2,1-0,1-2,2-0,2-1", "sizes": "32M"}


def _p2p(name: str, value: float | None = None, via: str = "peer") -> Result:
    case = planned("p2p", name, snapshot="nvidia-multigpu", scale="quick", options=THREE_GPUS)
    if value is None:
        return waived(case, "SM copies need peer access")
    return measured(case, (value * 0.99, value, value * 1.01), extra={"via": via})


def _three_gpus() -> list[Result]:
    results = [_p2p(f"uni-ce-{a}to{b}-32M", 40.0 + 10 * a + b, via="host" if {a, b} == {0, 2} else "peer")
               for a in range(3) for b in range(3) if a != b]
    results += [_p2p("uni-sm-0to2-32M"), _p2p("uni-sm-0to1-32M", 45.0)]
    results += [_p2p("bidir-ce-0and1-32M", 80.0), _p2p("bidir-ce-1and2-32M", 90.0)]
    return results


def test_the_pair_record_reads_what_p2p_plans_and_what_it_ran() -> None:
    result = _p2p("uni-ce-0to2-32M", 40.0, via="host")
    pair = PairParams.from_params(result.params, result.extra)
    assert pair == PairParams(src=0, dst=2, kind="uni-ce", size=32 << 20, via="host", src_model=MODEL, dst_model=MODEL)
    assert PairParams.from_params(result.params).via == "peer"  # as planned, before it ran
    assert PairParams.from_params(_p2p("bidir-ce-0and1-32M", 1.0).params).both_ways
    assert PairParams.from_params(measured(RANDREAD).params) is None


def test_one_matrix_per_kind_and_size_rows_are_sources() -> None:
    by_title = {m.title: m for m in pair_matrices(_three_gpus())}
    assert list(by_title) == ["uni-ce 32M (GB/s)", "uni-sm 32M (GB/s)", "bidir-ce 32M (GB/s, both directions together)"]
    uni = by_title["uni-ce 32M (GB/s)"]
    assert uni.devices == (f"0 ({MODEL})", f"1 ({MODEL})", f"2 ({MODEL})")
    assert [[c.text for c in row] for row in uni.rows] == [
        [NOT_MEASURED, "41", "42"],
        ["50", NOT_MEASURED, "52"],
        ["60", "61", NOT_MEASURED],
    ]
    assert uni.rows[0][2].via_host and uni.rows[2][0].via_host and not uni.rows[0][1].via_host
    assert uni.any_via_host


def test_bidirectional_pairs_fill_both_cells_and_unmeasured_pairs_say_so() -> None:
    bidir = {m.title: m for m in pair_matrices(_three_gpus())}["bidir-ce 32M (GB/s, both directions together)"]
    texts = [[c.text for c in row] for row in bidir.rows]
    assert texts[0][1] == texts[1][0] == "80" and texts[1][2] == texts[2][1] == "90"
    assert texts[0][2] == texts[2][0] == NOT_MEASURED
    sm = {m.title: m for m in pair_matrices(_three_gpus())}["uni-sm 32M (GB/s)"]
    assert sm.rows[0][2].text == "waived" and sm.rows[0][1].text == "45"
    assert not sm.any_via_host


def test_results_without_device_pairs_make_no_matrix() -> None:
    plain = _p2p("uni-ce-0to1-32M", 10.0)
    # an imported run may carry anything in its parameters
    assert pair_matrices([replace(plain, params={**plain.params, "src": "0"})]) == []
    assert pair_matrices([replace(plain, params={**plain.params, "src": True})]) == []
    assert pair_matrices([measured(RANDREAD)]) == []
    assert pair_matrices([]) == []


def test_the_run_report_draws_the_matrices() -> None:
    run = run_of(tuple(_three_gpus()), label="two H100", snapshot="nvidia-multigpu")
    html = render_run_html(run)
    assert html.count('<table class="matrix">') == 3
    assert "<h4>uni-ce 32M (GB/s)</h4>" in html
    assert 'class="num via-host"' in html and "copied through host memory" in html
    assert 'class="num waived"' in html
