"""`gpubench fleet report --json`: the whole judgement as one document."""

from __future__ import annotations

import dataclasses
from typing import Any

from gpubench.fleet.model import CaseStats, FleetReport, NodeReport
from gpubench.results.jsonio import json_text
from gpubench.results.model import SCHEMA_VERSION


def _node(node: NodeReport) -> dict[str, Any]:
    return {
        "node": node.node,
        "flagged": node.flagged,
        "group": node.group,
        "state": node.state.value if node.state is not None else None,
        "run_uid": node.run_uid,
        "software": dataclasses.asdict(node.software) if node.software is not None else None,
        "findings": [{"kind": f.kind.value, "subject": f.subject, "detail": f.detail} for f in node.findings],
        "log_tail": list(node.log_tail),
    }


def _case(case: CaseStats) -> dict[str, Any]:
    return {
        "group": case.group,
        "benchmark": case.benchmark,
        "case": case.case,
        "unit": case.unit,
        "higher_is_better": case.higher_is_better,
        "median": case.median,
        "mad": case.mad,
        "spread": case.spread,
        "n": len(case.scores),
        "nodes": [dataclasses.asdict(score) for score in case.scores],
        "not_run": [{"node": node, "why": why} for node, why in case.not_run],
    }


def report_to_dict(report: FleetReport) -> dict[str, Any]:
    columns = list(report.capability_names)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "fleet-report",
        "thresholds": dataclasses.asdict(report.thresholds),
        "flagged": [n.node for n in report.flagged],
        "nodes": [_node(n) for n in report.nodes],
        "groups": [{"name": g.name, "hardware": dataclasses.asdict(g.hardware), "nodes": list(g.nodes), "judged_by": g.test.value}
                   for g in report.groups],
        "software": [{**dataclasses.asdict(s), "nodes": list(nodes)} for s, nodes in report.software],
        "cases": [_case(c) for c in report.cases],
        "capabilities": {
            "columns": [{"area": area, "name": name} for area, name in columns],
            "nodes": {
                node: [
                    {"status": cell.status.value if cell.status else None, "odd": cell.odd, "lost": cell.lost, "why": cell.why}
                    if (cell := row.get(column)) is not None else None
                    for column in columns
                ]
                for node, row in report.capabilities.items()
            },
        },
        "rules": report.rules_file,
        "baseline": list(report.baseline),
        "notes": list(report.notes),
    }


def report_json(report: FleetReport) -> str:
    return json_text(report_to_dict(report))
