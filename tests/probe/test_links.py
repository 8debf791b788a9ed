"""The links area on machines laid out as the kernel lays out sysfs: each PCI function a directory
under /sys/devices/pciDDDD:BB/, nested below the bridges above it, and /sys/bus/pci/devices/ADDR a
link into that tree; link speeds and widths as drivers/pci/pci-sysfs.c writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpubench.probe import Source, Status, probe
from gpubench.probe.links import lane_gbps, parse_speed, parse_width
from gpubench.probe.snapshot import open_root, write_snapshot
from gpubench.probe.views import LinksView

GEN5, GEN4, GEN3 = "32.0 GT/s PCIe", "16.0 GT/s PCIe", "8.0 GT/s PCIe"
IDLE = "2.5 GT/s PCIe"
BRIDGE = "0x060400"


def function(root: Path, chain: list[str], cls: str, link: tuple[str, int, str, int] | None, vendor: str = "0x10de",
             children: dict[str, list[str]] | None = None) -> Path:
    """One PCI function at the end of `chain` (root port first), with its link (now speed, width,
    max speed, width) where it is a PCIe device."""
    domain = chain[0].rsplit(":", 2)[0]
    path = root / "sys/devices" / f"pci{domain}:{chain[0].split(':')[1]}" / Path(*chain)
    path.mkdir(parents=True, exist_ok=True)
    (path / "class").write_text(cls + "\n")
    (path / "vendor").write_text(vendor + "\n")
    if len(chain) > 1:  # the bridge above: its secondary bus is this function's bus, in decimal
        (path.parent / "secondary_bus_number").write_text(f"{int(chain[-1].split(':')[1], 16)}\n")
    if link is not None:
        for name, value in zip(("current_link_speed", "current_link_width", "max_link_speed", "max_link_width"), link):
            (path / name).write_text(f"{value}\n")
    for sub, names in (children or {}).items():
        for name in names:
            (path / sub / name).mkdir(parents=True, exist_ok=True)
    bus = root / "sys/bus/pci/devices"
    bus.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(path, bus)
    if not (bus / chain[-1]).is_symlink():
        (bus / chain[-1]).symlink_to(target)
    return path


def server(root: Path) -> Path:
    """A GPU server: an H100 (Gen5 x16, idle at 2.5 GT/s) in a Gen5 root port, a Gen4 x4 NVMe
    drive, a Gen5 x16 NIC, and a BMC display that is no data path."""
    bridge = BRIDGE
    function(root, ["0000:00:01.0"], bridge, (IDLE, 16, GEN5, 16))
    function(root, ["0000:00:01.0", "0000:01:00.0"], "0x030200", (IDLE, 16, GEN5, 16))
    function(root, ["0000:00:02.0"], bridge, (GEN4, 4, GEN4, 4), vendor="0x8086")
    function(root, ["0000:00:02.0", "0000:02:00.0"], "0x010802", (GEN4, 4, GEN4, 4), vendor="0x144d", children={"nvme": ["nvme0"]})
    function(root, ["0000:00:03.0"], bridge, (GEN5, 16, GEN5, 16), vendor="0x8086")
    function(root, ["0000:00:03.0", "0000:03:00.0"], "0x020000", (GEN5, 16, GEN5, 16), vendor="0x15b3", children={"net": ["eth0"]})
    function(root, ["0000:00:04.0"], bridge, (GEN3, 1, GEN3, 1), vendor="0x8086")
    function(root, ["0000:00:04.0", "0000:04:00.0"], "0x030000", (GEN3, 1, GEN3, 1), vendor="0x1a03")
    return root


def links(root: Path):
    profile = probe(Source(root), ["links"])
    return profile.get("pcie links"), LinksView.from_profile(profile)


def test_the_kernel_formats_of_speed_and_width():
    assert parse_speed("16.0 GT/s PCIe") == 16.0 and parse_speed("2.5 GT/s PCIe") == 2.5
    assert parse_speed("8 GT/s") == 8.0  # Linux 4.13 to 4.18
    assert parse_speed("Unknown") is None and parse_speed("Unknown speed") is None and parse_speed("") is None
    assert parse_width("16") == 16 and parse_width("0") == 0 and parse_width("garbage") is None
    assert lane_gbps(2.5) == pytest.approx(0.25) and lane_gbps(16.0) == pytest.approx(16 * 128 / 130 / 8)
    assert lane_gbps(7.0) is None


def test_a_healthy_server_states_each_link_and_the_idle_gpu_is_not_a_fault(tmp_path: Path):
    cap, view = links(server(tmp_path))
    assert cap.status is Status.YES, cap.why
    assert "runs at 2.5 of 32 GT/s" in cap.why and "idle" in cap.why
    assert view.recorded and {link.kind for link in view.pcie} == {"gpu", "nvme", "nic"}  # the BMC display is left out
    gpu, nvme, nic = (view.link_of(a) for a in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"))
    assert gpu is not None and nvme is not None and nic is not None
    assert gpu.gbps == pytest.approx(16 * 32 * 128 / 130 / 8)  # 63.0 GB/s: the speed the link returns to under load
    assert not gpu.trained_low and "PCIe 5.0 x16" in gpu.describe() and "idle" in gpu.describe()
    assert nvme.names == ("nvme0",) and nvme.gbps == pytest.approx(4 * 16 * 128 / 130 / 8)
    assert nic.names == ("eth0",)


def test_a_link_trained_below_its_maximum_is_flagged(tmp_path: Path):
    root = server(tmp_path)
    nvme = root / "sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0"
    (nvme / "current_link_width").write_text("2\n")
    cap, view = links(root)
    assert cap.status is Status.PARTIAL
    assert "0000:02:00.0 (nvme, nvme0) trained at x2 of x4" in cap.why and "lspci" in cap.fix
    link = view.link_of("0000:02:00.0")
    assert link is not None and link.trained_low and "trained below x4" in link.describe()
    assert link.gbps == pytest.approx(2 * 16 * 128 / 130 / 8)  # the limit is what it trained to


def test_a_drive_slower_than_both_ends_allow_is_a_fault_but_a_slot_of_an_older_generation_is_not(tmp_path: Path):
    root = server(tmp_path)
    (root / "sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/current_link_speed").write_text(GEN3 + "\n")
    cap, _ = links(root)
    assert cap.status is Status.PARTIAL and "runs at 8 of 16 GT/s" in cap.why

    root = server(tmp_path / "older-slot")
    port = root / "sys/devices/pci0000:00/0000:00:01.0"
    (port / "max_link_speed").write_text(GEN4 + "\n")  # a Gen5 GPU in a Gen4 slot: trains at 16 GT/s
    (port / "0000:01:00.0/current_link_speed").write_text(GEN4 + "\n")
    cap, view = links(root)
    assert cap.status is Status.YES
    gpu = view.link_of("0000:01:00.0")
    assert gpu is not None and gpu.capable_speed == 16.0 and gpu.gbps == pytest.approx(16 * 16 * 128 / 130 / 8)


def test_a_narrow_link_upstream_limits_a_device_behind_a_switch(tmp_path: Path):
    bridge = BRIDGE
    function(tmp_path, ["0000:00:01.0"], bridge, (GEN4, 4, GEN4, 16), vendor="0x8086")
    function(tmp_path, ["0000:00:01.0", "0000:01:00.0"], bridge, (GEN4, 4, GEN4, 16), vendor="0x1000")  # switch upstream port
    function(tmp_path, ["0000:00:01.0", "0000:01:00.0", "0000:02:00.0"], bridge, (GEN4, 16, GEN4, 16), vendor="0x1000")
    function(tmp_path, ["0000:00:01.0", "0000:01:00.0", "0000:02:00.0", "0000:03:00.0"], "0x030200", (GEN4, 16, GEN4, 16))
    _, view = links(tmp_path)
    gpu = view.link_of("0000:03:00.0")
    assert gpu is not None and gpu.gbps == pytest.approx(4 * 16 * 128 / 130 / 8)
    assert "limited by a narrower link upstream" in gpu.describe()


def test_an_old_kernel_and_a_link_that_cannot_be_read(tmp_path: Path):
    function(tmp_path, ["0000:00:01.0"], "0x060400", ("8 GT/s", 16, "8 GT/s", 16), vendor="0x8086")
    gpu = function(tmp_path, ["0000:00:01.0", "0000:01:00.0"], "0x030000", ("8 GT/s", 16, "Unknown speed", 16))
    cap, view = links(tmp_path)
    assert cap.status is Status.YES and view.link_of("0000:01:00.0").gbps == pytest.approx(16 * 8 * 128 / 130 / 8)
    (gpu / "current_link_speed").unlink()
    (gpu / "current_link_speed").mkdir()  # a read that fails, as EINVAL does for a device whose link cannot be read
    cap, view = links(tmp_path)
    assert cap.status is Status.UNKNOWN and "current_link_speed" in cap.why and view.pcie == ()


def test_a_virtual_machine_has_no_link_to_state(tmp_path: Path):
    function(tmp_path, ["0000:00:03.0"], "0x020000", None, vendor="0x1af4", children={"net": ["eth0"]})
    cap, view = links(tmp_path)
    assert cap.status is Status.NO and "0000:00:03.0 (nic)" in cap.why and cap.fix
    assert view.recorded and view.pcie == ()


def test_a_profile_from_before_the_links_area_says_not_recorded(tmp_path: Path):
    view = LinksView.from_profile(probe(Source(server(tmp_path)), ["kernel"]))
    assert not view.recorded and view.pcie == () and view.pcie_verdict is None


def test_a_snapshot_carries_the_links(tmp_path: Path):
    live = server(tmp_path / "machine")
    recorder = Source(live, record=True)
    recorded = probe(recorder, ["links"])
    archive = tmp_path / "box.tar.gz"
    write_snapshot(recorder.recording, archive, {"gpubench": "test"})
    with open_root(archive) as src:
        replayed = probe(src, ["links"])
    assert [c.to_dict() for c in replayed.capabilities] == [c.to_dict() for c in recorded.capabilities]
    assert LinksView.from_profile(replayed).link_of("0000:01:00.0") is not None


# --- NVLink ---------------------------------------------------------------------------------------

def nvidia_machine(root: Path, nvlinks: list[dict | None]) -> Path:
    (root / "proc/driver/nvidia").mkdir(parents=True)
    (root / "proc/driver/nvidia/version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build\n")
    devices = []
    for index, links in enumerate(nvlinks):
        device = {"index": index, "name": "NVIDIA H100 80GB HBM3", "pci": f"0000:{0x1b + index:02x}:00.0"}
        if links is not None:
            device["nvlinks"] = links
        devices.append(device)
    commands = root / ".gpubench/commands"
    commands.mkdir(parents=True)
    (commands / "nvml.json").write_text(json.dumps({"available": True, "devices": devices, "errors": {}, "p2p": {}}))
    return root


def switched(active: int, present: int = 18) -> dict:
    return {"links": [{"link": i, "active": i < active, "remote_pci": "0000:a0:00.0" if i < active else None} for i in range(present)],
            "speed_mbps": 26562, "error": None}


def test_nvlink_through_a_switch_fabric(tmp_path: Path):
    profile = probe(Source(nvidia_machine(tmp_path, [switched(18), switched(18)])), ["links"])
    cap, view = profile.get("nvlink"), LinksView.from_profile(profile)
    assert cap.status is Status.YES and "18 link(s) x 26.562 GB/s" in cap.why
    a, b = view.nvlinks
    assert a.to(b) == pytest.approx(18 * 26.562)


def test_an_nvlink_down_is_flagged_and_direct_links_count_per_pair(tmp_path: Path):
    direct = [{"links": [{"link": 0, "active": True, "remote_pci": "0000:1c:00.0"}, {"link": 1, "active": False, "remote_pci": None}],
               "speed_mbps": 25000, "error": None},
              {"links": [{"link": 0, "active": True, "remote_pci": "0000:1b:00.0"}], "speed_mbps": 25000, "error": None}]
    profile = probe(Source(nvidia_machine(tmp_path, direct)), ["links"])
    cap, view = profile.get("nvlink"), LinksView.from_profile(profile)
    assert cap.status is Status.PARTIAL and "GPU 0 link 1" in cap.why
    assert view.nvlinks[0].to(view.nvlinks[1]) == pytest.approx(25.0)


def test_nvlink_absent_and_not_recorded(tmp_path: Path):
    none = {"links": [], "speed_mbps": None, "error": None}
    assert probe(Source(nvidia_machine(tmp_path / "pcie", [none])), ["links"]).get("nvlink").status is Status.NO
    old = probe(Source(nvidia_machine(tmp_path / "old", [None])), ["links"]).get("nvlink")
    assert old.status is Status.UNKNOWN and "no NVLink state" in old.why


class _Nvml:
    """A stand-in for pynvml: 4 links, two of them up to an NVSwitch, then NOT_SUPPORTED."""

    class NVMLError(Exception):
        def __init__(self, value: int):
            super().__init__(f"NVML error {value}")
            self.value = value

    def nvmlDeviceGetNvLinkState(self, handle, link):
        if link >= 4:
            raise self.NVMLError(3)
        return 1 if link < 2 else 0

    def nvmlDeviceGetNvLinkRemotePciInfo_v2(self, handle, link):
        return type("Pci", (), {"busId": b"00000000:A0:00.0"})()

    def nvmlDeviceGetFieldValues(self, handle, fields):
        assert fields == [90]
        return [type("Field", (), {"nvmlReturn": 0, "value": type("Value", (), {"uiVal": 26562})()})()]


def test_the_nvml_query_of_nvlinks():
    from gpubench.probe.nvidia import query_nvlinks

    out = query_nvlinks(_Nvml(), object())
    assert [link["active"] for link in out["links"]] == [True, True, False, False]
    assert out["links"][0]["remote_pci"] == "0000:a0:00.0" and out["speed_mbps"] == 26562 and out["error"] is None
