"""The memtier benchmark: kernels that compute the right values, a chase through every line,
planning on the CXL snapshot, parameter validation, and real tiny runs with verified placement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpubench.bench import memtier
from gpubench.bench.memtier import measure
from gpubench.bench.engines import numa
from gpubench.bench.core.interface import BenchFailure, Context
from gpubench.errors import UserError
from gpubench.probe import Source, probe
from gpubench.probe.model import Capability, Profile, Status

PROBES = Path(__file__).resolve().parents[2] / "probes"
TINY = {"size": "64K", "chase_size": "64K", "hops": "5000", "best_of": "2"}


@pytest.fixture(scope="module")
def mk():
    from gpubench.bench.engines import memkernels

    return memkernels


@pytest.fixture
def arrays():
    """Three 64-byte aligned float64 arrays whose length is not a multiple of the 8-wide blocks."""
    n = 8 * 123 + 5
    buffers = [numa.NodeBuffer(n * 8, None, hugepages=False) for _ in range(3)]
    views = [np.frombuffer(b.map, dtype=np.float64, count=n) for b in buffers]
    yield views
    del views[:]
    for b in buffers:
        b.close()


@pytest.fixture(scope="module")
def cxl_host() -> Profile:
    root = PROBES / "cxl-host"
    if not root.is_dir():
        pytest.skip("probes/cxl-host does not exist yet")
    return probe(Source(root), ["cxl"])


def empty_profile() -> Profile:
    return Profile(root="/", capabilities=())


def live_profile() -> Profile:
    return probe(Source("/"), ["cxl"])


def test_distance_is_read_by_the_cpu_nodes_place_among_the_online_nodes():
    """nodeN/distance lists a distance per online node in id order: with nodes 0 and 2 online,
    node 2 is its second column, not its third (it read None there)."""
    node = lambda i, distances: {"id": i, "cpus": [i], "has_cpu": True, "mem_total_kb": 1 << 22, "mem_free_kb": 1 << 21,
                                 "tier": 4, "hmat": None, "distances": distances}
    numa = Capability("cxl", "numa nodes", Status.YES, details={"nodes": [node(0, [10, 21]), node(2, [21, 10])]})
    options = {"kernels": "triad", "size": "16M"}  # not sized from this machine's caches: the fake nodes have 2 GiB free
    cases = {c.name: c for c in memtier.MemTier().cases(Profile(root="/", capabilities=(numa,)), "quick", options)}
    assert cases["triad-cpu2-mem0"].params["distance"] == 21
    assert cases["triad-cpu0-mem2"].params["distance"] == 21
    assert cases["triad-cpu2-mem2"].params["distance"] == 10


@pytest.mark.parametrize("stores", ["plain", "streaming"])
def test_stream_kernels_compute_stream_values(mk, arrays, stores):
    a, b, c = arrays
    threads = min(2, mk.max_threads())
    previous = mk.get_threads()
    mk.set_threads(threads)
    try:
        mk.first_touch(a, b, c)
        assert (a == 1.0).all() and (b == 2.0).all() and (c == 0.0).all()
        a[::7] = np.arange(a[::7].size)  # values that differ along the arrays, tail included
        ea, eb, ec = a.copy(), b.copy(), c.copy()
        q = 3.0
        mk.stream_kernel("copy", stores)(a, b, c, q)
        ec = ea.copy()
        mk.stream_kernel("scale", stores)(a, b, c, q)
        eb = q * ec
        mk.stream_kernel("add", stores)(a, b, c, q)
        ec = ea + eb
        mk.stream_kernel("triad", stores)(a, b, c, q)
        ea = eb + q * ec
    finally:
        mk.set_threads(previous)
    np.testing.assert_array_equal(a, ea)
    np.testing.assert_array_equal(b, eb)
    np.testing.assert_array_equal(c, ec)


def test_kernels_refuse_arrays_streaming_stores_would_fault_on(mk, arrays):
    a, b, c = arrays
    with pytest.raises(ValueError, match="aligned"):
        mk.stream_kernel("triad", "streaming")(a[1:], b[1:], c[1:])
    with pytest.raises(ValueError, match="unknown kernel"):
        mk.stream_kernel("fma", "plain")


def test_chase_is_one_cycle_through_every_line(mk):
    lines = 1024
    nxt = np.zeros(lines * mk.WORDS_PER_LINE, dtype=np.uint64)
    start = mk.build_chase(nxt, seed=7)
    walk, p = [], start
    for _ in range(lines):
        walk.append(p)
        p = int(nxt[p])
    assert p == start
    assert sorted(walk) == [k * mk.WORDS_PER_LINE for k in range(lines)]
    for hops in (1, 2, 500, lines - 1):
        assert mk.chase(nxt, start, hops) == walk[hops]
    assert mk.chase(nxt, start, lines) == start
    assert mk.chase(nxt, start, 3 * lines + 5) == walk[5]


def test_plans_every_pair_from_the_cpu_node_on_the_cxl_snapshot(cxl_host):
    cases = memtier.MemTier().cases(cxl_host, "quick", {})
    names = {c.name for c in cases}
    assert names == {f"{k}-cpu0-mem{m}" for k in memtier.KERNELS for m in (0, 1)}
    assert all(c.params["cpu_node"] == 0 for c in cases)
    by_name = {c.name: c for c in cases}
    dram, cxl = by_name["triad-cpu0-mem0"], by_name["triad-cpu0-mem1"]
    assert (dram.params["mem_tier"], dram.params["mem_has_cpu"]) == (4, True)
    assert (cxl.params["mem_tier"], cxl.params["mem_has_cpu"]) == (22, False)
    assert cxl.params["hmat_read_bandwidth_mbps"] == 61440 and cxl.params["hmat_read_latency_ns"] == 250
    assert cxl.params["advertised"] == pytest.approx(61.44) and cxl.unit == "GB/s" and cxl.higher_is_better
    assert dram.params["hmat_read_bandwidth_mbps"] == 122880 and cxl.params["distance"] == 20
    chase = by_name["chase-cpu0-mem1"]
    assert chase.unit == "ns" and not chase.higher_is_better
    assert chase.params["advertised"] == 250.0 and chase.params["threads"] == 1
    assert dram.params["threads"] == 32 and dram.params["cpus"] == list(range(32))
    assert dram.params["bytes_per_element"] == 24 and by_name["copy-cpu0-mem1"].params["bytes_per_element"] == 16
    assert dram.params["array_bytes"] >= 64 << 20 and dram.params["stores"] == "streaming"
    assert dram.params["topology"] == "probe"


def test_options_narrow_the_matrix(cxl_host):
    cases = memtier.MemTier().cases(cxl_host, "default", {"nodes": "1", "kernels": "triad,chase", "threads": "4", "stores": "plain"})
    assert [c.name for c in cases] == ["triad-cpu0-mem1", "chase-cpu0-mem1"]
    assert cases[0].params["threads"] == 4 and cases[0].params["stores"] == "plain"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"nodes": "7"}, "node 7 does not exist (nodes here: 0, 1)"),
        ({"cpu_nodes": "1"}, "node 1 has no CPUs"),
        ({"size": "50G"}, "node 1 has 130871 MiB free, too little for 3 arrays of 51200 MiB (153600 MiB)"),
        ({"chase_size": "300G"}, "node 0 has 242903 MiB free, too little for a 307200 MiB chase buffer"),
        ({"threads": "0"}, "threads='0' must be at least 1"),
        ({"threads": "33"}, "more than node 0's 32 CPUs"),
        ({"kernels": "triad,fma"}, "kernels: unknown 'fma'"),
        ({"size": "lots"}, "is not a size"),
        ({"stores": "cached"}, "stores='cached'"),
        ({"bogus": "1"}, "unknown parameter 'bogus'"),
    ],
)
def test_bad_input_is_one_clear_user_error(cxl_host, options, message):
    with pytest.raises(UserError) as err:
        memtier.MemTier().cases(cxl_host, "quick", options)
    text = str(err.value)
    assert "\n" not in text and message in text


def test_without_the_probe_plans_node_0_with_this_process_cpus():
    profile = Profile(root="/", capabilities=(Capability("cxl", "numa nodes", Status.UNKNOWN, why="unreadable"),))
    cases = memtier.MemTier().cases(profile, "quick", {"kernels": "triad"})
    assert [c.name for c in cases] == ["triad-cpu0-mem0"]
    assert cases[0].params["topology"].startswith("fallback: the probe could not read the NUMA nodes (unreadable)")
    assert memtier.MemTier().requires(empty_profile()) is None


def test_a_case_for_a_node_this_machine_lacks_fails_instead_of_running_elsewhere(cxl_host, tmp_path):
    if not numa.calls().available:
        pytest.skip("no NUMA system calls here")
    bench = memtier.MemTier()
    case = next(c for c in bench.cases(cxl_host, "quick", {**TINY, "threads": "1"}) if c.name == "chase-cpu0-mem1")
    if 1 in numa.allowed_nodes():
        pytest.skip("this machine has a node 1")
    with pytest.raises(BenchFailure, match="memory node 1 is not online"):
        with bench.prepare(case, Context(tmp_path, cxl_host)):
            pass


def test_pages_without_a_binding_are_not_called_verified():
    try:
        node = numa.allowed_nodes()[0]
    except numa.NumaError as e:
        pytest.skip(f"no memory policies here: {e}")
    binder = measure._Binder(node, single_node=True)
    with numa.NodeBuffer(1 << 20, None, hugepages=False) as unbound:
        metrics, facts = binder.check([unbound])  # never touched: no page anywhere yet
        assert metrics["placement_verified"] == 0.0 and metrics["pages_on_node_fraction"] == 0.0
        view = np.frombuffer(unbound.map, dtype=np.uint8)
        view[:] = 1
        metrics, facts = binder.check([unbound])  # on the node, but only by chance: no binding
        del view
    assert metrics["placement_verified"] == 0.0 and metrics["pages_on_node_fraction"] == 1.0
    assert facts["placement"].startswith("unverified: 256/256 sampled pages on node") and facts["placement"].endswith("policy default")


def test_tiny_real_run_measures_every_kernel_with_verified_placement(tmp_path):
    try:
        numa.allowed_nodes()
        verifiable = numa.calls().available
    except numa.NumaError:
        verifiable = False
    profile = live_profile()
    bench = memtier.MemTier()
    cpu_node = memtier.topology(profile).cpu_nodes[0].id
    cases = [c for c in bench.cases(profile, "quick", TINY) if c.params["mem_node"] == cpu_node and c.params["cpu_node"] == cpu_node]
    assert {c.params["kernel"] for c in cases} == set(memtier.KERNELS)
    affinity = __import__("os").sched_getaffinity(0)
    for case in cases:
        with bench.prepare(case, Context(tmp_path, profile)) as measure:
            samples = [measure(), measure()]
        for sample in samples:
            assert sample.value > 0
            assert sample.extra["threads"] == case.params["threads"]
            if verifiable:
                assert sample.metrics["placement_verified"] == 1.0, sample.extra["placement"]
                assert sample.metrics["pages_on_node_fraction"] == 1.0
                assert sample.extra["placement"].startswith("mbind verified via move_pages")
            else:
                assert sample.extra["placement"].startswith("unverified: ")
        if case.unit == "GB/s":
            assert sample.metrics["bytes"] == case.params["bytes_per_element"] * (64 << 10) // 8 * 2
    assert __import__("os").sched_getaffinity(0) == affinity


def test_each_case_times_on_its_own_cpus_while_a_later_case_holds_a_narrower_pinning(tmp_path):
    import os

    allowed = os.sched_getaffinity(0)
    profile = live_profile()
    cpu_node = memtier.topology(profile).cpu_nodes[0]
    cpus = [c for c in cpu_node.cpus if c in allowed]
    if len(cpus) < 2:
        pytest.skip("needs two CPUs of the first CPU node in this process's CPU set")
    options = {**TINY, "kernels": "triad,chase", "threads": "2", "nodes": str(cpu_node.id), "cpu_nodes": str(cpu_node.id)}
    triad, chase = memtier.MemTier().cases(profile, "quick", options)
    bench = memtier.MemTier()
    ctx = Context(tmp_path, profile)
    with bench.prepare(triad, ctx) as stream_measure, bench.prepare(chase, ctx) as chase_measure:
        assert numa.thread_cpus() == cpus[:1]  # the chase case pinned every thread to one CPU
        assert stream_measure().extra["thread_cpus"] == sorted(cpus)
        assert chase_measure().extra["thread_cpus"] == cpus[:1]
        assert numa.thread_cpus() == cpus[:1]
    assert os.sched_getaffinity(0) == allowed


def test_calibration_builds_the_c_reference_and_compares_both_sides(tmp_path):
    import shutil

    from gpubench.calibrate import memtier as calibrate_memtier

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler (apt: gcc)")
    result = calibrate_memtier.calibrate(live_profile(), size_mib=1, threads=1, rounds=2, hops=20_000, best_of=1)
    assert [r.name for r in result.rows] == ["triad, streaming stores", "triad, plain stores", "pointer chase"]
    for row in result.rows:
        assert len(row.gpubench) == len(row.c) == len(row.ratios) == 2
        assert all(v > 0 for v in row.gpubench + row.c)
    assert result.rows[2].unit == "ns" and result.threads == 1 and result.array_bytes == 1 << 20
    assert "-O3 -fopenmp -march=native" in result.compiler
    data = result.to_dict()
    assert data["rows"][0]["ratio_min"] <= data["rows"][0]["ratio_median"] <= data["rows"][0]["ratio_max"]
    if numa.calls().available:
        assert result.placement["gpubench"].startswith("mbind verified")
        assert result.placement["C"].startswith("set_mempolicy(MPOL_BIND, node 0) verified")


def test_calibrate_memtier_command_prints_json_only_and_refuses_bad_input():
    import json
    import shutil

    from typer.testing import CliRunner

    from gpubench.cli import app

    runner = CliRunner()
    for command in ("memtier", "iouring"):  # a count below 1 is a usage error in both
        for option in ("--rounds", "--threads", "--hops", "--best-of") if command == "memtier" else ("--rounds",):
            bad = runner.invoke(app, ["calibrate", command, option, "0"])
            assert bad.exit_code == 2 and option in bad.output, (command, option, bad.output)
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler (apt: gcc)")
    ok = runner.invoke(app, ["calibrate", "memtier", "--size", "1", "--threads", "1", "--rounds", "1", "--hops", "1000", "--best-of", "1", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["rows"][0]["name"] == "triad, streaming stores"


def test_ctrl_c_while_measuring_is_an_interruption_not_a_failure(tmp_path, monkeypatch, mk):
    """The measuring frame, kept by the traceback, still views the buffers as they are closed."""
    from gpubench.bench.core.runner import CaseRun, RepeatPolicy
    from gpubench.results.model import ResultStatus

    calls = []

    def kernel(a, b, c):
        calls.append(1)
        if len(calls) == 2:  # the first call warms up in prepare
            raise KeyboardInterrupt

    monkeypatch.setattr(mk, "stream_kernel", lambda name, stores: kernel)
    profile = live_profile()
    case = memtier.MemTier().cases(profile, "quick", {**TINY, "kernels": "copy"})[0]
    result = CaseRun("memtier", memtier.MemTier(), case, Context(tmp_path, profile), RepeatPolicy(warmup=0, min_reps=2, max_reps=2)).run()
    assert result.status is ResultStatus.INTERRUPTED, result.reason


READ_ONLY_RUN = """
set -e
for dir in "$@"; do mount --bind "$dir" "$dir" && mount -o remount,bind,ro "$dir"; done
exec "$PYTHON" -m gpubench run --only memtier --quick --rounds 1 --json --no-report --db "$DB" \
  -p memtier.kernels=triad,chase -p memtier.nodes=$NODE -p memtier.cpu_nodes=$NODE -p memtier.threads=1 \
  -p memtier.size=64K -p memtier.chase_size=64K -p memtier.hops=5000 -p memtier.best_of=1
"""


def test_runs_with_the_package_directory_and_the_home_read_only(tmp_path):
    """A read-only root filesystem (a container, a VM guest sharing the host's root): numba's
    cache=True finds neither the package's __pycache__ nor the home's cache writable, and every
    case failed with "cannot cache function ...: no locator available". The kernels now compile
    into a private cache, and each result says so. The directories are bind-mounted read-only in a mount namespace of the child
    alone, so that root's privileges cannot write through them."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    import gpubench

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--mount", "--map-root-user", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare(1) with user and mount namespaces (util-linux) to mount directories read-only")
    package = Path(gpubench.__file__).resolve().parent
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    (home / ".cache").mkdir(parents=True)
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    node = memtier.topology(live_profile()).cpu_nodes[0].id
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHON=sys.executable, DB=str(tmp_path / "history.db"), NODE=str(node),
               PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(package.parent))
    proc = subprocess.run([unshare, "--mount", "--map-root-user", "sh", "-c", READ_ONLY_RUN, "sh", str(package), str(home)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)["results"]
    assert [r["status"] for r in results] == ["ok", "ok"], [r.get("reason") for r in results]
    for result in results:
        note = result["extra"]["numba_cache"]
        assert note.startswith(f"private directory {tmp}/gpubench-numba-"), note
        assert "package directory and the home's cache directory are not writable" in note
    assert not list(tmp.glob("gpubench-numba-*")), "the private cache is removed when the run ends"


def test_without_any_writable_cache_directory_the_kernels_compile_uncached(mk, monkeypatch):
    def no_temporary_directory(prefix):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mk, "_numba_can_cache", lambda: False)
    monkeypatch.setattr(mk.tempfile, "mkdtemp", no_temporary_directory)
    cache = mk._choose_cache()
    assert not cache.enabled and cache.private_dir is None
    assert cache.note == ("off: gpubench's package directory and the home's cache directory are not writable, "
                          "nor the temporary directory (Permission denied); kernels compile in every run")


def test_a_chase_case_first_leaves_the_stream_cases_every_thread(tmp_path):
    """numba sizes its thread pool from the process's CPU set when it is first imported; a run whose
    first memtier case was the chase (pinned to one CPU) imported it there, and every STREAM case
    after it was WAIVED: 'numba allows at most 1 threads here'. Run in a fresh process, so that
    numba is imported by the chase."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs in this process's CPU set")
    script = (
        "import sys\n"
        "from gpubench.bench.engines import numa\n"
        "from gpubench.bench.memtier import MemTier, topology\n"
        "from gpubench.bench.core.interface import Context\n"
        "from gpubench.probe import Source, probe\n"
        "from pathlib import Path\n"
        "profile = probe(Source('/'), ['cxl'])\n"
        "cpus = topology(profile).cpu_nodes[0].cpus\n"
        "opts = {'kernels': 'chase,triad', 'size': '4M', 'chase_size': '1M', 'hops': '1000', 'best_of': '1', 'threads': '2'}\n"
        "cases = MemTier().cases(profile, 'quick', opts)\n"
        "assert [c.params['kernel'] for c in cases] == ['chase', 'triad'], cases\n"
        "for case in cases:\n"
        "    with MemTier().prepare(case, Context(scratch=Path(sys.argv[1]), profile=profile)) as measure:\n"
        "        measure()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
