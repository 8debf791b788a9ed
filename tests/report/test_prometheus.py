from __future__ import annotations

import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "results"))
from history_factories import build_result, build_run  # noqa: E402

from gpubench.report.prometheus import run_textfile  # noqa: E402
from gpubench.results.model import ResultStatus  # noqa: E402

AWKWARD = 'quote" back\\slash\nnewline'


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type == "gauge"
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def test_textfile_parses_with_escaped_labels() -> None:
    run = build_run(
        (build_result(AWKWARD, samples=(10.0, 20.0, 30.0)), build_result("w", status=ResultStatus.WAIVED)),
        label='label with "quotes"',
    )
    text = run_textfile(run)
    assert "# TYPE gpubench_result_median gauge" in text and "# HELP gpubench_result_median" in text
    samples = _samples(text)
    key = {"benchmark": "uring", "case": AWKWARD}
    assert samples[("gpubench_result_median", frozenset({**key, "unit": "MiB/s"}.items()))] == 20.0
    assert samples[("gpubench_result_samples", frozenset(key.items()))] == 3.0
    assert samples[("gpubench_result_status", frozenset({**key, "status": "ok"}.items()))] == 1.0
    assert samples[("gpubench_result_status", frozenset({"benchmark": "uring", "case": "w", "status": "waived"}.items()))] == 1.0
    assert samples[("gpubench_result_status", frozenset({"benchmark": "uring", "case": "w", "status": "ok"}.items()))] == 0.0
    info = [k for k in samples if k[0] == "gpubench_run_info"]
    assert dict(info[0][1]) == {"uid": run.uid, "label": 'label with "quotes"', "status": "complete", "kernel": "6.8.0-45-generic"}
    assert samples[("gpubench_run_start_time_seconds", frozenset())] == run.started
    # a waived result has no median series, rather than a fake zero
    assert not any(k[0] == "gpubench_result_median" and ("case", "w") in k[1] for k in samples)


def test_repeated_case_gives_one_series() -> None:
    run = build_run((build_result("a", samples=(1.0,)), build_result("a", samples=(2.0,))))
    samples = _samples(run_textfile(run))
    medians = [v for k, v in samples.items() if k[0] == "gpubench_result_median"]
    assert medians == [1.0]
