"""The fleet report's records: what each node ran (NodeRun, lean: no samples kept), the peer
groups, each case's statistics, findings and verdicts. Frozen; the renderers read only these."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gpubench.fleet.layout import NodeState
from gpubench.probe.model import Capability, Status
from gpubench.results.model import ResultStatus, Run

GIB = 2**30

CaseKey = tuple[str, str]  # (benchmark, case)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


MEMORY_TOLERANCE = 0.03  # what the kernel keeps for itself differs a little between kernels and firmware


def gib(total_bytes: int | None) -> str:
    return "memory unknown" if total_bytes is None else f"{total_bytes / GIB:.3g} GiB"


@dataclass(frozen=True, order=True)
class Machine:
    """What a node's run says of its hardware."""

    cpu: str
    gpus: str
    memory_bytes: int | None

    @classmethod
    def of(cls, metadata: dict[str, Any]) -> Machine:
        models = Counter(_text(g) or "unnamed GPU" for g in metadata.get("gpus") or () if isinstance(g, str) and g)
        gpus = ", ".join(f"{n}x {model}" for model, n in sorted(models.items())) or "no GPU"
        memory = metadata.get("memory_bytes")
        valid = isinstance(memory, int) and not isinstance(memory, bool) and memory > 0
        return cls(_text(metadata.get("cpu_model")) or "CPU unknown", gpus, memory if valid else None)


@dataclass(frozen=True, order=True)
class Hardware:
    """What makes nodes identical peers: CPU model, GPU model and count, and memory size within
    MEMORY_TOLERANCE (`memory` says the range the group's nodes have)."""

    cpu: str
    gpus: str
    memory: str

    @property
    def label(self) -> str:
        return f"{self.cpu} · {self.gpus} · {self.memory}"


@dataclass(frozen=True, order=True)
class Software:
    kernel: str
    driver: str
    cuda: str

    @classmethod
    def of(cls, metadata: dict[str, Any]) -> Software:
        return cls(_text(metadata.get("kernel")) or "unknown", _text(metadata.get("nvidia_driver")) or "none",
                   _text(metadata.get("cuda_driver")) or "none")


@dataclass(frozen=True)
class CaseValue:
    benchmark: str
    case: str
    unit: str
    higher_is_better: bool
    status: ResultStatus
    reason: str = ""
    value: float | None = None  # the median of the case's samples where it ran

    @property
    def key(self) -> CaseKey:
        return (self.benchmark, self.case)


@dataclass(frozen=True)
class NodeRun:
    """One node's run, as much of it as judging needs."""

    node: str
    uid: str
    source: str
    started: float
    run_status: str
    machine: Machine
    software: Software
    capabilities: tuple[Capability, ...]
    cases: dict[CaseKey, CaseValue]

    @classmethod
    def of(cls, node: str, run: Run, source: str) -> NodeRun:
        from gpubench.results.metadata import stored_profile

        profile = stored_profile(run)
        capabilities = profile.capabilities if profile is not None else ()
        cases = {
            r.key: CaseValue(r.benchmark, r.case, r.unit, r.higher_is_better, r.status, r.reason,
                             r.summary.median if r.summary is not None and r.status is ResultStatus.OK else None)
            for r in run.results
        }
        return cls(node, run.uid, source, run.started, run.status.value, Machine.of(run.metadata), Software.of(run.metadata),
                   tuple(capabilities), cases)


class FindingKind(str, enum.Enum):
    SLOW = "slow"  # beyond the thresholds from its peers' median, the worse way
    LOST_CASE = "lost case"  # its peers ran the case; it did not
    LOST_CAPABILITY = "lost capability"  # its peers have it (yes); it does not
    RULE = "rule"  # a rule of the rules file failed
    NOT_FINISHED = "not finished"  # its task failed, timed out, was interrupted or never reported
    UNREADABLE = "unreadable export"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    subject: str  # the case, capability or rule
    detail: str


@dataclass(frozen=True)
class NodeScore:
    """One node's value of a case against its group."""

    node: str
    value: float
    ratio: float  # value / group median
    z: float  # robust z-score, positive the worse way
    outlier: bool  # flagged slow
    faster: bool = False  # beyond both thresholds the better way (noted, not flagged)


@dataclass(frozen=True)
class CaseStats:
    group: str
    benchmark: str
    case: str
    unit: str
    higher_is_better: bool
    median: float
    mad: float
    spread: float  # the z-scores' scale: 1.4826 x MAD, floored
    scores: tuple[NodeScore, ...]
    not_run: tuple[tuple[str, str], ...] = ()  # (node, why) for the group's nodes without a value

    @property
    def key(self) -> CaseKey:
        return (self.benchmark, self.case)


class PeerTest(str, enum.Enum):
    BOTH = "robust z and relative"
    RELATIVE = "relative alone (a group of fewer than 5)"
    NONE = "not judged (no peers)"


@dataclass(frozen=True)
class PeerGroup:
    name: str  # G1, G2, ... largest first
    hardware: Hardware
    nodes: tuple[str, ...]
    test: PeerTest


@dataclass(frozen=True)
class CapabilityCell:
    status: Status | None  # None: not probed on this node
    odd: bool = False  # differs from what most of its peers have
    lost: bool = False  # its peers have it (yes), it does not
    why: str = ""


@dataclass(frozen=True)
class Thresholds:
    z: float = 3.5  # robust z beyond which a node is an outlier (Iglewicz and Hoaglin's cut-off)
    relative: float = 0.10  # and at least this much worse than the median
    mad_floor: float = 0.01  # the spread is at least this fraction of the median
    min_group_for_z: int = 5


@dataclass(frozen=True)
class NodeReport:
    node: str
    group: str | None  # None: no run to judge
    state: NodeState | None  # from the fleet run's status files; None when there are none
    run_uid: str | None
    software: Software | None
    findings: tuple[Finding, ...]
    log_tail: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return bool(self.findings)


@dataclass(frozen=True)
class FleetReport:
    nodes: tuple[NodeReport, ...]
    groups: tuple[PeerGroup, ...]
    cases: tuple[CaseStats, ...]
    capability_names: tuple[tuple[str, str], ...]  # (area, name), columns of the matrix
    capabilities: dict[str, dict[tuple[str, str], CapabilityCell]]  # node -> column -> cell
    software: tuple[tuple[Software, tuple[str, ...]], ...]
    thresholds: Thresholds
    rules_file: str | None = None
    baseline: tuple[str, ...] = ()  # uids of the baseline runs
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def flagged(self) -> tuple[NodeReport, ...]:
        return tuple(n for n in self.nodes if n.flagged)
