"""The GPU benchmarks' child processes (gpubench.bench.gpu.worker), with the GPU stand-in in them:
the run pipeline (probe -> plan -> run -> store) over all four GPU benchmarks, a CUDA fault that
fails its case and no other, a case that crashes its process, Ctrl-C in the middle of a case, and
what a child prints."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from gpu_standin import Config, StandIn, harness
from gpubench.bench.core.interface import Context
from gpubench.bench.core.settings import RunSettings
from gpubench.bench.core.job import JobOptions, Progress, run_job
from gpubench.bench.core.runner import CaseRun
from gpubench.bench.gpu import gds, memcpy, worker
from gpubench.results.model import ROUND_KEY, ResultStatus, Run

SMALL = {"memcpy": {"sizes": "64K", "iterations": "2"}, "p2p": {"sizes": "64K", "iterations": "2"},
         "gds": {"sizes": "64K", "threads": "1,4", "iterations": "2"}, "hmm": {"sizes": "64K", "iterations": "2"}}
GPU_LIBRARIES = ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.memory", "cupy.cuda.driver",
                 "kvikio", "kvikio.defaults", "kvikio.cufile_driver")


@pytest.fixture(autouse=True)
def one_worker_per_test():
    yield
    worker.stop()


def machine(monkeypatch, tmp_path: Path, **config):
    """The stand-in for the child processes, and a probe of it; NVML stays here (the probe and
    telemetry ask it in this process), CuPy and KvikIO do not: this process must never import them."""
    standin = StandIn(Config(**config)).install(monkeypatch)
    profile = harness.server_profile(tmp_path, standin.config.gpus)
    for name in GPU_LIBRARIES:
        monkeypatch.delitem(sys.modules, name)
    return standin, profile


def run(tmp_path: Path, profile, params: dict[str, dict[str, str]], rounds: int = 2, telemetry: bool = False) -> Run:
    opts = JobOptions(db=tmp_path / "results.db", keys=tuple(params), size="quick", params=params,
                      telemetry=telemetry, telemetry_hz=20.0, rounds=rounds)
    return run_job(opts, Progress(), profile)


def statuses(result_run: Run) -> dict[str, tuple[str, str]]:
    return {f"{r.benchmark}/{r.case}": (r.status.value, r.reason) for r in result_run.results}


def test_a_run_of_the_four_gpu_benchmarks_on_two_gpus(monkeypatch, tmp_path):
    """Through job.run_job, as `gpubench run` does, with NVML telemetry; every case in a child."""
    _, profile = machine(monkeypatch, tmp_path, gpus=2)
    started = []
    monkeypatch.setattr(worker, "Worker", lambda key, cls=worker.Worker: started.append(key) or cls(key))
    done = run(tmp_path, profile, SMALL, telemetry=True)
    assert started == ["memcpy", "p2p", "gds", "hmm"] * 2  # one child per benchmark and round, not per case
    got = statuses(done)
    assert len(got) == 11 + 8 + 8 + 7
    not_ok = {k: v for k, v in got.items() if v[0] != "ok"}
    if not harness.cold_reads_possible(tmp_path):
        not_ok = {k: v for k, v in not_ok.items() if not ("cold" in k and "page cache could not be dropped" in v[1])}
    assert not_ok == {}
    assert all({m[ROUND_KEY] for m in r.sample_metrics} == {1, 2} for r in done.results if r.status is ResultStatus.OK)
    assert not set(GPU_LIBRARIES) & set(sys.modules)  # all of it ran in the children
    assert worker._current is not None and worker._current.key == "hmm"  # the last benchmark's child, until stop()


def test_a_cuda_fault_fails_its_case_and_no_other(monkeypatch, tmp_path):
    """The first kernel on plain system memory faults (HMM reported but broken): sticky for that
    process. Its case fails with the error; the hmm cases after it and, in round 2, memcpy's run."""
    _, profile = machine(monkeypatch, tmp_path, gpus=1, system_memory_faults=True)
    params = {"memcpy": {**SMALL["memcpy"], "directions": "d2d,h2d"},
              "hmm": {**SMALL["hmm"], "placements": "system-first-touch,device-from-pinned,system-second-pass,managed"}}
    got = statuses(run(tmp_path, profile, params))
    failed = {k for k, v in got.items() if v[0] == "failed"}
    assert failed == {"hmm/system-first-touch-64K", "hmm/system-second-pass-64K"}
    for name in failed:
        reason = got[name][1]  # the message, then where it was raised (the stand-in) and from where in gpubench
        assert reason.startswith("CUDARuntimeError: cudaErrorIllegalAddress: an illegal memory access was encountered (raised at ")
        assert ", from gpubench/bench/gpu/hmm.py:" in reason and reason.endswith(" in prepare_here)")
    assert {v[0] for k, v in got.items() if k not in failed} == {"ok"}


def test_a_case_that_crashes_its_process_fails_alone(monkeypatch, tmp_path):
    _, profile = machine(monkeypatch, tmp_path, gpus=1, crash_kernel="gpubench_read_sum")
    params = {"memcpy": {**SMALL["memcpy"], "directions": "d2d"}, "hmm": {**SMALL["hmm"], "placements": "managed,mapped-pinned"}}
    got = statuses(run(tmp_path, profile, params))
    assert got["hmm/managed-64K"] == ("failed", "the hmm worker process was killed by SIGSEGV during open")
    assert got["hmm/mapped-pinned-64K"] == ("failed", "the hmm worker process was killed by SIGSEGV during open")
    assert {v[0] for k, v in got.items() if k.startswith("memcpy/")} == {"ok"}


def test_ctrl_c_in_a_case_stops_its_child_which_removes_its_files(monkeypatch, tmp_path):
    _, profile = machine(monkeypatch, tmp_path, gpus=1, io_delay_s=5.0)
    target = tmp_path / "target"
    target.mkdir()
    options = {**SMALL["gds"], "threads": "1", "ops": "read", "caches": "warm", "baseline": "0"}
    case = gds.Gds().cases(profile, "quick", options, RunSettings(target=target))[0]
    ctx = Context(scratch=tmp_path, profile=profile)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)  # while the child does its first (untimed) read
    try:
        result = CaseRun("gds", gds.Gds(), case, ctx, harness.TINY).run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert result.status is ResultStatus.INTERRUPTED
    assert worker._current is None
    assert list(target.iterdir()) == []  # the child unwound its case on SIGTERM


def test_what_a_child_prints_goes_to_stderr(monkeypatch, tmp_path, capfd):
    _, profile = machine(monkeypatch, tmp_path, gpus=1, chatty=True)
    case = next(c for c in memcpy.Memcpy().cases(profile, "quick", SMALL["memcpy"]) if c.params["engine"] == "sm")
    result = CaseRun("memcpy", memcpy.Memcpy(), case, Context(scratch=tmp_path, profile=profile), harness.TINY).run()
    assert result.status is ResultStatus.OK, result.reason
    out, err = capfd.readouterr()
    assert "stand-in: compiling gpubench_copy16" not in out
    assert "stand-in: compiling gpubench_copy16 for device 0" in err


def test_a_case_that_hangs_past_its_deadline_is_stopped(monkeypatch, tmp_path):
    _, profile = machine(monkeypatch, tmp_path, gpus=1, io_delay_s=30.0)
    monkeypatch.setattr(worker, "HANG_GRACE_S", 1.0)
    case = gds.Gds().cases(profile, "quick", {**SMALL["gds"], "threads": "1", "ops": "write", "baseline": "0"})[0]
    ctx = Context(scratch=tmp_path, profile=profile, deadline=time.monotonic() + 0.5)
    started = time.monotonic()
    result = CaseRun("gds", gds.Gds(), case, ctx, harness.TINY).run()
    assert (result.status, result.reason) == (
        ResultStatus.FAILED, "the gds worker process did not answer (open) 1 s past the case's deadline: stopped")
    assert time.monotonic() - started < 15 and worker._current is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gpubench-gds-")] == []
