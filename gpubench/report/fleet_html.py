"""The fleet report as one self-contained HTML page: the flagged nodes first, then per peer group
a node x case heat map of ratios to the group's median, the node x capability matrix, the groups
and the software. No JavaScript, nothing fetched; every value autoescaped by jinja2."""

from __future__ import annotations

import math
from typing import Any

from gpubench.fleet.hostlist import compress
from gpubench.fleet.model import CapabilityCell, CaseStats, FleetReport, PeerGroup
from gpubench.probe.model import probed_verdict
from gpubench.report import formats
from gpubench.report.fleet_tables import summary_lines
from gpubench.report.html import _render

SATURATE_AT = 0.5  # 50% worse (or better) than the median: the darkest colour
CAPABILITY_MARK = {"yes": "✓", "no": "✗", "partial": "◐", "unknown": "?"}


def _shade(worse: float) -> str:
    """A cell's background: red the worse way, blue the better way, white at the median."""
    depth = min(abs(worse) / SATURATE_AT, 1.0)
    fade = round(255 - depth * (255 - 120))
    return f"rgb(255,{fade},{fade})" if worse > 0 else f"rgb({fade},{round(255 - depth * 80)},255)"


def _heat_map(group: PeerGroup, cases: list[CaseStats]) -> dict[str, Any]:
    columns = [{"name": f"{c.benchmark}/{c.case}", "median": f"{formats.number(c.median)} {c.unit}",
                "direction": "higher is better" if c.higher_is_better else "lower is better"} for c in cases]
    scores = [{s.node: s for s in case.scores} for case in cases]
    not_run = [dict(case.not_run) for case in cases]
    rows = []
    for node in group.nodes:
        cells = []
        for index, case in enumerate(cases):
            score, why = scores[index].get(node), not_run[index].get(node)
            if score is None:
                cells.append({"text": "—", "style": "", "title": f"not run: {why or 'not in its run'}", "outlier": False, "missing": True})
                continue
            worse = (1 - score.ratio) if case.higher_is_better else (score.ratio - 1)
            cells.append({
                "text": f"{score.ratio:.2f}" if math.isfinite(score.ratio) else "—",
                "style": f"background:{_shade(worse)}" if math.isfinite(worse) else "",
                "title": f"{formats.number(score.value)} {case.unit}; {score.ratio:.3f}x the median; robust z {score.z:.1f}",
                "outlier": score.outlier,
                "missing": False,
            })
        rows.append({"node": node, "cells": cells})
    return {"group": group.name, "label": group.hardware.label, "test": group.test.value, "columns": columns, "rows": rows}


def _capability_matrix(report: FleetReport) -> dict[str, Any]:
    group_of = {n.node: n.group for n in report.nodes}
    notes, rows = [], []
    for node, row in report.capabilities.items():
        cells = []
        for key in report.capability_names:
            cell: CapabilityCell | None = row.get(key)
            status = probed_verdict(cell.status if cell is not None else None)
            note = None
            if cell is not None and cell.odd:
                notes.append({"node": node, "capability": key[1], "status": status, "lost": cell.lost, "why": cell.why})
                note = len(notes)
            cells.append({"status": status, "mark": CAPABILITY_MARK.get(status, "·"), "odd": bool(cell and cell.odd),
                          "lost": bool(cell and cell.lost), "note": note, "title": f"{key[1]}: {status}" + (f" - {cell.why}" if cell and cell.why else "")})
        rows.append({"node": node, "group": group_of.get(node) or "", "cells": cells})
    return {"columns": [{"area": a, "name": n} for a, n in report.capability_names], "rows": rows, "notes": notes}


def render_fleet_html(report: FleetReport) -> str:
    by_group: dict[str, list[CaseStats]] = {}
    for case in report.cases:
        by_group.setdefault(case.group, []).append(case)
    return _render(
        "fleet.html.j2",
        summary=summary_lines(report),
        node_count=len(report.nodes),
        flagged=[{"node": n.node, "group": n.group or "", "findings": n.findings, "tail": n.log_tail} for n in report.flagged],
        heat_maps=[_heat_map(g, by_group.get(g.name, [])) for g in report.groups],
        capabilities=_capability_matrix(report),
        groups=[{"name": g.name, "hardware": g.hardware.label, "nodes": f"{len(g.nodes)}: {compress(g.nodes)}", "test": g.test.value}
                for g in report.groups],
        software=[{"kernel": s.kernel, "driver": s.driver, "cuda": s.cuda, "nodes": f"{len(nodes)}: {compress(nodes)}"}
                  for s, nodes in report.software],
        saturate=f"{SATURATE_AT:.0%}",
        rules=report.rules_file,
    )
