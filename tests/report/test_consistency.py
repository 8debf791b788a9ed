"""Every number a report shows agrees with every other: the headline with the benchmark tables,
the telemetry line with its rows, the HTML with the terminal; sources that cannot be read are
named once per report; a telemetry chart is drawn only where a series varies."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from rich.console import Console

from gpubench.report import formats
from gpubench.report import telemetry as tel
from gpubench.report.headline import build, ratio_text
from gpubench.report.html import render_run_html
from gpubench.report.sections import sections
from gpubench.report.terminal import print_run_report

from tests.report import machines


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return machines.with_telemetry(machines.gpu_run(machines.gpu_server(tmp_path_factory.mktemp("server"))))


@pytest.fixture(scope="module")
def html(run):
    return render_run_html(run)


@pytest.fixture(scope="module")
def text(run):
    console = Console(width=200, record=True, highlight=False, markup=False, emoji=False)
    print_run_report(console, run)
    return console.export_text()


def _visible(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_headline_figures_are_the_tables_figures(run, html, text):
    rows = {(r.result.benchmark, r.result.case): r for s in sections(run) for r in s.rows}
    for path in build(run).paths:
        best = f"{formats.number(path.value)} {path.best.unit}"
        table_row = rows[(path.best.benchmark, path.best.case)]
        assert formats.number(table_row.result.summary.median) == formats.number(path.value)
        assert best in _visible(html) and best in text
        for versus in path.versus:
            own = versus.result or path.best
            assert versus.ratio == pytest.approx(own.summary.median / versus.other.summary.median)
            assert ratio_text(versus.ratio) in _visible(html) and ratio_text(versus.ratio) in text
            other = rows[(versus.other.benchmark, versus.other.case)]
            assert formats.number(other.result.summary.median) in _visible(html)


def test_a_benchmarks_telemetry_line_is_made_of_its_rows(run, html, text):
    for bench in tel.of_run(run).benchmarks:
        peak = max(bench.cases, key=lambda c: c.summary.peak_w)
        assert bench.peak is peak and bench.energy_j == pytest.approx(sum(c.summary.energy_j for c in bench.cases))
        shown_sum = sum(float(formats.number(c.summary.energy_j).replace(",", "")) for c in bench.cases)
        assert tel.energy_text(bench.energy_j) == tel.energy_text(shown_sum)  # the rows as shown add up to the total shown
        line = tel.line(bench)
        assert f"peak {formats.number(peak.summary.peak_w)} W ({peak.case})" in line and line in text
        page = _visible(html)
        for case in bench.cases:
            assert f"{formats.number(case.summary.peak_w)} W" in page and f"{formats.number(case.summary.energy_j)} J" in page
            assert f"{formats.number(case.summary.j_per_gb)} J/GB" in page
            reason, share = case.throttled
            assert f"{share:.0f}% {reason}" in page and share <= float(re.search(r"throttled up to (\d+)%", line).group(1))
            strip = case.strip
            assert sum(span.width for span in strip) == pytest.approx(1.0) and all(span.width > 0 for span in strip)
            assert [s.seconds for s in strip] == pytest.approx([p.end - p.start for p in case.summary.phases if p.end > p.start])


def test_unreadable_sources_are_named_once_per_report(run, html, text):
    why = "no RAPL powercap zone on this machine"
    assert html.count(why) == 1 and text.count(why) == 1


def test_a_telemetry_chart_only_where_a_series_varies(run):
    flat = []
    for result in run.results:
        t = result.telemetry
        series = replace(t.series, values={m: tuple(None if v is None else 100.0 for v in vs) for m, vs in t.series.values.items()})
        flat.append(replace(result, telemetry=replace(t, series=series)))
    still = replace(run, results=tuple(flat))
    assert all(b.drawn is None for b in tel.of_run(still).benchmarks)
    charts = len(tel.of_run(run).benchmarks)
    assert render_run_html(run).count("<svg") - render_run_html(still).count("<svg") == charts
