"""Real kernels on real (emulated) memory topologies: what the probe and memtier report inside each
boot. Facts only: timings under emulation mean nothing."""

from __future__ import annotations

import json

import pytest

from gpubench.probe.model import Status
from gpubench.probe.snapshot import open_root
from gpubench.probe import probe
from gpubench.probe.views import IoUringView, NumaView
from tests.vm.vm_plan import probe_of, snapshot_archive

pytestmark = pytest.mark.vm

KERNEL_VERSIONS = ("6.1", "6.12")


def nodes_of(boot):  # type: ignore[no-untyped-def]
    return {n.id: n for n in NumaView.from_profile(probe_of(boot)).nodes}


def memtier_results(boot) -> list[dict]:  # type: ignore[no-untyped-def]
    step = boot.step("memtier")
    assert step.returncode == 0, step.stderr[-3000:]
    return json.loads(step.stdout)["results"]


@pytest.mark.parametrize("kernel", KERNEL_VERSIONS)
@pytest.mark.parametrize("topo", ("two-nodes", "lower-tier", "cxl"))
def test_the_guest_runs_every_command_on_the_kernel_it_booted(guests, kernel, topo):
    boot = guests(kernel, topo)
    unfinished = [s.name for s in boot.steps if s.returncode is None]
    assert not unfinished, f"{unfinished} never finished ({boot.aborted or 'guest stopped'}): {boot.console_tail()}"
    cap = probe_of(boot).get("kernel")
    assert cap is not None and cap.details["release"].startswith(f"{kernel}.")
    assert cap.details["config_origin"] == f"/boot/config-{boot.kernel.release}", "the package's config is where the probe looks"


@pytest.mark.parametrize("kernel", KERNEL_VERSIONS)
def test_two_nodes_each_with_cpus_and_memory(guests, kernel):
    nodes = nodes_of(guests(kernel, "two-nodes"))
    assert sorted(nodes) == [0, 1]
    assert [(nodes[i].cpus, nodes[i].has_cpu, nodes[i].has_memory) for i in (0, 1)] == [((0,), True, True), ((1,), True, True)]
    assert (nodes[0].distances, nodes[1].distances) == ((10, 20), (20, 10))
    assert nodes[0].tier == nodes[1].tier == 4 and nodes[0].hmat is None


@pytest.mark.parametrize("kernel", KERNEL_VERSIONS)
def test_a_cpu_less_node_with_the_hmat_figures_qemu_gave(guests, kernel):
    nodes = nodes_of(guests(kernel, "lower-tier"))
    assert (nodes[0].cpus, nodes[1].cpus, nodes[1].has_cpu) == ((0, 1), (), False)
    for node, latency, bandwidth in ((0, 90, 40960), (1, 300, 8192)):
        hmat = nodes[node].hmat
        assert hmat is not None, f"node {node} has no access0 figures"
        assert (hmat.read_latency_ns, hmat.write_latency_ns, hmat.read_bandwidth_mbps, hmat.write_bandwidth_mbps, hmat.initiators) == (
            latency, latency, bandwidth, bandwidth, (0,))


def test_6_12_puts_the_slower_cpu_less_node_in_a_lower_tier(guests):
    profile = probe_of(guests("6.12", "lower-tier"))
    nodes = {n.id: n for n in NumaView.from_profile(profile).nodes}
    assert nodes[0].tier == 4 and nodes[1].tier is not None and nodes[1].tier > nodes[0].tier
    tiers = profile.get("memory tiers")
    assert tiers.status is Status.YES and tiers.details["lower_tier_nodes"] == [1]


def test_6_1_keeps_a_cpu_less_boot_node_in_the_dram_tier_whatever_hmat_says(guests):
    """A finding, not a failure: 6.1 computes no tier from HMAT for memory present at boot."""
    profile = probe_of(guests("6.1", "lower-tier"))
    nodes = {n.id: n for n in NumaView.from_profile(profile).nodes}
    assert nodes[0].tier == nodes[1].tier == 4
    tiers = profile.get("memory tiers")
    assert tiers.status is Status.NO and tiers.details["tiers"] == {"4": [0, 1]}
    assert "one memory tier only" in tiers.why


def test_6_12_stops_at_the_type3_device_on_qemu_7_2_with_the_kernels_message(guests):
    """QEMU 7.2's type-3 device gives no interrupt for its event logs; 6.12's cxl_pci, which owns
    CXL error reporting here (_OSC), gives up on the device: no mem0, so no region."""
    boot = guests("6.12", "cxl")
    log = boot.step("kernel-log").stdout
    assert "Failed to get interrupt for event Info log" in log
    devices = boot.step("cxl-modules").stdout.split()
    assert {"root0", "port1", "decoder0.0"} <= set(devices) and "mem0" not in devices
    region = boot.step("cxl-region")
    assert region.returncode != 0 and "no active memdevs found" in region.stderr
    cxl = probe_of(boot).get("cxl memory")
    assert cxl.status is Status.NO and cxl.why.startswith("CXL ports but no CXL memory device (memX) on the bus")


def test_6_1_brings_the_type3_device_up_to_a_persistent_region_and_a_devdax_device(guests):
    """6.1 predates cxl_pci's event interrupts: mem0 probes. QEMU 7.2 emulates persistent capacity
    only, so the region is pmem; its nvdimm region takes a devdax namespace (dax0.0). Onlining
    that as system RAM (daxctl reconfigure-device --mode=system-ram) crashed every process of the
    guest afterwards under emulation when tried, so the bring-up stops at devdax."""
    boot = guests("6.1", "cxl")
    assert "mem0" in boot.step("cxl-modules").stdout.split()
    region = json.loads(boot.step("cxl-region").stdout)
    assert (region["region"], region["decode_state"], region["mappings"][0]["memdev"]) == ("region0", "commit", "mem0")
    namespace = json.loads(boot.step("cxl-namespace").stdout)
    assert namespace["mode"] == "devdax" and namespace["daxregion"]["devices"][0]["chardev"] == "dax0.0"
    cxl = probe_of(boot).get("cxl memory")
    assert cxl.status is Status.PARTIAL and cxl.why.startswith("mem0 (0.5 GiB persistent); region0 "), cxl.why
    assert [(r["name"], r["committed"], r["memdevs"], r["numa_node"]) for r in cxl.details["regions"]] == [("region0", True, ["mem0"], None)]
    # how the probe words a 6.1 pmem region: tests/probe/test_real_kernels.py


@pytest.mark.parametrize("topo, pairs", [("two-nodes", {(0, 0), (0, 1), (1, 0), (1, 1)}), ("lower-tier", {(0, 0), (0, 1)})])
def test_memtier_measures_every_pair_with_placement_verified_on_the_memory_node(guests, topo, pairs):
    boot = guests("6.12", topo)
    results = memtier_results(boot)
    assert {(r["params"]["cpu_node"], r["params"]["mem_node"]) for r in results} == pairs
    for r in results:
        assert r["status"] == "ok", (r["case"], r["reason"])
        assert r["sample_metrics"] and all(m["placement_verified"] == 1.0 for m in r["sample_metrics"]), r["case"]
        assert r["extra"]["placement"].startswith("mbind verified via move_pages"), r["extra"]["placement"]
        assert r["extra"]["policy"] == [f"bind:{r['params']['mem_node']}"]
        # the kernels came from the cache compiled on the host (the read-only root's own fallback, a
        # private cache, is tested in tests/bench/test_memtier.py)
        assert r["extra"]["numba_cache"] == "numba's default cache", r["extra"]["numba_cache"]
    distances = {(r["params"]["cpu_node"], r["params"]["mem_node"]): r["params"]["distance"] for r in results}
    assert distances == {pair: 10 if pair[0] == pair[1] else 20 for pair in pairs}


def test_memtier_puts_hmat_figures_and_the_tier_beside_the_measured_ones(guests):
    boot = guests("6.12", "lower-tier")
    tier = nodes_of(boot)[1].tier
    far = {r["params"]["kernel"]: r for r in memtier_results(boot) if r["params"]["mem_node"] == 1}
    assert set(far) == {"triad", "chase"}
    for kernel, r in far.items():
        p = r["params"]
        assert (p["mem_tier"], p["mem_has_cpu"], p["hmat_read_latency_ns"], p["hmat_read_bandwidth_mbps"], p["hmat_initiators"]) == (tier, False, 300, 8192, [0])
        expected = (300.0, "HMAT access0 read latency (ns)") if kernel == "chase" else (8.192, "HMAT access0 read bandwidth (GB/s)")
        assert (p["advertised"], p["advertised_what"]) == expected
        assert r["summary"]["median"] > 0


def test_a_snapshot_replays_what_the_probe_said_live(guests):
    """In the same state, the probe `gpubench run` made live and the snapshot taken after it,
    replayed here, give every capability the same verdict."""
    boot = guests("6.12", "lower-tier")
    live = {c.name: c.status for c in probe_of(boot).capabilities}
    assert boot.step("snapshot").returncode == 0, boot.step("snapshot").stderr[-2000:]
    with open_root(snapshot_archive(boot)) as src:
        replayed = {c.name: c.status for c in probe(src).capabilities}
    assert replayed == live


@pytest.mark.parametrize("value, verdict", [(1, Status.PARTIAL), (2, Status.NO)])
def test_io_uring_disabled_snapshots_on_6_12(guests, value, verdict):
    boot = guests("6.12", "lower-tier")
    step = boot.step(f"snapshot-io_uring_disabled-{value}")
    assert step.returncode == 0, step.stderr[-2000:]
    with open_root(snapshot_archive(boot, value)) as src:
        view = IoUringView.from_profile(probe(src))
    assert view.disabled == value and view.kernel is not None and view.kernel.status is verdict
