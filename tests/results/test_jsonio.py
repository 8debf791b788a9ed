from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.results.compare import compare
from gpubench.results.jsonio import comparisons_to_json, read_run_file, run_from_json, run_to_json
from gpubench.results.model import SCHEMA_VERSION
from tests.factories import RANDREAD, SEQREAD, measured, noisy, run_of, waived


def _document() -> dict:
    run = run_of((measured(RANDREAD), waived(SEQREAD)), label="ünïcode <b>", started=1700000000.0)
    return json.loads(run_to_json(run))


def test_json_round_trip_keeps_everything() -> None:
    run = run_of((measured(RANDREAD, (1.0, 2.000000000000001, 1e-300)), waived(SEQREAD)))
    text = run_to_json(run)
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    back = run_from_json(text)
    assert back.to_dict() == run.to_dict()
    assert back.results == run.results
    assert back.id is None


def test_a_summary_is_made_from_the_samples_not_taken_from_the_file() -> None:
    document = _document()
    document["results"][0]["samples"] = [0.0] * len(document["results"][0]["samples"])
    back = run_from_json(json.dumps(document))
    assert back.results[0].summary is not None and back.results[0].summary.median == 0.0
    assert back.results[0].summary.maximum == 0.0


def _mutated(mutate) -> str:  # type: ignore[no-untyped-def]
    document = _document()
    mutate(document)
    return json.dumps(document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"uid": "abc", ', "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ('{"uid": "ab', "not valid JSON: Unterminated string starting at line 1 column 9"),
        ("[1, 2]", "expected a JSON object holding one run, found a list"),
        (_mutated(lambda d: d.pop("schema_version")), "no schema_version"),
        (_mutated(lambda d: d.update(schema_version=SCHEMA_VERSION + 1)), f"schema_version {SCHEMA_VERSION + 1} is newer"),
        (_mutated(lambda d: d.update(schema_version="1")), "schema_version: expected an integer"),
        (_mutated(lambda d: d.pop("uid")), "uid: missing"),
        (_mutated(lambda d: d.update(uid="../../etc")), "uid: expected 8 to 64 lowercase hex digits"),
        (_mutated(lambda d: d.update(status="exploded")), "status: expected one of running, complete, interrupted"),
        (_mutated(lambda d: d["results"][0].pop("unit")), "results[0].unit: missing"),
        (_mutated(lambda d: d["results"][0]["samples"].__setitem__(2, "fast")), "results[0].samples[2]: expected a number, found a string"),
        (_mutated(lambda d: d["results"][0]["samples"].__setitem__(0, True)), "results[0].samples[0]: expected a number, found a boolean"),
        (_mutated(lambda d: d["results"][0]["summary"].pop("median")), "results[0].summary.median: missing"),
        (_mutated(lambda d: d["results"][1].update(status="meh")), "results[1].status: expected one of ok, waived"),
        (_mutated(lambda d: d.update(results={"a": 1})), "results: expected a list, found an object"),
        (_mutated(lambda d: d["results"][0]["samples"].__setitem__(0, float("nan"))), "results[0].samples[0]: expected a finite number"),
        ('{"schema_version": 1, "kind": "comparisons", "comparisons": []}', "this is a comparison, not a run"),
        (_mutated(lambda d: d["results"][0]["sample_metrics"][0].update(round="a")), "results[0].sample_metrics[0].round: expected a round number"),
        (_mutated(lambda d: d["results"][0]["sample_metrics"][1].update(round=None)), "results[0].sample_metrics[1].round: expected a round number"),
        (_mutated(lambda d: d["results"][0]["sample_metrics"][0].update(round=0)), "results[0].sample_metrics[0].round: expected a round number"),
        (_mutated(lambda d: d["results"][0]["sample_metrics"][0].update(host_speed=None)), "results[0].sample_metrics[0].host_speed: expected a number, found null"),
        (_mutated(lambda d: d["results"][0]["sample_metrics"][1].update(host_speed="fast")), "results[0].sample_metrics[1].host_speed: expected a number"),
        (_mutated(lambda d: d["results"][0]["sample_metrics"][0].update(host_speed=0)), "results[0].sample_metrics[0].host_speed: expected a speed above zero"),
        (_mutated(lambda d: d["results"][0]["params"].update(x=float("nan"))), "results[0].params.x: expected a finite number, found nan"),
        (_mutated(lambda d: d["metadata"].update(cpu={"mhz": float("inf")})), "metadata.cpu.mhz: expected a finite number, found inf"),
        (_mutated(lambda d: d["results"][0].update(case="x\ud800y")), "results[0].case: not valid Unicode text"),
        (_mutated(lambda d: d.update(started=1e20)), "started: expected a time in seconds since 1970, found 1e+20"),
        (_mutated(lambda d: d["results"][0].update(ended=-5)), "results[0].ended: expected a time in seconds since 1970"),
        (_mutated(lambda d: d["results"][0].update(samples=[], sample_metrics=[])), "results[0].samples: a result with status ok needs samples"),
        (_mutated(lambda d: d["results"][0].pop("samples")), "results[0].samples: a result with status ok needs samples"),
        (_mutated(lambda d: d["results"][0]["samples"].__setitem__(1, -1)), "results[0].samples[1]: expected a measurement from 0 to 1e+100, found -1"),
        (_mutated(lambda d: d["results"][0]["samples"].__setitem__(0, 1e308)), "results[0].samples[0]: expected a measurement from 0 to 1e+100, found 1e+308"),
        (_mutated(lambda d: d["results"][0]["summary"].update(n=4)), "results[0].summary.n: 4, but the result has 5 samples"),
        (_mutated(lambda d: d.update(started=10**400)), "started: expected a finite number, found 1000000000"),
        (_mutated(lambda d: d["results"][0]["samples"].__setitem__(0, 10**400)), "results[0].samples[0]: expected a finite number"),
        (_mutated(lambda d: d["metadata"].update(big=10**400)), "metadata.big: expected a finite number"),
        ('{"schema_version": ' + "1" * 5000 + "}", "is not a gpubench export: Exceeds the limit"),
        (_mutated(lambda d: d.update(label="a\x1b[31mred\nline")), "label: expected printable text, found 'a\\x1b[31mred\\nline'"),
        (_mutated(lambda d: d.update(started=1700000200.0)), "ended: 1700000100.0 is before started (1700000200.0)"),
        (_mutated(lambda d: d["results"][0].update(ended=1.0)), "results[0].ended: 1.0 is before started"),
        (_mutated(lambda d: d["results"][1].update(summary=d["results"][0]["summary"])), "results[1].summary.n: 5, but the result has 0 samples"),
    ],
)
def test_invalid_documents_are_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(UserError) as err:
        run_from_json(text, "export.json")
    message = str(err.value)
    assert message.startswith("export.json")
    assert expected in message
    assert "\n" not in message


def test_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "x.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="not UTF-8"):
        read_run_file(binary)
    with pytest.raises(UserError, match="no such file"):
        read_run_file(tmp_path / "missing.json")
    with pytest.raises(UserError, match="is a directory"):
        read_run_file(tmp_path)


def test_comparison_json_is_strict_json() -> None:
    base = run_of((measured(RANDREAD, noisy(100.0, seed=1)), measured(SEQREAD)))
    new = run_of((measured(RANDREAD, noisy(80.0, seed=2)), waived(SEQREAD)))
    text = comparisons_to_json([compare(base, new)])
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert document["kind"] == "comparisons" and document["regressions"] == 2
    (entry,) = document["comparisons"]
    assert entry["base"]["uid"] == base.uid and entry["new"]["uid"] == new.uid
    verdicts = {c["case"]: c["verdict"] for c in entry["cases"]}
    assert verdicts == {RANDREAD.name: "worse", SEQREAD.name: "lost capability"}
    assert entry["cases"][0]["base"]["median"] == pytest.approx(100.0, rel=0.02)


def test_exports_are_strict_json_even_with_non_finite_values_stored() -> None:
    result = measured()
    run = run_of((replace(result, extra={**result.extra, "p99_us": float("nan"), "peak": [1.0, float("inf")]}),))
    document = json.loads(run_to_json(run), parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert document["results"][0]["extra"] == {**result.extra, "p99_us": None, "peak": [1.0, None]}
