"""Pairwise (GPU to GPU) results drawn as matrices in the run report."""

from __future__ import annotations

from gpubench.report.html import render_run_html
from gpubench.report.matrix import NOT_MEASURED, pair_matrices
from gpubench.results.model import Result, ResultStatus, Run, RunStatus
from gpubench.results.stats import summarize

MODEL = "NVIDIA H100 80GB HBM3"


def _p2p(kind: str, src: int, dst: int, value: float | None, via: str = "peer", status: ResultStatus = ResultStatus.OK, unit: str = "GB/s") -> Result:
    samples = (value * 0.99, value, value * 1.01) if value is not None else ()
    return Result(
        benchmark="p2p",
        case=f"{kind}-{src}to{dst}-32M",
        params={"src": src, "dst": dst, "src_model": MODEL, "dst_model": MODEL, "kind": kind, "size": 32 << 20, "via": "auto"},
        unit=unit,
        higher_is_better=True,
        status=status,
        reason="" if status is ResultStatus.OK else "SM copies need peer access",
        samples=samples,
        extra={"via": via} if status is ResultStatus.OK else {},
        summary=summarize(samples) if samples else None,
    )


def _three_gpus() -> list[Result]:
    results = [_p2p("uni-ce", a, b, 40.0 + 10 * a + b, via="host" if {a, b} == {0, 2} else "peer")
               for a in range(3) for b in range(3) if a != b]
    results += [_p2p("uni-sm", 0, 2, None, status=ResultStatus.WAIVED), _p2p("uni-sm", 0, 1, 45.0)]
    results += [_p2p("bidir-ce", 0, 1, 80.0), _p2p("bidir-ce", 1, 2, 90.0)]
    return results


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
    plain = _p2p("uni-ce", 0, 1, 10.0)
    assert pair_matrices([Result(**{**plain.__dict__, "params": {"src": "0", "dst": 1}})]) == []
    assert pair_matrices([Result(**{**plain.__dict__, "params": {"src": True, "dst": 1}})]) == []
    assert pair_matrices([]) == []


def test_the_run_report_draws_the_matrices() -> None:
    run = Run(uid="ab" * 16, label="two H100", started=1.7e9, ended=1.7e9 + 60, status=RunStatus.COMPLETE,
              metadata={}, profile={}, results=tuple(_three_gpus()))
    html = render_run_html(run)
    assert html.count('<table class="matrix">') == 3
    assert "<h4>uni-ce 32M (GB/s)</h4>" in html
    assert 'class="num via-host"' in html and "copied through host memory" in html
    assert 'class="num waived"' in html

