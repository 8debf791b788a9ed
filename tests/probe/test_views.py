"""The typed views later layers read the probe through, built from recorded snapshots: each must
carry what the probe found, and say "not probed" rather than guess where an area was left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubench.probe import Profile, Source, Status, probe
from gpubench.probe.views import GdsView, GpuView, HmmView, IoUringView, KernelView, NumaView
from gpubench.results.metadata import capture

PROBES = Path(__file__).resolve().parents[2] / "probes"
H100_PCI = ("0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0")


def test_gpu_view_of_the_multi_gpu_server():
    profile = probe(Source(PROBES / "nvidia-multigpu"), ["kernel", "gpu", "p2p", "hmm", "gds"])
    gpus = GpuView.from_profile(profile)
    assert tuple(g.pci for g in gpus.nvidia) == H100_PCI
    assert [g.index for g in gpus.nvidia] == [0, 1, 2, 3]
    assert gpus.driver is not None and gpus.driver.status is Status.YES
    assert gpus.cuda_driver_version == "12.8"
    assert gpus.pair_status and all(a < b for a, b in gpus.pair_status)
    assert gpus.p2p_status(1, 0) == gpus.p2p_status(0, 1) == gpus.pair_status[(0, 1)]
    assert GdsView.from_profile(profile).verdict is not None
    assert HmmView.from_profile(profile).verdict is not None


def test_run_metadata_carries_the_cuda_driver_version_the_probe_read():
    """The metadata asked the driver capability for a key the probe never wrote (cuda_version), so
    every run stored cuda_driver = null."""
    profile = probe(Source(PROBES / "nvidia-multigpu"), ["kernel", "gpu"])
    meta = capture(profile, "label")
    assert meta["cuda_driver"] == "12.8"
    assert meta["nvidia_driver"] == GpuView.from_profile(profile).driver_version is not None
    assert meta["kernel"] == KernelView.from_profile(profile).release is not None


def test_views_of_areas_not_probed_say_so():
    profile = probe(Source(PROBES / "cpu-vm"), ["kernel"])
    assert IoUringView.from_profile(profile).binding is None
    assert GpuView.from_profile(profile).nvidia == ()
    assert HmmView.from_profile(profile).verdict is None
    assert NumaView.from_profile(profile).nodes == ()


def test_numa_view_of_the_cxl_host_has_its_cpu_less_node_and_hmat():
    numa = NumaView.from_profile(probe(Source(PROBES / "cxl-host"), ["cxl"]))
    cpu_less = [n for n in numa.nodes if not n.has_cpu]
    assert cpu_less and cpu_less[0].hmat is not None and cpu_less[0].hmat.read_latency_ns


def test_gds_view_carries_what_nvidia_fs_shows_of_itself():
    gds = GdsView.from_profile(probe(Source(PROBES / "nvidia-multigpu"), ["gds"]))
    assert gds.path == "gds" and gds.nvidia_fs_version == "2.24"
    assert gds.nvidia_fs_io is True
    assert gds.nvidia_fs_counters["reads"] == 4096 and gds.nvidia_fs_counters["write_errors"] == 0


def test_gpu_view_of_a_jetson_names_its_driver_and_release_not_a_desktop_version():
    gpus = GpuView.from_profile(probe(Source(PROBES / "jetson-orin"), ["gpu"]))
    assert (gpus.gpu_driver, gpus.l4t_release, gpus.driver_version) == ("nvgpu", "35.3.1", None)
    assert [g.pci for g in gpus.nvidia] == ["17000000.ga10b (platform)"]


def test_views_of_a_profile_stored_before_these_details_existed():
    """Runs stored before the probe wrote nvidia-fs counters or Jetson details still read."""
    old = {"root": "/", "capabilities": [
        {"area": "gds", "name": "gpudirect storage", "status": "yes", "details": {"path": "gds", "kvikio": True}},
        {"area": "gpu", "name": "nvidia driver", "status": "yes", "details": {"version": "535.129.03"}},
    ]}
    profile = Profile.from_dict(old)
    gds = GdsView.from_profile(profile)
    assert (gds.path, gds.nvidia_fs_version, gds.nvidia_fs_io, dict(gds.nvidia_fs_counters)) == ("gds", None, None, {})
    gpus = GpuView.from_profile(profile)
    assert (gpus.driver_version, gpus.gpu_driver, gpus.l4t_release) == ("535.129.03", None, None)


def test_a_stored_pcie_link_reads_each_end_alike_and_garbage_is_no_speed():
    """A link from a stored run: the limit is the device's width at the speed both ends allow, no
    more than the narrowest link above; a speed that is not a positive number (true, -3, "16") is none."""
    from gpubench.probe.views import PcieLink

    end = {"address": "0000:00:01.0", "speed": 16.0, "width": 16, "max_speed": 16.0, "max_width": 16}
    stored = {"address": "0000:01:00.0", "kind": "nvme", "names": ["nvme0", 3], "speed": 32.0, "width": 8,
              "max_speed": 32.0, "max_width": 16, "port": end, "upstream": [{**end, "width": 4}, "garbage", {**end, "speed": "16"}]}
    link = PcieLink.from_dict(stored)
    assert link is not None and link.names == ("nvme0",)
    assert (link.capable_speed, link.capable_width) == (16.0, 16) and link.trained_low
    assert link.upstream_gbps == pytest.approx(4 * 16 * 128 / 130 / 8) == link.gbps
    garbled = PcieLink.from_dict({**stored, "speed": -3, "max_speed": True, "port": {**end, "max_speed": True}})
    assert garbled is not None and garbled.speed is None and garbled.capable_speed is None and garbled.gbps is None
    assert PcieLink.from_dict({"kind": "gpu"}) is None
