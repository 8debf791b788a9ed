"""The headline: rows, limits and ratios of stored runs, one measured here through the real
pipeline, others planned by the families on recorded machines (tests/report/machines.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubench.bench.core.job import JobOptions, Progress, run_job
from gpubench.bench.core.runner import parse_params
from gpubench.probe import Source, Status, probe
from gpubench.report.headline import LINKS_NOT_RECORDED, Versus, build, io_versus_psync, to_dict
from gpubench.results.store import Store

from tests.report import machines

PCIE5_X16 = 16 * 32 * 128 / 130 / 8  # GB/s per direction


def _median(result):
    return result.summary.median


@pytest.fixture(scope="module")
def measured_here(tmp_path_factory):
    """io_uring and psync reads and memtier on this machine, tiny, stored and read back."""
    db = tmp_path_factory.mktemp("history") / "h.db"
    params = parse_params([
        "iouring.pattern=randread,read", "iouring.qd=1,4", "iouring.bs=4k", "iouring.direct=0", "iouring.size=1M", "iouring.runtime=0.02",
        "psync.pattern=randread", "psync.bs=4k", "psync.direct=0", "psync.size=1M", "psync.runtime=0.02",
        "memtier.kernels=copy,chase", "memtier.size=1MiB", "memtier.chase_size=1MiB", "memtier.hops=20000", "memtier.best_of=1",
    ])
    opts = JobOptions(db=db, keys=("iouring", "psync", "memtier"), size="quick", params=params, telemetry=False, rounds=2)
    stored = run_job(opts, Progress())
    with Store.open(db, create=False, readonly=True) as store:
        return store.get_run(str(stored.id))


def test_io_uring_is_paired_with_psync_on_the_same_job(measured_here):
    if not any(r.benchmark == "iouring" and r.summary for r in measured_here.results):
        pytest.skip("io_uring cannot run here: " + next(r.reason for r in measured_here.results if r.benchmark == "iouring"))
    ring = {r.case: r for r in measured_here.results if r.benchmark == "iouring"}
    pairs = io_versus_psync(measured_here.results)
    same = pairs["randread-4k-qd1-j1-buffered"]
    assert isinstance(same, Versus) and same.other.case == "randread-4k-qd1-j1-buffered" and same.note == ""
    assert same.ratio == pytest.approx(_median(ring["randread-4k-qd1-j1-buffered"]) / _median(same.other))
    assert same.ci_low <= same.ratio <= same.ci_high
    deeper = pairs["randread-4k-qd4-j1-buffered"]
    assert isinstance(deeper, Versus) and deeper.other.case == "randread-4k-qd1-j1-buffered"
    assert deeper.note == "psync 1 thread per job, io_uring queue depth 4"
    assert pairs["read-4k-qd1-j1-buffered"] == pairs["read-4k-qd4-j1-buffered"] == "no psync case ran this job"

    row = next(r for r in build(measured_here).paths if r.path == "io_uring")
    best = max((r for r in measured_here.results if r.benchmark == "iouring"), key=_median)
    assert row.best == best and row.limit is None and "which drive" in row.no_limit
    assert (row.versus[0] if row.versus else row.no_versus) == pairs[best.case]


def test_the_local_memory_node_is_the_reference(measured_here):
    row = next(r for r in build(measured_here).paths if r.path.startswith("memory node"))
    copy = next(r for r in measured_here.results if r.benchmark == "memtier" and r.case.startswith("copy-"))
    assert row.best == copy and row.versus == () and "the local node" in row.no_versus
    assert row.limit is None and "HMAT" in row.no_limit


def test_shortfalls_are_the_capabilities_not_yes_with_their_fix(measured_here):
    head = build(measured_here)
    profile = probe(Source("/"))
    assert {(s.area, s.name) for s in head.shortfalls} <= {(c.area, c.name) for c in profile.capabilities}
    assert all(s.status is not Status.YES and (s.fix or s.why) for s in head.shortfalls)


def test_gpu_paths_against_their_links_and_baselines(tmp_path: Path):
    head = build(machines.gpu_run(machines.gpu_server(tmp_path)))
    rows = {row.path: row for row in head.paths}
    h2d = rows["host to GPU copy"]
    assert h2d.limit is not None and h2d.limit.value == pytest.approx(PCIE5_X16) and "PCIe 5.0 x16" in h2d.limit.source
    assert h2d.share_of_limit == pytest.approx(_median(h2d.best) / PCIE5_X16)
    assert h2d.versus[0].what == "pageable memory" and h2d.versus[0].ratio == pytest.approx(55 / 20, rel=0.05)

    gds = rows["GPUDirect Storage (KvikIO)"]
    assert gds.versus[0].what == "POSIX read + copy" and gds.versus[0].ratio == pytest.approx(2.0, rel=0.05)
    assert gds.versus[0].ratio == _median(gds.best) / _median(gds.versus[0].other)

    hmm = rows["HMM: GPU reads system memory"]
    assert [v.what for v in hmm.versus] == ["managed memory", "explicit copy"]
    assert [round(v.ratio, 1) for v in hmm.versus] == [round(30 / 40, 1), round(30 / 50, 1)]

    p2p = rows["GPU to GPU (P2P)"]
    assert p2p.limit is not None and p2p.limit.value == pytest.approx(18 * 26.562) and "NVLink" in p2p.limit.source
    assert p2p.versus[0].what == "through host" and p2p.versus[0].ratio == pytest.approx(19, rel=0.05)


def test_a_gpu_path_without_its_baseline_says_why(tmp_path: Path):
    from dataclasses import replace

    run = machines.gpu_run(machines.gpu_server(tmp_path))
    alone = [r for r in run.results if not (r.benchmark == "memcpy" and r.params.get("host_memory") == "pageable")
             and not (r.benchmark == "gds" and r.params.get("engine") != "kvikio")
             and not (r.benchmark == "hmm" and not r.params["placement"].startswith("system"))
             and not (r.benchmark == "p2p" and r.params.get("src") == 1)]
    rows = {row.path: row for row in build(replace(run, results=tuple(alone))).paths}
    assert rows["host to GPU copy"].no_versus == "no copy from the other kind of host memory"
    assert rows["GPUDirect Storage (KvikIO)"].no_versus == "no POSIX read + copy of this size and cache"
    assert rows["HMM: GPU reads system memory"].no_versus == "no other placement of this size"
    assert rows["GPU to GPU (P2P)"].no_versus == "no pair was copied through the host in this run"
    assert all(row.versus == () for path, row in rows.items() if not path.startswith("memory node"))


def test_far_memory_against_the_local_node(tmp_path: Path):
    profile = machines.cxl_host()
    head = build(machines.tier_run(profile))
    far = next(row for row in head.paths if row.path.startswith("memory node 1"))
    assert "(no CPUs)" in far.path and far.limit is not None and "HMAT" in far.limit.source
    bandwidth, latency = far.versus
    assert bandwidth.ratio == pytest.approx(0.4, rel=0.05) and latency.ratio == pytest.approx(2.5, rel=0.05)
    assert latency.result is not None and latency.result.unit == "ns"


def test_a_run_stored_before_the_links_area_says_not_recorded(tmp_path: Path):
    run = machines.gpu_run(machines.gpu_server(tmp_path))
    older = dict(run.profile, capabilities=[c for c in run.profile["capabilities"] if c["area"] != "links"])
    from dataclasses import replace

    head = build(replace(run, profile=older))
    assert not head.links_recorded
    row = next(r for r in head.paths if r.path == "host to GPU copy")
    assert row.limit is None and row.no_limit == LINKS_NOT_RECORDED


def test_the_json_form_carries_every_figure(tmp_path: Path):
    head = build(machines.gpu_run(machines.gpu_server(tmp_path)))
    document = to_dict(head)
    assert [p["path"] for p in document["paths"]] == [r.path for r in head.paths]
    first = document["paths"][0]
    assert first["best"]["median"] == _median(head.paths[0].best) and first["share_of_limit"] == head.paths[0].share_of_limit
