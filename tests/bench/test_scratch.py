"""Scratch space: locked while its owner lives, removed by the next run once the owner is gone,
and nothing else touched."""

from __future__ import annotations

import os
import time

from gpubench.bench.core import scratch
from gpubench.bench.engines import iofile


def test_a_scratch_directory_is_locked_under_its_final_name_and_gone_on_exit(tmp_path):
    with scratch.ScratchDir(tmp_path) as path:
        assert path.parent == tmp_path and path.name.startswith(scratch.DIR_PREFIX)
        assert os.listdir(tmp_path) == [path.name]  # no pending name left behind
        (path / "data").write_bytes(b"x")
        assert scratch.sweep(tmp_path) == []  # held: not stale
    assert os.listdir(tmp_path) == []


def test_a_scratch_file_is_held_until_removed_then_its_lock_is_given_up(tmp_path):
    path = iofile.create_scratch(tmp_path, 8192, 4096, "data")
    assert scratch.sweep(tmp_path) == [] and path.exists()
    fd = iofile._LOCKS[str(path)]
    iofile.remove_scratch(path)
    assert str(path) not in iofile._LOCKS and not path.exists()
    try:
        os.fstat(fd)
        assert False, "the lock's descriptor is still open"
    except OSError:
        pass


def test_sweep_removes_only_unlocked_entries_named_as_gpubench_names_them(tmp_path):
    held = scratch.ScratchDir(tmp_path)
    left = scratch.ScratchDir(tmp_path)
    (left.path / "f").write_bytes(bytes(1000))
    os.close(left.fd)  # as if its owner died: the kernel drops the lock
    left.fd = -1
    lookalikes = [tmp_path / "gpubench-scratch-mine", tmp_path / "gpubench-io-mine.dat", tmp_path / "gpubench-io-1-zz.dat"]
    lookalikes[0].mkdir()
    for p in lookalikes[1:]:
        p.write_bytes(b"keep")
    fresh_pending = tmp_path / f"{scratch.PENDING_PREFIX}abcd1234"
    old_pending = tmp_path / f"{scratch.PENDING_PREFIX}gpubench-io-7-0123abcd.dat"
    fresh_pending.mkdir()
    old_pending.write_bytes(b"half made")
    hour_ago = time.time() - 3600
    os.utime(old_pending, (hour_ago, hour_ago))
    try:
        removed = scratch.sweep(tmp_path)
        assert sorted((r.path, r.nbytes) for r in removed) == sorted([(left.path, 1000), (old_pending, 9)])
        assert held.path.is_dir() and fresh_pending.is_dir() and all(p.exists() for p in lookalikes)
    finally:
        held.close()
