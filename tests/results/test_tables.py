from __future__ import annotations

import csv
import io
import json

from dataclasses import replace

from rich.console import Console

from gpubench.report import tables
from gpubench.report.csvout import COLUMNS, run_csv
from gpubench.results.compare import compare
from gpubench.results.model import ResultStatus, RunStatus, Verdict
from gpubench.results.store import RunListing
from tests.factories import RANDREAD, SEQREAD, measured, noisy, run_of, waived


def _render(renderable) -> str:  # type: ignore[no-untyped-def]
    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_style_maps_cover_every_enum_member() -> None:
    assert set(tables.VERDICT_STYLE) == set(Verdict)
    assert set(tables.RUN_STATUS_STYLE) == set(RunStatus)
    assert set(tables.RESULT_COUNT_STYLE) == set(ResultStatus)


def test_comparison_table_shows_medians_change_and_verdicts() -> None:
    base = run_of((measured(RANDREAD, noisy(1000.0, seed=1)), measured(SEQREAD)), label="6.8", id=1)
    new = run_of((measured(RANDREAD, noisy(800.0, seed=2)), waived(SEQREAD)), label="6.12", id=2)
    text = _render(tables.comparison_table(compare(base, new)))
    assert "run 1 (6.8) -> run 2 (6.12)" in text
    assert "-20." in text and "worse" in text and "lost capability" in text and "waived" in text


def test_runs_and_results_tables() -> None:
    run = run_of((measured(RANDREAD, (1234.5, 1250.0, 1240.0)), waived(SEQREAD, "O_DIRECT fails on tmpfs")), label="nightly", id=7,
                 metadata={"kernel": "6.8.0-45-generic", "cpu_model": "AMD EPYC 7763"})
    listing = _render(tables.runs_table([RunListing(run, {"ok": 1, "waived": 1})]))
    assert "nightly" in listing and "1 ok 1 waived" in listing and "6.8.0-45-generic" in listing
    results = _render(tables.results_table(run))
    assert "1,240 MB/s" in results and "O_DIRECT fails on tmpfs" in results
    header = _render(tables.run_header(run))
    assert run.uid in header and "AMD EPYC 7763" in header


def test_numbers_read_the_same_everywhere() -> None:
    from gpubench.report import formats

    assert formats.number(12345.6) == "12,346"
    assert formats.number(123.456) == "123.5"
    assert formats.number(0.000123456) == "1.235e-04"
    assert formats.number(float("nan")) == ""
    assert formats.number(None, "—") == "—"


def test_csv_has_one_row_per_result_and_round_trips_samples() -> None:
    # benchmarks name their cases plainly, but an imported run may carry any name
    run = run_of((replace(measured(RANDREAD, (1.5, 2.5, 3.5)), case='quote"and,comma'), waived(SEQREAD)))
    rows = list(csv.DictReader(io.StringIO(run_csv(run))))
    assert tuple(rows[0]) == COLUMNS
    assert [r["case"] for r in rows] == ['quote"and,comma', SEQREAD.name]
    assert json.loads(rows[0]["samples"]) == [1.5, 2.5, 3.5]
    assert float(rows[0]["median"]) == 2.5
    assert rows[1]["status"] == "waived" and rows[1]["median"] == ""
    assert json.loads(rows[0]["params"]) == run.results[0].params


def test_sample_counts_name_their_rounds() -> None:
    from gpubench.report.formats import sample_count

    plain = measured(samples=(1.0, 2.0, 3.0))
    assert sample_count(plain) == "3"
    rounds = measured(rounds=[(1.0, 2.0), (3.0,), (4.0,)])
    assert sample_count(rounds) == "4 in 3 rounds"
    assert sample_count(waived()) == "0"
