"""The gpu, hmm, p2p and gds probe areas: verdicts and evidence on the snapshots in probes/,
on damaged copies of them, and the live-only helpers (NVML, KvikIO, libcufile) with stand-ins."""

from __future__ import annotations

import gzip
import importlib.machinery
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from gpubench.probe import Source, Status, probe
from gpubench.probe import gds, nvidia

PROBES = Path(__file__).resolve().parents[2] / "probes"
AREAS = ["gpu", "hmm", "p2p", "gds"]
LAPTOP = PROBES / "laptop-igpu"
SERVER = PROBES / "nvidia-multigpu"
H100_PCI = ["0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0"]


def run(root: Path):
    return probe(Source(root), AREAS)


def cap(profile, name):
    found = profile.get(name)
    assert found is not None, f"no capability {name!r}"
    return found


def seen(capability, source: str) -> list[str]:
    return [e.value for e in capability.evidence if e.source == source]


def explained(profile) -> None:
    """Every verdict other than yes says why."""
    for c in profile.capabilities:
        if c.status is not Status.YES:
            assert c.why, f"{c.name} is {c.status.value} without a reason"


@pytest.fixture
def server(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    shutil.copytree(SERVER, root, symlinks=True)
    return root


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    root = tmp_path / "laptop"
    shutil.copytree(LAPTOP, root, symlinks=True)
    return root


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def make_unreadable(path: Path) -> None:
    """Replace a file by a directory: reading it fails even as root."""
    path.unlink()
    path.mkdir()


# --- the snapshots as recorded ---------------------------------------------------------------

@pytest.mark.skipif(not LAPTOP.is_dir(), reason="no probes/laptop-igpu snapshot")
def test_laptop_igpu():
    p = run(LAPTOP)
    explained(p)

    drv = cap(p, "nvidia driver")
    assert drv.status is Status.NO
    assert seen(drv, "/proc/driver/nvidia/version") == ["absent"]
    assert drv.details["version"] is None and drv.details["kernel_module"] is None

    gpus = cap(p, "gpus")
    assert gpus.status is Status.YES
    assert gpus.details["count"] == 1
    (igpu,) = gpus.details["devices"]
    assert igpu == {"pci": "0000:00:02.0", "vendor": "intel", "driver": "i915", "model": None, "device_id": "0x7d55"}
    assert "driver i915" in seen(gpus, "GPU 0000:00:02.0")[0]

    acc = cap(p, "accelerators")
    assert acc.status is Status.YES
    assert acc.details["count"] == 1
    assert acc.details["devices"][0]["driver"] == "intel_vpu"
    assert acc.details["devices"][0]["pci"] == "0000:00:0b.0"
    assert acc.details["devices"][0]["dev_node"] is True
    assert seen(acc, "/dev/accel") == ["accel0"]

    sched = cap(p, "drm scheduler")
    assert sched.status is Status.YES
    assert sched.details["drm_sched"] == "m" and sched.details["drm_accel"] == "y"

    hmm = cap(p, "hmm")
    assert hmm.status is Status.NO
    assert "no NVIDIA driver" in hmm.why
    assert hmm.details["active"] is False and hmm.details["mode"] is None
    assert seen(hmm, "CONFIG_HMM_MIRROR") == ["y"]

    p2pdma = cap(p, "pci p2pdma")
    assert p2pdma.status is Status.YES
    assert p2pdma.details["p2pmem_devices"] == []

    gp2p = cap(p, "gpu p2p")
    assert gp2p.status is Status.NO
    assert gp2p.details == {"gpu_count": 1, "pairs": {}}

    storage = cap(p, "gpudirect storage")
    assert storage.status is Status.NO
    assert storage.details["nvidia_fs"] is False
    assert storage.details["libcufile"] is False
    assert storage.details["kvikio"] is False
    assert storage.details["compat_mode"] is None
    assert storage.details["path"] is None
    assert seen(storage, "kvikio") == ["not installed"]


@pytest.mark.skipif(not SERVER.is_dir(), reason="no probes/nvidia-multigpu snapshot")
def test_nvidia_multigpu():
    p = run(SERVER)
    explained(p)

    drv = cap(p, "nvidia driver")
    assert drv.status is Status.YES
    assert drv.details["version"] == "570.124.06"
    assert drv.details["kernel_module"] == "open"
    assert drv.details["gpus"] == [{"pci": pci, "model": "NVIDIA H100 80GB HBM3"} for pci in H100_PCI]
    assert drv.details["cuda_driver_version"] == "12.8"
    assert [d["memory_total"] for d in drv.details["nvml_devices"]] == [85520809984] * 4
    assert "Open Kernel Module" in seen(drv, "/proc/driver/nvidia/version")[0]

    gpus = cap(p, "gpus")
    assert gpus.status is Status.YES
    assert gpus.details["count"] == 4
    assert [d["pci"] for d in gpus.details["devices"]] == H100_PCI
    assert {(d["vendor"], d["driver"], d["model"]) for d in gpus.details["devices"]} == {("nvidia", "nvidia", "NVIDIA H100 80GB HBM3")}
    assert gpus.details["display_only"] == [{"pci": "0000:03:00.0", "what": "ASPEED BMC", "driver": "ast"}]
    assert "/proc/driver/nvidia/gpus" in seen(gpus, "GPU 0000:1b:00.0")[0]

    assert cap(p, "accelerators").status is Status.NO
    assert cap(p, "drm scheduler").status is Status.YES

    hmm = cap(p, "hmm")
    assert hmm.status is Status.YES
    assert hmm.details["active"] is True and hmm.details["mode"] == "hmm"
    assert hmm.details["kernel_meets_floor"] is True
    assert seen(hmm, "/sys/module/nvidia_uvm/parameters/uvm_disable_hmm") == ["N"]
    assert seen(hmm, "CONFIG_DEVICE_PRIVATE") == ["y"]

    p2pdma = cap(p, "pci p2pdma")
    assert p2pdma.status is Status.YES
    assert p2pdma.details["config"] == "y"
    assert p2pdma.details["p2pmem_devices"] == [
        {"pci": "0000:c1:00.0", "size": 1 << 30, "available": 1 << 30, "published": 1}
    ]

    gp2p = cap(p, "gpu p2p")
    assert gp2p.status is Status.YES
    assert gp2p.details["gpu_count"] == 4
    assert gp2p.details["pairs"] == {f"{a}-{b}": "ok" for a in range(4) for b in range(a + 1, 4)}
    assert len(gp2p.details["nvlink_pairs"]) == 6

    storage = cap(p, "gpudirect storage")
    assert storage.status is Status.YES
    assert storage.details["nvidia_fs"] is True
    assert storage.details["nvidia_fs_version"] == "2.24"
    assert storage.details["libcufile"] is True
    assert storage.details["kvikio"] is True
    assert storage.details["compat_mode"] is False
    assert storage.details["path"] == "gds"


def test_empty_root_answers_everything(tmp_path: Path):
    """A root that holds none of an area's inputs did not record it: unknown, never 'absent'."""
    p = run(tmp_path)
    explained(p)
    status = {c.name: c.status for c in p.capabilities}
    assert status == {
        "nvidia driver": Status.UNKNOWN,
        "gpus": Status.UNKNOWN,
        "accelerators": Status.UNKNOWN,
        "drm scheduler": Status.UNKNOWN,
        "hmm": Status.UNKNOWN,
        "pci p2pdma": Status.UNKNOWN,
        "gpu p2p": Status.UNKNOWN,
        "gpudirect storage": Status.UNKNOWN,
    }
    for name in ("nvidia driver", "gpus", "accelerators", "hmm", "gpu p2p", "gpudirect storage"):
        assert cap(p, name).why.startswith("not recorded in this snapshot"), name
        assert "gpubench snapshot" in cap(p, name).fix
    assert cap(p, "gpudirect storage").details["kvikio"] is None  # not recorded, not guessed


# --- damaged snapshots -------------------------------------------------------------------------

def test_missing_nvidia_version_with_gpus_listed_means_driver_loaded(server: Path):
    """/proc/driver/nvidia/gpus exists only while nvidia.ko is loaded (the NVIDIA Linux driver
    README, "Procfs interface"), as does /sys/module/nvidia: without the version file the driver
    is still loaded, so the inventory (which lists the GPUs from that folder) and the driver
    verdict agree."""
    (server / "proc/driver/nvidia/version").unlink()
    p = run(server)
    explained(p)
    drv = cap(p, "nvidia driver")
    assert drv.status is Status.YES
    assert "version not shown" in drv.why and "4 GPU(s)" in drv.why
    assert "/proc/driver/nvidia/gpus" in seen(drv, "NVIDIA driver loaded, seen in")[0]
    assert cap(p, "hmm").status is Status.UNKNOWN  # the version and module kind decide it, and are not shown
    assert cap(p, "gpudirect storage").status is Status.YES
    assert cap(p, "gpus").details["count"] == 4


def test_nothing_but_the_pci_driver_link_still_means_loaded(server: Path):
    """The driver link of a PCI function names the driver bound to it (sysfs-bus-pci): a GPU
    bound to nvidia means nvidia.ko is loaded, whatever else the snapshot lacks."""
    shutil.rmtree(server / "proc/driver/nvidia")
    p = run(server)
    assert cap(p, "nvidia driver").status is not Status.NO
    assert {d["driver"] for d in cap(p, "gpus").details["devices"]} == {"nvidia"}


def test_unreadable_nvidia_version(server: Path):
    make_unreadable(server / "proc/driver/nvidia/version")
    p = run(server)
    explained(p)
    for name in ("nvidia driver", "hmm", "gpu p2p", "gpudirect storage"):
        c = cap(p, name)
        assert c.status is Status.UNKNOWN, name
        assert "cannot read /proc/driver/nvidia/version" in c.why
    assert cap(p, "pci p2pdma").status is Status.YES


def test_garbage_nvidia_version(server: Path):
    (server / "proc/driver/nvidia/version").write_bytes(b"\x00\xffnot a driver banner\n")
    p = run(server)
    explained(p)
    assert cap(p, "nvidia driver").status is Status.UNKNOWN
    assert "no 'NVRM version:' line" in cap(p, "nvidia driver").why
    assert cap(p, "hmm").status is Status.UNKNOWN


def test_proprietary_module_has_no_hmm(server: Path):
    version = server / "proc/driver/nvidia/version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n")
    p = run(server)
    assert cap(p, "nvidia driver").details["kernel_module"] == "proprietary"
    assert cap(p, "nvidia driver").details["version"] == "535.129.03"
    hmm = cap(p, "hmm")
    assert hmm.status is Status.NO
    assert "proprietary" in hmm.why and "open kernel modules" in hmm.fix
    assert hmm.details["active"] is False


def test_uvm_disable_hmm(server: Path):
    (server / "sys/module/nvidia_uvm/parameters/uvm_disable_hmm").write_text("Y\n")
    hmm = cap(run(server), "hmm")
    assert hmm.status is Status.NO
    assert "uvm_disable_hmm=Y" in hmm.why and "modprobe" in hmm.fix


def test_uvm_not_loaded_is_partial(server: Path):
    shutil.rmtree(server / "sys/module/nvidia_uvm")
    hmm = cap(run(server), "hmm")
    assert hmm.status is Status.PARTIAL
    assert "nvidia_uvm is not loaded" in hmm.why
    assert hmm.details["active"] is None


def test_nvml_addressing_mode_ats(server: Path):
    def ats(data):
        for d in data["devices"]:
            d["addressing_mode"] = "ats"

    edit_json(server / ".gpubench/commands/nvml.json", ats)
    hmm = cap(run(server), "hmm")
    assert hmm.status is Status.YES
    assert hmm.details == {**hmm.details, "active": True, "mode": "ats"}
    assert seen(hmm, "NVML addressing mode") == ["ats, ats, ats, ats"]


@pytest.mark.parametrize(
    "release, version_banner, verdict",
    [
        ("6.1.20-hpc", None, Status.NO),  # below 6.1.24
        ("6.1.24-hpc", None, Status.YES),
        ("6.2.10", None, Status.NO),
        ("6.3.0", None, Status.YES),
        ("6.1.0-18-amd64", "Linux version 6.1.0-18-amd64 (gcc-12) #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", Status.YES),
        ("5.15.0-100-generic", None, Status.NO),
    ],
)
def test_hmm_kernel_floor(server: Path, release, version_banner, verdict):
    (server / "proc/sys/kernel/osrelease").write_text(release + "\n")
    if version_banner:
        (server / "proc/version").write_text(version_banner + "\n")
    hmm = cap(run(server), "hmm")
    assert hmm.status is verdict, hmm.why
    if verdict is Status.NO:
        assert "older than HMM needs" in hmm.why


def test_kernel_without_hmm_config(server: Path):
    cfg = gzip.decompress((server / "proc/config.gz").read_bytes()).decode()
    cfg = cfg.replace("CONFIG_DEVICE_PRIVATE=y", "# CONFIG_DEVICE_PRIVATE is not set").replace("CONFIG_PCI_P2PDMA=y", "")
    (server / "proc/config.gz").write_bytes(gzip.compress(cfg.encode()))
    p = run(server)
    assert cap(p, "hmm").status is Status.NO
    assert "CONFIG_DEVICE_PRIVATE" in cap(p, "hmm").why
    assert cap(p, "pci p2pdma").status is Status.NO
    assert seen(cap(p, "pci p2pdma"), "CONFIG_PCI_P2PDMA") == ["not set"]


def test_garbage_kernel_config(laptop: Path):
    (laptop / "boot/config-6.8.0-45-generic").write_bytes(b"\x1f\x8b garbage, no options\n")
    p = run(laptop)
    explained(p)
    assert cap(p, "drm scheduler").status is Status.UNKNOWN
    assert cap(p, "pci p2pdma").status is Status.UNKNOWN
    assert "no kernel config" in cap(p, "pci p2pdma").why
    assert cap(p, "hmm").status is Status.NO  # no NVIDIA driver decides it before the config matters


def test_garbage_p2pmem(server: Path):
    (server / "sys/bus/pci/devices/0000:c1:00.0/p2pmem/size").write_text("lots\n")
    c = cap(run(server), "pci p2pdma")
    assert c.status is Status.PARTIAL
    assert "0000:c1:00.0" in c.why
    assert c.details["p2pmem_devices"][0]["size"] is None


def test_p2p_partial_and_unsupported_pairs(server: Path):
    def one_bad(data):
        data["p2p"]["0-3"]["read"] = "IOH topology not supported"

    edit_json(server / ".gpubench/commands/nvml.json", one_bad)
    c = cap(run(server), "gpu p2p")
    assert c.status is Status.PARTIAL
    assert "5 of 6" in c.why and "0-3: IOH topology not supported" in c.why
    assert c.details["pairs"]["0-3"] == "IOH topology not supported"

    def all_bad(data):
        for pair in data["p2p"].values():
            pair["read"] = "not supported"

    edit_json(server / ".gpubench/commands/nvml.json", all_bad)
    c = cap(run(server), "gpu p2p")
    assert c.status is Status.NO
    assert "not supported" in c.why


def test_p2p_pairs_are_numbered_by_pci_address_as_the_benchmarks_number_gpus(server: Path):
    def nvml_enumerates_out_of_pci_order(data):
        pcis = [d["pci"] for d in data["devices"]]
        for device, pci in zip(data["devices"], [pcis[3], pcis[0], pcis[1], pcis[2]]):
            device["pci"] = pci  # NVML's GPU 0 sits at the highest PCI address
        data["p2p"]["0-1"]["read"] = "not supported"

    edit_json(server / ".gpubench/commands/nvml.json", nvml_enumerates_out_of_pci_order)
    c = cap(run(server), "gpu p2p")
    # NVML's 0 is the benchmarks' 3 and NVML's 1 their 0: the bad pair is 0-3
    assert c.details["pairs"]["0-3"] == "not supported"
    assert c.details["pairs"]["0-1"] == "ok"


def test_nvml_missing_or_garbage(server: Path):
    nvml_file = server / ".gpubench/commands/nvml.json"
    nvml_file.unlink()
    p = run(server)
    explained(p)
    assert cap(p, "gpu p2p").status is Status.UNKNOWN
    assert "not recorded" in cap(p, "gpu p2p").why
    assert cap(p, "nvidia driver").status is Status.YES  # procfs is enough
    assert cap(p, "gpus").details["count"] == 4

    nvml_file.write_text("{ this is not json")
    p = run(server)
    explained(p)
    assert cap(p, "gpu p2p").status is Status.UNKNOWN
    assert "cannot read recorded nvml" in cap(p, "gpu p2p").why

    nvml_file.write_text(json.dumps({"available": False, "reason": "NVML Shared Library Not Found"}))
    c = cap(run(server), "gpu p2p")
    assert c.status is Status.UNKNOWN
    assert "NVML Shared Library Not Found" in c.why and "nvidia-ml-py" in c.fix


def test_gds_without_nvidia_fs_is_compat(server: Path):
    shutil.rmtree(server / "sys/module/nvidia_fs")
    shutil.rmtree(server / "proc/driver/nvidia-fs")
    c = cap(run(server), "gpudirect storage")
    assert c.status is Status.NO
    assert "nvidia_fs kernel module" in c.why and "modprobe nvidia_fs" in c.fix
    assert c.details["nvidia_fs"] is False
    assert c.details["path"] == "compat"
    assert "the nvidia_fs module is not loaded" in c.details["compat_reasons"]


def test_gds_compat_mode_forced(server: Path):
    def forced(data):
        data.update(env_compat_mode="ON", compat_mode=True, setting="ON")

    edit_json(server / ".gpubench/commands/kvikio.json", forced)
    c = cap(run(server), "gpudirect storage")
    assert c.status is Status.PARTIAL
    assert "KVIKIO_COMPAT_MODE=ON forces it" in c.why
    assert c.details["compat_mode"] is True and c.details["path"] == "compat"
    assert seen(c, "KVIKIO_COMPAT_MODE") == ["ON"]


def test_gds_without_libcufile(server: Path):
    edit_json(server / ".gpubench/commands/libcufile.json", lambda d: d.update(paths=[]))
    c = cap(run(server), "gpudirect storage")
    assert c.status is Status.NO
    assert c.details["libcufile"] is False
    assert "libcufile.so was not found" in c.details["compat_reasons"]


def test_gds_libcufile_not_recorded(server: Path):
    (server / ".gpubench/commands/libcufile.json").unlink()
    c = cap(run(server), "gpudirect storage")
    assert c.status is Status.UNKNOWN
    assert "not recorded" in c.why
    assert c.details["libcufile"] is None


def test_unreadable_drm_attribute_is_reported(server: Path):
    make_unreadable(server / "sys/class/drm/card1/device/vendor")
    c = cap(run(server), "gpus")
    assert c.status is Status.PARTIAL  # all four GPUs still found, but say what could not be read
    assert c.details["count"] == 4
    assert "cannot read /sys/class/drm/card1/device/vendor" in c.why


def test_unreadable_pci_and_no_other_source(laptop: Path):
    shutil.rmtree(laptop / "sys/class/drm")
    make_unreadable(laptop / "sys/bus/pci/devices/0000:00:02.0/class")
    c = cap(run(laptop), "gpus")
    assert c.status is Status.UNKNOWN
    assert "cannot read /sys/bus/pci/devices/0000:00:02.0/class" in c.why


def test_gpu_without_driver_is_partial(laptop: Path):
    (laptop / "sys/bus/pci/devices/0000:00:02.0/driver").unlink()
    (laptop / "sys/bus/pci/devices/0000:00:02.0/uevent").write_text("PCI_SLOT_NAME=0000:00:02.0\n")
    shutil.rmtree(laptop / "sys/class/drm")
    c = cap(run(laptop), "gpus")
    assert c.status is Status.PARTIAL
    assert "no driver bound to 0000:00:02.0" in c.why


def test_driver_link_outside_the_snapshot_falls_back_to_uevent(laptop: Path):
    link = laptop / "sys/bus/pci/devices/0000:00:02.0/driver"
    link.unlink()
    link.symlink_to("../../../../../../../../bus/pci/drivers/i915")  # deeper than the snapshot
    shutil.rmtree(laptop / "sys/class/drm")
    c = cap(run(laptop), "gpus")
    assert c.status is Status.YES
    assert c.details["devices"][0]["driver"] == "i915"


def test_accelerator_without_device_node(laptop: Path):
    shutil.rmtree(laptop / "dev/accel")
    c = cap(run(laptop), "accelerators")
    assert c.status is Status.PARTIAL
    assert "accel0" in c.why and c.details["devices"][0]["dev_node"] is False


@pytest.mark.parametrize(
    "damage",
    [
        "sys/bus/pci/devices/0000:1b:00.0/class",
        "proc/driver/nvidia/gpus/0000:1b:00.0/information",
        "sys/module/nvidia_uvm/parameters/uvm_disable_hmm",
        "proc/driver/nvidia-fs/version",
        "sys/bus/pci/devices/0000:c1:00.0/p2pmem/published",
        "proc/config.gz",
        ".gpubench/commands/kvikio.json",
    ],
)
def test_any_unreadable_file_gives_answers_not_exceptions(server: Path, damage: str):
    make_unreadable(server / damage)
    p = run(server)
    explained(p)
    assert len(p.capabilities) == 8
    assert any(c.status is Status.UNKNOWN or c.status is Status.PARTIAL for c in p.capabilities)


# --- the live-only helpers, with stand-ins -----------------------------------------------------

def fake_pynvml(init_error: Exception | None = None) -> types.ModuleType:
    nv = types.ModuleType("pynvml")
    nv.__spec__ = importlib.machinery.ModuleSpec("pynvml", None)
    nv.NVML_P2P_CAPS_INDEX_READ, nv.NVML_P2P_CAPS_INDEX_WRITE, nv.NVML_P2P_CAPS_INDEX_NVLINK = 0, 1, 2

    def init():
        if init_error:
            raise init_error

    def addressing_mode(h):
        if h == 1:
            raise RuntimeError("Function Not Found")
        return 1

    nv.nvmlInit, nv.nvmlShutdown = init, lambda: None
    nv.nvmlSystemGetDriverVersion = lambda: "570.124.06"
    nv.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12080
    nv.nvmlDeviceGetCount = lambda: 2
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=["00000000:1B:00.0", "00000000:43:00.0"][h])
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=85520809984)
    nv.nvmlDeviceGetAddressingMode = addressing_mode
    nv.nvmlDeviceGetP2PStatus = lambda a, b, index: 5 if index == 2 else 0
    return nv


def test_query_nvml_shapes_what_the_checks_read(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    out = nvidia.query_nvml()
    assert out["available"] is True
    assert out["driver_version"] == "570.124.06" and out["cuda_driver_version"] == "12.8"
    assert [d["pci"] for d in out["devices"]] == ["0000:1b:00.0", "0000:43:00.0"]
    assert out["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert [d["addressing_mode"] for d in out["devices"]] == ["hmm", None]
    assert out["errors"] == {"addressing_mode 1": "Function Not Found"}
    assert out["p2p"] == {"0-1": {"read": "ok", "write": "ok", "nvlink": "not supported"}}
    json.dumps(out)  # recorded as a command output


def test_query_nvml_when_the_library_does_not_load(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(OSError("NVML Shared Library Not Found")))
    assert nvidia.query_nvml() == {"available": False, "reason": "nvmlInit failed: NVML Shared Library Not Found"}


def test_kvikio_not_installed_starts_no_child(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(gds.subprocess, "run", lambda *a, **k: pytest.fail("a child was started"))
    monkeypatch.setenv("KVIKIO_COMPAT_MODE", "ON")
    out = gds.check_kvikio()
    assert out["installed"] is False and out["env_compat_mode"] == "ON"
    assert "importable" not in out


FAKE_KVIKIO = {
    "compat": (
        "__version__ = '25.02.01'\n",
        "class _Mode:\n    name = 'AUTO'\n"
        "def get(key):\n    return _Mode()\n"
        "def is_compat_mode_preferred():\n    return True\n",
    ),
    "crash": ("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n", ""),
}


@pytest.mark.parametrize("kind", ["compat", "crash"])
def test_kvikio_is_asked_in_a_child(monkeypatch, tmp_path: Path, kind: str):
    pkg = tmp_path / "kvikio"
    pkg.mkdir()
    init, defaults = FAKE_KVIKIO[kind]
    (pkg / "__init__.py").write_text(init)
    (pkg / "defaults.py").write_text(defaults)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    out = gds.check_kvikio()
    assert "kvikio" not in sys.modules
    assert out["installed"] is True
    if kind == "compat":
        assert out["importable"] is True
        assert out["version"] == "25.02.01" and out["setting"] == "AUTO" and out["compat_mode"] is True
    else:
        assert out["importable"] is False
        assert "signal 4" in out["error"]


def test_find_libcufile_in_a_wheel(monkeypatch, tmp_path: Path):
    lib = tmp_path / "nvidia/cufile/lib"
    lib.mkdir(parents=True)
    (lib / "libcufile.so.0").write_bytes(b"")
    monkeypatch.setattr(gds, "LIBRARY_DIRS", ())
    monkeypatch.setattr(gds, "_site_dirs", lambda: [str(tmp_path)])
    out = gds.find_libcufile()
    assert out["paths"] == ["<site-packages>/nvidia/cufile/lib/libcufile.so.0"]
    assert str(tmp_path) not in json.dumps(out)


def test_live_probe_imports_no_gpu_library():
    before = set(sys.modules)
    p = probe(Source("/"), AREAS)
    explained(p)
    assert not {"kvikio", "cupy", "numba"} & (set(sys.modules) - before)
    if not Path("/proc/driver/nvidia/version").exists():
        assert "pynvml" not in set(sys.modules) - before
        assert cap(p, "nvidia driver").status is Status.NO


@pytest.mark.parametrize("snapshot", [LAPTOP, SERVER], ids=lambda p: p.name)
def test_a_recording_of_a_snapshot_replays_to_the_same_answers(tmp_path: Path, snapshot: Path):
    """What the checks read is exactly what `gpubench snapshot` keeps."""
    from gpubench.probe.snapshot import open_root, write_snapshot

    if not snapshot.is_dir():
        pytest.skip(f"no {snapshot.name} snapshot")
    src = Source(snapshot, record=True)
    first = probe(src, AREAS)
    archive = tmp_path / "again.tar.gz"
    write_snapshot(src.recording, archive, {})
    with open_root(archive) as replay:
        second = probe(replay, AREAS)
    assert [c.to_dict() for c in second.capabilities] == [c.to_dict() for c in first.capabilities]
