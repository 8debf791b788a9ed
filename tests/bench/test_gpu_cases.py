"""Every case of the GPU benchmarks (memcpy, p2p, gds, hmm), end to end through the real case
runner, against the GPU stand-in (gpu_standin): on 1, 2 and 4 GPUs, with and without peer access,
with HMM on and off, with CUDA numbering the GPUs its own way. Each case must measure and check
its bytes, or be waived for the reason its machine gives; afterwards nothing it allocated, enabled
or queued may be left behind. The stand-in cannot tell speeds or races between streams: these
tests hold the plumbing, not the figures (test_gpu_real.py does that on a GPU)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from gpu_standin import Config, StandIn, harness
from gpubench.bench.gpu import gds, hmm, memcpy, p2p
from gpubench.probe import Source, probe
from gpubench.results.model import ResultStatus

BENCHES = {"memcpy": memcpy.Memcpy(), "p2p": p2p.P2P(), "gds": gds.Gds(), "hmm": hmm.Hmm()}
SMALL = {  # every case the default size plans, at sizes that run in milliseconds
    "memcpy": {"sizes": "64K", "iterations": "2"},
    "p2p": {"sizes": "64K", "iterations": "2"},
    "gds": {"sizes": "64K", "threads": "1,4", "iterations": "2"},
    "hmm": {"sizes": "64K", "iterations": "2"},
}
MACHINES = {
    "1gpu": Config(gpus=1),
    "2gpu-peer-nohmm": Config(gpus=2, hmm=False),
    "2gpu-nopeer": Config(gpus=2, no_peer=((0, 1),)),
    "4gpu-mixed-cudaorder": Config(gpus=4, no_peer=((0, 2), (1, 3)), cuda_order=(3, 1, 2, 0)),
    "1gpu-kvikio-compat": Config(gpus=1, kvikio_compat=True),
    "1gpu-cufile-compat": Config(gpus=1, gds_available=False),
}
SM_WITHOUT_PEER = "SM copies need peer access"
COLD_STAYS = "the page cache could not be dropped"


def leftovers(machine) -> list[str]:
    """What a finished case left behind on the stand-in: memory still allocated (blocks back in
    CuPy's pool are not: the runner's reference to the measurement returns them after the case's
    free_all_blocks, and the next case's memory check frees them), peer access still enabled, work
    never run, another current device."""
    gc.collect()
    out = [b.describe() for b in machine.blocks.values() if b.kind != "host" and b.state == "live"]
    out += [f"peer access {g.ordinal}->{p}" for g in machine.gpus for p in g.peers]
    out += [f"queued work on device {s.device}" for g in machine.gpus for s in g.streams if s.pending]
    if machine.current != 0:
        out.append(f"current device left at {machine.current}")
    return out


def expected_waiver(config: Config, key: str, case) -> str | None:
    """Why the stand-in machine waives a case, or None when it must measure."""
    p = case.params
    if key == "p2p" and p["kind"].endswith("-sm") and not config.peer(p["src"], p["dst"]):
        return SM_WITHOUT_PEER
    if key == "hmm" and p["placement"] in hmm.SYSTEM_PLACEMENTS and not config.hmm:
        return "plain system memory needs HMM or ATS"
    return None


def check_result(config: Config, key: str, case, result, scratch: Path) -> None:
    why = expected_waiver(config, key, case)
    if why is None and key == "gds" and case.params["cache"] == "cold" and not harness.cold_reads_possible(scratch):
        why = COLD_STAYS
    if why is not None:
        assert result.status is ResultStatus.WAIVED and why in result.reason, (case.name, result.reason)
        return
    assert result.status is ResultStatus.OK, f"{case.name}: {result.status.value}: {result.reason}"
    assert len(result.samples) == 2 and all(v > 0 for v in result.samples)
    extra = result.extra
    if key == "p2p":
        peer = config.peer(case.params["src"], case.params["dst"])
        assert case.params["via"] == extra["via"] == ("peer" if peer else "host")
        assert extra["src"]["pci_bus_id"].lower() == case.params["src_pci"]
        assert extra["dst"]["pci_bus_id"].lower() == case.params["dst_pci"]
    else:  # the case ran on the GPU it names, whatever number CUDA gives that GPU
        assert extra["pci_bus_id"].lower() == case.params["gpu_pci"], case.name
    if key == "gds" and case.params["engine"] == "kvikio":  # the path KvikIO's own answers imply
        posix = config.kvikio_compat or extra["kvikio_direct_io"] is False
        assert extra["path"] == ("posix-compat" if posix else "gds" if config.gds_available else "cufile-compat")
        assert extra["kvikio_num_threads"] == case.params["threads"]


@pytest.mark.parametrize("name", MACHINES)
def test_every_gpu_case_runs_against_the_standin(name, tmp_path, monkeypatch):
    config = MACHINES[name]
    standin = StandIn(config).install(monkeypatch)
    profile = harness.server_profile(tmp_path, config.gpus)
    ran = 0
    for key, bench in BENCHES.items():
        if key == "p2p" and config.gpus < 2:
            assert bench.requires(profile) == "needs >= 2 GPUs (probe: 1 NVIDIA GPU)"
            continue
        assert bench.requires(profile) is None, key
        for case in bench.cases(profile, "default", SMALL[key]):
            scratch = tmp_path / key / case.name
            scratch.mkdir(parents=True)
            launches = len(standin.machine.launches)
            result = harness.run_case(bench, profile, case, scratch, SMALL[key])
            check_result(config, key, case, result, scratch)
            assert leftovers(standin.machine) == [], case.name
            assert list(scratch.iterdir()) == [], case.name  # gds removes its scratch file
            if key == "p2p" and case.params["kind"] == "uni-sm" and result.status is ResultStatus.OK:
                # the destination GPU pulls: every launch on its CUDA device
                device = standin.modules["cupy"].cuda.runtime.deviceGetByPCIBusId(case.params["dst_pci"])
                assert {d for _, d in standin.machine.launches[launches:]} == {device}
            ran += 1
    assert ran == {"2gpu-peer-nohmm": 22 + 8 + 8 + 7, "2gpu-nopeer": 22 + 8 + 8 + 7,
                   "4gpu-mixed-cudaorder": 44 + 48 + 8 + 7}.get(name, 11 + 8 + 7)


def test_buffers_live_as_long_as_they_are_timed(tmp_path, monkeypatch):
    """Poison mode: memory is poisoned and flagged the moment its owner lets go of it. A timed copy
    that kept only an address (memcpy's device and pageable buffers, hmm's pageable array) used
    memory that was back in CuPy's pool, or freed by NumPy (at 16 MiB, unmapped: a segfault)."""
    StandIn(Config(gpus=2, poison=True)).install(monkeypatch)
    profile = harness.server_profile(tmp_path, 2)
    for key, bench in BENCHES.items():
        results = harness.run_here(bench, profile, tmp_path / key, SMALL[key], size="default")
        failed = {name: r.reason for name, r in results.items() if r.status is not ResultStatus.OK}
        if not harness.cold_reads_possible(tmp_path):
            failed = {name: why for name, why in failed.items() if COLD_STAYS not in why}
        assert failed == {}


def test_p2p_asks_cuda_where_the_probe_could_not_tell_and_waives_where_they_disagree(tmp_path, monkeypatch):
    """A pair NVML said nothing about is routed by CUDA's canAccessPeer when the case runs; a pair
    the probe calls P2P-capable that CUDA cannot connect is waived with both answers."""
    StandIn(Config(gpus=3)).install(monkeypatch)
    profile = harness.server_profile(tmp_path, 3)  # NVML: every pair P2P-capable
    nvml = tmp_path / "server-3/.gpubench/commands/nvml.json"
    data = json.loads(nvml.read_text())
    del data["p2p"]["0-1"]
    nvml.write_text(json.dumps(data))
    unknown = probe(Source(tmp_path / "server-3"), harness.AREAS)  # NVML said nothing of GPUs 0 and 1
    StandIn(Config(gpus=3, no_peer=((0, 1),))).install(monkeypatch)  # CUDA: GPUs 0 and 1 cannot reach each other
    options = {**SMALL["p2p"], "pairs": "0-1,1-2", "kinds": "uni-ce"}
    routed = {c.name: (c.params["via"], r) for c in BENCHES["p2p"].cases(unknown, "default", options)
              for r in [harness.run_case(BENCHES["p2p"], unknown, c, tmp_path, options)]}
    assert routed["uni-ce-0to1-64K"][0] == "auto" and routed["uni-ce-0to1-64K"][1].extra["via"] == "host"
    assert routed["uni-ce-1to2-64K"][0] == "peer" and routed["uni-ce-1to2-64K"][1].extra["via"] == "peer"
    case = BENCHES["p2p"].cases(profile, "default", options)[0]
    result = harness.run_case(BENCHES["p2p"], profile, case, tmp_path, options)
    assert (result.status, result.reason) == (ResultStatus.WAIVED, "the probe reports P2P between GPUs 0 and 1, but CUDA says "
                                                                   "canAccessPeer 0->1 = 0, 1->0 = 0")


@pytest.mark.parametrize("config, status, reason", [
    (Config(gpus=1, init_error=35), ResultStatus.FAILED,
     "CUDA cannot be used: cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version "
     "(the NVIDIA driver is older than the CUDA runtime CuPy was built for, or its libcuda.so.1 is not installed: "
     "install the gpubench extra that matches the driver's CUDA version (gpu for 12, gpu-cu13 for 13))"),
    (Config(gpus=1, init_error=802), ResultStatus.FAILED,
     "CUDA cannot be used: cudaErrorSystemNotReady: system not yet initialized (on NVSwitch systems, start nvidia-fabricmanager)"),
    (Config(gpus=1, hidden=(0,)), ResultStatus.WAIVED,
     "CUDA sees no GPU here (cudaErrorNoDevice: no CUDA-capable device is detected; CUDA_VISIBLE_DEVICES=unset)"),
    (Config(gpus=2, hidden=(1,)), ResultStatus.WAIVED,
     "GPU 1 (0000:43:00.0) is not visible to CUDA here (1 visible; check CUDA_VISIBLE_DEVICES)"),
], ids=["driver-too-old", "fabric-manager-down", "no-gpu-visible", "gpu-hidden"])
def test_a_missing_gpu_waives_and_a_cuda_fault_fails(tmp_path, monkeypatch, config, status, reason):
    """Only what is not there waives a case; CUDA failing to start on a GPU machine is a fault."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    StandIn(config).install(monkeypatch)
    profile = harness.server_profile(tmp_path, config.gpus)
    for key in ("memcpy", "hmm"):
        options = {**SMALL[key], "gpus" if key == "memcpy" else "gpu": str(config.gpus - 1)}
        case = BENCHES[key].cases(profile, "default", options)[0]
        result = harness.run_case(BENCHES[key], profile, case, tmp_path, options)
        assert (result.status, result.reason) == (status, reason)


def test_cupy_that_breaks_on_import_fails_and_one_that_cannot_import_waives(tmp_path, monkeypatch):
    from gpubench.bench.core.interface import BenchFailure, Waived
    from gpubench.bench.gpu import common

    monkeypatch.delitem(__import__("sys").modules, "cupy", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "cupy.py"
    module.write_text("raise RuntimeError('CUDA driver library is broken')\n")
    with pytest.raises(BenchFailure, match=r"^CuPy does not load: RuntimeError: CUDA driver library is broken$"):
        common.load_cupy()
    module.write_text("raise ImportError('libnvrtc.so.12: cannot open shared object file')\n")
    with pytest.raises(Waived, match=r"^CuPy does not import: libnvrtc.so.12: cannot open shared object file \(pip install "):
        common.load_cupy()


def test_peer_access_enabled_before_a_case_is_left_as_it_was(tmp_path, monkeypatch):
    """deviceEnablePeerAccess answers 704 (already enabled) for access someone else enabled: the
    case uses it and leaves it enabled; what the case enabled itself, it disables."""
    standin = StandIn(Config(gpus=2)).install(monkeypatch)
    profile = harness.server_profile(tmp_path, 2)
    standin.cupy.cuda.runtime.deviceEnablePeerAccess(1)  # GPU 0 may reach GPU 1 already
    options = {**SMALL["p2p"], "pairs": "0-1", "kinds": "uni-ce,uni-sm"}
    results = harness.run_here(BENCHES["p2p"], profile, tmp_path, options, size="default")
    assert {name: r.status for name, r in results.items()} == {"uni-ce-0to1-64K": ResultStatus.OK, "uni-sm-0to1-64K": ResultStatus.OK}
    assert [sorted(g.peers) for g in standin.machine.gpus] == [[1], []]
