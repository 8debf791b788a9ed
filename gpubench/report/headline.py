"""The headline of a stored run, what a report shows first: the capabilities that are not `yes`
with their fix, and one row per data path with its best figure, the limit the machine states for
it, and the baseline path for the same job.

A typed model, computed from the stored run alone (its results and the probe stored with it), so
that the terminal, HTML, Markdown and JSON say the same. Each family's cases are read through the
record the family exposes (IoParams, CopyParams, ...), never by parameter names of their own here.

Figures are result medians, the same numbers the per-benchmark tables show; a ratio is one median
over the other, with a 95% percentile-bootstrap interval from their samples
(gpubench.results.compare.ratio_confidence_interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

from gpubench.bench.core.params import format_size
from gpubench.bench.gpu.gds import GdsParams
from gpubench.bench.gpu.hmm import HmmParams
from gpubench.bench.gpu.memcpy import CopyParams
from gpubench.bench.gpu.p2p import PairParams
from gpubench.bench.io.plan import IoParams
from gpubench.bench.memtier import STREAM_KERNELS, TierParams
from gpubench.probe.model import Profile, Status
from gpubench.probe.views import LinksView, NumaView
from gpubench.report import formats
from gpubench.results.metadata import stored_profile
from gpubench.results.model import Result, ResultStatus, Run

Params = TypeVar("Params")
LINKS_NOT_RECORDED = "not recorded: this run's probe predates the links area"


@dataclass(frozen=True)
class Shortfall:
    """A capability the probe did not find fully there."""

    area: str
    name: str
    status: Status
    why: str
    fix: str


@dataclass(frozen=True)
class Limit:
    value: float  # in the unit of the row it limits
    source: str  # what states it: "PCIe 5.0 x16 of GPU 0000:1b:00.0"


@dataclass(frozen=True)
class Versus:
    """The row's result set against another path's for the same job: ratio = the row's median /
    the other's (a multiple of the latency where lower is better)."""

    what: str  # the other path: "psync", "explicit copy", "the local node"
    other: Result
    ratio: float
    ci_low: float | None
    ci_high: float | None
    note: str = ""  # how the two jobs differ where they cannot be the same (threads vs queue depth)
    result: Result | None = None  # the row's own result when it is not the row's best (a latency beside a bandwidth)

    @property
    def own_value(self) -> float:
        return _median(self.result) if self.result is not None else math.nan

    @property
    def other_value(self) -> float:
        return _median(self.other)

    @property
    def ratio_text(self) -> str:
        """'2.61x psync', or for a latency '3.1x the latency of the local node'."""
        own = self.result or None
        latency = own is not None and not own.higher_is_better
        return f"{ratio_text(self.ratio)} {'the latency of ' if latency else ''}{self.what}"

    @property
    def text(self) -> str:
        """'2.61x psync (95% CI 2.21-3.00) [psync 1 thread per job, io_uring queue depth 8]'."""
        return " ".join(t for t in (self.ratio_text, f"({self.ci_text})" if self.ci_text else "", f"[{self.note}]" if self.note else "") if t)

    @property
    def ci_text(self) -> str:
        """'95% CI 2.21-3.00', '' without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return ""
        return f"95% CI {ratio_number(self.ci_low)}-{ratio_number(self.ci_high)}"


def ratio_number(ratio: float) -> str:
    """Two decimals from 0.1 to 10, then fewer: 0.96, 2.61, 19.1, 250; 0.041 below 0.1."""
    if ratio < 0.1:
        return f"{ratio:.2g}"
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:.1f}" if ratio < 100 else f"{ratio:.0f}"


def ratio_text(ratio: float) -> str:
    return ratio_number(ratio) + "x"


@dataclass(frozen=True)
class PathRow:
    path: str  # "io_uring", "host to GPU copy", "memory node 2 from node 0"
    job: str  # what was measured: "write 128K direct, 1 job"
    best: Result
    limit: Limit | None
    no_limit: str  # why there is no limit ("" when there is one)
    versus: tuple[Versus, ...]
    no_versus: str  # why there is nothing to set it against ("" when there is)

    @property
    def value(self) -> float:
        assert self.best.summary is not None
        return self.best.summary.median

    @property
    def best_text(self) -> str:
        return f"{formats.number(self.value)} {self.best.unit}"

    @property
    def share_of_limit(self) -> float | None:
        return self.value / self.limit.value if self.limit and self.limit.value > 0 else None

    @property
    def limit_text(self) -> str:
        """'63.0 GB/s (87% of it)' or why there is none."""
        if self.limit is None:
            return self.no_limit
        share = self.share_of_limit
        return f"{formats.number(self.limit.value)} {self.best.unit}" + (f", {share:.0%} reached" if share is not None else "")


@dataclass(frozen=True)
class Headline:
    shortfalls: tuple[Shortfall, ...]
    paths: tuple[PathRow, ...]
    links_recorded: bool


# --------------------------------------------------------------------------------------- building


def build(run: Run) -> Headline:
    profile = stored_profile(run) or Profile("/", ())
    shortfalls = tuple(Shortfall(c.area, c.name, c.status, c.why, c.fix) for c in profile.capabilities if c.status is not Status.YES)
    machine = _Machine(LinksView.from_profile(profile), NumaView.from_profile(profile))
    measured = [r for r in run.results if r.status is ResultStatus.OK and r.summary is not None]
    rows: list[PathRow] = []
    for family in (_io_rows, _copy_rows, _gds_rows, _hmm_rows, _p2p_rows, _tier_rows):
        rows += family(measured, machine)
    return Headline(shortfalls, tuple(rows), machine.links.recorded)


def _of(results: Iterable[Result], benchmark: str, read: Callable[[Result], Params | None]) -> list[tuple[Result, Params]]:
    out = []
    for r in results:
        if r.benchmark == benchmark and (record := read(r)) is not None:
            out.append((r, record))
    return out


def _median(result: Result) -> float:
    assert result.summary is not None
    return result.summary.median


def _best(pairs: Sequence[tuple[Result, Params]]) -> tuple[Result, Params] | None:
    """The highest figure (or lowest, where lower is better)."""
    if not pairs:
        return None
    return max(pairs, key=lambda p: _median(p[0]) if p[0].higher_is_better else -_median(p[0]))


def _best_result(pairs: Sequence[tuple[Result, Params]]) -> Result | None:
    best = _best(pairs)
    return best[0] if best else None


def _against(found: Iterable[Versus | None], missing: str) -> tuple[tuple[Versus, ...], str]:
    """A row's versus and no_versus: the comparisons that could be formed, or `missing` where none could."""
    kept = tuple(v for v in found if v is not None)
    return kept, "" if kept else missing


def versus(what: str, result: Result, other: Result | None, note: str = "", own: bool = False) -> Versus | None:
    """`result` against `other`; None where there is no other or a ratio cannot be formed."""
    from gpubench.results.compare import ratio_confidence_interval

    if other is None:
        return None
    base = _median(other)
    if base <= 0 or _median(result) <= 0:
        return None
    low = high = None
    if len(result.samples) > 1 and len(other.samples) > 1:
        low, high = ratio_confidence_interval(other.samples, result.samples)
    return Versus(what, other, _median(result) / base, low, high, note, result if own else None)


@dataclass(frozen=True)
class _Machine:
    links: LinksView
    numa: NumaView

    def gpu_limit(self, address: str | None) -> tuple[Limit | None, str]:
        """The PCIe link of the GPU at `address`, GB/s per direction."""
        if not self.links.recorded:
            return None, LINKS_NOT_RECORDED
        link = self.links.link_of(address)
        if link is None or link.gbps is None:
            return None, f"not stated: the probe found no PCIe link for GPU {address or '?'}"
        return Limit(link.gbps, f"{link.describe()} of GPU {address}"), ""

    def pair_limit(self, pair: PairParams) -> tuple[Limit | None, str]:
        factor = 2.0 if pair.both_ways else 1.0
        if not self.links.recorded:
            return None, LINKS_NOT_RECORDED
        a, b = self.links.nvlink_of(pair.src_pci), self.links.nvlink_of(pair.dst_pci)
        nvlink = a.to(b) if a and b else None
        if nvlink and pair.via == "peer":
            return Limit(nvlink * factor, f"NVLink, {nvlink:.0f} GB/s per direction between GPUs {pair.src} and {pair.dst}"), ""
        links = [self.links.link_of(pair.src_pci), self.links.link_of(pair.dst_pci)]
        rates = [link.gbps for link in links if link is not None and link.gbps is not None]
        if len(rates) < 2:
            return None, "not stated: the probe found no link between these GPUs"
        slower = links[rates.index(min(rates))]
        assert slower is not None
        return Limit(min(rates) * factor, f"the slower PCIe link of the pair, {slower.describe()}"), ""


# --------------------------------------------------------------------------------------- the paths


def io_versus_psync(results: Sequence[Result]) -> dict[str, Versus | str]:
    """Every iouring case against psync on the same job (pattern, block size, jobs, direct, mix,
    cold cache, verify), with as many threads as the ring's queue depth where psync ran that many:
    the Versus, or why there is none."""
    psync = _of(results, "psync", lambda r: IoParams.from_params("psync", r.params))
    out: dict[str, Versus | str] = {}
    for result, ring in _of(results, "iouring", lambda r: IoParams.from_params("iouring", r.params)):
        twins = [(r, p) for r, p in psync if _io_job(p) == _io_job(ring)]
        if not twins:
            out[result.case] = "no psync case ran this job"
            continue
        other, threads = min(twins, key=lambda t: (t[1].qd != ring.qd, abs(t[1].qd - ring.qd)))
        note = "" if threads.qd == ring.qd else f"psync {threads.qd} thread{'s' if threads.qd > 1 else ''} per job, io_uring queue depth {ring.qd}"
        out[result.case] = versus("psync", result, other, note) or "no ratio: a median is not positive"
    return out


def _io_job(p: IoParams) -> tuple:
    return (p.pattern, p.bs, p.jobs, p.direct, p.mix if p.pattern == "randrw" else None, p.drop_cache, p.verify)


def _io_label(p: IoParams) -> str:
    mix = f" {p.mix}% reads" if p.pattern == "randrw" else ""
    return f"{p.pattern}{mix} {format_size(p.bs)} {'direct' if p.direct else 'buffered'}, {p.jobs} job{'s' if p.jobs > 1 else ''}, qd {p.qd}"


def _io_rows(results: Sequence[Result], machine: _Machine) -> list[PathRow]:
    no_limit = "not stated: the run does not record which drive held the file"
    best = _best(_of(results, "iouring", lambda r: IoParams.from_params("iouring", r.params)))
    if best is not None:
        found = io_versus_psync(results)[best[0].case]
        vs, why = ((found,), "") if isinstance(found, Versus) else ((), found)
        return [PathRow("io_uring", _io_label(best[1]), best[0], None, no_limit, vs, why)]
    best = _best(_of(results, "psync", lambda r: IoParams.from_params("psync", r.params)))
    if best is None:
        return []
    return [PathRow("psync (POSIX threads)", _io_label(best[1]), best[0], None, no_limit, (), "psync is the baseline: io_uring did not run")]


def _copy_rows(results: Sequence[Result], machine: _Machine) -> list[PathRow]:
    rows = []
    copies = _of(results, "memcpy", lambda r: CopyParams.from_params(r.params))
    for direction, path in (("h2d", "host to GPU copy"), ("d2h", "GPU to host copy")):
        best = _best([(r, p) for r, p in copies if p.direction == direction])
        if best is None:
            continue
        result, p = best
        limit, no_limit = machine.gpu_limit(p.gpu_pci)
        twin = next(((r, q) for r, q in copies if q.direction == direction and q.size == p.size and q.gpu == p.gpu
                     and q.host_memory != p.host_memory and q.engine == p.engine), None)
        vs = _against([twin and versus(f"{twin[1].host_memory} memory", result, twin[0])], "no copy from the other kind of host memory")
        job = f"{p.host_memory} memory, {p.engine}, {format_size(p.size)}, GPU {p.gpu}"
        rows.append(PathRow(path, job, result, limit, no_limit, *vs))
    return rows


def _gds_rows(results: Sequence[Result], machine: _Machine) -> list[PathRow]:
    reads = [(r, p) for r, p in _of(results, "gds", lambda r: GdsParams.from_params(r.params)) if p.op == "read"]
    best = _best([(r, p) for r, p in reads if not p.baseline])
    if best is None:
        return []
    result, p = best
    limit, no_limit = machine.gpu_limit(p.gpu_pci)
    twin = next((r for r, q in reads if q.baseline and q.size == p.size and q.cache == p.cache and q.gpu == p.gpu), None)
    vs = _against([versus("POSIX read + copy", result, twin)], "no POSIX read + copy of this size and cache")
    job = f"read {p.cache} cache, {format_size(p.size)}, {p.threads} thread{'s' if p.threads > 1 else ''}, GPU {p.gpu}"
    return [PathRow("GPUDirect Storage (KvikIO)", job, result, limit, no_limit, *vs)]


def _hmm_rows(results: Sequence[Result], machine: _Machine) -> list[PathRow]:
    cases = _of(results, "hmm", lambda r: HmmParams.from_params(r.params))
    best = _best([(r, p) for r, p in cases if p.memory == "system"]) or _best([(r, p) for r, p in cases if p.memory == "managed"])
    if best is None:
        return []
    result, p = best
    limit, no_limit = machine.gpu_limit(p.gpu_pci)
    same = [(r, q) for r, q in cases if q.size == p.size and q.gpu == p.gpu]
    others = [("managed memory", "managed"), ("explicit copy", "copy")] if p.memory == "system" else [("explicit copy", "copy")]
    vs = _against([versus(what, result, _best_result([(r, q) for r, q in same if q.memory == memory])) for what, memory in others],
                  "no other placement of this size")
    path = "HMM: GPU reads system memory" if p.memory == "system" else "managed memory (HMM not measured)"
    return [PathRow(path, f"{p.placement}, {format_size(p.size)}, GPU {p.gpu}", result, limit, no_limit, *vs)]


def _p2p_rows(results: Sequence[Result], machine: _Machine) -> list[PathRow]:
    pairs = [(r, p) for r, p in _of(results, "p2p", lambda r: PairParams.from_params(r.params, r.extra)) if not p.latency]
    best = _best([(r, p) for r, p in pairs if p.via == "peer"]) or _best(pairs)
    if best is None:
        return []
    result, p = best
    limit, no_limit = machine.pair_limit(p)
    job = f"{p.kind} GPU {p.src} {'and' if p.both_ways else 'to'} {p.dst}" + (f", {format_size(p.size)}" if p.size else "")
    if p.via != "peer":
        return [PathRow("GPU to GPU through host", job, result, limit, no_limit, (), "no pair has peer access: all went through the host")]
    host = [(r, q) for r, q in pairs if q.via == "host" and q.kind == p.kind and q.size == p.size]
    twin = next((r for r, q in host if {q.src, q.dst} == {p.src, p.dst}), None) or (host[0][0] if host else None)
    vs = _against([versus("through host", result, twin)], "no pair was copied through the host in this run")
    return [PathRow("GPU to GPU (P2P)", job, result, limit, no_limit, *vs)]


def _tier_rows(results: Sequence[Result], machine: _Machine) -> list[PathRow]:
    cases = _of(results, "memtier", lambda r: TierParams.from_params(r.params))
    rows = []
    for cpu, mem in dict.fromkeys((p.cpu_node, p.mem_node) for _, p in cases):
        here = [(r, p) for r, p in cases if (p.cpu_node, p.mem_node) == (cpu, mem)]
        best = _best([(r, p) for r, p in here if p.kernel in STREAM_KERNELS])
        if best is None:
            continue
        result, p = best
        limit, no_limit = _hmat_limit(machine.numa, mem)
        vs = () if p.local else _far_versus(result, p, here, [(r, q) for r, q in cases if q.cpu_node == cpu and q.local])
        tier = f", tier {p.mem_tier}" if p.mem_tier is not None else ""
        where = f"memory node {mem}" + ("" if p.local else f" from node {cpu}") + (" (no CPUs)" if p.mem_has_cpu is False else "")
        why = "the local node: what far tiers are set against" if p.local else "" if vs else f"no local case of node {cpu} to set it against"
        rows.append(PathRow(where, f"STREAM {p.kernel}, {p.threads} thread{'s' if p.threads > 1 else ''}{tier}", result, limit, no_limit, vs, why))
    return rows


def _far_versus(result: Result, p: TierParams, here: list[tuple[Result, TierParams]], local: list[tuple[Result, TierParams]]) -> tuple[Versus, ...]:
    """A far node against the local one: the same STREAM kernel's bandwidth, and the pointer
    chase's latency (a multiple)."""
    twin = next((r for r, q in local if q.kernel == p.kernel), None)
    chase = next((r for r, q in here if q.kernel == "chase"), None)
    local_chase = next((r for r, q in local if q.kernel == "chase"), None)
    found = (versus("the local node", result, twin), chase and versus("the local node", chase, local_chase, own=True))
    return tuple(v for v in found if v)


def _hmat_limit(numa: NumaView, node_id: int) -> tuple[Limit | None, str]:
    node = next((n for n in numa.nodes if n.id == node_id), None)
    if node is None or node.hmat is None or not node.hmat.read_bandwidth_mbps:
        return None, "not stated: the firmware gives no HMAT figures for this node"
    return Limit(node.hmat.read_bandwidth_mbps / 1000, f"HMAT read bandwidth of node {node_id}"), ""


# --------------------------------------------------------------------------------------- JSON


def to_dict(headline: Headline) -> dict[str, Any]:
    """The headline as the JSON reports carry it: figures in the units of their results."""

    def ref(result: Result) -> dict[str, Any]:
        return {"benchmark": result.benchmark, "case": result.case, "median": _median(result), "unit": result.unit}

    return {
        "shortfalls": [{"area": s.area, "name": s.name, "status": s.status.value, "why": s.why, "fix": s.fix} for s in headline.shortfalls],
        "links_recorded": headline.links_recorded,
        "paths": [
            {
                "path": row.path,
                "job": row.job,
                "best": ref(row.best),
                "limit": {"value": row.limit.value, "source": row.limit.source} if row.limit else None,
                "no_limit": row.no_limit or None,
                "share_of_limit": row.share_of_limit,
                "versus": [{"what": v.what, "result": ref(v.result or row.best), "other": ref(v.other), "ratio": v.ratio,
                            "ci_low": v.ci_low, "ci_high": v.ci_high, "note": v.note or None} for v in row.versus],
                "no_versus": row.no_versus or None,
            }
            for row in headline.paths
        ],
    }


def run_document(run: Run) -> dict[str, Any]:
    """`gpubench report RUN --json` (schema `report`): the stored run as `run --json` prints it
    (its local number as `id`), and its headline."""
    return {"run": {"id": run.id, **run.to_dict()}, "headline": to_dict(build(run))}
