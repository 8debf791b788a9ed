"""Every snapshot in probes/ answers every area, and the recorded VM says what the VM said."""

from pathlib import Path

import pytest

from gpubench.probe import AREAS, Source, Status, probe

PROBES = Path(__file__).resolve().parents[2] / "probes"
SNAPSHOTS = sorted(p for p in PROBES.iterdir() if p.is_dir())


def test_the_four_kinds_of_machine_are_there():
    assert {"cpu-vm", "laptop-igpu", "nvidia-multigpu", "cxl-host"} <= {p.name for p in SNAPSHOTS}


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_every_area_answers_and_explains(snapshot):
    assert (snapshot / "README.md").is_file()
    profile = probe(Source(snapshot))
    assert {c.area for c in profile.capabilities} == set(AREAS)
    for cap in profile.capabilities:
        assert cap.evidence, f"{snapshot.name}/{cap.name} has no evidence"
        if cap.status is not Status.YES:
            assert cap.why, f"{snapshot.name}/{cap.name} says {cap.status.value} without a reason"


def test_recorded_vm(tmp_path):
    caps = {c.name: c for c in probe(Source(PROBES / "cpu-vm")).capabilities}
    expected = {
        "kernel": Status.YES, "io_uring": Status.YES, "io_uring binding": Status.YES,
        "nvidia driver": Status.NO, "gpus": Status.NO, "accelerators": Status.NO, "hmm": Status.NO,
        "gpu p2p": Status.NO, "gpudirect storage": Status.NO,
        "numa nodes": Status.YES, "memory tiers": Status.NO, "cxl memory": Status.NO, "iommu": Status.NO,
    }
    assert {name: caps[name].status for name in expected} == expected
    assert caps["kernel"].details["config_origin"] == "/proc/config.gz"
    assert caps["io_uring"].details["disabled"] == 0
    assert caps["io_uring binding"].details["last_op"] == 62
    assert caps["kernel"].details["cmdline"].endswith("-- (init arguments not shown)")
    assert len(caps["numa nodes"].details["nodes"]) == 1


def test_an_empty_folder_the_probe_listed_is_recorded(tmp_path):
    """A machine whose /sys/bus/pci/devices is empty (no PCI bus: a microVM) answers "no GPU"; its
    recording must keep the empty folder, or the replay would answer "not recorded"."""
    from gpubench.probe.snapshot import open_root, write_snapshot

    (tmp_path / "machine/sys/bus/pci/devices").mkdir(parents=True)
    (tmp_path / "machine/proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "machine/proc/sys/kernel/osrelease").write_text("6.12.0\n")
    src = Source(tmp_path / "machine", record=True)
    live = probe(src, ["gpu"])
    assert src.recording.present.get("/sys/bus/pci/devices") is True
    write_snapshot(src.recording, tmp_path / "box.tar.gz", {})
    with open_root(tmp_path / "box.tar.gz") as replay:
        again = probe(replay, ["gpu"])
    assert [(c.name, c.status) for c in again.capabilities] == [(c.name, c.status) for c in live.capabilities]
    assert live.get("gpus").status is Status.NO


def test_a_folder_marked_empty_lists_as_empty_not_as_absent(tmp_path):
    """A snapshot kept in version control marks the empty folders it holds (git keeps none): the
    HMAT initiator link of a CPU-less node, say. Listing such a folder shows nothing, and the
    folder is there."""
    from gpubench.probe.source import EMPTY_MARKER

    folder = tmp_path / "sys/kernel/iommu_groups"
    folder.mkdir(parents=True)
    (folder / EMPTY_MARKER).touch()
    src = Source(tmp_path)
    assert src.listdir("/sys/kernel/iommu_groups") == []
    assert src.exists("/sys/kernel/iommu_groups")
    initiators = tmp_path / "sys/devices/system/node/node1/access0/initiators"
    (initiators / "node0").mkdir(parents=True)
    (initiators / "node0" / EMPTY_MARKER).touch()
    assert src.listdir("/sys/devices/system/node/node1/access0/initiators") == ["node0"]


@pytest.mark.parametrize("snapshot", [PROBES / "nvidia-multigpu", PROBES / "cxl-host"], ids=lambda p: p.name)
def test_one_probe_reads_each_file_and_lists_each_folder_once(snapshot, monkeypatch):
    """Several areas read the same files (PCI classes, the memory tiers, the release): each is read
    once, so that all checks judge the same contents."""
    from collections import Counter

    from gpubench.probe import source

    reads, listings = Counter(), Counter()
    read, listdir = source.read_regular_file, source.os.listdir
    monkeypatch.setattr(source, "read_regular_file", lambda path, limit: reads.update([(str(path), limit)]) or read(path, limit))
    monkeypatch.setattr(source.os, "listdir", lambda path: listings.update([str(path)]) or listdir(path))
    probe(Source(snapshot))
    assert reads and listings
    assert [key for key, n in reads.items() if n > 1] == [] and [key for key, n in listings.items() if n > 1] == []
