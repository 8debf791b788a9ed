"""Snapshots nobody here controls: no input may hang the probe, make it read outside its root,
reach the terminal raw, or hide that a file was cut short."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.probe import variants as v

from gpubench.errors import UserError
from gpubench.probe import Source, Status, probe, snapshot
from gpubench.probe.model import EVIDENCE_LIMIT, Capability, Evidence, Profile, printable
from gpubench.probe.source import VALUE_LIMIT

REPO = Path(__file__).resolve().parents[2]
NO_HANG_S = 60  # far beyond a probe of a snapshot (well under a second): reached only by a blocked read


def probe_json(root: Path, *areas: str) -> dict:  # type: ignore[type-arg]
    """`gpubench probe --json --root ROOT` in a child process, so that a read that blocks fails the
    test by its timeout instead of hanging the suite."""
    args = [sys.executable, "-m", "gpubench", "probe", "--json", "--root", str(root)] + [a for area in areas for a in ("--area", area)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=NO_HANG_S, cwd=REPO)
    assert p.returncode == 0, p.stderr
    return {c["name"]: c for c in json.loads(p.stdout)["capabilities"]}


def evidence(cap: dict, source: str) -> list[str]:  # type: ignore[type-arg]
    return [e["value"] for e in cap["evidence"] if e["source"] == source]


# --- nothing but regular files is opened ----------------------------------------------------------

def test_a_fifo_at_proc_config_gz_is_never_opened(tmp_path: Path):
    """Opening a FIFO for reading waits for a writer (fifo(7)): it must not be opened at all."""
    root = v.copy_of(v.CPU_VM, tmp_path / "root")
    (root / "proc/config.gz").unlink()
    os.mkfifo(root / "proc/config.gz")
    found = probe_json(root, "kernel", "iouring")
    config = evidence(found["kernel"], "kernel config")[0]
    assert "not a regular file" in config
    assert found["io_uring"]["status"] == "unknown" or "unknown" in evidence(found["io_uring"], "CONFIG_IO_URING")[0]


def test_a_fifo_as_a_recorded_command_output_is_never_opened(tmp_path: Path):
    root = v.copy_of(v.CPU_VM, tmp_path / "root")
    out = root / ".gpubench/commands/iouring_binding.json"
    out.unlink()
    os.mkfifo(out)
    binding = probe_json(root, "iouring")["io_uring binding"]
    assert binding["status"] == "unknown"
    assert "cannot read recorded iouring_binding: not a regular file" in binding["why"]


def test_a_socket_is_evidence_not_a_read(tmp_path: Path):
    root = v.copy_of(v.CPU_VM, tmp_path / "root")
    (root / "proc/cmdline").unlink()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "proc/cmdline"))
        kernel = probe(Source(root), ["kernel"]).get("kernel")
    finally:
        server.close()
    assert kernel is not None and kernel.status is Status.UNKNOWN
    assert kernel.why == "cannot read /proc/cmdline: not a regular file (a FIFO, socket or device is never opened)"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root (mknod)")
def test_a_device_node_is_never_opened(tmp_path: Path, monkeypatch):
    root = v.copy_of(v.CPU_VM, tmp_path / "root")
    target = root / "proc/sys/kernel/osrelease"
    target.unlink()
    os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    kernel = probe(Source(root), ["kernel"]).get("kernel")
    assert kernel is not None and kernel.status is Status.UNKNOWN and "not a regular file" in kernel.why
    assert str(target) not in opened


def test_a_recorded_command_linked_out_of_the_root_is_not_read(tmp_path: Path):
    """Every file is read inside the root; a recorded output that is a link to a file outside it
    is refused like any other such link (it reads as not recorded)."""
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"installed": True, "importable": True, "version": "READ-FROM-OUTSIDE", "compat_mode": False}))
    root = v.copy_of(v.SERVER, tmp_path / "root")
    kvikio = root / ".gpubench/commands/kvikio.json"
    kvikio.unlink()
    kvikio.symlink_to(outside)
    gds = probe(Source(root), ["gds"]).get("gpudirect storage")
    assert gds is not None
    assert "READ-FROM-OUTSIDE" not in json.dumps(gds.to_dict())
    assert gds.details["kvikio"] is None and [e.value for e in gds.evidence if e.source == "kvikio"] == ["not recorded in this snapshot"]


# --- archives -------------------------------------------------------------------------------------

def test_an_archive_past_the_entry_limit_is_refused_after_limit_plus_one_headers(tmp_path: Path, monkeypatch):
    limit, entries = 50, 2000
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [(".gpubench/snapshot.json", b"{}")] + [(f"proc/f{i}", b"") for i in range(entries)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    headers = []
    real = tarfile.TarInfo.fromtarfile.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(tarfile.TarInfo, "fromtarfile", classmethod(lambda cls, tar: headers.append(1) or real(cls, tar)))
    monkeypatch.setattr(snapshot, "MAX_ENTRIES", limit)
    with pytest.raises(UserError, match=f"more than a snapshot holds \\(at most {limit} entries"):
        with snapshot.open_root(archive):
            pass
    assert len(headers) <= limit + 1 + 1  # the members, plus the one tarfile.is_tarfile reads first
    assert not list(tmp_path.glob("gpubench-root-*"))


# --- text from the machine ------------------------------------------------------------------------

BANNER = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build  (\x1b]0;owned\x07\x1b[2J\x1b[31mred)"
MODEL = "NVIDIA H100\x1b[8m hidden\u202e"


def _hostile_server(root: Path) -> Profile:
    v.copy_of(v.SERVER, root)
    (root / "proc/driver/nvidia/version").write_text(BANNER + "\n")
    info = root / "proc/driver/nvidia/gpus/0000:1b:00.0/information"
    info.write_text(info.read_text().replace("NVIDIA H100 80GB HBM3", MODEL))
    return probe(Source(root), ["gpu"])


def test_escape_sequences_from_the_machine_are_shown_escaped_in_the_table(tmp_path: Path):
    from rich.console import Console

    from gpubench.report.terminal import profile_table

    out = io.StringIO()
    Console(file=out, force_terminal=True, width=400, color_system="truecolor").print(profile_table(_hostile_server(tmp_path / "root")))
    shown = out.getvalue()
    for raw in ("\x1b]0;owned", "\x07", "\x1b[2J", "\x1b[8m", "\u202e"):
        assert raw not in shown
    assert "H100\\x1b[8m hidden\\u202e" in shown  # (the banner's tail is past the table's evidence width)


def test_escape_sequences_from_the_machine_are_shown_escaped_in_the_html_report(tmp_path: Path):
    from gpubench.report.html import render_run_html
    from gpubench.results.model import Run, RunStatus

    profile = _hostile_server(tmp_path / "root")
    run = Run(uid="ab" * 16, label="", started=1_700_000_000.0, ended=1_700_000_001.0, status=RunStatus.COMPLETE, metadata={}, profile=profile.to_dict())
    html = render_run_html(run)
    assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html
    assert "\\x1b]0;owned\\x07" in html and "H100\\x1b[8m hidden\\u202e" in html


def test_printable_escapes_controls_and_direction_overrides_only():
    assert printable("ok: é ü 中 → fine") == "ok: é ü 中 → fine"
    assert printable("a\x1b[31mb\x00\x7f\x9b\u2028\u2066") == "a\\x1b[31mb\\x00\\x7f\\x9b\\u2028\\u2066"


# --- files cut at the read limit ------------------------------------------------------------------

def test_a_cut_cmdline_says_so_and_its_value_is_in_the_json_once(tmp_path: Path):
    """A /proc/cmdline past the read limit: the evidence says it was cut (an intel_iommu=off after
    the cut is not seen), the iommu verdict does not rest on it, and the JSON does not carry the
    long value twice (evidence shortened, details whole up to the limit)."""
    profile = probe(Source(v.iommu_cut_cmdline(tmp_path / "root")), ["kernel", "iommu"])
    kernel, iommu = profile.get("kernel"), profile.get("iommu")
    assert kernel is not None and iommu is not None
    cut = f"cut at {VALUE_LIMIT} bytes: what follows was not read"
    assert Evidence("/proc/cmdline", cut) in kernel.evidence and Evidence("/proc/cmdline", cut) in iommu.evidence
    assert iommu.status is Status.UNKNOWN and "cut at the read limit" in iommu.why
    document = json.dumps(profile.to_dict())
    assert document.count(v.CUT_TOKEN) == 1
    assert len(document) < 3 * VALUE_LIMIT
    (shown,) = [e.value for e in kernel.evidence if e.source == "/proc/cmdline" and not e.value.startswith("cut at")]
    assert len(shown) < EVIDENCE_LIMIT + 100 and shown.endswith("characters in all)")


def test_an_evidence_value_is_bounded_whatever_a_check_hands_it():
    cap = Capability("a", "b", Status.YES, (Evidence("x", "y"),))
    assert cap.evidence[0].value == "y"
    from gpubench.probe.model import Findings

    f = Findings("a", "b")
    f.saw("big", "z" * (EVIDENCE_LIMIT * 3))
    assert len(f.evidence[0].value) < EVIDENCE_LIMIT + 40
