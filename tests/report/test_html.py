"""HTML and JSON run reports: content, escaping, self-containment, files, and a real browser."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.report.formats import number as format_number
from gpubench.report.html import render_comparison_html, render_run_html, write_run_reports
from gpubench.results.jsonio import run_to_json as run_json
from gpubench.results.model import SCHEMA_VERSION, Run, RunStatus, Verdict
from gpubench.report.telemetry import PHASE_TITLES
from gpubench.telemetry.summary import TelemetryStatus, TelemetrySummary

try:
    from .chromium import dump_dom, ink_stats, screenshot
except ImportError:  # tests/ collected without package __init__ files
    from chromium import dump_dom, ink_stats, screenshot  # type: ignore[no-redef]

XSS = "<script>alert(1)</script>"
EXTERNAL_REFERENCE = re.compile(r"""(?:\bsrc|\bhref)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def _svg_count(html: str) -> int:
    return html.count("<svg")


# ------------------------------------------------------------------ a real browser


def test_run_report_renders_non_blank_in_chromium(run_html: str, tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    page.write_text(run_html, encoding="utf-8")
    colours, inked = ink_stats(screenshot(page, tmp_path))
    assert colours > 50, f"only {colours} distinct colours: the page looks blank"
    assert inked > 0.03, f"only {inked:.1%} of the pixels are not white"


def test_run_report_renders_non_blank_on_a_phone_wide_screen(run_html: str, tmp_path: Path) -> None:
    page = tmp_path / "run-390.html"
    page.write_text(run_html, encoding="utf-8")
    colours, inked = ink_stats(screenshot(page, tmp_path, width=390, height=1600))
    assert colours > 50 and inked > 0.03


def test_comparison_report_renders_non_blank_in_chromium(comparison_html: str, tmp_path: Path) -> None:
    page = tmp_path / "comparison.html"
    page.write_text(comparison_html, encoding="utf-8")
    colours, inked = ink_stats(screenshot(page, tmp_path))
    assert colours > 50, f"only {colours} distinct colours: the page looks blank"
    assert inked > 0.03, f"only {inked:.1%} of the pixels are not white"


def test_script_in_a_label_is_text_in_the_browser_dom(run_factory, tmp_path: Path) -> None:
    run = run_factory(XSS)
    page = tmp_path / "xss.html"
    page.write_text(render_run_html(run), encoding="utf-8")
    dom = dump_dom(page, tmp_path)
    assert "<script" not in dom.lower(), "the browser built a <script> element from the data"
    heading = re.search(r"<h1>(.*?)</h1>", dom, re.S)
    assert heading and "&lt;script&gt;alert(1)&lt;/script&gt;" in heading.group(1)


def test_blank_page_detection_would_catch_a_blank_screenshot(tmp_path: Path) -> None:
    import matplotlib.image
    import numpy

    white = tmp_path / "white.png"
    matplotlib.image.imsave(white, numpy.ones((200, 300, 3)))
    colours, inked = ink_stats(white)
    assert colours <= 2 and inked == 0.0


# ------------------------------------------------------------------ escaping and self-containment


def test_every_string_from_the_data_is_escaped(run_factory, comparison_factory) -> None:
    run = run_factory(XSS)
    evil_result = replace(run.results[0], case=XSS + "$x^2$", params={"mode": XSS}, reason=XSS)
    evil_profile = {"root": "/", "capabilities": [{"area": XSS, "name": XSS, "status": "no", "evidence": [{"source": XSS, "value": XSS}], "why": XSS, "fix": XSS}]}
    run = replace(run, results=(evil_result,) + run.results[1:], metadata={XSS: XSS, "nested": {"k": [XSS]}}, profile=evil_profile)
    for html in (render_run_html(run), render_comparison_html(comparison_factory(run, run))):
        assert "<script" not in html.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_reports_are_self_contained(run_html: str, comparison_html: str) -> None:
    for html in (run_html, comparison_html):
        assert not EXTERNAL_REFERENCE.search(html), EXTERNAL_REFERENCE.search(html).group(0)  # type: ignore[union-attr]
        assert "<script" not in html.lower()
        assert "<link" not in html.lower()
        assert "@import" not in html and not re.search(r"url\((?!#)", html)  # only in-page references
        assert "<?xml" not in html and "<metadata>" not in html
        assert html.startswith("<!DOCTYPE html>")


def test_rendering_is_deterministic(sample_run: Run, run_html: str) -> None:
    assert render_run_html(sample_run) == run_html


def test_element_ids_are_unique_across_the_inlined_charts(run_html: str, comparison_html: str) -> None:
    for html in (run_html, comparison_html):
        _assert_unique_ids(html)


def _assert_unique_ids(html: str) -> None:
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    for reference in re.findall(r'(?:href="#|url\(#)([^")]+)', html):
        assert reference in ids


def test_html_module_does_not_import_matplotlib_until_it_draws() -> None:
    code = "import sys, gpubench.report.html, gpubench.results.jsonio; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ------------------------------------------------------------------ what a run report shows


def test_run_report_shows_header_metadata_capabilities_and_results(sample_run: Run, run_html: str) -> None:
    html = run_html
    assert "kernel 6.8 baseline" in html and sample_run.uid in html
    assert "AMD EPYC 7763 64-Core Processor" in html and "gpus[0].name" in html and "NVIDIA H100 80GB HBM3" in html
    for status in ("yes", "no", "partial", "unknown"):
        assert f'<span class="badge {status}">{status}</span>' in html
    assert "sysctl kernel.io_uring_disabled=0" in html and "/proc/sys/kernel/io_uring_disabled" in html
    median = sample_run.results[0].summary.median  # type: ignore[union-attr]
    assert f"{format_number(median)} MB/s" in html
    not_run = html[html.index('id="not-run"'):html.index('id="machine"')]
    for case, reason in (("uring read-4k-sqpoll", "SQPOLL needs CAP_SYS_NICE on kernels before 5.11"),
                         ("memcpy p2p-gpu0-gpu1", "needs two GPUs; this machine has one"), ("gds cufile-read-1m", "cuFileRead returned -5 (EIO)")):
        assert html.count(reason) == 1 and f"<strong>{case}</strong>: {reason}" in not_run  # said once, with its case, under "Not run here"
    assert "<code>qd</code> 32" not in html and "<code>bs</code> 128K" not in html  # parameters that differ are not said to be shared
    assert "interrupted:" not in html


def test_run_report_draws_one_chart_per_benchmark_and_the_telemetry(run_html: str, sample_run: Run) -> None:
    # uring (MB/s and µs on one axis of % from each case's median), memcpy, the telemetry trace of the memcpy case; gds has no samples
    assert _svg_count(run_html) == 3
    telemetry = next(r.telemetry for r in sample_run.results if r.telemetry)
    for phase in telemetry.phases:
        assert f'title="{PHASE_TITLES[phase.name]}: ' in run_html  # a segment of the phase strip
    assert "power (W)" in run_html and "temp (°C)" in run_html and "sm clock (MHz)" in run_html
    assert f"peak {format_number(telemetry.peak_w)} W" in run_html and f"{format_number(telemetry.sustained_mean_w)} W" in run_html
    assert f"{format_number(telemetry.energy_j)} J" in run_html and "% sw_power_cap" in run_html
    for raw in ("energy_j", "throttled_pct", "not_available", "baseline.power_w", "duration_s"):
        assert raw not in run_html  # no raw key dumps


def test_telemetry_without_series_draws_no_chart_and_unsampled_telemetry_is_left_out(sample_run: Run) -> None:
    summaries_only = tuple(replace(r, telemetry=TelemetrySummary(samplers=("rapl",), status=TelemetryStatus.OK, energy_j=88.5)) if r.telemetry else r for r in sample_run.results)
    html = render_run_html(replace(sample_run, results=summaries_only))
    assert _svg_count(html) == 2 and "88.5 J" in html and "<h3>Telemetry</h3>" in html  # a table: the energy row
    none_sampled = tuple(replace(r, telemetry=TelemetrySummary(samplers=(), status=TelemetryStatus.NONE)) for r in sample_run.results)
    html = render_run_html(replace(sample_run, results=none_sampled))
    assert "<h3>Telemetry</h3>" not in html and "Telemetry:" not in html


def test_telemetry_chart_with_epoch_times_and_extra_series() -> None:
    from gpubench.report.charts import telemetry_chart

    start = 1_700_000_000.0
    telemetry = TelemetrySummary.from_dict({
        "series": {"t": [start + i for i in range(10)], "power_w": [100.0 + i for i in range(10)], "power_limit_w": [300.0] * 10, "fan_rpm": [1000.0] * 9 + [None]},
        "phases": [{"name": "warm $x$ <b>", "start": start + 2, "end": start + 6}],
    })
    svg = telemetry_chart(telemetry)
    assert svg is not None and svg.startswith("<svg")
    assert "power limit" in svg and "fan rpm" in svg and "warm $x$ &lt;b&gt;" in svg
    one_time = TelemetrySummary.from_dict({"series": {"t": [1.0], "power_w": [2.0]}})
    assert telemetry_chart(one_time) is None and telemetry_chart(TelemetrySummary()) is None


def test_interrupted_run_says_so_prominently(sample_run: Run) -> None:
    html = render_run_html(replace(sample_run, status=RunStatus.INTERRUPTED))
    assert 'class="notice bad"' in html and "This run was interrupted" in html


def test_run_without_results_or_profile_still_renders() -> None:
    run = Run(uid="ab" * 16, label="", started=1_700_000_000.0, ended=None, status=RunStatus.RUNNING, metadata={}, profile={})
    html = render_run_html(run)
    assert "This run has no results." in html and "This run never finished" in html and "<svg" not in html


# ------------------------------------------------------------------ what a comparison report shows


def test_comparison_shows_both_runs_every_verdict_and_the_ratio_chart(sample_comparison, comparison_html: str) -> None:
    html = comparison_html
    assert "kernel 6.8" in html and "kernel 6.11-rc2" in html
    assert sample_comparison.base.uid in html and sample_comparison.new.uid in html
    verdicts = {c.verdict for c in sample_comparison.cases}
    assert verdicts == set(Verdict), "the fixture should exercise every verdict"
    for verdict, css in ((Verdict.BETTER, "better"), (Verdict.WORSE, "worse"), (Verdict.SAME, "same"), (Verdict.NOT_COMPARABLE, "not-comparable"), (Verdict.LOST, "lost")):
        assert f'<span class="badge {css}">{verdict.value}</span>' in html
    assert "band = ±5%" in html and "&lt; 0.001" in html
    assert html.count("SQPOLL needs CAP_SYS_NICE") == 1  # one note, though both runs waived it
    assert "io_uring_disabled=2 on this kernel" in html  # why a capability was lost
    assert 'class="notice bad"' in html  # regressions listed up front
    assert "6.11.0-rc2" in html and 'class="differs"' in html  # the kernel changed between runs
    assert "iouring.enabled" in html  # its probe verdict changed from partial to no
    assert _svg_count(html) == 2  # one ratio chart per benchmark that has ratios (uring, memcpy)


def test_comparison_of_several_runs_per_side_names_them_and_their_medians(run_factory, comparison_factory) -> None:
    base = [replace(run_factory("kernel 6.8", seed=i), id=i) for i in (1, 2, 3)]
    new = [replace(run_factory("kernel 6.12", seed=i), id=i) for i in (4, 5)]
    html = render_comparison_html(comparison_factory(base, new))
    assert "runs 1,2,3 (kernel 6.8)" in html and "runs 4,5 (kernel 6.12)" in html
    measured = sum(1 for r in base[0].results if r.samples)
    assert html.count('<div class="job">runs: ') == 2 * measured  # under each side's value, the run medians it is the mean of
    single = render_comparison_html(comparison_factory(base[0], new[0]))
    assert '<div class="job">runs: ' not in single and "runs 1,2,3" not in single
    assert "geometric mean of the medians of its rounds" in html  # what the base and new columns are


# ------------------------------------------------------------------ files


def test_write_run_reports_writes_html_and_json_without_overwriting(sample_run: Run, tmp_path: Path) -> None:
    directory = tmp_path / "reports" / "deeper"
    html_path, json_path = write_run_reports(sample_run, directory)
    assert re.fullmatch(r"gpubench-run-7-\d{8}-\d{6}\.html", html_path.name)
    assert json_path == html_path.with_suffix(".json")
    assert Run.from_dict(json.loads(json_path.read_text(encoding="utf-8"))).to_dict() == sample_run.to_dict()
    first_html = html_path.read_bytes()

    again_html, again_json = write_run_reports(replace(sample_run, label="second"), directory)
    assert again_html.name == html_path.stem + "-2.html" and again_json.name == html_path.stem + "-2.json"
    assert html_path.read_bytes() == first_html
    assert sorted(p.name for p in directory.iterdir()) == sorted([html_path.name, json_path.name, again_html.name, again_json.name])


def test_write_run_reports_uses_the_uid_without_a_local_id(sample_run: Run, tmp_path: Path) -> None:
    html_path, _ = write_run_reports(replace(sample_run, id=None), tmp_path)
    assert html_path.name.startswith(f"gpubench-run-{sample_run.uid[:12]}-")


def test_write_run_reports_into_an_impossible_directory_is_a_user_error(sample_run: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write the reports"):
        write_run_reports(sample_run, blocker / "reports")


def test_run_json_is_the_versioned_run(sample_run: Run) -> None:
    text = run_json(sample_run)
    assert text.endswith("}\n") and text.startswith("{\n  ")
    data = json.loads(text)
    assert data["schema_version"] == SCHEMA_VERSION and data["uid"] == sample_run.uid
    assert data["results"][0]["samples"] == list(sample_run.results[0].samples)


def test_measured_beside_advertised():
    from dataclasses import replace

    from gpubench.report.html import render_run_html
    from gpubench.results.model import Result, ResultStatus, Run, RunStatus
    from gpubench.results.stats import summarize

    samples = (60.0, 61.0, 59.0)
    params = {"kernel": "triad", "cpu_node": 0, "mem_node": 1, "threads": 8, "advertised": 61.44, "advertised_what": "HMAT access0 read bandwidth (GB/s)"}
    cxl = Result("memtier", "triad-cpu0-mem1", params, "GB/s", True, ResultStatus.OK, samples=samples, summary=summarize(samples))
    run = Run("ab" * 16, "", 0.0, 1.0, RunStatus.COMPLETE, {}, {}, (cxl,))
    html = render_run_html(run)
    assert '<th class="num">advertised</th>' in html
    assert "61.44 GB/s (98%)" in html
    plain = replace(run, results=(replace(cxl, params=dict(params, advertised=None)),))
    assert ">advertised</th>" not in render_run_html(plain)


def test_comparison_says_what_changed_first_then_every_case_with_numbered_notes(sample_comparison, comparison_html: str) -> None:
    html = comparison_html
    changed, every = html.index("<h2>What changed</h2>"), html.index("<h2>Every case</h2>")
    assert changed < every
    what = html[changed:every]
    assert "<th>kernel.release</th>" in what and "6.11.0-rc2" in what  # the setting that differs (nested in this metadata), base then new
    assert "<code>iouring.enabled</code>" in what and ">partial</span>" in what  # the verdict that changed
    moved = [c for c in sample_comparison.cases if c.verdict in (Verdict.BETTER, Verdict.WORSE, Verdict.LOST)]
    assert moved and all(f"<code>{c.case}</code>" in what for c in moved)
    for table in re.findall(r'<table class="cases">.*?</table>\s*(?:<ol class="notes">.*?</ol>)?', html[every:], re.S):
        refs = re.findall(r'<td class="refs">([^<]*)</td>', table)
        notes = re.findall(r"<li>(.*?)</li>", table, re.S)
        assert all(re.fullmatch(r"(\d+(, \d+)*)?", r) for r in refs)  # a note never sits in the table, only its number
        assert sorted({int(n) for r in refs for n in r.split(", ") if n}) == list(range(1, len(notes) + 1))


def test_memory_reads_and_compares_in_gib(run_factory) -> None:
    """MemTotal moves by a few hundred KiB between two boots of one machine: the setting is compared
    as it reads, to a tenth of a GiB, so that only a real change of memory shows."""
    from gpubench.report.html_comparison import setting_rows
    from gpubench.results.changes import WhatChanged

    base = run_factory("a", seed=0)
    old = replace(base, metadata={**base.metadata, "memory_bytes": 24 * 2**30})
    rows = {}
    for new_bytes in (48 * 2**30, 24 * 2**30 + 300 * 2**10):
        new = replace(run_factory("b", seed=1), metadata={**base.metadata, "memory_bytes": new_bytes})
        differ, _, _ = setting_rows(WhatChanged.between([old], [new]))
        rows[new_bytes] = [r for r in differ if r["title"] == "memory"]
    assert [(r["base"], r["new"]) for r in rows[48 * 2**30]] == [("24.0 GiB", "48.0 GiB")]
    assert rows[24 * 2**30 + 300 * 2**10] == []
