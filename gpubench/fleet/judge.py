"""Judge every node: against its identical peers (peers), against the rules (rules), and by how
its task ended (the fleet run's status files). A node with any finding is flagged."""

from __future__ import annotations

from typing import Mapping

from gpubench.errors import UserError
from gpubench.fleet.collect import Collected
from gpubench.fleet.hostlist import natural_key
from gpubench.fleet.layout import NodeState
from gpubench.fleet.model import CaseKey, Finding, FindingKind, FleetReport, NodeReport, Software, Thresholds
from gpubench.fleet.peers import capability_findings, capability_matrix, case_findings, case_stats, peer_groups
from gpubench.fleet.rules import RuleSet, check_rules

FINDING_ORDER = (FindingKind.NOT_FINISHED, FindingKind.UNREADABLE, FindingKind.LOST_CAPABILITY, FindingKind.LOST_CASE,
                 FindingKind.SLOW, FindingKind.RULE)


def judge(collected: Collected, thresholds: Thresholds, rules: RuleSet | None = None,
          baseline: Mapping[CaseKey, float] | None = None, baseline_uids: tuple[str, ...] = ()) -> FleetReport:
    if not collected.runs:
        raise UserError(_nothing_to_judge(collected))
    runs = {run.node: run for run in collected.runs}
    groups = peer_groups(runs.values(), thresholds)
    found: list[dict[str, list[Finding]]] = [_ending_findings(collected)]
    cases, cells = [], {}
    for group in groups:
        stats = case_stats(group, runs, thresholds)
        group_cells = capability_matrix(group, runs)
        cases += stats
        cells.update(group_cells)
        found += [case_findings(stats, group), capability_findings(group_cells)]
    notes = list(collected.notes)
    if rules is not None:
        rule_findings, rule_notes = check_rules(rules, collected.runs, baseline or {})
        found.append(rule_findings)
        notes += rule_notes
    findings: dict[str, list[Finding]] = {}
    for per_node in found:
        for node, items in per_node.items():
            findings.setdefault(node, []).extend(items)
    group_of = {node: group.name for group in groups for node in group.nodes}
    names = sorted(set(runs) | set(collected.statuses) | set(collected.unreadable), key=natural_key)
    nodes = []
    for name in names:
        run, status = runs.get(name), collected.statuses.get(name)
        nodes.append(NodeReport(
            node=name,
            group=group_of.get(name),
            state=status.state if status else None,
            run_uid=run.uid if run else None,
            software=run.software if run else None,
            findings=tuple(sorted(findings.get(name, ()), key=_rank)),
            log_tail=collected.log_tails.get(name, ()),
        ))
    columns = list(dict.fromkeys(key for name in names if name in cells for key in cells[name]))
    return FleetReport(
        nodes=tuple(nodes),
        groups=groups,
        cases=tuple(cases),
        capability_names=tuple(columns),
        capabilities=cells,
        software=_software_groups(runs.values()),
        thresholds=thresholds,
        rules_file=rules.source if rules is not None else None,
        baseline=baseline_uids,
        notes=tuple(notes),
    )


def _rank(finding: Finding) -> int:
    return FINDING_ORDER.index(finding.kind)


def _ending_findings(collected: Collected) -> dict[str, list[Finding]]:
    """How each node's task ended, where not well, and the exports that could not be read."""
    found: dict[str, list[Finding]] = {}
    for node, status in collected.statuses.items():
        if status.state is not NodeState.OK:
            tail = collected.log_tails.get(node, ())
            detail = (status.message or "no message") + (f"; its last output: {tail[-1]}" if tail else "")
            found.setdefault(node, []).append(Finding(FindingKind.NOT_FINISHED, status.state.value, detail))
    for node, problem in collected.unreadable.items():
        found.setdefault(node, []).append(Finding(FindingKind.UNREADABLE, "export", problem))
    return found


def _software_groups(runs) -> tuple[tuple[Software, tuple[str, ...]], ...]:  # type: ignore[no-untyped-def]
    members: dict[Software, list[str]] = {}
    for run in runs:
        members.setdefault(run.software, []).append(run.node)
    ordered = sorted(members.items(), key=lambda item: (-len(item[1]), item[0]))
    return tuple((software, tuple(sorted(nodes, key=natural_key))) for software, nodes in ordered)


def _nothing_to_judge(collected: Collected) -> str:
    parts = []
    if collected.statuses:
        ended = sorted({s.state.value for s in collected.statuses.values()})
        parts.append(f"{len(collected.statuses)} node(s) in the fleet run ({', '.join(ended)}), none exported a run")
    if collected.unreadable:
        parts.append(f"{len(collected.unreadable)} export(s) could not be read (first: {next(iter(collected.unreadable.values()))})")
    parts += list(collected.notes)
    return "nothing to judge: " + ("; ".join(parts) if parts else "no node exports given")
