from __future__ import annotations

from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from gpubench.report.prometheus import run_textfile
from tests.factories import RANDREAD, SEQREAD, measured, run_of, waived

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
    # benchmarks name their cases plainly, but an imported run may carry any name
    run = run_of((replace(measured(RANDREAD, (10.0, 20.0, 30.0)), case=AWKWARD), waived(SEQREAD)), label='label with "quotes"')
    text = run_textfile(run)
    assert "# TYPE gpubench_result_median gauge" in text and "# HELP gpubench_result_median" in text
    samples = _samples(text)
    key = {"benchmark": "iouring", "case": AWKWARD}
    assert samples[("gpubench_result_median", frozenset({**key, "unit": "MB/s"}.items()))] == 20.0
    assert samples[("gpubench_result_samples", frozenset(key.items()))] == 3.0
    assert samples[("gpubench_result_status", frozenset({**key, "status": "ok"}.items()))] == 1.0
    waived_key = {"benchmark": "iouring", "case": SEQREAD.name}
    assert samples[("gpubench_result_status", frozenset({**waived_key, "status": "waived"}.items()))] == 1.0
    assert samples[("gpubench_result_status", frozenset({**waived_key, "status": "ok"}.items()))] == 0.0
    info = [k for k in samples if k[0] == "gpubench_run_info"]
    assert dict(info[0][1]) == {"uid": run.uid, "label": 'label with "quotes"', "status": "complete", "kernel": run.metadata["kernel"]}
    assert samples[("gpubench_run_start_time_seconds", frozenset())] == run.started
    # a waived result has no median series, rather than a fake zero
    assert not any(k[0] == "gpubench_result_median" and ("case", SEQREAD.name) in k[1] for k in samples)


def test_repeated_case_gives_one_series() -> None:
    run = run_of((measured(RANDREAD, (1.0,)), measured(RANDREAD, (2.0,))))
    samples = _samples(run_textfile(run))
    medians = [v for k, v in samples.items() if k[0] == "gpubench_result_median"]
    assert medians == [1.0]
