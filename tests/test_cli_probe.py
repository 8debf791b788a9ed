"""`gpubench probe` and `gpubench snapshot` as a user runs them: stdout, stderr and exit code."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def gpubench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_version_and_bare_command():
    from gpubench import __version__

    p = gpubench("--version")
    assert p.returncode == 0 and p.stdout == f"gpubench {__version__}\n"
    bare = gpubench()
    assert bare.returncode == 2 and "--version" in bare.stdout + bare.stderr


def test_probe_prints_the_table():
    p = gpubench("probe")
    assert p.returncode == 0, p.stderr
    for word in ("Capabilities", "kernel", "io_uring", "verdict"):
        assert word in p.stdout


def test_probe_json_is_only_json_on_stdout():
    p = gpubench("probe", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    names = {c["name"] for c in data["capabilities"]}
    assert {"kernel", "io_uring", "io_uring binding"} <= names
    assert all(c["status"] in ("yes", "no", "partial", "unknown") for c in data["capabilities"])


def test_probe_imports_no_heavy_package():
    code = (
        "import sys\n"
        "from gpubench.probe import Source, probe\n"
        "from gpubench.report.terminal import profile_table, stdout_console\n"
        "import gpubench.cli\n"
        "stdout_console().print(profile_table(probe(Source('/'))))\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'cupy', 'kvikio', 'matplotlib', 'scipy'})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stderr


def test_the_probe_command_itself_imports_no_heavy_package():
    """What `gpubench probe` loads, as the interpreter reports every import (-X importtime)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "gpubench", "probe"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "gpubench" in imported and "rich" in imported  # the listing is what it seems
    assert not imported & {"numba", "cupy", "kvikio", "matplotlib", "scipy"}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["probe", "--root", "/no/such/dir"], "no such directory"),
        (["probe", "--root", "pyproject.toml"], "not a directory, nor a snapshot archive"),
        (["probe", "--root", "tests"], "--root tests: no proc/ or sys/ in it; give a root filesystem or a snapshot"),
        (["probe", "--area", "nonsense"], "unknown area 'nonsense'"),
        (["probe", "--bogus"], "No such option"),
        (["snapshot", "/proc/no-such-dir/x.tar.gz"], "cannot write"),
        (["snapshot", "pyproject.toml"], "already exists"),
        (["snapshot", "-"], "snapshot writes an archive file: give its name"),
        (["run", "--label", "bad\udcfflabel", "--db", "/proc/no-such-dir/x.db"], "--label 'bad\\udcfflabel': use printable UTF-8 text"),
        (["run", "--label", "two\nlines", "--db", "/proc/no-such-dir/x.db"], "use printable UTF-8 text"),
        (["run", "--only", "memtier", "--telemetry-replay", "no-such-trace.json", "--db", "/proc/no-such-dir/x.db"],
         "no-such-trace.json: no such file; give a trace file written by gpubench telemetry record"),
        (["run", "--only", "memtier", "--telemetry-replay", "tests/telemetry/data/not-a-trace.json", "--db", "/proc/no-such-dir/x.db"],
         "cannot read telemetry trace tests/telemetry/data/not-a-trace.json: a sample's v must be an object of numbers, found list"),
        (["telemetry", "show", "tests/telemetry/data/not-a-trace.json"], "a sample's v must be an object of numbers, found list"),
        (["import", "/dev/zero", "--db", "/proc/no-such-dir/x.db"], "/dev/zero is larger than 512 MiB: not a gpubench JSON export"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, needle):
    p = gpubench(*args, cwd=REPO)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert needle in lines[0]
    assert "Traceback" not in p.stderr
    assert p.stdout == ""


def test_unreadable_root_directory(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    expected = f"gpubench: error: --root {locked}: directory is not readable"
    if os.geteuid() != 0:
        locked.chmod(0)
        try:
            p = gpubench("probe", "--root", str(locked))
        finally:
            locked.chmod(0o755)
        assert p.returncode == 1
        assert p.stderr.strip().splitlines() == [expected]
        return
    # root reads through any mode bits: deny access at the boundary the check uses
    from gpubench.errors import UserError
    from gpubench.probe.snapshot import open_root

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError) as err:
        with open_root(locked):
            pass
    assert f"gpubench: error: {err.value}" == expected


def test_snapshot_replays_what_the_live_probe_said(tmp_path):
    out = tmp_path / "box.tar.gz"
    p = gpubench("snapshot", str(out))
    assert p.returncode == 0, p.stderr
    assert "replay with" in p.stderr
    live = json.loads(gpubench("probe", "--json").stdout)
    replayed = json.loads(gpubench("probe", "--json", "--root", str(out)).stdout)
    assert [(c["name"], c["status"]) for c in replayed["capabilities"]] == [
        (c["name"], c["status"]) for c in live["capabilities"]
    ]
    assert replayed["capabilities"][0]["evidence"] == live["capabilities"][0]["evidence"]
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert ".gpubench/commands/iouring_binding.json" in names
    assert not [n for n in names if n.endswith("environ") or n.endswith("hostname")]
    # never overwritten
    again = gpubench("snapshot", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_snapshot_hostname_only_when_asked(tmp_path):
    out = tmp_path / "named.tar.gz"
    assert gpubench("snapshot", "--hostname", "--area", "kernel", str(out)).returncode == 0
    with tarfile.open(out) as tar:
        assert "proc/sys/kernel/hostname" in tar.getnames()


def test_snapshot_scrubs_serials(tmp_path):
    from gpubench.probe.snapshot import scrub

    text = b"Model: \t NVIDIA H100\nGPU UUID: \t GPU-1234-abcd\nBoard Serial: 1650\n"
    clean = scrub("/proc/driver/nvidia/gpus/0000:01:00.0/information", text).decode()
    assert "GPU-1234" not in clean and "1650" not in clean and "NVIDIA H100" in clean
    assert b"UUID=(redacted)" in scrub("/proc/cmdline", b"root=UUID=0a1b-22 ro")
    # nvidia-fs prints each GPU's UUID mid-line, not as a "Key: value" line
    stats = b"GPU 0000:1b:00.0  uuid:87e5c586-0a1b-9f2e-3c4d-5e6f7a8b9c0d : Registered_MiB=0\n"
    assert scrub("/proc/driver/nvidia-fs/stats", stats) == b"GPU 0000:1b:00.0  uuid:(redacted) : Registered_MiB=0\n"
    cmdline = scrub("/proc/cmdline", b"quiet rdinit=/init -- --token s3cret\n")
    assert cmdline == b"quiet rdinit=/init -- (init arguments redacted)\n"


def marked_archive(path, *members):  # type: ignore[no-untyped-def]
    """A tar.gz with the snapshot marker, then `members`: (name, bytes) for a file, (name, Path) for a link."""
    import io

    with tarfile.open(path, "w:gz") as tar:
        for name, content in ((".gpubench/snapshot.json", b"{}"), *members):
            info = tarfile.TarInfo(name)
            if isinstance(content, Path):
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def test_an_archive_cannot_write_through_its_own_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = marked_archive(tmp_path / "evil.tar.gz", ("proc", outside), ("proc/escaped.txt", b"pwned"))
    p = gpubench("probe", "--root", str(evil), "--area", "kernel")
    assert p.returncode == 1
    assert "would be written through a link" in p.stderr
    assert list(outside.iterdir()) == []


def test_an_archive_that_unpacks_beyond_any_snapshot_is_refused_before_unpacking(tmp_path, monkeypatch):
    from gpubench.errors import UserError
    from gpubench.probe import snapshot

    big = marked_archive(tmp_path / "big.tar.gz", ("proc/zeros", bytes(4096)))
    monkeypatch.setattr(snapshot, "MAX_UNPACKED_BYTES", 4000)
    with pytest.raises(UserError, match=r"more than a snapshot holds \(at most 200000 entries, 0 MiB unpacked; refused at entry 2, 0 MiB\)"):
        with snapshot.open_root(big):
            pass
    monkeypatch.setattr(snapshot, "MAX_UNPACKED_BYTES", 8192)
    with snapshot.open_root(big) as source:
        assert (Path(source.root) / "proc/zeros").stat().st_size == 4096


def test_a_truncated_archive_is_damaged_not_interrupted(tmp_path):
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(b"\x1f\x8b")
    p = gpubench("probe", "--root", str(bad))
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gpubench: error: --root {bad}: damaged archive")


def test_an_archive_that_is_not_a_snapshot_is_refused(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello\n")
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(folder, arcname="notes")
    p = gpubench("probe", "--root", str(plain))
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.splitlines() == [
        f"gpubench: error: --root {plain}: not a snapshot archive made by `gpubench snapshot` (it has no .gpubench/snapshot.json)"
    ]


def test_an_archive_is_shown_by_the_name_given(tmp_path):
    out = tmp_path / "box.tar.gz"
    assert gpubench("snapshot", "--area", "kernel", str(out)).returncode == 0
    replayed = gpubench("probe", "--json", "--root", "box.tar.gz", "--area", "kernel", cwd=tmp_path)
    assert json.loads(replayed.stdout)["root"] == "box.tar.gz"
    assert "Capabilities (snapshot box.tar.gz)" in gpubench("probe", "--root", "box.tar.gz", "--area", "kernel", cwd=tmp_path).stdout
    # a recorded snapshot directory packed by hand (entries named ./...) replays too
    packed = tmp_path / "cpu-vm.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(REPO / "probes" / "cpu-vm", arcname=".")
    by_hand = json.loads(gpubench("probe", "--json", "--root", str(packed)).stdout)
    from_dir = json.loads(gpubench("probe", "--json", "--root", str(REPO / "probes" / "cpu-vm")).stdout)
    assert by_hand["root"] == str(packed)
    assert by_hand["capabilities"] == from_dir["capabilities"]
