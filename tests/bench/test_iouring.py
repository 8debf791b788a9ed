"""iouring and psync: real runs at tiny sizes, verify, the fault cases, and the binding traps the
io_uring loop relies on."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gpubench.bench.core.interface import BenchFailure, Context, Waived
from gpubench.bench.core.params import parse_bool, parse_size
from gpubench.bench.core.settings import RunSettings, Setting
from gpubench import files
from gpubench.bench.engines import iofile, iojob
from gpubench.bench.io import plan, pool
from gpubench.bench.io.iouring import IoUring, Psync
from gpubench.errors import UserError
from gpubench.probe.model import Capability, Profile, Status

BINDING_OK = {"loaded": True, "ring": True, "version": "2024.5.3", "last_op": 62, "opcodes": ["READ_FIXED"],
              "features": 0x3FFFF}


def profile(disabled: int | None = 0, binding: dict | None = None, config: str | None = "y") -> Profile:
    binding = BINDING_OK if binding is None else binding
    caps = (
        Capability("iouring", "io_uring", Status.NO if disabled == 2 else Status.YES,
                   details={"config": config, "disabled": disabled}),
        Capability("iouring", "io_uring binding", Status.YES if binding.get("ring") else Status.NO,
                   why=binding.get("error", ""), details=binding),
    )
    return Profile("/", caps)


def _binding_usable() -> bool:
    from gpubench.probe.iouring import binding_selftest

    return bool(binding_selftest().get("ring"))


needs_ring = pytest.mark.skipif(not _binding_usable(), reason="no io_uring ring can be created here")


@pytest.fixture
def disk_dir(tmp_path):
    """A directory on a disk-backed filesystem (O_DIRECT works there)."""
    mount = iofile.mount_of(tmp_path)
    if mount is None or mount.fstype not in iofile.MEMORY_FILESYSTEMS:
        yield tmp_path
        return
    for base in ("/var/tmp", str(Path.home())):
        m = iofile.mount_of(Path(base))
        if m is not None and m.fstype not in iofile.MEMORY_FILESYSTEMS and os.access(base, os.W_OK):
            d = Path(tempfile.mkdtemp(prefix="gpubench-test-", dir=base))
            yield d
            shutil.rmtree(d, ignore_errors=True)
            return
    pytest.skip("no disk-backed directory to test O_DIRECT in")


def ctx_for(directory: Path) -> Context:
    return Context(scratch=directory, profile=profile())


def plan_of(bench, size: str, options: dict):
    """bench.cases with the options that are run-wide settings (target, verify, ...) given as the
    run's settings, as `gpubench run` gives its flags."""
    names = {s.value for s in Setting}
    settings = {k: Path(v) if k == "target" else parse_bool("test", k, str(v)) for k, v in options.items() if k in names}
    rest = {k: str(v) for k, v in options.items() if k not in names}
    return bench.cases(profile(), size, rest, RunSettings(**settings))


def one_case(bench, **options):
    cases = plan_of(bench, "quick", {"size": "1M", "runtime": "0.05", **options})
    assert len(cases) == 1, [c.name for c in cases]
    return cases[0]


def scratch_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(iofile.SCRATCH_PREFIX + "*"))


ENGINES = [pytest.param(IoUring, marks=needs_ring, id="iouring"), pytest.param(Psync, id="psync")]
PATTERNS = ["read", "write", "randread", "randwrite", "randrw"]


@pytest.mark.parametrize("bench_cls", ENGINES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "direct"])
def test_every_pattern_moves_the_bytes_it_reports(bench_cls, pattern, direct, disk_dir):
    bench = bench_cls()
    case = one_case(bench, pattern=pattern, bs="4k", qd=4, jobs=1, direct=int(direct), io_size="256k", mix=50)
    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        assert len(scratch_files(disk_dir)) == 1
        sample = measure()
    m = sample.metrics
    assert m["bytes"] == 4096 * m["ios"] == 256 * 1024
    assert m["reads"] + m["writes"] == m["ios"]
    if pattern in ("read", "randread"):
        assert m["writes"] == 0
    elif pattern in ("write", "randwrite"):
        assert m["reads"] == 0
    else:
        assert m["reads"] > 0 and m["writes"] > 0
    assert sample.value > 0 and m["iops"] > 0
    assert 0 < m["lat_p50_us"] <= m["lat_p99_us"] <= m["lat_max_us"]
    assert sample.extra["engine"] == bench.key
    assert scratch_files(disk_dir) == []


@pytest.mark.parametrize("bench_cls", ENGINES)
@pytest.mark.parametrize("pattern, verify", [("read", 0), ("randrw", 0), ("randread", 1)],
                         ids=["one-direction", "mixed", "verified"])
@pytest.mark.parametrize("qd", [1, 3])
@pytest.mark.parametrize("io_size", [10 * 4096, 10 * 4096 + 100], ids=["whole-blocks", "part-block"])
def test_io_size_moves_the_same_bytes_in_every_engine_and_loop(bench_cls, pattern, verify, qd, io_size, disk_dir):
    """io_size bounds a job's repetition to the whole blocks it holds (rounded down), whichever
    engine, loop or thread count moves them."""
    bench = bench_cls()
    case = one_case(bench, pattern=pattern, bs="4k", qd=qd, jobs=1, direct=0, io_size=io_size, verify=verify)
    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        sample = measure()
    assert sample.metrics["ios"] == 10
    assert sample.metrics["bytes"] == 10 * 4096


@pytest.mark.parametrize("pattern", ["read", "write"])
def test_sequential_jobs_each_cover_a_region_of_their_own(pattern):
    """N sequential jobs reading the same blocks would read N - 1 of them from the page cache."""
    p = plan.plan_cases("iouring", "quick", {"pattern": pattern, "bs": "4k", "qd": "8", "jobs": "4", "direct": "0",
                                                 "size": "1M"})[0]
    spec = iojob.JobSpec(path="unused", pattern=pattern, block_size=4096, queue_depth=8, direct=False, span=1 << 20)
    specs = pool._job_specs(p, spec)
    read = sorted(off for s in specs for off in itertools.islice(iojob.offsets(s), s.blocks))
    assert read == list(range(0, 1 << 20, 4096))
    assert len({s.seed for s in specs}) == 4


def test_sequential_psync_threads_each_read_a_region_of_their_own(disk_dir, monkeypatch):
    bench = Psync()
    case = one_case(bench, pattern="read", bs="4k", qd=4, direct=1, size="1M", io_size="1M")
    read_at = []
    preadv = os.preadv

    def spy(fd, buffers, offset, *flags):
        read_at.append(offset)
        return preadv(fd, buffers, offset, *flags)

    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        monkeypatch.setattr(os, "preadv", spy)
        measure()
    assert sorted(read_at) == list(range(0, 1 << 20, 4096))


@pytest.mark.parametrize("bench_cls, options", [
    (Psync, {"pattern": "read", "qd": "4", "size": "12k"}),  # 4 threads, 3 blocks
    (IoUring, {"pattern": "write", "jobs": "4", "size": "12k"}),
    (IoUring, {"pattern": "randwrite", "jobs": "4", "size": "12k", "verify": "1"}),  # verified writers too
])
def test_a_file_with_fewer_blocks_than_regions_is_a_user_error(bench_cls, options):
    with pytest.raises(UserError, match="size 12288 bytes is too small"):
        plan_of(bench_cls(), "quick", {"bs": "4k", "direct": "0", **options})


@pytest.mark.parametrize("options", [{"pattern": "randread", "size": "16k"}, {"pattern": "read", "jobs": "2", "size": "48k"}])
def test_verify_with_fewer_blocks_than_the_queue_depth_is_a_user_error(options):
    """Verify keeps one I/O per block in flight: with fewer blocks than slots the ring never filled
    (the loop looked for a free block forever)."""
    with pytest.raises(UserError, match=r"verify keeps one I/O per block in flight: .* fewer than qd=8"):
        plan_of(IoUring(), "quick", {"bs": "4k", "qd": "8", "direct": "0", "verify": "1", **options})


@needs_ring
def test_runtime_bounded_jobs_in_processes_merge(disk_dir):
    bench = IoUring()
    case = one_case(bench, pattern="randread", bs="4k", qd=8, jobs=2, direct=0, runtime=0.1)
    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        sample = measure()
    assert sample.metrics["bytes"] == 4096 * sample.metrics["ios"] > 0
    assert sample.extra["buffers"] == "registered" or "unregistered" in sample.extra["buffers"]
    assert scratch_files(disk_dir) == []


# --- verify ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bench_cls", ENGINES)
@pytest.mark.parametrize("pattern", ["read", "randrw", "write"])
def test_verify_passes_on_a_clean_file(bench_cls, pattern, disk_dir):
    bench = bench_cls()
    case = one_case(bench, pattern=pattern, bs="4k", qd=4, jobs=2 if pattern == "randrw" else 1, direct=0,
                    verify=1, io_size="512k")
    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        sample = measure()
    assert sample.metrics["bytes"] > 0
    assert scratch_files(disk_dir) == []


def _corrupt(path: Path, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\xff" * 16, offset + 100)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_verify_catches_a_block_corrupted_before_the_reads(bench_cls, disk_dir):
    bench = bench_cls()
    case = one_case(bench, pattern="read", bs="4k", qd=4, direct=0, verify=1, io_size="1M")
    with pytest.raises(BenchFailure, match="verify failed: block at offset 8192: CRC-32"):
        with bench.prepare(case, ctx_for(disk_dir)) as measure:
            _corrupt(measure.path, 8192)
            measure()
    assert scratch_files(disk_dir) == []


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_verify_catches_a_block_corrupted_between_write_and_read_back(bench_cls, disk_dir):
    bench = bench_cls()
    case = one_case(bench, pattern="randwrite", bs="4k", qd=4, direct=0, verify=1, io_size="256k")
    with pytest.raises(BenchFailure, match="verify failed: block at offset 20480"):
        with bench.prepare(case, ctx_for(disk_dir)) as measure:
            measure.before_readback = lambda path: _corrupt(path, 20480)
            measure()
    assert scratch_files(disk_dir) == []


@pytest.mark.parametrize("bench_cls", ENGINES)
@pytest.mark.parametrize("pattern", ["read", "randrw"])
def test_vs_fio_under_verify_says_fio_does_not_verify_and_keeps_the_pattern(bench_cls, pattern, disk_dir, monkeypatch):
    """fio cannot check gpubench's pattern, and a job of fio's that writes overwrites it (fio is
    simulated here, writing its own data, so that it need not be installed)."""
    from gpubench.bench.engines import fio

    def fio_writing_its_own_data(params, filename, span, seconds):
        if params.writes:
            fd = os.open(filename, os.O_WRONLY)
            os.pwrite(fd, b"\x5a" * span, 0)
            os.close(fd)
        return {"psync": {"bw_mbps": 1.0, "verify": False}}

    monkeypatch.setattr(fio, "cross_check", fio_writing_its_own_data)
    bench = bench_cls()
    case = one_case(bench, pattern=pattern, bs="4k", qd=2, direct=0, verify=1, vs_fio=1, io_size="256k")
    messages = []
    ctx = Context(scratch=disk_dir, profile=profile(), progress=messages.append)
    with bench.prepare(case, ctx) as measure:
        samples = [measure() for _ in range(3)]
    assert all(s.extra["fio"] == {"psync": {"bw_mbps": 1.0, "verify": False}} for s in samples)
    assert [m for m in messages if m.startswith("running")] == [
        "running the same job through fio (io_uring and psync), without verification (fio cannot check gpubench's pattern)"]


def test_verify_pattern_names_offset_and_crc():
    block = bytearray(iofile.pattern_block(4096, 512, generation=3))
    assert iofile.block_problem(block, 4096) is None
    assert "header says offset 4096" in iofile.block_problem(block, 8192)
    block[300] ^= 1
    assert "CRC-32" in iofile.block_problem(block, 4096)
    assert "no verify header" in iofile.block_problem(bytes(512), 0)


# --- fault cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("bench_cls", ENGINES)
def test_o_direct_on_tmpfs_is_waived_naming_tmpfs(bench_cls):
    shm = Path("/dev/shm")
    mount = iofile.mount_of(shm) if shm.is_dir() else None
    if mount is None or mount.fstype != "tmpfs" or not os.access(shm, os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm")
    directory = Path(tempfile.mkdtemp(prefix="gpubench-test-", dir=shm))
    try:
        bench = bench_cls()
        case = one_case(bench, pattern="randread", bs="4k", qd=1, direct=1)
        with pytest.raises(Waived, match=r"O_DIRECT on .*\(tmpfs\).*disk-backed filesystem"):
            with bench.prepare(case, ctx_for(directory)):
                pass
        assert scratch_files(directory) == []
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tmpfs_dir():
    """A directory on a tmpfs (/dev/shm), removed afterwards."""
    shm = Path("/dev/shm")
    mount = iofile.mount_of(shm) if shm.is_dir() else None
    if mount is None or mount.fstype != "tmpfs" or not os.access(shm, os.W_OK):
        pytest.skip("no writable tmpfs at /dev/shm")
    directory = Path(tempfile.mkdtemp(prefix="gpubench-test-", dir=shm))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_cold_reads_on_tmpfs_are_waived_rather_than_measured_warm(bench_cls, tmpfs_dir):
    bench = bench_cls()
    case = one_case(bench, pattern="randread", bs="4k", qd=2, direct=0, drop_cache=1)
    assert case.name.endswith("-cold")
    with pytest.raises(Waived, match=r"the page cache could not be dropped for \S+ on tmpfs, which keeps files in "
                                     r"memory \(100% still resident\): cold reads would be warm"):
        with bench.prepare(case, ctx_for(tmpfs_dir)) as measure:
            measure()
    assert scratch_files(tmpfs_dir) == []


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_cold_reads_are_waived_when_the_cache_is_only_partly_dropped(bench_cls, disk_dir, monkeypatch):
    bench = bench_cls()
    case = one_case(bench, pattern="randrw", bs="4k", qd=2, direct=0, drop_cache=1, io_size="64k")
    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        assert measure().metrics["bytes"] == 64 * 1024  # dropped: the cold case runs
        monkeypatch.setattr(iofile, "resident_fraction", lambda path, span: 0.3)
        with pytest.raises(Waived, match=r"could not be dropped for \S+ \(30% still resident\): cold reads would be warm"):
            measure()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that lets this container mount)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "gpubench-test", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_disk_full_fails_naming_path_and_free_space(bench_cls, tiny_tmpfs):
    bench = bench_cls()
    case = one_case(bench, pattern="write", bs="4k", qd=2, direct=0, size="4M")
    with pytest.raises(BenchFailure, match=rf"no space left on {tiny_tmpfs} .*\(\d+ bytes free\)"):
        with bench.prepare(case, ctx_for(tiny_tmpfs)):
            pass
    assert scratch_files(tiny_tmpfs) == []


@pytest.mark.parametrize("free, said", [(1 << 20, "1048576 bytes free"), (None, "free space unknown")])
def test_an_io_refused_for_space_names_offset_path_and_the_free_space(free, said, tmp_path, monkeypatch):
    """A job's write that ENOSPC refused says the free space as every other disk-full message
    does (iofile.free_space), or that it is unknown."""

    def measured(path):
        if free is None:
            raise OSError(5, "Input/output error")
        return free

    monkeypatch.setattr(iofile, "free_bytes", measured)
    path = tmp_path / "f"
    failure = iojob.io_error("write", 8192, 4096, -28, str(path))
    assert str(failure) == f"write at offset 8192 of {path}: no space left on the device ({said})"
    assert failure.errno == 28


def test_disk_full_while_filling_names_the_path(tmp_path):
    """ENOSPC from a write after preallocation (a filesystem without fallocate), simulated at the
    write call: the partial file is removed and the error names the directory."""

    def full(fd, data, offset):
        if offset >= 8192:
            raise OSError(28, "No space left on device")
        return os.pwrite(fd, data, offset)

    with pytest.raises(iofile.DiskFull, match=f"no space left on {tmp_path}"):
        iofile.create_scratch(tmp_path, 65536, 4096, "verify", write=full)
    assert scratch_files(tmp_path) == []


def test_scratch_file_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(iofile, "free_bytes", lambda path: 1 << 20)
    written = []

    def spy(fd, data, offset):
        written.append(offset)
        return os.pwrite(fd, data, offset)

    with pytest.raises(iofile.DiskFull, match=rf"no space left on {tmp_path} for a 4194304-byte scratch file "
                                              rf"\(1048576 bytes free\)"):
        iofile.create_scratch(tmp_path, 4 << 20, 4096, "data", write=spy)
    assert written == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_oversized_case_fails_at_once_without_a_scratch_file(bench_cls, tmp_path, monkeypatch):
    monkeypatch.setattr(iofile, "free_bytes", lambda path: 1 << 20)
    created = []
    monkeypatch.setattr(iofile.os, "posix_fallocate", lambda fd, offset, size: created.append(size))
    case = one_case(bench_cls(), pattern="write", bs="4k", qd=1, direct=0, size="4M")
    with pytest.raises(BenchFailure, match=rf"no space left on {tmp_path} .*\(1048576 bytes free\)"):
        with bench_cls().prepare(case, ctx_for(tmp_path)):
            pass
    assert created == []
    assert list(tmp_path.iterdir()) == []


def test_block_size_not_a_multiple_of_the_dio_alignment_is_a_user_error(disk_dir):
    align = iofile.dio_alignment(disk_dir).offset
    with pytest.raises(UserError, match=f"not a multiple of the O_DIRECT alignment {align} bytes"):
        plan_of(Psync(), "quick", {"bs": str(align + align // 2), "direct": "1", "target": str(disk_dir)})
    with pytest.raises(UserError, match="not a multiple of the O_DIRECT alignment 512"):
        Psync().cases(profile(), "quick", {"bs": "1000", "direct": "1"})


def test_a_directorys_dio_alignment_is_that_of_a_file_made_there(disk_dir):
    """statx reports O_DIRECT alignment for regular files only: asking the directory gave the
    block size (4096 on ext4), refusing 512-byte direct I/O the filesystem takes."""
    made = disk_dir / "made-here"
    made.write_bytes(b"")
    here, there = iofile.dio_alignment(disk_dir), iofile.dio_alignment(made)
    assert (here.memory, here.offset, here.source) == (there.memory, there.offset, there.source)
    assert list(disk_dir.iterdir()) == [made]  # the probe file is gone


def test_io_buffers_beyond_the_memory_available_are_a_user_error_not_an_oom_kill():
    with pytest.raises(UserError, match=r"iouring: jobs=1024 x qd=4096 x bs=64m needs 262,144.0 GiB of I/O buffers, more than half the .* GiB of memory available"):
        IoUring().cases(profile(), "quick", {"bs": "64m", "qd": "4096", "jobs": "1024", "size": "64g"})


def test_queue_depth_beyond_the_ring_limit_is_a_user_error():
    with pytest.raises(UserError, match="qd=8192 is beyond the ring limit of 4096"):
        IoUring().cases(profile(), "quick", {"qd": "8192"})


@pytest.mark.parametrize("options, message", [
    ({"pattern": "zigzag"}, "pattern: unknown 'zigzag'; choose from read, write"),
    ({"jobs": "0"}, "jobs='0' must be at least 1"),
    ({"qd": "0"}, "qd='0' must be at least 1"),
    ({"bs": "4q"}, "bs='4q' is not a size"),
    ({"mix": "100"}, "mix='100' must be at most 99"),
    ({"runtime": "-1"}, "more than 0"),
    ({"direct": "maybe"}, r"direct='maybe': say true or false \(or direct, buffered\)"),
    ({"colour": "blue"}, "unknown parameter 'colour'"),
])
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        IoUring().cases(profile(), "quick", options)


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_an_existing_file_is_read_and_its_write_cases_waived(bench_cls, tmp_path):
    existing = tmp_path / "mine.dat"
    existing.write_bytes(b"x" * (1 << 20))
    bench = bench_cls()
    cases = plan_of(bench, "default", {"target": str(existing), "direct": "0", "runtime": "0.05"})
    writers = [c for c in cases if c.params["pattern"] in ("write", "randwrite", "randrw")]
    readers = [c for c in cases if c not in writers]
    assert writers and readers and all(c.params["target"] == str(existing) for c in cases)
    for case in readers:
        with bench.prepare(case, ctx_for(tmp_path)) as measure:
            assert measure().metrics["reads"] > 0, case.name
    for case in writers:
        with pytest.raises(Waived, match=rf"{existing} is an existing file: {case.params['pattern']} would overwrite it, "
                                         r"and gpubench writes only to files it creates; give a directory"):
            with bench.prepare(case, ctx_for(tmp_path)):
                pass
    assert existing.read_bytes() == b"x" * (1 << 20)


@pytest.fixture
def fake_block_device(disk_dir, monkeypatch):
    """A 1 MiB regular file on a disk that the I/O benchmarks take for a block device; its mount
    reads as /dev's devtmpfs, as that of a device node does (no root needed)."""
    device = disk_dir / "fake-device"
    device.write_bytes(bytes(range(256)) * 4096)
    inspect = plan.Target.of

    def as_block(target):
        info = inspect(target)
        return replace(info, kind="block") if info.path == device else info

    monkeypatch.setattr(plan.Target, "of", as_block)
    monkeypatch.setattr(iofile, "mount_of", lambda path, mountinfo=None: files.Mount("/dev", "devtmpfs", "devtmpfs"))
    return device


def check_block_device_run(bench, device: Path) -> None:
    """The default plan on a block device: read cases run (O_DIRECT too), write cases are WAIVED
    naming the CLI flag, and the device keeps its data."""
    before = device.read_bytes()[: 1 << 20]
    cases = plan_of(bench, "default", {"target": str(device), "size": "1M", "runtime": "0.05"})
    writers = [c for c in cases if c.params["pattern"] in ("write", "randwrite", "randrw")]
    readers = [c for c in cases if c not in writers]
    assert writers and any(c.params["direct"] for c in readers)
    for case in readers:
        with bench.prepare(case, ctx_for(device.parent)) as measure:
            sample = measure()
        assert sample.metrics["reads"] > 0 and sample.metrics["writes"] == 0, case.name
        assert sample.extra["filesystem"] == "block device"
    for case in writers:
        with pytest.raises(Waived, match=rf"{device} is a block device: {case.params['pattern']} would overwrite its "
                                         r"data; run with --allow-device-write if that is intended"):
            with bench.prepare(case, ctx_for(device.parent)):
                pass
    assert device.read_bytes()[: 1 << 20] == before


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_a_block_device_is_read_and_its_write_cases_waived_naming_the_flag(bench_cls, fake_block_device):
    check_block_device_run(bench_cls(), fake_block_device)


@pytest.fixture
def loop_device(disk_dir):
    """A real 2 MiB loop device (needs root and a kernel that lets this container attach one)."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("attaching a loop device needs root and losetup")
    backing = disk_dir / "loop-backing.img"
    backing.write_bytes(bytes(range(256)) * 8192)
    proc = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot attach a loop device here: {proc.stderr.strip()}")
    device = Path(proc.stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=False)


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_a_loop_device_is_read_and_its_write_cases_waived_naming_the_flag(bench_cls, loop_device):
    check_block_device_run(bench_cls(), loop_device)


@pytest.mark.parametrize("bench_cls", ENGINES)
def test_verify_on_a_block_device_writes_its_pattern_first_when_allowed(bench_cls, fake_block_device):
    bench = bench_cls()
    options = {"pattern": "randread", "bs": "4k", "qd": "2", "direct": "0", "verify": "1"}
    case = plan_of(bench, "quick", {**options, "target": str(fake_block_device), "size": "256k",
                                            "io_size": "64k", "allow_device_write": "1"})[0]
    with bench.prepare(case, ctx_for(fake_block_device.parent)) as measure:
        assert measure().metrics["reads"] == 16


def test_sizes_and_case_names():
    assert [parse_size("iouring", "bs", s, default_unit="") for s in ("4096", "4k", "128KiB", "1M", "2g")] == [
        4096, 4096, 131072, 1 << 20, 2 << 30]
    cases = IoUring().cases(profile(), "default", {})
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    assert "randread-4k-qd32-j1-direct" in names and "read-128k-qd8-j1-direct" in names
    assert all(c.unit == "MB/s" for c in cases)
    assert [c.name for c in IoUring().cases(profile(), "quick", {"pattern": "randrw", "mix": "60", "qd": "16"})][0] \
        .startswith("randrw-mix60-4k-qd16")


# --- requires --------------------------------------------------------------------------------

def test_io_uring_disabled_by_sysctl_is_waived_naming_it():
    reason = IoUring().requires(profile(disabled=2))
    assert "kernel.io_uring_disabled = 2" in reason
    assert Psync().requires(profile(disabled=2)) is None


def test_binding_that_died_in_the_child_is_waived_with_the_reason():
    died = {"loaded": False, "signal": "SIGILL", "error": "the child process died with SIGILL while loading liburing"}
    assert "SIGILL" in IoUring().requires(profile(binding=died))
    no_ring = {"loaded": True, "ring": False, "errno": 1}
    assert "Operation not permitted" in IoUring().requires(profile(disabled=1, binding=no_ring))
    assert "CONFIG_IO_URING" in IoUring().requires(profile(config="n"))
    assert IoUring().requires(profile()) is None
    assert "not checked" in IoUring().requires(Profile("/", ()))


# --- the scratch file goes away --------------------------------------------------------------

@pytest.mark.parametrize("bench_cls, engine_path", [
    pytest.param(IoUring, "gpubench.bench.engines.uring.UringJob.run", marks=needs_ring, id="iouring"),
    pytest.param(Psync, "gpubench.bench.engines.psync.PsyncJob.run", id="psync"),
])
def test_scratch_file_removed_after_ctrl_c_inside_a_repetition(bench_cls, engine_path, disk_dir, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    bench = bench_cls()
    case = one_case(bench, pattern="randread", bs="4k", qd=2, direct=0)
    with pytest.raises(KeyboardInterrupt):
        with bench.prepare(case, ctx_for(disk_dir)) as measure:
            monkeypatch.setattr(engine_path, interrupted)
            measure()
    assert scratch_files(disk_dir) == []


# --- the binding: traps the loop relies on ---------------------------------------------------

@needs_ring
def test_binding_traps_the_loop_relies_on():
    import liburing

    from gpubench.bench.engines import uring

    sqe = liburing.io_uring_sqe()
    with pytest.raises(ValueError):
        sqe.user_data = 0  # user_data 0 cannot be set; indexed cqe access also refuses it
    sqe.user_data = 7
    sqe.flags = uring.SQE_FIXED_FILE
    with pytest.raises(TypeError):  # bytes or bytearray only: UringJob passes the array behind each view
        liburing.io_uring_prep_read_fixed(sqe, 0, iofile.aligned_buffer(4096), 4096, 8192, 0)
    buf = iofile.aligned_buffer(4096).obj
    liburing.io_uring_prep_read_fixed(sqe, 0, buf, 4096, 8192, 0)
    assert (sqe.user_data, sqe.flags) == (7, uring.SQE_FIXED_FILE)  # prep keeps what the slot set once
    assert iofile.buffer_address(buf) % 4096 == 0
    assert not hasattr(liburing, "IORING_SETUP_SQPOLL") or liburing.IORING_SETUP_SQPOLL == uring.SETUP_SQPOLL


@pytest.mark.parametrize("size", [64, 512, 2048, 4096, 6144, 128 * 1024])
def test_io_buffers_start_on_a_page_boundary_whatever_their_size(size):
    """O_DIRECT needs buffers aligned to the device's logical block size, whatever the I/O size."""
    for _ in range(20):  # the allocator hands out different addresses; each must end up aligned
        buf = iofile.aligned_buffer(size)
        assert len(buf) == size
        assert iofile.buffer_address(buf) % 4096 == 0
        buf[:] = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert iofile.buffer_address(buf) % 4096 == 0


@needs_ring
def test_completion_ring_wraps_many_times_without_losing_a_completion(disk_dir):
    """qd 3: an SQ of 4 and a CQ of 8 entries, wrapped hundreds of times; verify checks that every
    completion was matched to the slot (offset) it belongs to."""
    bench = IoUring()
    case = one_case(bench, pattern="randread", bs="512", qd=3, direct=0, verify=1, size="64k", io_size="2M")
    with bench.prepare(case, ctx_for(disk_dir)) as measure:
        sample = measure()
    assert sample.metrics["ios"] == 2 * 1024 * 1024 // 512
    assert sample.extra["ring"]["entries"] == 4



@needs_ring
@pytest.mark.parametrize("left", [3, 6], ids=["fewer-than-qd", "more-than-qd"])
def test_a_repetition_starting_on_a_few_leftover_offsets_draws_a_block_only_when_it_runs_out(left, tmp_path):
    """A repetition continues the offsets the last one drew but left unused. With fewer left than
    the queue depth the first fill must still find a queue's worth (it raised IndexError); after a
    refill the loop must count the new block's length, not the leftover's (it drew a whole new
    block every `left` I/Os)."""
    from gpubench.bench.engines.uring import UringJob

    block = 65536  # offsets UringJob draws at a time
    path = tmp_path / "f"
    path.write_bytes(bytes(1 << 20))
    spec = iojob.JobSpec(path=str(path), pattern="randread", block_size=4096, queue_depth=4, direct=False, span=1 << 20)
    job = UringJob(spec)
    draws = 0
    draw = job.next_offset

    def counted() -> int:
        nonlocal draws
        draws += 1
        return draw()

    job.next_offset = counted
    try:
        first = job.run(60.0, io_limit=(block - left) * 4096)
        second = job.run(60.0, io_limit=200 * 4096)
    finally:
        job.close()
    assert (first.ios, second.ios) == (block - left, 200)
    assert not first.problem and not second.problem
    assert draws == 2 * block


_NO_MEMLOCK = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
from gpubench.bench.core.interface import Context
from gpubench.bench.io.iouring import IoUring
from gpubench.probe.model import Profile
bench = IoUring()
case = bench.cases(Profile("/", ()), "quick", {"pattern": "read", "bs": "128k", "qd": "8", "direct": "0",
                   "size": "2M", "io_size": "4M"})[0]
with bench.prepare(case, Context(scratch=Path(sys.argv[1]), profile=Profile("/", ()))) as measure:
    s = measure()
print(json.dumps({"bytes": s.metrics["bytes"], "fallback": s.extra.get("fallback", "")}))
"""


@needs_ring
def test_without_memlock_privilege_buffers_fall_back_and_say_so(tmp_path):
    """As a user without CAP_IPC_LOCK and a 64 KiB RLIMIT_MEMLOCK: 1 MiB of buffers cannot be
    registered; the run still gives a result and records the fallback."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        probe = subprocess.run([sys.executable, "-c", _NO_MEMLOCK, str(tmp_path)], capture_output=True, text=True)
    else:
        probe = subprocess.run([setpriv, "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c",
                                _NO_MEMLOCK, str(tmp_path)], capture_output=True, text=True)
    if probe.returncode != 0 and "Operation not permitted" in probe.stderr and "setpriv" in probe.stderr:
        pytest.skip("cannot drop capabilities here")
    assert probe.returncode == 0, probe.stderr
    import json

    out = json.loads(probe.stdout.strip().splitlines()[-1])
    assert out["bytes"] == 4 << 20
    assert "RLIMIT_MEMLOCK 64 KiB" in out["fallback"]
    assert scratch_files(tmp_path) == []


@needs_ring
def test_an_unprivileged_user_gets_results(tmp_path):
    """A real non-root user, when this Python is reachable for one."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to switch to an unprivileged user")
    check = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import gpubench, liburing"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("this Python installation is not readable by an unprivileged user")
    os.chmod(tmp_path, 0o1777)
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                           _NO_MEMLOCK.replace("resource.setrlimit", "0 and resource.setrlimit"), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert scratch_files(tmp_path) == []


# --- page cache: residency and pinning (what makes a warm run warm) --------------------------

def test_residency_follows_the_page_cache_and_pinning_holds_it(disk_dir):
    path = iofile.create_scratch(disk_dir, 1 << 20, 1 << 20, "data")
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            iofile.drop_file_cache(fd)
        finally:
            os.close(fd)
        assert iofile.resident_fraction(path, 1 << 20) < 0.5
        with iofile.PinnedPages(path, 1 << 20) as pin:
            if pin.pinned:
                assert iofile.resident_fraction(path, 1 << 20) == 1.0
            else:
                assert "refused" in pin.why_not or "mmap failed" in pin.why_not
        assert not pin.pinned
    finally:
        iofile.remove_scratch(path)


def test_psync_threads_start_their_clocks_together_so_the_job_time_covers_every_io(tmp_path, monkeypatch):
    """A psync job's MB/s is all its threads' bytes over its time. Threads that set up one after
    another (the interpreter lock serialises them) and each timed themselves made that time the
    longest thread's, not the span the I/O took: 2-7x the real throughput at qd 16-256."""
    import threading

    from gpubench.bench.engines.psync import PsyncJob

    path = tmp_path / "f"
    path.write_bytes(bytes(1 << 20))
    setting_up = threading.Lock()
    real_primed, real_preadv = iojob.primed, os.preadv
    issued: list[int] = []

    def slow_primed(source):  # type: ignore[no-untyped-def]
        with setting_up:
            time.sleep(0.05)
        return real_primed(source)

    def timed_preadv(fd, buffers, offset):  # type: ignore[no-untyped-def]
        issued.append(time.perf_counter_ns())
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(iojob, "primed", slow_primed)
    monkeypatch.setattr(os, "preadv", timed_preadv)
    job = PsyncJob(iojob.JobSpec(path=str(path), pattern="randread", block_size=4096, queue_depth=6, direct=False, span=1 << 20))
    try:
        total = job.run(0.2)
    finally:
        job.close()
    assert total.ios == len(issued) > 0
    assert (max(issued) - min(issued)) / 1e9 <= total.seconds


def test_closing_busy_job_processes_gives_them_one_grace_period_in_all(monkeypatch):
    """Children still busy when a case ends get 5 s together before they are killed, not 5 s each."""
    clock = [100.0]
    monkeypatch.setattr(pool.time, "monotonic", lambda: clock[0])
    graces: list[float] = []

    class Busy:
        killed = False

        def wait(self, timeout):  # type: ignore[no-untyped-def]
            if self.killed:
                return 0
            graces.append(timeout)
            clock[0] += timeout
            raise subprocess.TimeoutExpired("job", timeout)

        def kill(self):  # type: ignore[no-untyped-def]
            self.killed = True

    class Conn:
        def send(self, message):  # type: ignore[no-untyped-def]
            pass

        def close(self):  # type: ignore[no-untyped-def]
            pass

    jobs = pool.JobPool.__new__(pool.JobPool)
    jobs.local, jobs.children = None, [(Busy(), Conn()) for _ in range(3)]
    jobs.close()
    assert graces == [5.0, 0.0, 0.0]
    assert jobs.children == []
