"""The GPU data-path benchmarks for real, at small sizes: run with `pytest -m gpu` on a machine with
an NVIDIA GPU and CuPy (KvikIO for gds). Each case goes through the same pipeline a `gpubench run`
uses, so a pass means the case measured, checked its bytes and shaped its result. They skip,
with the reason, where no GPU can be used; with GPUBENCH_REQUIRE_GPU=1 (`bash ci/test.sh -m gpu`
sets it) they fail instead, so that a GPU runner missing CuPy or KvikIO cannot pass by skipping. Figures are attached with record_property (see
--junitxml), never asserted: speed is measured by benchmarks, not by tests.

gds's files go to GPUBENCH_TEST_SCRATCH when set (a directory on the file system to measure), else
to pytest's temporary directory; where that keeps files in memory (tmpfs), the cold reads are
WAIVED, with the reason, and the test accepts that."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from gpubench.bench.engines import iofile
from gpubench.bench.gpu import gds
from gpubench.bench.gpu import common as gpu_common
from gpubench.bench.gpu import hmm
from gpubench.bench.gpu import memcpy
from gpubench.bench.gpu import p2p
from gpubench.bench.core.runner import CaseRun, RepeatPolicy
from gpubench.bench.core.interface import Context
from gpubench.probe import Source, probe
from gpubench.results.model import ResultStatus

pytestmark = pytest.mark.gpu

TINY = RepeatPolicy(warmup=1, min_reps=2, max_reps=2, target_spread=1.0, case_timeout_s=120.0)


def cannot_run(why: str) -> None:
    if os.environ.get("GPUBENCH_REQUIRE_GPU") == "1":
        pytest.fail(f"GPUBENCH_REQUIRE_GPU=1, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def live():
    why = gpu_common.gpu_usable()
    if why:
        cannot_run(why)
    profile = probe(Source("/"), ["gpu", "hmm", "p2p", "gds"])
    if not gpu_common.nvidia_gpus(profile):
        cannot_run("the probe found no NVIDIA GPU")
    return profile


def run_cases(bench, profile, tmp_path: Path, options: dict[str, str], record_property) -> dict[str, object]:
    results = {}
    for case in bench.cases(profile, "quick", options):
        scratch = tmp_path / case.name
        scratch.mkdir()
        ctx = Context(scratch=scratch, profile=profile, options=options)
        result = CaseRun(bench.key, bench, case, ctx, TINY).run()
        results[case.name] = result
        record_property(f"{bench.key}/{case.name}", f"{result.status.value} {result.summary.median if result.summary else ''} {case.unit} {result.reason}")
    return results


def assert_measured(result) -> None:
    assert result.status is ResultStatus.OK, f"{result.case}: {result.status.value}: {result.reason}"
    assert len(result.samples) == 2 and all(v > 0 for v in result.samples)


def test_memcpy_every_copy(live, tmp_path, record_property):
    results = run_cases(memcpy.Memcpy(), live, tmp_path, {"sizes": "16M", "iterations": "3", "gpus": "0"}, record_property)
    assert len(results) == 11
    for r in results.values():
        assert_measured(r)
        assert r.extra["device_name"] and r.extra["pci_bus_id"]
    assert results["h2d-pageable-ce-16M-gpu0"].extra["timer"] == "wall"
    assert results["d2d-cupy-reference-16M-gpu0"].extra["engine"] == "cupy"
    ratio = results["d2d-ce-16M-gpu0"].summary.median / results["d2d-cupy-reference-16M-gpu0"].summary.median
    record_property("d2d_ce_over_cupy_reference", f"{ratio:.3f}")


def test_p2p_pairs(live, tmp_path, record_property):
    if len(gpu_common.nvidia_gpus(live)) < 2:
        pytest.skip("needs >= 2 GPUs")
    results = run_cases(p2p.P2P(), live, tmp_path, {"sizes": "16M", "iterations": "3", "pairs": "0-1,1-0"}, record_property)
    for r in results.values():
        if r.status is ResultStatus.WAIVED:
            assert "SM copies need peer access" in r.reason
            continue
        assert_measured(r)
        assert r.extra["via"] in ("peer", "host")
        assert r.extra["via"] == r.params["via"] or r.params["via"] == "auto"


def test_p2p_waived_on_one_gpu(live):
    if len(gpu_common.nvidia_gpus(live)) >= 2:
        pytest.skip("this machine has several GPUs")
    assert p2p.P2P().requires(live) == "needs >= 2 GPUs (probe: 1 NVIDIA GPU)"


def test_hmm_placements(live, tmp_path, record_property):
    results = run_cases(hmm.Hmm(), live, tmp_path, {"sizes": "16M", "iterations": "2"}, record_property)
    system_waiver = hmm.system_memory_waiver(live)
    for name, r in results.items():
        if name.startswith("system-") and system_waiver:
            assert r.status is ResultStatus.WAIVED and r.reason == system_waiver
            continue
        if r.status is ResultStatus.WAIVED and "concurrentManagedAccess = 0" in r.reason:
            continue
        assert_measured(r)
        assert r.sample_metrics[0]["kernel_s_median"] > 0
    for name in ("device-from-pageable-16M", "device-from-pinned-16M"):
        assert results[name].sample_metrics[0]["copy_s_median"] > 0


@pytest.fixture
def kvikio_ready(live):
    if find_spec("kvikio") is None:
        cannot_run("KvikIO is not installed")
    return live


def gds_directory(tmp_path: Path) -> Path:
    """Where gds writes its files: a new directory under GPUBENCH_TEST_SCRATCH, else tmp_path."""
    root = os.environ.get("GPUBENCH_TEST_SCRATCH")
    return Path(tempfile.mkdtemp(prefix="gpubench-test-", dir=root)) if root else tmp_path


def test_gds_reads_writes_and_names_the_path(kvikio_ready, tmp_path, record_property):
    directory = gds_directory(tmp_path)
    mount = iofile.mount_of(directory)
    in_memory = mount is not None and mount.fstype in iofile.MEMORY_FILESYSTEMS
    options = {"sizes": "16M", "threads": "1,4", "iterations": "2", "target": str(directory)}
    try:
        results = run_cases(gds.Gds(), kvikio_ready, tmp_path, options, record_property)
    finally:
        if directory != tmp_path:
            shutil.rmtree(directory, ignore_errors=True)
    for r in results.values():
        if in_memory and r.params["cache"] == "cold":
            assert r.status is ResultStatus.WAIVED and "cold reads would be warm" in r.reason, r.reason
            continue
        assert_measured(r)
        assert r.extra["path"] in gds.PATHS + ("posix-pinned-h2d",)
    kv = [r for r in results.values() if r.params["engine"] == "kvikio"]
    assert {r.extra["kvikio_num_threads"] for r in kv} == {1, 4}
    assert all(r.extra["kvikio_task_size"] == r.params["task_size"] for r in kv)
    record_property("gds_path", kv[0].extra["path"])


def test_gds_against_kvikios_own_benchmark(kvikio_ready, tmp_path, record_property):
    """KvikIO's round-trip benchmark on the same file system, beside gds's warm read of the same
    size and thread count; the ratio is recorded for the report, not asserted."""
    module = next((m for m in gds.KVIKIO_BENCHMARK_MODULES if find_spec(m.rsplit(".", 1)[0]) and find_spec(m)), None)
    if module is None:
        pytest.skip("KvikIO's single-node benchmark is not installed")
    if find_spec("dask") is None:
        cannot_run("KvikIO's benchmark needs dask, which the gpu extras install: pip install '.[gpu]' (or '.[gpu-cu13]')")
    size, threads = "64M", "4"
    proc = subprocess.run(
        [sys.executable, "-m", module, "-n", "64MiB", "-d", str(tmp_path), "-t", threads, "--nruns", "3", "--api", "cufile"],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        cannot_run(f"KvikIO's benchmark did not run: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    theirs = gds.parse_kvikio_report(proc.stdout)
    assert "cufile read" in theirs, proc.stdout
    options = {"sizes": size, "threads": threads, "ops": "read", "caches": "warm", "baseline": "0", "iterations": "3"}
    ours = run_cases(gds.Gds(), kvikio_ready, tmp_path, options, record_property)
    (result,) = ours.values()
    assert_measured(result)
    record_property("kvikio_benchmark_read_gbps", f"{theirs['cufile read']:.3f}")
    record_property("gds_over_kvikio_benchmark", f"{result.summary.median / theirs['cufile read']:.3f}")
