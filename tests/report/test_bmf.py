"""export --format bmf: Bencher's metric format, read back as JSON."""

from __future__ import annotations

import json

import pytest

from gpubench.report.bmf import measure_slug, run_bmf
from tests.cli import fill, invoke
from tests.factories import CHASE, COPY, RANDREAD, SEQREAD, failed, measured, run_of, waived, waived_benchmark


@pytest.mark.parametrize(("unit", "slug"), [("MB/s", "mb-per-s"), ("GB/s", "gb-per-s"), ("ns", "ns"), ("µs", "us"), ("us", "us"), ("", "value")])
def test_measure_slugs(unit: str, slug: str) -> None:
    assert measure_slug(unit) == slug


def test_one_entry_per_measured_case_with_median_and_its_interval() -> None:
    read, chase, copy = measured(RANDREAD, (100.0, 110.0, 90.0, 105.0, 95.0)), measured(CHASE, (80.0, 82.0, 81.0)), measured(COPY, (40.0, 41.0))
    run = run_of((read, chase, copy, measured(RANDREAD, (1.0,)), waived(SEQREAD), failed(), waived_benchmark("p2p", "no GPU")))
    document = json.loads(run_bmf(run), parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert list(document) == [f"iouring/{RANDREAD.name}", f"memtier/{CHASE.name}", f"memtier/{COPY.name}"]
    assert document[f"iouring/{RANDREAD.name}"] == {
        "mb-per-s": {"value": 100.0, "lower_value": read.summary.ci_low, "upper_value": read.summary.ci_high}}
    assert document[f"memtier/{CHASE.name}"]["ns"]["value"] == 81.0
    for measures in document.values():
        ((_, metric),) = measures.items()
        assert metric["lower_value"] <= metric["value"] <= metric["upper_value"]


def test_export_bmf_through_the_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "r.db"
    fill(db, run_of((measured(RANDREAD), waived(SEQREAD))))
    result = invoke("export", "1", "--format", "bmf", "--db", str(db))
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)) == [f"iouring/{RANDREAD.name}"]
