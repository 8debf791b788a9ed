"""The parts of `probe --kernel` and the vm tests that need no QEMU: topologies as QEMU options,
kernel images and packages, the guest's script, and what the command prints."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.probe import Source, probe
from gpubench.vm import compare, guest, kernels, topology
from tests.cli import assert_one_line_error, gpubench, invoke

PROBES = Path(__file__).resolve().parents[2] / "probes"


def fake_image(path: Path, release: str = "6.12.9-test") -> Path:
    """The x86 boot protocol's setup header: 'HdrS' at 0x202, the version string's offset - 0x200 at 0x20E."""
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x20E, 0x600 - 0x200)
    text = f"{release} (builder@host) #1 SMP".encode() + b"\0"
    head[0x600:0x600 + len(text)] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(head))
    return path


# --- topologies -----------------------------------------------------------------------------------

def test_the_lower_tier_topology_gives_qemu_a_cpu_less_node_its_initiator_and_hmat_figures():
    args = topology.LOWER_TIER.qemu_args()
    assert args[:2] == ["-machine", "q35,hmat=on"]
    assert "node,nodeid=0,memdev=m0,cpus=0-1" in args and "node,nodeid=1,memdev=m1,initiator=0" in args
    assert "memory-backend-ram,id=m1,size=2048M" in args
    assert "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=300" in args
    assert "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=8192M" in args  # read back as 8192 MB/s
    assert (topology.LOWER_TIER.cpus, topology.LOWER_TIER.memory_mib) == (2, 4096)


def test_the_cxl_topology_puts_a_type3_device_behind_a_cxl_host_bridge():
    args = " ".join(topology.CXL.qemu_args())
    assert args.startswith("-machine q35,cxl=on ")
    for device in ("pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1", "cxl-rp,port=0,bus=cxl.1", "cxl-type3,bus=cxl-rp0,memdev=cxl-mem0,lsa=cxl-lsa0"):
        assert device in args
    assert "cxl-fmw.0.targets.0=cxl.1" in args and "memory-backend-ram,id=cxl-mem0,size=512M" in args


def test_two_nodes_have_a_cpu_each_and_their_distance():
    args = topology.TWO_NODES.qemu_args()
    assert "node,nodeid=0,memdev=m0,cpus=0-0" in args and "node,nodeid=1,memdev=m1,cpus=1-1" in args
    assert "dist,src=0,dst=1,val=20" in args and args[1] == "q35"


def test_the_host_mirror_keeps_the_nodes_cpu_less_ones_distances_and_hmat_figures():
    mirrored = topology.mirror(probe(Source(PROBES / "cxl-host"), ["cxl"]), max_cpus=4)
    assert mirrored.nodes == (topology.VmNode(4, 1024), topology.VmNode(0, 1024, initiator=0))
    assert mirrored.distances == ((0, 1, 20),)
    assert mirrored.hmat == (topology.HmatLink(0, 0, 100, 122880), topology.HmatLink(0, 1, 250, 61440))
    assert mirrored.description == "this host's nodes (node0: 4 of CPUs 0-31; node1: no CPUs), 1024 MiB each"


def test_a_host_without_numa_nodes_mirrors_as_one_node():
    from gpubench.probe.model import Profile

    mirrored = topology.mirror(Profile("/", ()), max_cpus=2)
    assert mirrored.nodes == (topology.VmNode(2, 2048),) and "found no NUMA nodes" in mirrored.description


def test_the_mirror_renumbers_sparse_node_ids_and_gives_a_cpu_less_node_without_hmat_its_nearest_cpu_node():
    from gpubench.probe.model import Capability, Profile, Status

    def node(node_id: int, cpus: list[int], distances: list[int]) -> dict:
        return {"id": node_id, "cpus": cpus, "mem_total_kb": 1 << 20, "hmat": None, "distances": distances}

    nodes = [node(5, [], [30, 20, 10]), node(0, [0, 1], [10, 20, 30]), node(2, [2, 3, 4], [20, 10, 20])]
    mirrored = topology.mirror(Profile("/", (Capability("cxl", "numa nodes", Status.YES, details={"nodes": nodes}),)), max_cpus=4)
    assert mirrored.nodes == (topology.VmNode(2, 1024), topology.VmNode(2, 1024), topology.VmNode(0, 1024, initiator=1))
    assert mirrored.distances == ((0, 1, 20), (0, 2, 30), (1, 2, 20)) and mirrored.hmat == ()
    assert mirrored.notes == ("node ids renumbered from 0",)
    assert mirrored.description.startswith("this host's nodes (node0: 2 of CPUs 0-1; node2: 2 of CPUs 2-4; node5: no CPUs)")


def test_a_topology_file_describes_any_machine(tmp_path):
    path = tmp_path / "far.json"
    path.write_text(json.dumps({"nodes": [{"cpus": 2, "memory_mib": 1024}, {"cpus": 0, "memory_mib": 512, "initiator": 0}],
                                "distances": [[0, 1, 30]], "hmat": [{"initiator": 0, "target": 1, "latency_ns": 400, "bandwidth_mbps": 4096}]}))
    topo = topology.topology_from_option(str(path), probe(Source(PROBES / "cpu-vm"), ["cxl"]))
    assert topo.nodes[1] == topology.VmNode(0, 512, 0) and topo.distances == ((0, 1, 30),)
    assert topo.description == "described in far.json" and "bandwidth=4096M" in " ".join(topo.qemu_args())


@pytest.mark.parametrize("content, message", [
    ("{", "not JSON"),
    ('{"nodes": []}', "needs at least one node and one CPU"),
    ('{"nodes": [{"cpus": 1}]}', "missing or malformed 'memory_mib'"),
    ('{"nodes": [{"cpus": 1, "memory_mib": 512}, {"cpus": 0, "memory_mib": 512, "initiator": 1}]}', "node 1: initiator 1 is not a node with CPUs"),
    ('{"nodes": [{"cpus": 1, "memory_mib": 512}], "distances": [[0, 0, 20]]}', "distance 0-0=20"),
    ('{"nodes": [{"cpus": 1, "memory_mib": 512}], "cxl_mib": 99}', "cxl_mib must be 256 to 4096"),
])
def test_a_bad_topology_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        topology.from_file(path)


def test_an_unknown_topology_names_the_choices(tmp_path):
    with pytest.raises(UserError, match="neither host, two-nodes, lower-tier, cxl, nor a JSON file"):
        topology.topology_from_option(str(tmp_path / "none.json"), probe(Source(PROBES / "cpu-vm"), ["cxl"]))


# --- kernels --------------------------------------------------------------------------------------

def test_an_image_names_its_release_and_finds_its_modules_and_config_as_a_package_lays_them_out(tmp_path):
    image = fake_image(tmp_path / "root/boot/vmlinuz-6.12.9-test")
    (tmp_path / "root/lib/modules/6.12.9-test/kernel").mkdir(parents=True)
    (tmp_path / "root/boot/config-6.12.9-test").write_text("CONFIG_IO_URING=y\n")
    files = kernels.from_image(image)
    assert (files.release, files.major_minor) == ("6.12.9-test", "6.12")
    assert files.modules == tmp_path / "root/lib/modules/6.12.9-test" and files.config == tmp_path / "root/boot/config-6.12.9-test"


def test_an_image_alone_boots_without_modules_or_config(tmp_path):
    files = kernels.from_image(fake_image(tmp_path / "bzImage"))
    assert (files.modules, files.config) == (None, None)


def test_what_is_not_a_kernel_image_is_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not an x86 kernel image"):
        kernels.from_image(tmp_path / "notes.txt")
    with pytest.raises(UserError, match="not a kernel's modules directory"):
        kernels.from_image(fake_image(tmp_path / "bzImage"), modules=tmp_path)
    with pytest.raises(UserError, match="no such kernel image"):
        kernels.kernel_option(str(tmp_path / "vmlinuz-missing"))


APT = {
    "linux-image-amd64": "Package: linux-image-amd64\nVersion: 6.1.192-3\nDepends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n",
    "linux-image-6.1.0-57-amd64=6.1.192-3": "Package: linux-image-6.1.0-57-amd64\nVersion: 6.1.192-3\n"
                                             "Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n",
}


def fake_apt(args: list[str], cwd=None) -> str:  # type: ignore[no-untyped-def]
    assert args[:3] == ["apt-cache", "show", "--no-all-versions"]
    if args[3] not in APT:
        raise UserError(f"{' '.join(args)}: E: No packages found")
    return APT[args[3]]


def test_a_meta_package_resolves_to_the_image_it_depends_on(monkeypatch):
    monkeypatch.setattr(kernels, "_run", fake_apt)
    assert kernels.resolve("linux-image-amd64") == ("linux-image-6.1.0-57-amd64", "6.1.192-3")


def test_a_package_apt_does_not_know_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(kernels, "_run", fake_apt)
    with pytest.raises(UserError, match="no package 'linux-image-9.9-amd64' in apt's lists"):
        kernels.resolve("linux-image-9.9-amd64")
    with pytest.raises(UserError, match="is not a Debian kernel image package"):
        kernels.resolve("bash")


def test_an_unpacked_package_in_the_cache_is_used_without_apt(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_run", fake_apt)
    root = tmp_path / "linux-image-6.1.0-57-amd64_6.1.192-3"
    fake_image(root / "boot/vmlinuz-6.1.0-57-amd64", "6.1.0-57-amd64")
    (root / "lib/modules/6.1.0-57-amd64/kernel").mkdir(parents=True)
    (root / "boot/config-6.1.0-57-amd64").write_text("CONFIG_NUMA=y\n")
    (root / kernels.COMPLETE).write_text("")
    files = kernels.fetch("linux-image-amd64", tmp_path, progress=pytest.fail)
    assert (files.package, files.version, files.release) == ("linux-image-6.1.0-57-amd64", "6.1.192-3", "6.1.0-57-amd64")
    assert files.describe() == "6.1.0-57-amd64 from linux-image-6.1.0-57-amd64 6.1.192-3"


# --- the guest --------------------------------------------------------------------------------------

def test_the_guest_script_puts_the_config_where_the_probe_looks_and_records_every_step(tmp_path):
    files = kernels.KernelFiles(Path("/k/vmlinuz"), "6.12.9", None, Path("/k/config-6.12.9"))
    script = guest.guest_script(files, [guest.Step("probe", "$GPUBENCH probe --json"), guest.Step("say", "echo 'a b'")], tmp_path)
    assert 'cp /k/config-6.12.9 "/boot/config-$(uname -r)"' in script
    assert "run probe '$GPUBENCH probe --json'" in script and "run say 'echo '\"'\"'a b'\"'\"''" in script
    assert "unset NUMBA_CACHE_DIR" in script and f"OUT={tmp_path}" in script


def test_steps_that_never_finished_have_no_status(tmp_path):
    (tmp_path / "index").write_text("probe 0 15.20 45.50\n")
    (tmp_path / "probe.out").write_text("{}")
    results, first = guest._collect(tmp_path, [guest.Step("probe", "x"), guest.Step("memtier", "y")])
    assert first == 15.2 and results[0].returncode == 0 and round(results[0].seconds, 2) == 30.3 and results[0].stdout == "{}"
    assert (results[1].returncode, results[1].seconds, results[1].stdout) == (None, None, "")


def test_missing_tools_are_named_in_one_line():
    assert guest.Tools(None, None, None).missing() == (
        "booting a kernel needs QEMU and virtme-ng: apt install qemu-system-x86 busybox-static; pip install 'gpubench[vm]' (virtme-ng)")
    assert guest.Tools("/q", None, "/b").missing() == "booting a kernel needs QEMU and virtme-ng: pip install 'gpubench[vm]' (virtme-ng)"
    assert guest.Tools("/q", "/v", "/b").missing() is None


def test_a_guest_kvm_kills_is_recognised_on_its_console():
    assert guest._kvm_failure("KVM internal error. Suberror: 1") == "the guest died: KVM internal error. Suberror: 1"
    assert guest._kvm_failure("[    0.000000] Linux version 6.12") is None


# --- probe --kernel ---------------------------------------------------------------------------------

def test_kernel_options_without_kernel_are_a_usage_error():
    result = invoke("probe", "--topology", "cxl")
    assert result.exit_code == 2 and "--topology go with --kernel" in result.output


def test_without_qemu_one_line_names_the_packages(tmp_path):
    p = gpubench("probe", "--kernel", str(fake_image(tmp_path / "vmlinuz-6.12.9")), env_extra={"PATH": str(tmp_path)})
    assert_one_line_error(p, "booting a kernel needs QEMU and virtme-ng: apt install qemu-system-x86 busybox-static")


@pytest.mark.parametrize("args, message", [
    (["--kernel", "/nonexistent/vmlinuz"], "--kernel /nonexistent/vmlinuz: no such kernel image (or give a Debian package: --kernel linux-image-6.12-amd64)"),
    (["--kernel", "README.md"], "--kernel README.md: not an x86 kernel image (bzImage), such as /boot/vmlinuz-RELEASE"),
    (["--kernel", "bash"], "--kernel bash: no such kernel image (or give a Debian package: --kernel linux-image-6.12-amd64)"),
])
def test_bad_kernel_options_are_one_line(args, message):
    assert_one_line_error(gpubench("probe", *args), message)


def test_a_bad_topology_is_refused_before_anything_is_fetched_or_booted(tmp_path):
    if guest.find_tools().missing():
        pytest.skip(f"QEMU is checked first: {guest.find_tools().missing()}")
    missing = tmp_path / "nowhere.json"
    p = gpubench("probe", "--kernel", "linux-image-0.0-none", "--topology", str(missing))
    assert_one_line_error(p, f"--topology {missing}: neither host, two-nodes, lower-tier, cxl, nor a JSON file")


@pytest.fixture
def booted_as_cxl_host(monkeypatch, tmp_path):
    """probe --kernel as far as QEMU: the guest's probe answers what probes/cxl-host holds."""
    profile = probe(Source(PROBES / "cxl-host"))

    def fake_boot(kernel, topo, steps, outdir, *, accel, timeout_s, tools):  # type: ignore[no-untyped-def]
        assert [s.command for s in steps] == ["$GPUBENCH probe --json"]
        step = guest.StepResult("probe", 0, 30.0, json.dumps(profile.to_dict()), "")
        return guest.Boot(kernel, topo, accel, 55.0, 15.0, (step,), "", outdir)

    monkeypatch.setattr(compare, "needed_tools", lambda: guest.Tools("/q", "/v", "/b"))
    monkeypatch.setattr(compare, "choose_accel", lambda kernel, workdir, tools: ("tcg", "no usable /dev/kvm"))
    monkeypatch.setattr(compare, "boot", fake_boot)
    return fake_image(tmp_path / "vmlinuz-6.12.10", "6.12.10")


def test_probe_kernel_prints_both_verdicts_and_what_differs(booted_as_cxl_host):
    result = invoke("probe", "--kernel", str(booted_as_cxl_host), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "in VM: 6.12.10" in out and "difference" in out
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") >= 5 and line.split("│")[2].strip()}
    assert "memory tiers" in rows and "cxl memory" in rows and "kernel" in rows
    assert "GPUs are not passed into the VM" in out and "booted under TCG in 55 s" in out
    assert "KVM could not run it here (no usable /dev/kvm); QEMU emulates the machine instead (TCG)" in result.stderr
    assert all(len(line) <= 80 for line in out.splitlines())


def test_probe_kernel_json_is_only_json_and_marks_each_difference(booted_as_cxl_host):
    result = invoke("probe", "--kernel", str(booted_as_cxl_host), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["capability"]: r for r in data["differences"]}
    assert data["vm"]["release"] == "6.12.10" and data["vm"]["accelerator"] == "tcg" and data["vm"]["boot_seconds"] == 55.0
    assert data["kernel"]["root"] == str(PROBES / "cxl-host")
    assert rows["cxl memory"]["kernel"] == "yes" and rows["kernel"]["difference"].startswith("release ")
    assert rows["pci p2pdma"]["kernel_shows"] == "PCI_P2PDMA=y"  # a GPU area: the config alone
    assert rows["gpus"]["kernel_shows"] == "(needs a GPU)"


def test_rows_compare_verdicts_facts_and_in_gpu_areas_the_config_alone():
    running = probe(Source(PROBES / "cpu-vm"))
    booted = probe(Source(PROBES / "cxl-host"))
    rows = {r.change.name: r for r in compare.rows(running, booted)}
    assert rows["memory tiers"].difference.startswith("gained; ")
    assert "tiers node0 4 -> node0 4, node1 22" in rows["memory tiers"].difference
    assert rows["cxl memory"].difference.startswith("gained")
    assert rows["io_uring"].difference == "io_uring_disabled 0 -> absent"  # the sysctl came with 6.6
    assert rows["nvidia driver"].difference == ""  # no GPU in the VM is not a lost driver
    assert rows["pci p2pdma"].difference == "PCI_P2PDMA not set -> y" and rows["pci p2pdma"].booted_text == "PCI_P2PDMA=y"


def test_two_real_kernels_differ_in_tiers_io_uring_sysctl_and_opcodes():
    """Debian's 6.1 against its 6.12 on the same emulated machine (probes/qemu-*-lower-tier)."""
    rows = {r.change.name: r for r in compare.rows(probe(Source(PROBES / "qemu-6.1-lower-tier")), probe(Source(PROBES / "qemu-6.12-lower-tier")))}
    assert rows["memory tiers"].difference == "gained; tiers node0 4, node1 4 -> node0 4, node1 75"
    assert rows["io_uring"].difference == "io_uring_disabled absent -> 0"
    assert rows["io_uring binding"].difference == "opcodes last_op 48, 49 opcodes supported -> last_op 57, 58 opcodes supported"
    assert rows["numa nodes"].difference == "" and rows["cxl memory"].difference == ""
    assert rows["kernel"].difference == "release 6.1.0-57-amd64 -> 6.12.118+deb12-amd64"
