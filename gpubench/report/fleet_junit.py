"""The fleet report as JUnit XML: one testcase per node, a failure for a flagged one with every
finding, so a CI system lists the nodes that are off."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gpubench.fleet.model import FleetReport
from gpubench.report.junit import _document, _element, _text


def fleet_junit(report: FleetReport) -> str:
    suite = ET.Element("testsuite", name="gpubench fleet")
    failures = 0
    for node in report.nodes:
        case = _element(suite, "testcase", classname=f"fleet.{node.group or 'no-run'}", name=node.node, time="0")
        lines = [f"{f.kind.value}: {f.subject}: {f.detail}" for f in node.findings]
        if lines:
            failures += 1
            summary = f"{len(lines)} finding(s): " + "; ".join(sorted({f.kind.value for f in node.findings}))
            _element(case, "failure", "\n".join(lines + list(node.log_tail)), message=summary, type=node.findings[0].kind.value)
        else:
            where = f"group {node.group}" + (f", kernel {node.software.kernel}" if node.software else "")
            _element(case, "system-out", f"in line with its peers ({where})")
    for name, value in (("tests", len(report.nodes)), ("failures", failures), ("errors", 0), ("skipped", 0)):
        suite.set(name, _text(value))
    return _document([suite])
