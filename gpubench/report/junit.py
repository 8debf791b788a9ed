"""JUnit XML, so CI systems show each benchmark case as a test.

A run: one testcase per result; waived = skipped (with the reason), failed or interrupted = error.
A comparison: one testcase per case; worse or lost capability = failure, not comparable = skipped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Sequence

from gpubench.report import formats
from gpubench.results.model import ROUNDS_SECONDS_KEY, Comparison, ResultStatus, Run, Verdict

# characters XML 1.0 cannot carry at all, even escaped
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _element(parent: ET.Element, tag: str, text: str | None = None, **attributes: object) -> ET.Element:
    child = ET.SubElement(parent, tag, {k: _text(v) for k, v in attributes.items()})
    if text:
        child.text = _text(text)
    return child


def _document(suites: list[ET.Element]) -> str:
    root = ET.Element("testsuites")
    for attribute in ("tests", "failures", "errors", "skipped"):
        root.set(attribute, str(sum(int(s.get(attribute, "0")) for s in suites)))
    root.extend(suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _duration(result) -> str:  # type: ignore[no-untyped-def]
    """The time the case's rounds took; the other cases' rounds ran in between."""
    seconds = result.extra.get(ROUNDS_SECONDS_KEY)
    if not isinstance(seconds, (int, float)):
        seconds = result.ended - result.started if result.started and result.ended else 0.0
    return f"{max(0.0, seconds):.3f}"


def run_junit(run: Run) -> str:
    suite = ET.Element("testsuite", name=_text(f"gpubench run {run.label.strip() or run.uid[:12]}"))
    properties = _element(suite, "properties")
    _element(properties, "property", name="uid", value=run.uid)
    _element(properties, "property", name="status", value=run.status.value)
    for key in ("kernel", "hostname", "cpu_model"):
        value = run.metadata.get(key)
        if isinstance(value, (str, int, float)) and str(value):
            _element(properties, "property", name=key, value=value)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for result in run.results:
        counts["tests"] += 1
        case = _element(suite, "testcase", classname=result.benchmark, name=result.case, time=_duration(result))
        if result.status is ResultStatus.WAIVED:
            counts["skipped"] += 1
            _element(case, "skipped", message=result.reason or "waived")
        elif result.status in (ResultStatus.FAILED, ResultStatus.INTERRUPTED):
            counts["errors"] += 1
            _element(case, "error", result.reason, message=result.reason or result.status.value, type=result.status.value)
        elif result.summary:
            s = result.summary
            _element(case, "system-out", f"median {s.median:.6g} {result.unit} (95% CI {s.ci_low:.6g} to {s.ci_high:.6g}), n={s.n}")
    for name, value in counts.items():
        suite.set(name, str(value))
    return _document([suite])


def comparison_junit(comparisons: Sequence[Comparison]) -> str:
    suites = []
    for comparison in comparisons:
        suite = ET.Element("testsuite", name=_text(f"gpubench compare {formats.side_name(comparison.base_side)} -> {formats.side_name(comparison.new_side)}"))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for c in comparison.cases:
            counts["tests"] += 1
            case = _element(suite, "testcase", classname=c.benchmark, name=c.case, time="0")
            summary = c.verdict.value + (f": {c.note}" if c.note else "")
            if c.verdict in (Verdict.WORSE, Verdict.LOST):
                counts["failures"] += 1
                _element(case, "failure", summary, message=summary, type=c.verdict.value)
            elif c.verdict is Verdict.NOT_COMPARABLE:
                counts["skipped"] += 1
                _element(case, "skipped", message=summary)
            else:
                _element(case, "system-out", summary)
        for name, value in counts.items():
            suite.set(name, str(value))
        suites.append(suite)
    return _document(suites)
