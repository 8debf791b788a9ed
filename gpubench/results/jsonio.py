"""Runs and comparisons as JSON: export, and import with validation.

A run exports as Run.to_dict(), which carries `schema_version`: the same document as the JSON
report written beside a run's HTML, so either can be imported elsewhere. Import checks the whole
document before anything is stored and names the first problem with its place in the file
(e.g. `results[2].samples[0]: expected a number`), so a bad file is one clear line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from gpubench.errors import UserError, json_kind
from gpubench.files import read_user_file
from gpubench.results.model import HOST_SPEED_KEY, ROUND_KEY, SCHEMA_VERSION, CaseComparison, Comparison, Result, ResultStatus, Run, RunStatus, Summary
from gpubench.results.stats import summarize
from gpubench.telemetry.summary import TelemetrySummary

_UID = re.compile(r"^[0-9a-f]{8,64}$")
# `compare --json` is versioned on its own (runs: model.SCHEMA_VERSION). 2: "what_changed" per comparison.
COMPARISONS_SCHEMA_VERSION = 2
LAST_TIMESTAMP = 253402300800  # 10000-01-01 UTC
MAX_SAMPLE = 1e100  # beyond any measurement; near the largest float, sums of samples overflow


def json_text(data: Any) -> str:
    """Strict JSON: NaN and infinities, which JSON has no words for, are written as null."""
    return json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def run_to_json(run: Run) -> str:
    return json_text(run.to_dict())


def read_run_file(path: Path) -> Run:
    """A run from an exported JSON file, validated; any problem is a UserError naming it."""
    return run_from_json(read_user_file(path, "a gpubench JSON export"), str(path))


def run_from_json(raw: bytes | str, source: str = "input") -> Run:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise UserError(f"{source} is not UTF-8 text (byte {e.start}): not a gpubench JSON export") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        what = e.msg.removesuffix(" at")  # "Unterminated string starting at": the position follows
        raise UserError(f"{source} is not valid JSON: {what} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise UserError(f"{source} is not a gpubench export: nested too deeply") from None
    except ValueError as e:  # an integer of thousands of digits
        raise UserError(f"{source} is not a gpubench export: {e}") from None
    try:
        return run_from_dict(document)
    except InvalidDocument as e:
        raise UserError(f"{source}: {e}") from None


class InvalidDocument(ValueError):
    """What is wrong with a JSON document, and where."""


def run_from_dict(document: Any) -> Run:
    """Validate an exported run and build it (the local id is never taken from a file)."""
    if not isinstance(document, dict):
        raise InvalidDocument(f"expected a JSON object holding one run, found {json_kind(document)}")
    if document.get("kind") == "comparisons" or "comparisons" in document or "cases" in document:
        raise InvalidDocument("this is a comparison, not a run: import takes a file from `gpubench export RUN --format json`")
    if "schema_version" not in document:
        raise InvalidDocument("no schema_version: not a gpubench run export")
    version = document["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidDocument(f"schema_version: expected an integer, found {json_kind(version)}")
    if version > SCHEMA_VERSION:
        raise InvalidDocument(f"schema_version {version} is newer than this gpubench reads ({SCHEMA_VERSION}): upgrade gpubench")
    if version < 1:
        raise InvalidDocument(f"schema_version {version} is not a gpubench schema version")

    check = _Checker(document)
    uid = check.string("uid")
    if not _UID.match(uid):
        raise InvalidDocument(f"uid: expected 8 to 64 lowercase hex digits, found {uid!r}")
    label = check.string("label", optional=True)
    if label and not label.isprintable():
        raise InvalidDocument(f"label: expected printable text, found {label[:40]!r}")
    check.timestamp("started")
    check.timestamp("ended", nullable=True)
    check.in_order("started", "ended")
    check.choice("status", [s.value for s in RunStatus])
    check.mapping("metadata", optional=True)
    check.mapping("profile", optional=True)
    results = check.array("results", optional=True)
    for index, item in enumerate(results or ()):
        _check_result(item, f"results[{index}]")
    _check_values(document)
    run = Run.from_dict(document)
    # a summary is made from the samples, never taken from the file: the two cannot disagree
    return dataclasses.replace(run, results=tuple(
        dataclasses.replace(r, summary=summarize(r.samples) if r.samples else None) for r in run.results))


def _check_result(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidDocument(f"{where}: expected an object, found {json_kind(item)}")
    check = _Checker(item, where)
    for name in ("benchmark", "case", "unit"):
        check.string(name)
    check.mapping("params", optional=True)
    check.boolean("higher_is_better", optional=True)
    check.choice("status", [s.value for s in ResultStatus])
    check.string("reason", optional=True)
    samples = check.array("samples", optional=True) or []
    _check_samples(samples, where)
    if item["status"] == ResultStatus.OK.value and not samples:
        raise InvalidDocument(f"{where}.samples: a result with status ok needs samples")
    for index, entry in enumerate(check.array("sample_metrics", optional=True) or []):
        _check_sample_metrics(entry, f"{where}.sample_metrics[{index}]")
    check.mapping("extra", optional=True)
    check.mapping("telemetry", optional=True)
    _check_telemetry(item.get("telemetry"), where)
    check.timestamp("started", optional=True)
    check.timestamp("ended", optional=True)
    check.in_order("started", "ended")
    _check_summary(item.get("summary"), len(samples), f"{where}.summary")


def _check_samples(samples: list, where: str) -> None:
    for index, value in enumerate(samples):
        _number(value, f"{where}.samples[{index}]")
        if not 0 <= value <= MAX_SAMPLE:  # MB/s, IOPS, GB/s, ns, us, J: none is negative or astronomical
            raise InvalidDocument(f"{where}.samples[{index}]: expected a measurement from 0 to {MAX_SAMPLE:g}, found {value}")


def _check_sample_metrics(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise InvalidDocument(f"{where}: expected an object, found {json_kind(entry)}")
    number = entry.get(ROUND_KEY, 1)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidDocument(f"{where}.{ROUND_KEY}: expected a round number (1, 2, ...), found {json.dumps(number)[:40]}")
    if HOST_SPEED_KEY in entry:
        speed = entry[HOST_SPEED_KEY]
        _number(speed, f"{where}.{HOST_SPEED_KEY}")
        if speed <= 0:
            raise InvalidDocument(f"{where}.{HOST_SPEED_KEY}: expected a speed above zero, found {speed}")


def _check_summary(summary: Any, n_samples: int, where: str) -> None:
    """A stored summary must at least agree with the samples it came from (it is made anew)."""
    if summary is None:
        return
    if not isinstance(summary, dict):
        raise InvalidDocument(f"{where}: expected an object or null, found {json_kind(summary)}")
    for name in Summary.__dataclass_fields__:
        if name not in summary:
            raise InvalidDocument(f"{where}.{name}: missing")
        _number(summary[name], f"{where}.{name}")
    if isinstance(summary["n"], float) and not summary["n"].is_integer():
        raise InvalidDocument(f"{where}.n: expected a whole number")
    if summary["n"] != n_samples:
        raise InvalidDocument(f"{where}.n: {summary['n']}, but the result has {n_samples} samples")


def _check_telemetry(telemetry: Any, where: str) -> None:
    if telemetry:
        try:
            TelemetrySummary.from_dict(telemetry)
        except ValueError as e:  # its message starts with "telemetry."
            raise InvalidDocument(f"{where}.{e}") from None


class _Checker:
    def __init__(self, obj: dict[str, Any], where: str = "") -> None:
        self.obj = obj
        self.where = where

    def _get(self, name: str, optional: bool) -> tuple[bool, Any]:
        if name not in self.obj:
            if optional:
                return False, None
            raise InvalidDocument(f"{self._at(name)}: missing")
        return True, self.obj[name]

    def _at(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def string(self, name: str, optional: bool = False) -> str:
        present, value = self._get(name, optional)
        if present and not isinstance(value, str):
            raise InvalidDocument(f"{self._at(name)}: expected a string, found {json_kind(value)}")
        return value

    def number(self, name: str, optional: bool = False, nullable: bool = False) -> None:
        present, value = self._get(name, optional)
        if present and not (nullable and value is None):
            _number(value, self._at(name))

    def timestamp(self, name: str, optional: bool = False, nullable: bool = False) -> None:
        """Seconds since 1970, before the year 10000."""
        self.number(name, optional, nullable)
        value = self.obj.get(name)
        if value is not None and not 0 <= value < LAST_TIMESTAMP:
            raise InvalidDocument(f"{self._at(name)}: expected a time in seconds since 1970, found {value}")

    def in_order(self, first: str, then: str) -> None:
        """`then` (a time, where given) is not before `first`."""
        earlier, later = self.obj.get(first), self.obj.get(then)
        if earlier is not None and later is not None and later < earlier:
            raise InvalidDocument(f"{self._at(then)}: {later} is before {first} ({earlier})")

    def boolean(self, name: str, optional: bool = False) -> None:
        present, value = self._get(name, optional)
        if present and not isinstance(value, bool):
            raise InvalidDocument(f"{self._at(name)}: expected true or false, found {json_kind(value)}")

    def choice(self, name: str, allowed: Sequence[str]) -> None:
        _, value = self._get(name, False)
        if value not in allowed:
            raise InvalidDocument(f"{self._at(name)}: expected one of {', '.join(allowed)}, found {json.dumps(value)[:40]}")

    def mapping(self, name: str, optional: bool = False) -> None:
        present, value = self._get(name, optional)
        if present and value is not None and not isinstance(value, dict):
            raise InvalidDocument(f"{self._at(name)}: expected an object, found {json_kind(value)}")

    def array(self, name: str, optional: bool = False) -> list | None:
        present, value = self._get(name, optional)
        if present and not isinstance(value, list):
            raise InvalidDocument(f"{self._at(name)}: expected a list, found {json_kind(value)}")
        return value


def _number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidDocument(f"{where}: expected a number, found {json_kind(value)}")
    if not _finite_number(value):
        raise InvalidDocument(f"{where}: expected a finite number, found {str(value)[:40]}")


def _finite_number(value: int | float) -> bool:
    """Finite, and (a whole number) within what a float holds."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_values(document: Any) -> None:
    """Anywhere in the document (parameters and metadata too): numbers finite, text valid Unicode."""
    pending = [(document, "")]
    while pending:
        value, where = pending.pop()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _finite_number(value):
            raise InvalidDocument(f"{where}: expected a finite number, found {str(value)[:40]}")
        if isinstance(value, str):
            _text(value, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                _text(key, where)
                pending.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            pending.extend((item, f"{where}[{index}]") for index, item in enumerate(value))


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidDocument(f"{where or 'a key'}: not valid Unicode text (a lone surrogate at character {e.start})") from None


# --- comparisons --------------------------------------------------------------------------------


def _run_ref(run: Run) -> dict[str, Any]:
    return {"id": run.id, "uid": run.uid, "label": run.label, "started": run.started, "status": run.status.value}


def _side(result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    summary = result.summary
    return {
        "status": result.status.value,
        "reason": result.reason,
        "params": result.params,
        "n": len(result.samples),
        "median": summary.median if summary else None,
        "ci_low": summary.ci_low if summary else None,
        "ci_high": summary.ci_high if summary else None,
    }


def case_comparison_to_dict(case: CaseComparison) -> dict[str, Any]:
    return {
        "benchmark": case.benchmark,
        "case": case.case,
        "unit": case.unit,
        "higher_is_better": case.higher_is_better,
        "verdict": case.verdict.value,
        "base": _side(case.base),
        "new": _side(case.new),
        "ratio": case.ratio,
        "ci_low": case.ci_low,
        "ci_high": case.ci_high,
        "p_value": case.p_value,
        "note": case.note,
        "base_level": case.base_level,
        "new_level": case.new_level,
        "units": case.units,
        "base_medians": list(case.base_medians),
        "new_medians": list(case.new_medians),
    }


def comparison_to_dict(comparison: Comparison) -> dict[str, Any]:
    from gpubench.results.changes import what_changed

    return {
        "base": _run_ref(comparison.base),
        "new": _run_ref(comparison.new),
        "base_runs": [_run_ref(r) for r in comparison.base_side],
        "new_runs": [_run_ref(r) for r in comparison.new_side],
        "threshold": comparison.threshold,
        "machine_speed": dict(zip(("base", "new"), comparison.machine_speeds)),
        "regressions": len(comparison.regressions),
        "what_changed": what_changed(comparison).to_dict(),
        "cases": [case_comparison_to_dict(c) for c in comparison.cases],
    }


def comparisons_to_json(comparisons: Sequence[Comparison], notes: Sequence[str] = ()) -> str:
    """`gpubench compare --json`: one entry per new run, all against the same base, and the notes
    the terminal prints on stderr."""
    document = {
        "schema_version": COMPARISONS_SCHEMA_VERSION,
        "kind": "comparisons",
        "regressions": sum(len(c.regressions) for c in comparisons),
        "notes": list(notes),
        "comparisons": [comparison_to_dict(c) for c in comparisons],
    }
    return json_text(document)
