"""The fleet's tables as plain rows, drawn for a terminal (rich, fitted to its width) or as
Markdown: one set of rows, two renderings, so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from rich.table import Table
from rich.text import Text

from gpubench.fleet.hostlist import compress
from gpubench.fleet.layout import NodeState, NodeStatus
from gpubench.fleet.model import FleetReport
from gpubench.probe.model import probed_verdict
from gpubench.report import formats
from gpubench.report.markdown import cell
from gpubench.report.terminal import PROSE_WIDTH

STATE_STYLE = {
    NodeState.OK: "green",
    NodeState.RUNNING: "cyan",
    NodeState.FAILED: "bold red",
    NodeState.TIMED_OUT: "bold yellow",
    NodeState.INTERRUPTED: "bold yellow",
    NodeState.NO_REPORT: "bold red",
}


@dataclass(frozen=True)
class PlainTable:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    prose: tuple[str, ...] = ()  # the columns of sentences, which wrap
    numeric: tuple[str, ...] = ()  # right-aligned
    styles: tuple[str, ...] = ()  # per row ("" for none), applied to its first cell
    note: str = ""


def to_rich(table: PlainTable) -> Table:
    out = Table(title=table.title, title_justify="left", caption=table.note or None, caption_justify="left")
    for header in table.headers:
        prose = header in table.prose
        out.add_column(header, justify="right" if header in table.numeric else "left", no_wrap=not prose,
                       max_width=PROSE_WIDTH if prose else None, overflow="fold")
    for index, row in enumerate(table.rows):
        style = table.styles[index] if index < len(table.styles) else ""
        out.add_row(Text(row[0], style=style), *(Text(cell) for cell in row[1:]))
    return out


def to_markdown(tables: Iterable[PlainTable]) -> str:
    parts = []
    for table in tables:
        parts.append(f"### {table.title}\n")
        parts.append("| " + " | ".join(cell(h) or " " for h in table.headers) + " |")
        parts.append("|" + "|".join("---:" if h in table.numeric else "---" for h in table.headers) + "|")
        parts += ["| " + " | ".join(cell(text) or " " for text in row) + " |" for row in table.rows]
        if table.note:
            parts.append(f"\n{cell(table.note)}")
        parts.append("")
    return "\n".join(parts) + "\n"


def launch_rows(statuses: Sequence[NodeStatus]) -> PlainTable:
    rows, styles = [], []
    for status in statuses:
        took = status.ended - status.started if status.started and status.ended else None
        rows.append((status.node, status.state.value, "" if status.exit_code is None else str(status.exit_code),
                     formats.duration(took, ""), status.message))
        styles.append(STATE_STYLE[status.state])
    return PlainTable("Nodes", ("node", "state", "exit", "took", "what happened"), tuple(rows),
                      prose=("what happened",), numeric=("exit", "took"), styles=tuple(styles))


def launch_table(statuses: Iterable[NodeStatus]) -> Table:
    return to_rich(launch_rows(list(statuses)))


# --- the fleet report ---------------------------------------------------------------------------


def summary_lines(report: FleetReport) -> list[str]:
    t = report.thresholds
    judged = sum(1 for n in report.nodes if n.run_uid is not None)
    lines = [
        f"{len(report.nodes)} node(s), {judged} with a run to judge, in {len(report.groups)} group(s) of identical hardware; "
        f"{len(report.flagged)} flagged",
        f"outliers: robust z above {t.z:g} and at least {t.relative:.0%} worse than the group's median "
        f"(groups of fewer than {t.min_group_for_z}: the {t.relative:.0%} alone); spread: 1.4826 x MAD, at least {t.mad_floor:.0%} of the median",
    ]
    if report.rules_file:
        lines.append(f"rules: {report.rules_file}" + (f"; baseline: {', '.join(u[:12] for u in report.baseline)}" if report.baseline else ""))
    return lines + [f"note: {note}" for note in report.notes]


def flagged_rows(report: FleetReport) -> PlainTable:
    rows, styles = [], []
    for node in report.flagged:
        for index, finding in enumerate(node.findings):
            rows.append((node.node if index == 0 else "", finding.kind.value, f"{finding.subject}: {finding.detail}"))
            styles.append("bold red")
    return PlainTable("Flagged nodes", ("node", "finding", "detail"), tuple(rows), prose=("detail",), styles=tuple(styles),
                      note="" if rows else "no node is flagged")


def group_rows(report: FleetReport) -> PlainTable:
    rows = tuple((g.name, f"{len(g.nodes)}: {compress(g.nodes)}", g.hardware.label, g.test.value) for g in report.groups)
    return PlainTable("Peer groups (identical hardware: CPU model, GPUs, memory)", ("group", "nodes", "hardware", "judged by"), rows,
                      prose=("nodes", "hardware", "judged by"))


def software_rows(report: FleetReport) -> PlainTable:
    rows = tuple((s.kernel, s.driver, s.cuda, f"{len(nodes)}: {compress(nodes)}") for s, nodes in report.software)
    return PlainTable("Software (kernel release, NVIDIA driver, CUDA)", ("kernel", "driver", "CUDA", "nodes"), rows, prose=("nodes",))


def capability_rows(report: FleetReport) -> PlainTable:
    rows, styles = [], []
    for node in report.nodes:
        for (area, name), verdict in report.capabilities.get(node.node, {}).items():
            if verdict.odd:
                rows.append((node.node, name, probed_verdict(verdict.status), "lost" if verdict.lost else "differs", verdict.why))
                styles.append("bold red" if verdict.lost else "")
    return PlainTable("Capabilities that differ from the node's peers", ("node", "capability", "verdict", "", "why"), tuple(rows),
                      prose=("why",), styles=tuple(styles), note="" if rows else "every node has the capabilities of its peers")


def case_rows(report: FleetReport, only_slow: bool = False) -> PlainTable:
    rows = []
    for case in report.cases:
        slow = [s.node for s in case.scores if s.outlier]
        if only_slow and not slow:
            continue
        rows.append((case.group, f"{case.benchmark}/{case.case}", f"{formats.number(case.median)} {case.unit}",
                     f"{case.spread / abs(case.median):.1%}" if case.median else "", str(len(case.scores)), compress(slow) if slow else ""))
    if only_slow:
        return PlainTable("Cases with a slow node", ("group", "case", "median", "spread", "n", "slow"), tuple(rows),
                          prose=("case", "slow"), numeric=("median", "spread", "n"),
                          note="every case, and every node's ratio: --markdown, --html or --json")
    return PlainTable("Cases: each group's median and robust spread", ("group", "case", "median", "spread", "n", "slow"), tuple(rows),
                      prose=("case", "slow"), numeric=("median", "spread", "n"))


def report_tables(report: FleetReport, terminal: bool = False) -> list[PlainTable]:
    """The tables of the report; on a terminal the cases are those with a slow node."""
    return [flagged_rows(report), group_rows(report), software_rows(report), capability_rows(report), case_rows(report, only_slow=terminal)]


def report_markdown(report: FleetReport) -> str:
    head = "# gpubench fleet report\n\n" + "\n".join(f"- {line}" for line in summary_lines(report)) + "\n\n"
    return head + to_markdown(report_tables(report))
