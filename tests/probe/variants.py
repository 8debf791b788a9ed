"""Machine variants: copies of the snapshots in probes/ changed the way another real machine, an
old driver or a damaged snapshot lays its files out. Each builder writes one into an empty
folder and returns it; its docstring names the documentation or source the layout follows."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

PROBES = Path(__file__).resolve().parents[2] / "probes"
SERVER, LAPTOP, CPU_VM, CXL_HOST, JETSON = (PROBES / n for n in ("nvidia-multigpu", "laptop-igpu", "cpu-vm", "cxl-host", "jetson-orin"))
NVFS = "proc/driver/nvidia-fs"


def copy_of(snapshot: Path, root: Path) -> Path:
    shutil.copytree(snapshot, root, symlinks=True)
    return root


def put(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def link(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.symlink_to(target)


def edit_json(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_config(root: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = root / "proc/config.gz"
    path.write_bytes(gzip.compress(change(gzip.decompress(path.read_bytes()).decode()).encode()))


# --- GPUDirect Storage ----------------------------------------------------------------------------

def gds_nvidia_fs_procfs_only(root: Path) -> Path:
    """nvidia-fs seen only in /proc/driver/nvidia-fs/{stats,modules,peer_affinity,peer_distance}
    (the version and devcount files and /sys/module/nvidia_fs not recorded). Each of those files
    is created by nvidia-fs when it loads (NVIDIA/gds-nvidia-fs, src/nvfs-proc.c); stats names
    the driver ("NVFS Driver(version: X.Y.Z)") and counts reads, writes and errors
    (src/nvfs-stat.c). Written as the GDS troubleshooting guide shows `cat
    /proc/driver/nvidia-fs/stats`."""
    copy_of(SERVER, root)
    shutil.rmtree(root / "sys/module/nvidia_fs")
    for name in ("version", "devcount"):
        (root / NVFS / name).unlink()
    return root


def gds_nothing_of_nvidia_fs_and_libcufile_not_recorded(root: Path) -> Path:
    """No nvidia_fs anywhere, and the snapshot did not record where libcufile is (no
    .gpubench/commands/libcufile.json): libcufile is unknown, not missing."""
    copy_of(SERVER, root)
    shutil.rmtree(root / "sys/module/nvidia_fs")
    shutil.rmtree(root / NVFS)
    (root / ".gpubench/commands/libcufile.json").unlink()
    return root


# --- the NVIDIA driver ----------------------------------------------------------------------------

def nvidia_old_cards_layout(root: Path) -> Path:
    """A legacy NVIDIA driver (the 96.43 series and older) lists its GPUs as files
    /proc/driver/nvidia/cards/N ("Model:", "IRQ:", "Video BIOS:", "Card Type:" lines), not as
    gpus/<pci>/information folders (NVIDIA Linux driver README of those releases, "Procfs
    interface"; from memory of those READMEs). Here on the laptop, with the legacy banner."""
    copy_of(LAPTOP, root)
    put(root, "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  96.43.23  Thu Jul 12 20:00:32 PDT 2012\nGCC version:  gcc version 4.6.3\n")
    put(root, "proc/driver/nvidia/cards/0", "Model: \t\t GeForce 7900 GTX\nIRQ:   \t\t 16\nVideo BIOS: \t 05.71.22.42.00\nCard Type: \t PCI-E\n")
    return root


def _hand_gpus_to(root: Path, holders: dict[str, str | None]) -> None:
    """Bind each of the server's GPUs (PCI address -> driver, None for none) as the kernel shows
    it: the device's driver link and the uevent's DRIVER= line (sysfs-bus-pci); a GPU no DRM
    driver holds has no card folder (sysfs-class-drm)."""
    shutil.rmtree(root / "proc/driver/nvidia")
    for card in (root / "sys/class/drm").glob("card[0-9]"):
        event = (card / "device/uevent").read_text() if (card / "device/uevent").exists() else ""
        slot = next((line.split("=", 1)[1] for line in event.splitlines() if line.startswith("PCI_SLOT_NAME=")), None)
        if slot in holders:
            shutil.rmtree(card)
    for address, driver in holders.items():
        base = root / "sys/bus/pci/devices" / address
        event = [line for line in (base / "uevent").read_text().splitlines() if not line.startswith("DRIVER=")]
        (base / "driver").unlink()
        if driver:
            (base / "driver").symlink_to(f"../../drivers/{driver}")
            event.insert(0, f"DRIVER={driver}")
        (base / "uevent").write_text("\n".join(event) + "\n")


def nvidia_gpus_on_nouveau(root: Path) -> Path:
    """The server's four GPUs driven by nouveau, nvidia.ko not loaded (no /proc/driver/nvidia)."""
    copy_of(SERVER, root)
    _hand_gpus_to(root, {a: "nouveau" for a in ("0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0")})
    return root


def nvidia_gpus_on_vfio_and_none(root: Path) -> Path:
    """Two GPUs bound to vfio-pci (set aside for VMs), two with no driver; nvidia.ko not loaded."""
    copy_of(SERVER, root)
    _hand_gpus_to(root, {"0000:1b:00.0": "vfio-pci", "0000:43:00.0": "vfio-pci", "0000:52:00.0": None, "0000:61:00.0": None})
    return root


# --- Jetson ---------------------------------------------------------------------------------------

def jetson_xavier_jetpack4(root: Path) -> Path:
    """A Jetson AGX Xavier on JetPack 4 (L4T R32.7.4): no nvidia.ko at all (no
    /proc/driver/nvidia), the GPU a platform device (17000000.gv11b) of the nvgpu module
    (NVIDIA's linux-nvgpu, in the L4T kernel sources); /etc/nv_tegra_release reads
    "# R32 (release), REVISION: 7.4, ..." (Jetson Linux Developer Guide). From probes/jetson-orin."""
    copy_of(JETSON, root)
    shutil.rmtree(root / "proc/driver")
    shutil.rmtree(root / "sys/module/nvidia")
    put(root, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t186ref, EABI: aarch64, DATE: Fri Jun  9 04:25:08 UTC 2023\n")
    put(root, "proc/sys/kernel/osrelease", "4.9.337-tegra\n")
    shutil.rmtree(root / "sys/bus/platform/drivers/ga10b")
    (root / "sys/module/nvgpu/drivers/platform:ga10b").unlink()
    shutil.rmtree(root / "sys/devices/platform/17000000.ga10b")
    put(root, "sys/devices/platform/17000000.gv11b/uevent", "DRIVER=gv11b\nOF_NAME=gpu\nOF_COMPATIBLE_0=nvidia,gv11b\n")
    link(root, "sys/bus/platform/drivers/gv11b/17000000.gv11b", "../../../../devices/platform/17000000.gv11b")
    put(root, "sys/bus/platform/drivers/gv11b/uevent", "DRIVER=gv11b\n")
    link(root, "sys/module/nvgpu/drivers/platform:gv11b", "../../../bus/platform/drivers/gv11b")
    return root


# --- accelerators ---------------------------------------------------------------------------------

def accel_dev_node_only(root: Path) -> Path:
    """A container given /dev/accel/accel0 but neither /sys/class/accel nor the PCI function
    (Documentation/accel/introduction.rst: the accel char devices are /dev/accel/accelN)."""
    copy_of(LAPTOP, root)
    shutil.rmtree(root / "sys/class/accel")
    shutil.rmtree(root / "sys/bus/pci/devices/0000:00:0b.0")
    return root


def accel_npu_without_driver(root: Path) -> Path:
    """The Meteor Lake NPU (PCI class 0x120000, processing accelerator) with no driver bound:
    no driver link, no DRIVER= in uevent, no /sys/class/accel, no /dev/accel (sysfs-bus-pci;
    the NPU's driver is drivers/accel/ivpu, module intel_vpu)."""
    copy_of(LAPTOP, root)
    shutil.rmtree(root / "sys/class/accel")
    shutil.rmtree(root / "dev/accel")
    (root / "sys/bus/pci/devices/0000:00:0b.0/driver").unlink()
    return root


def accel_gaudi_on_pci(root: Path) -> Path:
    """A Habana Gaudi (vendor 0x1da3, device 0x1020, class 0x120000) bound to habanalabs on a
    kernel where habanalabs still made /dev/hlN rather than an accel device (it moved to
    drivers/accel in Linux 6.2), so it shows only on PCI (sysfs-bus-pci)."""
    copy_of(SERVER, root)
    base = "sys/bus/pci/devices/0000:b3:00.0"
    put(root, f"{base}/class", "0x120000\n")
    put(root, f"{base}/vendor", "0x1da3\n")
    put(root, f"{base}/device", "0x1020\n")
    put(root, f"{base}/uevent", "DRIVER=habanalabs\nPCI_CLASS=120000\nPCI_ID=1DA3:1020\nPCI_SLOT_NAME=0000:b3:00.0\n")
    link(root, f"{base}/driver", "../../drivers/habanalabs")
    return root


# --- DRM cards ------------------------------------------------------------------------------------

def drm_card_link_without_device(root: Path) -> Path:
    """/sys/class/drm/card1 is a link into the GPU's own folder,
    ../../devices/pci0000:00/0000:00:02.0/drm/card1 (sysfs-class-drm; class folders hold links),
    here with no device/ link below it and no PCI bus listing: the address comes from the link,
    vendor and device from PCI_ID= in the function's uevent (the kernel's pci_uevent())."""
    copy_of(LAPTOP, root)
    shutil.rmtree(root / "sys/bus/pci/devices/0000:00:02.0")
    gpu = "sys/devices/pci0000:00/0000:00:02.0"
    put(root, f"{gpu}/uevent", "DRIVER=i915\nPCI_CLASS=30000\nPCI_ID=8086:7D55\nPCI_SUBSYS_ID=17AA:2234\nPCI_SLOT_NAME=0000:00:02.0\n")
    link(root, f"{gpu}/driver", "../../../bus/pci/drivers/i915")
    put(root, f"{gpu}/drm/card1/uevent", "MAJOR=226\nMINOR=1\nDEVNAME=dri/card1\nDEVTYPE=drm_minor\n")
    link(root, "sys/class/drm/card1", "../../devices/pci0000:00/0000:00:02.0/drm/card1")
    return root


def pci_ids_only_in_uevent(root: Path) -> Path:
    """The GPU's vendor and device files missing (a partial copy of sysfs), its uevent still
    carrying PCI_ID=8086:7D55 (drivers/pci/pci-driver.c, pci_uevent())."""
    copy_of(LAPTOP, root)
    for folder in ("sys/bus/pci/devices/0000:00:02.0", "sys/class/drm/card1/device"):
        for name in ("vendor", "device"):
            (root / folder / name).unlink()
    return root


# --- P2P ------------------------------------------------------------------------------------------

def p2p_status(status: str, iommu_type: str | None = None):  # type: ignore[no-untyped-def]
    """Every GPU pair with NVML's read status `status` (nvmlGpuP2PStatus_t, NVML API reference:
    "GPU not supported", "chipset not supported", "IOH topology not supported", "disabled by
    regkey", "not supported"); optionally every IOMMU group of type `iommu_type`."""

    def build(root: Path) -> Path:
        copy_of(SERVER, root)

        def change(data):  # type: ignore[no-untyped-def]
            for pair in data["p2p"].values():
                pair.update(read=status, write=status)

        edit_json(root / ".gpubench/commands/nvml.json", change)
        for group in (root / "sys/kernel/iommu_groups").iterdir() if iommu_type else ():
            (group / "type").write_text(iommu_type + "\n")
        return root

    build.__name__ = f"p2p_{status.replace(' ', '_')}" + (f"_iommu_{iommu_type}" if iommu_type else "")
    return build


# --- snapshots that did not record an area --------------------------------------------------------

def kernel_area_only(root: Path) -> Path:
    """What `gpubench snapshot --area kernel` records: the release, the command line and the
    config, nothing of sysfs or /proc/driver."""
    for rel in ("proc/sys/kernel/osrelease", "proc/cmdline", "proc/config.gz"):
        put(root, rel, (CPU_VM / rel).read_bytes())
    put(root, ".gpubench/snapshot.json", json.dumps({"areas": ["kernel"]}))
    return root


def hmm_nvml_none_without_config(root: Path) -> Path:
    """NVML says addressing mode none, and no kernel config was found: whether the prerequisites
    are met is not known, so nothing may say they are."""
    copy_of(SERVER, root)
    (root / "proc/config.gz").unlink()

    def none(data):  # type: ignore[no-untyped-def]
        for d in data["devices"]:
            d["addressing_mode"] = "none"

    edit_json(root / ".gpubench/commands/nvml.json", none)
    return root


# --- IOMMU ----------------------------------------------------------------------------------------

def iommu_amd_only_translated(root: Path) -> Path:
    """The CXL host's kernel built with the AMD IOMMU driver only (CONFIG_INTEL_IOMMU not set):
    no fix may name intel_iommu= (Documentation/admin-guide/kernel-parameters.txt: intel_iommu=
    is read by the Intel driver alone)."""
    copy_of(CXL_HOST, root)
    edit_config(root, lambda text: text.replace("CONFIG_INTEL_IOMMU=y", "# CONFIG_INTEL_IOMMU is not set")
                .replace("CONFIG_INTEL_IOMMU_DEFAULT_ON=y", "").replace("CONFIG_INTEL_IOMMU_SVM=y", ""))
    for unit in (root / "sys/class/iommu").iterdir():
        os.rename(unit, unit.with_name(unit.name.replace("dmar", "ivhd")))
    return root


CUT_TOKEN = "token-at-10k"  # inside the first 64 KiB of the long command line, past the first 4 KiB


def iommu_cut_cmdline(root: Path) -> Path:
    """No IOMMU groups, the Intel IOMMU built in but off by default, and a 9 MiB /proc/cmdline
    (past any read limit) whose intel_iommu=off comes last: a read cut before it must say so."""
    copy_of(CXL_HOST, root)
    shutil.rmtree(root / "sys/kernel/iommu_groups")
    (root / "sys/kernel/iommu_groups").mkdir()
    edit_config(root, lambda text: text.replace("CONFIG_INTEL_IOMMU_DEFAULT_ON=y", "# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set"))
    words = "quiet " * 1700 + CUT_TOKEN + " " + "quiet " * (9 * 2**20 // 6) + "intel_iommu=off\n"
    put(root, "proc/cmdline", words)
    return root


VARIANTS = [
    gds_nvidia_fs_procfs_only, gds_nothing_of_nvidia_fs_and_libcufile_not_recorded,
    nvidia_old_cards_layout, nvidia_gpus_on_nouveau, nvidia_gpus_on_vfio_and_none,
    jetson_xavier_jetpack4, accel_dev_node_only, accel_npu_without_driver, accel_gaudi_on_pci,
    drm_card_link_without_device, pci_ids_only_in_uevent,
    p2p_status("GPU not supported"), p2p_status("chipset not supported"), p2p_status("IOH topology not supported"),
    p2p_status("disabled by regkey"), p2p_status("not supported"), p2p_status("not supported", "DMA-FQ"),
    kernel_area_only, hmm_nvml_none_without_config, iommu_amd_only_translated, iommu_cut_cmdline,
]
