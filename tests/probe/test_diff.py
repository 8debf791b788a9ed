"""The capability diff between two probes: the cpu-vm snapshot against the same machine with its
io_uring switched off by the sysctl, and areas probed on one side only."""

from __future__ import annotations

import shutil
from pathlib import Path

from gpubench.probe import Source, Status, probe
from gpubench.probe.diff import diff_capabilities

CPU_VM = Path(__file__).resolve().parents[2] / "probes" / "cpu-vm"


def test_a_switched_off_io_uring_is_the_one_change(tmp_path):
    root = tmp_path / "vm"
    shutil.copytree(CPU_VM, root, symlinks=True)
    sysctl = root / "proc/sys/kernel/io_uring_disabled"
    sysctl.parent.mkdir(parents=True, exist_ok=True)
    sysctl.write_text("2\n")
    before, after = probe(Source(CPU_VM), ["kernel", "iouring"]), probe(Source(root), ["kernel", "iouring"])
    changes = diff_capabilities(before, after)
    assert [(c.area, c.name) for c in changes] == [("iouring", "io_uring")]
    assert changes[0].lost and not changes[0].gained
    assert changes[0].status_after is Status.NO
    assert len(diff_capabilities(before, after, all_rows=True)) == len(after.capabilities)


def test_an_area_probed_on_one_side_only_shows_as_missing_there():
    before, after = probe(Source(CPU_VM), ["kernel"]), probe(Source(CPU_VM), ["kernel", "iommu"])
    changes = diff_capabilities(before, after)
    assert changes and all(c.before is None and c.status_after is not None for c in changes)
    assert {c.area for c in changes} == {"iommu"}
    assert not diff_capabilities(after, after)
