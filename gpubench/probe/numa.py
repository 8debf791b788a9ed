"""Memory nodes and tiers (the cxl area's first two capabilities): NUMA nodes with and without
CPUs, their firmware performance numbers, and the memory tiers the kernel built from them.

What is read, and where the kernel documents it:
- /sys/devices/system/node/{online,possible,has_cpu,has_memory}, nodeN/{cpulist,meminfo,distance}
  and nodeN/access0/initiators/{read,write}_{bandwidth,latency}: Documentation/ABI/stable/sysfs-devices-node
  (bandwidth in MB/s, latency in ns, as seen from the node's closest initiators).
- /sys/devices/virtual/memory_tiering/memory_tierN/nodelist: Documentation/ABI/testing/sysfs-kernel-mm-memory-tiers
  (N is the abstract distance >> 7: a smaller N is a faster tier; DRAM is memory_tier4).
- /sys/kernel/mm/numa/demotion_enabled: Documentation/ABI/testing/sysfs-kernel-mm-numa.

The benchmark planner reads `details` of "numa nodes" and "memory tiers" (through probe/views.py); keep their keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gpubench.probe.checks import check, compact_ranges, kernel_config, release, version_tuple
from gpubench.probe.model import Findings
from gpubench.probe.rules import NO, UNKNOWN, YES, Rule, always, decide
from gpubench.probe.source import Source

NODE_DIR = "/sys/devices/system/node"
TIERING_DIR = "/sys/devices/virtual/memory_tiering"
DEMOTION = "/sys/kernel/mm/numa/demotion_enabled"

# sysfs file name -> key in details (units are the ABI's: MB/s and ns)
HMAT_FILES = {
    "read_bandwidth": "read_bandwidth_mbps",
    "write_bandwidth": "write_bandwidth_mbps",
    "read_latency": "read_latency_ns",
    "write_latency": "write_latency_ns",
}
FIRST_TIERED_RELEASE = (6, 1)  # memory_tiering appeared in Linux 6.1

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_MEMINFO = re.compile(r"^Node\s+\d+\s+(MemTotal|MemFree):\s+(\d+)\s*kB\s*$", re.MULTILINE)
_TIER_DIR = re.compile(r"memory_tier(\d+)")


def parse_list(text: str) -> list[int]:
    """A kernel list such as '0-3,8,10-11' (cpulist, nodelist); '' is the empty list.

    Raises ValueError for anything else."""
    text = text.strip()
    if not text:
        return []
    out: list[int] = []
    for part in text.split(","):
        m = _RANGE.fullmatch(part.strip())
        if not m:
            raise ValueError(f"not a list of numbers: {text!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"descending range in {text!r}")
        out.extend(range(lo, hi + 1))
    return out


@dataclass
class _Problems:
    """What could not be read: `hard` ones make a verdict unknown, `soft` ones only lose a detail."""

    hard: list[str] = field(default_factory=list)
    soft: list[str] = field(default_factory=list)


def _read_list(src: Source, f: Findings, path: str, problems: list[str]) -> list[int] | None:
    text = src.value(path)
    f.saw(path, "missing" if text is None else (text or "(empty)"))
    if text is None:
        problems.append(f"{path} is missing")
        return None
    try:
        return parse_list(text)
    except ValueError:
        problems.append(f"{path} is not a node/CPU list: {text[:40]!r}")
        return None


def _read_demotion(src: Source, f: Findings, problems: list[str]) -> bool | None:
    text = src.value(DEMOTION)
    f.saw(DEMOTION, "missing" if text is None else text)
    if text is None:
        return None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    problems.append(f"{DEMOTION} says {text[:40]!r}, neither true nor false")
    return None


def _read_tiers(src: Source, f: Findings, problems: list[str]) -> dict[int, list[int]] | None:
    """memory tier id -> its nodes; None when the kernel shows no memory tiering."""
    names = src.listdir(TIERING_DIR)
    tier_ids = sorted(int(m.group(1)) for n in names if (m := _TIER_DIR.fullmatch(n)))
    if not tier_ids:
        f.saw(TIERING_DIR, "no memory_tierN directories" if names or src.exists(TIERING_DIR) else "missing")
        return None
    tiers: dict[int, list[int]] = {}
    for tier in tier_ids:
        nodes = _read_list(src, f, f"{TIERING_DIR}/memory_tier{tier}/nodelist", problems)
        if nodes is not None:
            tiers[tier] = nodes
    return tiers


def int_file(src: Source, path: str, problems: list[str], base: int = 10) -> int | None:
    text = src.value(path)
    if text is None:
        problems.append(f"{path} is missing")
        return None
    try:
        return int(text, base)
    except ValueError:
        problems.append(f"{path} is not a number: {text[:40]!r}")
        return None


def _read_hmat(src: Source, f: Findings, node: int, problems: list[str]) -> dict[str, Any] | None:
    """The firmware's (HMAT, or CXL CDAT for hot-added memory) access0 numbers for one node."""
    base = f"{NODE_DIR}/node{node}/access0/initiators"
    names = src.listdir(base)
    if not any(n in HMAT_FILES for n in names):
        return None
    own: list[str] = []
    hmat: dict[str, Any] = {key: int_file(src, f"{base}/{name}", own) for name, key in HMAT_FILES.items()}
    hmat["initiators"] = sorted(int(n[4:]) for n in names if re.fullmatch(r"node\d+", n))
    if own:
        problems.extend(own)
        f.saw(base, "; ".join(own))
        return None
    f.saw(
        base,
        f"read {hmat['read_bandwidth_mbps']} MB/s {hmat['read_latency_ns']} ns, "
        f"write {hmat['write_bandwidth_mbps']} MB/s {hmat['write_latency_ns']} ns",
    )
    return hmat


def _read_meminfo(src: Source, f: Findings, node: int, problems: list[str]) -> tuple[int | None, int | None]:
    path = f"{NODE_DIR}/node{node}/meminfo"
    text = src.text(path)
    found = dict(_MEMINFO.findall(text or ""))
    total, free = (int(found[k]) if k in found else None for k in ("MemTotal", "MemFree"))
    if text is None:
        problems.append(f"{path} is missing")
    elif total is None or free is None:
        problems.append(f"{path} has no 'Node {node} MemTotal/MemFree: N kB' lines")
    f.saw(path, f"MemTotal {total} kB, MemFree {free} kB" if total is not None else "unreadable")
    return total, free


def _read_distances(src: Source, node: int, problems: list[str]) -> list[int] | None:
    path = f"{NODE_DIR}/node{node}/distance"
    text = src.value(path)
    if text is None:
        return None
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        problems.append(f"{path} is not a list of distances: {text[:40]!r}")
        return None


def read_numa(src: Source, f: Findings) -> tuple[list[dict[str, Any]] | None, _Problems, dict[str, Any]]:
    """Every online node with its CPUs, memory, tier and firmware performance numbers."""
    problems = _Problems()
    extra: dict[str, Any] = {}
    online = _read_list(src, f, f"{NODE_DIR}/online", problems.hard)
    if online is None:
        return None, problems, extra
    has_cpu = _read_list(src, f, f"{NODE_DIR}/has_cpu", problems.soft)
    extra["has_memory"] = _read_list(src, f, f"{NODE_DIR}/has_memory", problems.soft)
    possible = src.value(f"{NODE_DIR}/possible")
    try:
        extra["possible"] = parse_list(possible) if possible is not None else None
    except ValueError:
        extra["possible"] = None
    tiers = _read_tiers(src, f, problems.soft) or {}
    tier_of = {node: tier for tier, nodes in tiers.items() for node in nodes}
    nodes = []
    for node in online:
        cpus = _read_list(src, f, f"{NODE_DIR}/node{node}/cpulist", problems.hard)
        total, free = _read_meminfo(src, f, node, problems.soft)
        nodes.append(
            {
                "id": node,
                "cpus": cpus or [],
                "has_cpu": (node in has_cpu) if has_cpu is not None else bool(cpus),
                "mem_total_kb": total,
                "mem_free_kb": free,
                "tier": tier_of.get(node),
                "hmat": _read_hmat(src, f, node, problems.soft),
                "distances": _read_distances(src, node, problems.soft),
            }
        )
    return nodes, problems, extra


def _node_summary(nodes: list[dict[str, Any]]) -> str:
    parts = []
    for n in nodes:
        cpus = f"CPUs {compact_ranges(n['cpus'])}" if n["cpus"] else "no CPUs"
        mem = f", {n['mem_total_kb'] / (1 << 20):.1f} GiB" if n["mem_total_kb"] else ""
        tier = f", tier {n['tier']}" if n["tier"] is not None else ""
        parts.append(f"node{n['id']} ({cpus}{mem}{tier})")
    return "; ".join(parts)



@dataclass(frozen=True)
class NodeFacts:
    nodes: list[dict[str, Any]] | None  # None: the online list could not be read
    hard: tuple[str, ...]  # what makes the topology unknown
    soft: tuple[str, ...]  # what only loses a detail
    numa_config: str  # CONFIG_NUMA as described

    def summary(self) -> str:
        nodes = self.nodes or []
        cpu_less = [n["id"] for n in nodes if not n["has_cpu"]]
        why = f"{len(nodes)} node(s) online, {len(cpu_less)} without CPUs: {_node_summary(nodes)}"
        with_hmat = [n["id"] for n in nodes if n["hmat"]]
        why += f"; firmware access0 numbers (HMAT) for node(s) {compact_ranges(with_hmat)}" if with_hmat else "; no HMAT numbers"
        return why + ("; not readable: " + "; ".join(self.soft) if self.soft else "")


NODE_RULES: tuple[Rule[NodeFacts], ...] = (
    Rule(lambda x: x.nodes is None, UNKNOWN, lambda x: f"the NUMA node list could not be read ({'; '.join(x.hard)}; CONFIG_NUMA: {x.numa_config})",
         "NUMA topology lives in /sys/devices/system/node: is sysfs mounted, and was the kernel built with CONFIG_NUMA?"),
    Rule(lambda x: bool(x.hard), UNKNOWN, lambda x: "node topology is incomplete: " + "; ".join(x.hard),
         "re-read on the live machine or re-record the snapshot; the benchmark cannot pin threads without each node's CPUs"),
    Rule(always, YES, NodeFacts.summary),
)


@check("cxl", "numa nodes")
def numa_nodes(src: Source, f: Findings):
    nodes, problems, extra = read_numa(src, f)
    demotion = _read_demotion(src, f, problems.soft)
    f.details.update(nodes=nodes or [], demotion_enabled=demotion, **extra)
    numa_config = kernel_config(src).describe("CONFIG_NUMA") if nodes is None else ""
    return decide(f, NodeFacts(nodes, tuple(problems.hard), tuple(problems.soft), numa_config), NODE_RULES)


@dataclass(frozen=True)
class TierFacts:
    tiers: dict[int, list[int]] | None  # None: no memory_tierN folders
    problems: tuple[str, ...]
    demotion: bool | None
    release: str | None

    @property
    def predates_tiers(self) -> bool:
        version = version_tuple(self.release)
        return version is not None and version < FIRST_TIERED_RELEASE

    def described(self) -> str:
        tiers = self.tiers or {}
        return ", ".join(f"memory_tier{t} (nodes {compact_ranges(tiers[t]) or 'none'})" for t in sorted(tiers))

    def tiered(self) -> str:
        demotes = {True: "demotion to lower tiers is enabled", False: "demotion is disabled", None: "demotion state unknown"}[self.demotion]
        why = f"{len(self.tiers or {})} tiers, fastest first: {self.described()}; {demotes}"
        if self.demotion is False:
            why += " (echo true > /sys/kernel/mm/numa/demotion_enabled lets reclaim move cold pages down instead of swapping)"
        return why


TIER_RULES: tuple[Rule[TierFacts], ...] = (
    Rule(lambda x: bool(x.problems), UNKNOWN, lambda x: "memory tiers could not be read: " + "; ".join(x.problems),
         "re-read on the live machine or re-record the snapshot"),
    Rule(lambda x: x.tiers is None and x.predates_tiers, NO, lambda x: f"kernel {x.release} predates memory tiers (Linux 6.1)",
         "a 6.1 or newer kernel with CONFIG_NUMA and CONFIG_MIGRATION"),
    Rule(lambda x: x.tiers is None, UNKNOWN, f"no memory tiers under {TIERING_DIR}",
         "memory tiers need Linux 6.1+ with CONFIG_NUMA and CONFIG_MIGRATION; is sysfs readable?"),
    Rule(lambda x: len(x.tiers or {}) > 1, YES, TierFacts.tiered),
    Rule(always, NO, lambda x: f"one memory tier only, {x.described()}: the kernel treats all memory as equally fast, nothing to demote to",
         "slower memory (a CXL expander, or persistent memory through dax kmem) onlined as its own NUMA node, "
         "with HMAT/CDAT performance data, makes a lower tier"),
)


@check("cxl", "memory tiers")
def memory_tiers(src: Source, f: Findings):
    problems: list[str] = []
    tiers = _read_tiers(src, f, problems)
    demotion = _read_demotion(src, f, [])
    f.details.update(tiers={str(t): nodes for t, nodes in (tiers or {}).items()}, demotion_enabled=demotion)
    if tiers is not None and not problems:
        order = sorted(tiers)
        f.details["order"] = order  # fastest first: a smaller id is a smaller abstract distance
        f.details["lower_tier_nodes"] = sorted(n for t in order[1:] for n in tiers[t])
    facts = TierFacts(tiers, tuple(problems), demotion, release(src) if tiers is None else None)
    return decide(f, facts, TIER_RULES)
