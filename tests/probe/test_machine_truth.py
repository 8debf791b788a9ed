"""Every verdict rests on all the evidence a machine offers: the probe on machine variants laid
out as other kernels, drivers and boards lay their files out (tests/probe/variants.py builds
them; each builder's docstring cites what it follows)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from tests.probe import variants as v

from gpubench.probe import Source, Status, probe


def caps(root: Path, areas=None) -> dict:  # type: ignore[no-untyped-def]
    return {c.name: c for c in probe(Source(root), areas).capabilities}


def seen(cap, source: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.value for e in cap.evidence if e.source == source]


# --- GPUDirect Storage ----------------------------------------------------------------------------

def test_gds_counts_nvidia_fs_procfs_and_shows_its_version_and_counters(tmp_path: Path):
    """nvidia-fs's stats, modules, peer_affinity and peer_distance exist only while it is loaded
    (NVIDIA/gds-nvidia-fs src/nvfs-proc.c); stats carries "NVFS Driver(version: X.Y.Z)" and the
    Reads/Writes/Error counters (src/nvfs-stat.c; the GDS troubleshooting guide shows the file)."""
    gds = caps(v.gds_nvidia_fs_procfs_only(tmp_path / "root"), ["gds"])["gpudirect storage"]
    assert gds.status is Status.YES, gds.why
    assert gds.details["nvidia_fs"] is True and gds.details["path"] == "gds"
    assert gds.details["nvidia_fs_version"] == "2.24.3"  # from the stats banner, the version file being absent
    assert gds.details["nvidia_fs_counters"] == {"reads": 4096, "read_errors": 0, "writes": 1024, "write_errors": 0,
                                                 "cpu_gpu_page_errors": 0, "dma_map_errors": 0}
    assert gds.details["nvidia_fs_io"] is True
    assert seen(gds, "/proc/driver/nvidia-fs") == ["stats, modules, peer_affinity, peer_distance"]
    assert seen(gds, "nvidia-fs version") == ["2.24.3"]
    assert seen(gds, "/proc/driver/nvidia-fs/stats") == ["reads 4096, writes 1024; errors: read 0, write 0, dma-map 0; I/O went through nvidia-fs"]
    assert seen(gds, "/proc/driver/nvidia-fs/modules") == ["nvme, nvme_rdma"]


def test_gds_stats_without_io_statistics_says_the_counts_are_not_shown(tmp_path: Path):
    """With its I/O statistics off, nvidia-fs prints "Reads : err=0 io_state_err=0", no n=
    (src/nvfs-stat.c): whether I/O went through is then not known, not 'no'."""
    root = v.gds_nvidia_fs_procfs_only(tmp_path / "root")
    (root / v.NVFS / "stats").write_text("NVFS Driver(version: 2:7:47)\nReads\t\t\t\t: err=0 io_state_err=0\nWrites\t\t\t\t: err=2 io_state_err=0\n")
    gds = caps(root, ["gds"])["gpudirect storage"]
    assert gds.details["nvidia_fs_version"] == "2.7.47"
    assert gds.details["nvidia_fs_io"] is None and gds.details["nvidia_fs_counters"] == {"read_errors": 0, "write_errors": 2}
    assert "its read and write counts are not shown" in seen(gds, "/proc/driver/nvidia-fs/stats")[0]


def test_gds_libcufile_not_recorded_is_never_missing(tmp_path: Path):
    gds = caps(v.gds_nothing_of_nvidia_fs_and_libcufile_not_recorded(tmp_path / "root"), ["gds"])["gpudirect storage"]
    assert gds.status is Status.NO  # nvidia_fs is known to be absent
    assert "libcufile" in gds.why and "not recorded" in gds.why
    assert "libcufile are missing" not in gds.why and "libcufile is missing" not in gds.why
    assert gds.details["libcufile"] is None
    assert seen(gds, "libcufile") == ["not recorded in this snapshot"]


# --- the NVIDIA driver ----------------------------------------------------------------------------

def test_old_cards_layout_lists_the_gpu(tmp_path: Path):
    """Legacy drivers list GPUs as /proc/driver/nvidia/cards/N (NVIDIA Linux driver README of the
    96.43 series, "Procfs interface"; recalled from those READMEs, not re-read)."""
    found = caps(v.nvidia_old_cards_layout(tmp_path / "root"), ["gpu"])
    drv = found["nvidia driver"]
    assert drv.status is Status.YES, drv.why
    assert drv.details["gpus"] == [{"pci": None, "model": "GeForce 7900 GTX"}]
    assert "/proc/driver/nvidia/cards" in seen(drv, "NVIDIA driver loaded, seen in")[0]
    models = {d["model"] for d in found["gpus"].details["devices"] if d["vendor"] == "nvidia"}
    assert models == {"GeForce 7900 GTX"}


def test_gpus_on_nouveau_say_who_holds_them_and_how_to_change_it(tmp_path: Path):
    """The driver link and DRIVER= of a PCI function name the driver bound to it (sysfs-bus-pci)."""
    drv = caps(v.nvidia_gpus_on_nouveau(tmp_path / "root"), ["gpu"])["nvidia driver"]
    assert drv.status is Status.NO
    assert "0000:1b:00.0, 0000:43:00.0, 0000:52:00.0, 0000:61:00.0 driven by nouveau" in drv.why
    assert "blacklist nouveau" in drv.fix and "modprobe nvidia" in drv.fix
    assert seen(drv, "NVIDIA GPUs not driven by nvidia")[0].startswith("0000:1b:00.0 (nouveau)")


def test_gpus_on_vfio_and_without_driver(tmp_path: Path):
    drv = caps(v.nvidia_gpus_on_vfio_and_none(tmp_path / "root"), ["gpu"])["nvidia driver"]
    assert drv.status is Status.NO
    assert "0000:1b:00.0, 0000:43:00.0 bound to vfio-pci (set aside for a VM); 0000:52:00.0, 0000:61:00.0 without a driver" in drv.why
    assert "echo ADDRESS > /sys/bus/pci/drivers/vfio-pci/unbind" in drv.fix and drv.fix.count("vfio-pci/unbind") == 1
    assert "install the NVIDIA driver" in drv.fix
    assert "blacklist nouveau" not in drv.fix


def test_a_vfio_gpu_beside_loaded_nvidia_is_partial(tmp_path: Path):
    root = v.copy_of(v.SERVER, tmp_path / "root")
    pci = root / "sys/bus/pci/devices/0000:61:00.0"
    (pci / "driver").unlink()
    (pci / "driver").symlink_to("../../drivers/vfio-pci")
    drv = caps(root, ["gpu"])["nvidia driver"]
    assert drv.status is Status.PARTIAL
    assert "but 0000:61:00.0 bound to vfio-pci" in drv.why and "vfio-pci/unbind" in drv.fix


ALL_VARIANTS = [b for b in v.VARIANTS if b is not v.iommu_cut_cmdline]
SNAPSHOTS = sorted(p for p in v.PROBES.iterdir() if p.is_dir())


@pytest.mark.parametrize("build", ALL_VARIANTS, ids=lambda b: b.__name__)
def test_the_gpu_list_and_the_driver_verdict_never_disagree(tmp_path: Path, build):  # type: ignore[no-untyped-def]
    _agree(caps(build(tmp_path / "root"), ["gpu"]))


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_the_snapshots_gpu_list_and_driver_verdict_agree(snapshot: Path):
    _agree(caps(snapshot, ["gpu"]))


def _agree(found: dict) -> None:  # type: ignore[type-arg]
    """A GPU the inventory says an NVIDIA driver drives means the driver is loaded, and a loaded
    driver's GPUs are in the inventory."""
    driven = [d for d in found["gpus"].details["devices"] if d["driver"] in ("nvidia", "nvgpu")]
    drv = found["nvidia driver"]
    if driven:
        assert drv.status is not Status.NO, drv.why
    if drv.status is Status.YES:
        assert len(driven) >= len(drv.details["gpus"]) > 0


# --- Jetson ---------------------------------------------------------------------------------------

def test_jetson_orin_l4t_banner_is_not_a_desktop_driver_version():
    """On Jetson Linux R35 (JetPack 5) the GPU is driven by nvgpu, the platform driver of NVIDIA's
    linux-nvgpu sources in the L4T kernel, and /etc/nv_tegra_release names the release
    ("# R35 (release), REVISION: 3.1"; Jetson Linux Developer Guide). Orin's nvidia.ko drives the
    display and carries the L4T release in its NVRM banner (35.3.1): it must never be compared with
    desktop floors such as HMM's 535. Written from what these boards are known to show, without a
    board or the guide at hand to re-check the exact banner wording (probes/jetson-orin/README.md)."""
    found = caps(v.JETSON)
    drv = found["nvidia driver"]
    assert drv.status is Status.YES
    assert drv.details["version"] is None and drv.details["l4t_release"] == "35.3.1" and drv.details["gpu_driver"] == "nvgpu"
    assert "Jetson/Tegra GPU driver nvgpu, Jetson Linux (L4T) 35.3.1" in drv.why
    assert found["gpus"].status is Status.YES
    assert found["gpus"].details["devices"][0]["pci"] == "17000000.ga10b (platform)"
    hmm = found["hmm"]
    assert hmm.status is Status.UNKNOWN
    assert "predates" not in hmm.why and "535" in hmm.why and "do not apply" in hmm.why


def test_jetson_xavier_without_nvidia_ko(tmp_path: Path):
    """JetPack 4 (L4T R32): no /proc/driver/nvidia at all, the GPU known only through nvgpu."""
    found = caps(v.jetson_xavier_jetpack4(tmp_path / "root"), ["gpu", "hmm"])
    assert found["nvidia driver"].status is Status.YES
    assert found["nvidia driver"].details["l4t_release"] == "32.7.4"
    assert found["gpus"].details["devices"][0]["model"] == "gv11b"
    assert found["hmm"].status is Status.UNKNOWN


def test_jetson_linux_36_driven_by_nvidia_ko(tmp_path: Path):
    """From L4T R36 (JetPack 6) the Jetson GPU is driven by the open nvidia.ko itself, with a
    desktop-like version; nv_tegra_release still names the board a Jetson (R36), so no desktop
    floor applies, and its GPUs are the driver's own list (the procfs folder's name here is
    illustrative: no R36 board was at hand to read it from)."""
    root = v.copy_of(v.JETSON, tmp_path / "root")
    shutil.rmtree(root / "sys/module/nvgpu")
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64\n")
    (root / "proc/driver/nvidia/version").write_text("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  540.3.0  Release Build  (buildbrain@mobile-u64)\n")
    (root / "proc/driver/nvidia/gpus/platform-17000000.gpu").mkdir(parents=True)
    (root / "proc/driver/nvidia/gpus/platform-17000000.gpu/information").write_text("Model: \t\t Orin\n")
    found = caps(root, ["gpu", "hmm"])
    drv = found["nvidia driver"]
    assert drv.status is Status.YES and drv.details["gpu_driver"] == "nvidia" and drv.details["l4t_release"] == "36.3.0"
    assert drv.details["version"] == "540.3.0" and len(drv.details["gpus"]) == 1
    assert found["hmm"].status is Status.UNKNOWN and "do not apply" in found["hmm"].why


def test_a_desktop_aarch64_driver_is_not_taken_for_a_jetson(tmp_path: Path):
    """Grace Hopper servers run the desktop driver line on aarch64 (570.x): its floors apply."""
    root = v.copy_of(v.SERVER, tmp_path / "root")
    (root / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  570.124.06  Release Build  (dvs-builder@U16)  Tue Feb 25 04:34:37 UTC 2025\n")
    drv = caps(root, ["gpu"])["nvidia driver"]
    assert drv.details["version"] == "570.124.06" and drv.details["l4t_release"] is None


# --- accelerators and DRM -------------------------------------------------------------------------

def test_accel_node_without_sysfs_is_an_accelerator(tmp_path: Path):
    acc = caps(v.accel_dev_node_only(tmp_path / "root"), ["gpu"])["accelerators"]
    assert acc.status is Status.YES
    assert acc.details["devices"][0]["name"] == "accel0" and acc.details["devices"][0]["found_in"] == "/dev/accel"
    assert "driver not shown" in acc.why


def test_npu_without_driver_names_the_driver_it_needs(tmp_path: Path):
    """PCI base class 0x12 is "processing accelerators" (PCI Code and ID Assignment Specification);
    Intel's NPU needs drivers/accel/ivpu, built as intel_vpu (CONFIG_DRM_ACCEL_IVPU)."""
    acc = caps(v.accel_npu_without_driver(tmp_path / "root"), ["gpu"])["accelerators"]
    assert acc.status is Status.PARTIAL
    assert "no driver bound to 0000:00:0b.0" in acc.why
    assert acc.fix == "modprobe intel_vpu (a kernel with CONFIG_DRM_ACCEL_IVPU)"


def test_gaudi_seen_on_pci_with_its_driver(tmp_path: Path):
    acc = caps(v.accel_gaudi_on_pci(tmp_path / "root"), ["gpu"])["accelerators"]
    assert acc.status is Status.YES
    (gaudi,) = acc.details["devices"]
    assert (gaudi["pci"], gaudi["vendor"], gaudi["driver"]) == ("0000:b3:00.0", "habana", "habanalabs")


def test_unbound_gaudi_fix_names_habanalabs(tmp_path: Path):
    root = v.accel_gaudi_on_pci(tmp_path / "root")
    (root / "sys/bus/pci/devices/0000:b3:00.0/driver").unlink()
    (root / "sys/bus/pci/devices/0000:b3:00.0/uevent").write_text("PCI_ID=1DA3:1020\nPCI_SLOT_NAME=0000:b3:00.0\n")
    acc = caps(root, ["gpu"])["accelerators"]
    assert acc.status is Status.PARTIAL and "modprobe habanalabs" in acc.fix


def test_drm_card_address_from_its_class_link(tmp_path: Path):
    gpus = caps(v.drm_card_link_without_device(tmp_path / "root"), ["gpu"])["gpus"]
    assert gpus.status is Status.YES, gpus.why
    assert gpus.details["devices"] == [{"pci": "0000:00:02.0", "vendor": "intel", "driver": "i915", "model": None, "device_id": "0x7d55"}]


def test_pci_ids_from_the_uevent_when_vendor_and_device_files_are_missing(tmp_path: Path):
    gpus = caps(v.pci_ids_only_in_uevent(tmp_path / "root"), ["gpu"])["gpus"]
    (igpu,) = gpus.details["devices"]
    assert (igpu["vendor"], igpu["device_id"]) == ("intel", "0x7d55")


# --- io_uring -------------------------------------------------------------------------------------

def _io_uring(root: Path, release: str, sysctl: str | None):  # type: ignore[no-untyped-def]
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    (root / "proc/config.gz").write_bytes(gzip.compress(b"CONFIG_IO_URING=y\n"))
    if sysctl is not None:
        (root / "proc/sys/kernel/io_uring_disabled").write_text(sysctl + "\n")
    return caps(root, ["iouring"])["io_uring"]


def test_io_uring_evidence_says_what_was_found_not_a_version_rule(tmp_path: Path):
    """kernel.io_uring_disabled came with Linux 6.6 (Documentation/admin-guide/sysctl/kernel.rst),
    and RHEL 9's 5.14 kernel carries it as a backport (RHEL 9.3 release notes): the verdict goes by
    the file, and the evidence says what was found."""
    rhel = _io_uring(tmp_path / "rhel", "5.14.0-362.8.1.el9_3.x86_64", "2")
    assert rhel.status is Status.NO
    assert seen(rhel, "/proc/sys/kernel/io_uring_disabled") == ["2"]
    older = _io_uring(tmp_path / "old", "5.15.0-100-generic", None)
    assert older.status is Status.YES
    (said,) = seen(older, "/proc/sys/kernel/io_uring_disabled")
    assert said == "absent: this kernel has no such sysctl"
    assert "6.6" not in said and "before" not in said


# --- P2P ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, fix_says", [
    ("GPU not supported", "this GPU model does not do PCIe peer-to-peer"),
    ("chipset not supported", "root complex (chipset) does not support peer-to-peer"),
    ("IOH topology not supported", "different CPU sockets or root complexes"),
    ("disabled by regkey", "registry key"),
])
def test_p2p_fix_follows_nvmls_status_and_names_no_iommu(tmp_path: Path, status: str, fix_says: str):
    """nvmlDeviceGetP2PStatus answers with nvmlGpuP2PStatus_t (NVML API reference): a GPU model,
    chipset or topology that cannot do P2P, or a driver registry key, is not the IOMMU."""
    p2p = caps(v.p2p_status(status)(tmp_path / "root"), ["p2p"])["gpu p2p"]
    assert p2p.status is Status.NO
    assert fix_says in p2p.fix
    assert "iommu" not in p2p.fix.lower() and "ACS" not in p2p.fix


def test_generic_p2p_refusal_names_the_iommu_only_where_it_translates(tmp_path: Path):
    """The server boots with iommu=pt (identity domains), so only ACS can be to blame there; with
    translated (DMA-FQ) domains the IOMMU is named too (sysfs-kernel-iommu_groups)."""
    passthrough = caps(v.p2p_status("not supported")(tmp_path / "pt"), ["p2p"])["gpu p2p"]
    assert "ACS" in passthrough.fix and "iommu" not in passthrough.fix.lower()
    translated = caps(v.p2p_status("not supported", "DMA-FQ")(tmp_path / "dma"), ["p2p"])["gpu p2p"]
    assert "ACS" in translated.fix and "iommu=pt" in translated.fix


# --- not recorded ---------------------------------------------------------------------------------

def test_areas_a_snapshot_did_not_record_are_unknown(tmp_path: Path):
    found = caps(v.kernel_area_only(tmp_path / "root"))
    assert found["kernel"].status is Status.YES
    for name in ("nvidia driver", "gpus", "accelerators", "hmm", "gpu p2p", "gpudirect storage"):
        assert found[name].status is Status.UNKNOWN, name
        assert found[name].why.startswith("not recorded in this snapshot"), found[name].why
    assert found["pci p2pdma"].status is Status.NO  # the config decides it: this kernel lacks CONFIG_PCI_P2PDMA
    root = v.kernel_area_only(tmp_path / "p2pdma")
    (root / "proc/config.gz").write_bytes((v.SERVER / "proc/config.gz").read_bytes())  # one that has it
    p2pdma = caps(root, ["p2p"])["pci p2pdma"]
    assert p2pdma.status is Status.YES and "not recorded" in p2pdma.why and "no device exposes" not in p2pdma.why


def test_nothing_says_prerequisites_met_while_the_config_is_unknown(tmp_path: Path):
    hmm = caps(v.hmm_nvml_none_without_config(tmp_path / "root"), ["hmm"])["hmm"]
    assert hmm.status is Status.UNKNOWN and hmm.why == "no kernel config found"
    for cap in caps(v.hmm_nvml_none_without_config(tmp_path / "again")).values():
        assert "prerequisites look met" not in cap.why and "prerequisites are met" not in cap.why


# --- IOMMU ----------------------------------------------------------------------------------------

def test_iommu_fix_names_no_flag_of_a_driver_the_kernel_lacks(tmp_path: Path):
    """intel_iommu= is read by the Intel driver alone, and the AMD driver takes no amd_iommu=on
    (Documentation/admin-guide/kernel-parameters.txt): a kernel without an IOMMU driver gets no
    boot flag at all, an AMD-only kernel no intel_iommu=."""
    none = caps(v.CPU_VM, ["iommu"])["iommu"]
    assert none.status is Status.NO and "no IOMMU driver" in none.why
    assert "intel_iommu" not in none.fix and "amd_iommu" not in none.fix and "boot with" not in none.fix
    amd = caps(v.iommu_amd_only_translated(tmp_path / "amd"), ["iommu"])["iommu"]
    assert amd.status is Status.PARTIAL and "iommu=pt" in amd.fix
    assert "intel_iommu" not in amd.fix and "amd_iommu=on" not in amd.fix
    root = v.iommu_amd_only_translated(tmp_path / "amd-off")
    shutil.rmtree(root / "sys/kernel/iommu_groups")
    (root / "sys/kernel/iommu_groups").mkdir()
    off = caps(root, ["iommu"])["iommu"]
    assert off.status is Status.NO and "intel_iommu" not in off.fix and "AMD-Vi" in off.fix


def test_every_snapshot_json_round_trips(tmp_path: Path):
    """The details the new evidence adds are plain JSON (stored with every run)."""
    for snapshot in SNAPSHOTS:
        json.dumps(probe(Source(snapshot)).to_dict())
