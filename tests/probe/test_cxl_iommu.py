"""The cxl and iommu probe areas, on the snapshots in probes/ and on damaged copies of them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gpubench.probe import Source, Status, probe
from gpubench.probe.numa import parse_list
from gpubench.probe.iommu import cmdline_flags

PROBES = Path(__file__).resolve().parents[2] / "probes"
CXL_HOST = PROBES / "cxl-host"
NODE = "sys/devices/system/node"
TIERS = "sys/devices/virtual/memory_tiering"
CXL = "sys/bus/cxl/devices"
GROUPS = "sys/kernel/iommu_groups"
GENERIC_FAILURE = "could not interpret what was read"  # what run_check says when a check raised


def caps(root: Path) -> dict:
    profile = probe(Source(root), ["cxl", "iommu"])
    return {c.name: c for c in profile.capabilities}


def evidence(cap) -> dict[str, str]:
    return {e.source: e.value for e in cap.evidence}


def snapshot(name: str) -> Path:
    root = PROBES / name
    if not root.is_dir():
        pytest.skip(f"probes/{name} does not exist yet")
    return root


@pytest.fixture
def cxl_copy(tmp_path: Path) -> Path:
    root = tmp_path / "cxl-host"
    shutil.copytree(CXL_HOST, root, symlinks=True)
    return root


def put(root: Path, rel: str, text: str) -> None:
    """Overwrite a file as the kernel would see it (a link into sys/devices is followed)."""
    path = Path(os.path.realpath(root / rel))
    path.write_text(text)


def make_dir_instead(root: Path, rel: str) -> None:
    path = Path(os.path.realpath(root / rel))
    path.unlink()
    path.mkdir()


# --- the synthesised CXL host -------------------------------------------------------------------


def test_cxl_host_numa_nodes():
    cap = caps(CXL_HOST)["numa nodes"]
    assert cap.status is Status.YES
    assert "2 node(s) online, 1 without CPUs" in cap.why
    nodes = {n["id"]: n for n in cap.details["nodes"]}
    assert sorted(nodes) == [0, 1]
    assert nodes[0]["cpus"] == list(range(32)) and nodes[0]["has_cpu"] is True
    assert nodes[1]["cpus"] == [] and nodes[1]["has_cpu"] is False
    assert nodes[0]["tier"] == 4 and nodes[1]["tier"] == 22
    assert nodes[1]["mem_total_kb"] == 128 << 20 and nodes[1]["mem_free_kb"] == 134012416
    assert nodes[0]["hmat"] == {
        "read_bandwidth_mbps": 122880,
        "write_bandwidth_mbps": 122880,
        "read_latency_ns": 100,
        "write_latency_ns": 100,
        "initiators": [0],
    }
    assert nodes[1]["hmat"]["read_latency_ns"] == 250 and nodes[1]["hmat"]["read_bandwidth_mbps"] == 61440
    assert nodes[1]["distances"] == [20, 10]
    assert cap.details["demotion_enabled"] is True
    seen = evidence(cap)
    assert seen["/sys/devices/system/node/online"] == "0-1"
    assert seen["/sys/devices/system/node/node1/cpulist"] == "(empty)"
    assert "61440 MB/s 250 ns" in seen["/sys/devices/system/node/node1/access0/initiators"]


def test_cxl_host_memory_tiers():
    cap = caps(CXL_HOST)["memory tiers"]
    assert cap.status is Status.YES
    assert cap.details["tiers"] == {"4": [0], "22": [1]}
    assert cap.details["order"] == [4, 22] and cap.details["lower_tier_nodes"] == [1]
    assert cap.details["demotion_enabled"] is True
    assert "memory_tier4 (nodes 0), memory_tier22 (nodes 1)" in cap.why and "demotion" in cap.why
    assert evidence(cap)["/sys/devices/virtual/memory_tiering/memory_tier22/nodelist"] == "1"


def test_cxl_host_cxl_memory():
    cap = caps(CXL_HOST)["cxl memory"]
    assert cap.status is Status.YES
    (mem0,) = cap.details["memdevs"]
    assert mem0 == {"name": "mem0", "ram_bytes": 128 << 30, "pmem_bytes": 0, "numa_node": 0, "memory_nodes": [1]}
    (region,) = cap.details["regions"]
    assert (region["name"], region["size"], region["mode"], region["committed"]) == ("region0", 128 << 30, "ram", True)
    assert region["targets"] == ["decoder2.0"] and region["memdevs"] == ["mem0"] and region["numa_node"] == 1
    assert region["dax"] == [{"name": "dax0.0", "driver": "kmem", "target_node": 1}]
    assert "online as NUMA node 1" in cap.why
    seen = evidence(cap)
    assert seen["CONFIG_CXL_BUS"] == "y" and seen["CONFIG_CXL_REGION"] == "y"
    assert seen["/sys/bus/cxl/devices/mem0/ram/size"] == "0x2000000000"
    assert seen["/sys/bus/cxl/devices/region0/mode"] == "ram"


def test_cxl_host_iommu_translated():
    cap = caps(CXL_HOST)["iommu"]
    assert cap.status is Status.PARTIAL
    d = cap.details
    assert (d["groups"], d["default_domain"], d["mode"], d["p2p_friendly"]) == (7, "DMA-FQ", "translated", False)
    assert d["cmdline_flags"] == [] and d["units"] == ["dmar0", "dmar1", "dmar2"]
    assert d["device_domains"]["0000:35:00.0"] == "DMA-FQ"
    assert "iommu=pt" in cap.fix
    assert evidence(cap)["/sys/kernel/iommu_groups/*/type"] == "DMA-FQ x7"


# --- the other snapshots ------------------------------------------------------------------------


def test_laptop_one_node_one_tier_lazy_iommu():
    found = caps(snapshot("laptop-igpu"))
    numa = found["numa nodes"]
    assert numa.status is Status.YES
    assert [(n["id"], n["has_cpu"], n["tier"], n["hmat"]) for n in numa.details["nodes"]] == [(0, True, 4, None)]
    assert numa.details["nodes"][0]["cpus"] == list(range(22))
    tiers = found["memory tiers"]
    assert tiers.status is Status.NO and "one memory tier" in tiers.why and tiers.fix
    assert tiers.details["tiers"] == {"4": [0]}
    cxl = found["cxl memory"]
    assert cxl.status is Status.NO and cxl.why and cxl.fix
    assert cxl.details == {"memdevs": [], "regions": []}
    iommu = found["iommu"]
    assert iommu.status is Status.PARTIAL
    assert (iommu.details["groups"], iommu.details["default_domain"]) == (6, "DMA-FQ")
    assert iommu.details["device_domains"]["0000:00:02.0"] == "DMA-FQ"


def test_nvidia_server_two_cpu_nodes_passthrough():
    found = caps(snapshot("nvidia-multigpu"))
    numa = found["numa nodes"]
    assert numa.status is Status.YES and "2 node(s) online, 0 without CPUs" in numa.why
    nodes = numa.details["nodes"]
    assert [n["has_cpu"] for n in nodes] == [True, True]
    assert nodes[1]["cpus"] == list(range(32, 64)) + list(range(96, 128))
    assert numa.details["demotion_enabled"] is False
    assert found["memory tiers"].status is Status.NO
    assert found["memory tiers"].details["tiers"] == {"4": [0, 1]}
    assert found["cxl memory"].status is Status.NO
    iommu = found["iommu"]
    assert iommu.status is Status.YES
    assert (iommu.details["default_domain"], iommu.details["mode"], iommu.details["p2p_friendly"]) == ("identity", "passthrough", True)
    assert "iommu=pt" in iommu.details["cmdline_flags"]
    assert iommu.details["device_domains"]["0000:1b:00.0"] == "identity"
    assert "GPUDirect RDMA" in iommu.why


def test_empty_root_answers_unknown(tmp_path: Path):
    found = caps(tmp_path)
    assert set(found) == {"numa nodes", "memory tiers", "cxl memory", "iommu"}
    for cap in found.values():
        assert cap.status is Status.UNKNOWN, cap
        assert cap.why and GENERIC_FAILURE not in cap.why


# --- damaged copies -----------------------------------------------------------------------------


def test_missing_cpulist_makes_topology_unknown(cxl_copy: Path):
    (cxl_copy / NODE / "node1/cpulist").unlink()
    cap = caps(cxl_copy)["numa nodes"]
    assert cap.status is Status.UNKNOWN
    assert "node1/cpulist is missing" in cap.why
    assert [n["id"] for n in cap.details["nodes"]] == [0, 1]  # what could be read is kept


@pytest.mark.parametrize("rel", [f"{NODE}/online", f"{NODE}/node0/cpulist"])
def test_garbage_node_lists_are_unknown_with_the_value(cxl_copy: Path, rel: str):
    put(cxl_copy, rel, "abc\n")
    cap = caps(cxl_copy)["numa nodes"]
    assert cap.status is Status.UNKNOWN
    assert "'abc'" in cap.why and rel.rsplit("/", 1)[-1] in cap.why


def test_garbage_nodelist(cxl_copy: Path):
    put(cxl_copy, f"{TIERS}/memory_tier22/nodelist", "abc\n")
    found = caps(cxl_copy)
    assert found["memory tiers"].status is Status.UNKNOWN
    assert "memory_tier22/nodelist" in found["memory tiers"].why
    numa = found["numa nodes"]  # the topology stands; only node1's tier is lost, and said so
    assert numa.status is Status.YES and "memory_tier22/nodelist" in numa.why
    assert [n["tier"] for n in numa.details["nodes"]] == [4, None]


def test_garbage_bandwidth_loses_only_that_node_hmat(cxl_copy: Path):
    put(cxl_copy, f"{NODE}/node1/access0/initiators/read_bandwidth", "abc\n")
    numa = caps(cxl_copy)["numa nodes"]
    assert numa.status is Status.YES
    assert "node1/access0/initiators/read_bandwidth is not a number: 'abc'" in numa.why
    assert [n["hmat"] is None for n in numa.details["nodes"]] == [False, True]


def test_unreadable_meminfo(cxl_copy: Path):
    make_dir_instead(cxl_copy, f"{NODE}/node0/meminfo")
    cap = caps(cxl_copy)["numa nodes"]
    assert cap.status is Status.UNKNOWN and "cannot read /sys/devices/system/node/node0/meminfo" in cap.why


def test_garbage_demotion_flag(cxl_copy: Path):
    put(cxl_copy, "sys/kernel/mm/numa/demotion_enabled", "abc\n")
    found = caps(cxl_copy)
    assert found["memory tiers"].status is Status.YES and "demotion state unknown" in found["memory tiers"].why
    assert found["numa nodes"].details["demotion_enabled"] is None
    assert "demotion_enabled says 'abc'" in found["numa nodes"].why


def test_no_tiering_directory_on_a_new_kernel_is_unknown(cxl_copy: Path):
    shutil.rmtree(cxl_copy / TIERS)
    cap = caps(cxl_copy)["memory tiers"]
    assert cap.status is Status.UNKNOWN and "no memory tiers" in cap.why


def test_old_kernel_without_tiers_says_no(cxl_copy: Path):
    shutil.rmtree(cxl_copy / TIERS)
    put(cxl_copy, "proc/sys/kernel/osrelease", "5.15.0-100-generic\n")
    cap = caps(cxl_copy)["memory tiers"]
    assert cap.status is Status.NO and "predates memory tiers" in cap.why


def test_garbage_region_size(cxl_copy: Path):
    put(cxl_copy, f"{CXL}/region0/size", "abc\n")
    cap = caps(cxl_copy)["cxl memory"]
    assert cap.status is Status.UNKNOWN and "region0/size is not a size: 'abc'" in cap.why
    assert cap.details["memdevs"][0]["name"] == "mem0"


def test_region_not_onlined_is_partial(cxl_copy: Path):
    driver = Path(os.path.realpath(cxl_copy / CXL / "dax_region0")) / "dax0.0/driver"
    target = os.readlink(driver).replace("/kmem", "/device_dax")
    driver.unlink()
    driver.symlink_to(target)
    cap = caps(cxl_copy)["cxl memory"]
    assert cap.status is Status.PARTIAL
    assert "region0 (ram) is not online as memory (dax0.0 bound to device_dax)" in cap.why
    assert "daxctl reconfigure-device --mode=system-ram" in cap.fix
    assert cap.details["regions"][0]["numa_node"] is None and cap.details["memdevs"][0]["memory_nodes"] == []


def test_memdev_without_region_is_partial(cxl_copy: Path):
    (cxl_copy / CXL / "region0").unlink()
    cap = caps(cxl_copy)["cxl memory"]
    assert cap.status is Status.PARTIAL and "no region" in cap.why
    assert "cxl create-region" in cap.fix


def test_kernel_without_cxl_says_no(tmp_path: Path):
    (tmp_path / "sys/devices").mkdir(parents=True)
    (tmp_path / "boot").mkdir()
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.8.0\n")
    (tmp_path / "boot/config-6.8.0").write_text("CONFIG_NUMA=y\n# CONFIG_CXL_BUS is not set\n")
    cap = caps(tmp_path)["cxl memory"]
    assert cap.status is Status.NO and "CONFIG_CXL_BUS is not set" in cap.why and cap.fix


def test_garbage_group_type_is_unknown(cxl_copy: Path):
    put(cxl_copy, f"{GROUPS}/3/type", "abc\n")
    cap = caps(cxl_copy)["iommu"]
    assert cap.status is Status.UNKNOWN and "'abc'" in cap.why


def test_unreadable_group_type(cxl_copy: Path):
    make_dir_instead(cxl_copy, f"{GROUPS}/0/type")
    cap = caps(cxl_copy)["iommu"]
    assert cap.status is Status.UNKNOWN and "cannot read /sys/kernel/iommu_groups/0/type" in cap.why


def test_groups_without_type_files_fall_back_to_the_command_line(cxl_copy: Path):
    for group in (cxl_copy / GROUPS).iterdir():
        (group / "type").unlink()
    put(cxl_copy, "proc/cmdline", "ro intel_iommu=on iommu=pt\n")
    cap = caps(cxl_copy)["iommu"]
    assert cap.status is Status.UNKNOWN
    assert "could not be read" in cap.why and "would give identity" in cap.why
    assert cap.details["expected_default_domain"] == "identity"


def test_iommu_turned_off_on_the_command_line(cxl_copy: Path):
    shutil.rmtree(cxl_copy / GROUPS)
    (cxl_copy / GROUPS).mkdir()
    put(cxl_copy, "proc/cmdline", "ro intel_iommu=off -- iommu=pt\n")
    cap = caps(cxl_copy)["iommu"]
    assert cap.status is Status.NO
    assert "intel_iommu=off" in cap.why and "peer-to-peer" in cap.why
    assert cap.details["cmdline_flags"] == ["intel_iommu=off"]
    assert (cap.details["groups"], cap.details["mode"], cap.details["p2p_friendly"]) == (0, "off", True)


def test_every_file_garbled_or_unreadable_still_gets_an_explicit_answer(cxl_copy: Path):
    """Each file the probe reads, turned into 'abc' and then into a directory, one at a time."""
    recorder = Source(cxl_copy, record=True)
    probe(recorder, ["cxl", "iommu"])
    read = sorted(p for p in recorder.recording.files if not p.endswith(".gz"))
    assert len(read) > 30 and "/sys/bus/cxl/devices/region0/size" in read
    for path in (Path(os.path.realpath(cxl_copy / p.lstrip("/"))) for p in read):
        original = path.read_bytes()
        for damage in ("garbage", "directory"):
            if damage == "garbage":
                path.write_text("abc\n")
            else:
                path.unlink()
                path.mkdir()
            for cap in caps(cxl_copy).values():
                assert GENERIC_FAILURE not in cap.why, (path, damage, cap)
                assert cap.status is Status.YES or cap.why, (path, damage, cap)
            if damage == "directory":
                path.rmdir()
        path.write_bytes(original)


# --- parsers ------------------------------------------------------------------------------------


def test_parse_list():
    assert parse_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_list("") == [] and parse_list("5") == [5]
    for bad in ("abc", "3-1", "1,,2", "0-"):
        with pytest.raises(ValueError):
            parse_list(bad)


def test_cmdline_flags_stop_at_init_arguments():
    line = "BOOT_IMAGE=/vmlinuz ro intel_iommu=on iommu=pt iommu.strict=0 amd_iommu_dump=1 quiet -- iommu=off"
    assert cmdline_flags(line) == ["intel_iommu=on", "iommu=pt", "iommu.strict=0", "amd_iommu_dump=1"]
