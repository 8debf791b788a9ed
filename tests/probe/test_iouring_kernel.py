import gzip
import json
import os
from pathlib import Path

import pytest

from gpubench.probe import Source, Status, probe
from gpubench.probe.iouring import binding_selftest


def write(root: Path, path: str, text: str | bytes) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text if isinstance(text, bytes) else text.encode())


def machine(tmp_path, disabled="0", config="CONFIG_IO_URING=y\n", binding=None, gz=True):
    write(tmp_path, "/proc/sys/kernel/osrelease", "6.12.0-test\n")
    write(tmp_path, "/proc/cmdline", "root=/dev/sda1 quiet\n")
    if config is not None:
        if gz:
            write(tmp_path, "/proc/config.gz", gzip.compress(config.encode()))
        else:
            write(tmp_path, "/boot/config-6.12.0-test", config)
    if disabled is not None:
        write(tmp_path, "/proc/sys/kernel/io_uring_disabled", disabled + "\n")
    if binding is not None:
        write(tmp_path, "/.gpubench/commands/iouring_binding.json", json.dumps(binding))
    return Source(tmp_path)


def caps(src):
    profile = probe(src, ["kernel", "iouring"])
    return {c.name: c for c in profile.capabilities}


GOOD_BINDING = {"loaded": True, "ring": True, "version": "2024.5.3", "last_op": 62, "opcodes": ["NOP", "READ"],
                "features": 3, "feature_names": ["SINGLE_MMAP", "NODROP"]}


def test_kernel_config_from_proc_and_from_boot(tmp_path):
    c = caps(machine(tmp_path / "a"))
    assert c["kernel"].status is Status.YES
    assert c["kernel"].details["config_origin"] == "/proc/config.gz"
    assert c["kernel"].details["release"] == "6.12.0-test"
    c = caps(machine(tmp_path / "b", gz=False))
    assert c["kernel"].details["config_origin"] == "/boot/config-6.12.0-test"


def test_no_config_is_partial_with_a_fix(tmp_path):
    c = caps(machine(tmp_path, config=None))
    assert c["kernel"].status is Status.PARTIAL
    assert "modprobe configs" in c["kernel"].fix


@pytest.mark.parametrize("value,status", [("0", Status.YES), ("1", Status.PARTIAL), ("2", Status.NO)])
def test_io_uring_disabled_sysctl(tmp_path, value, status):
    c = caps(machine(tmp_path, disabled=value, binding=GOOD_BINDING))
    assert c["io_uring"].status is status
    assert c["io_uring"].details["disabled"] == int(value)
    assert any(e.source == "/proc/sys/kernel/io_uring_disabled" and e.value == value for e in c["io_uring"].evidence)
    if status is not Status.YES:
        assert "io_uring_disabled" in c["io_uring"].fix


def test_io_uring_not_built(tmp_path):
    c = caps(machine(tmp_path, config="# CONFIG_IO_URING is not set\n", disabled=None))
    assert c["io_uring"].status is Status.NO
    assert "CONFIG_IO_URING" in c["io_uring"].fix


def test_garbage_is_unknown_with_a_reason(tmp_path):
    src = machine(tmp_path, disabled="banana")
    write(tmp_path, "/proc/config.gz", b"not gzip at all")
    c = caps(src)
    assert c["io_uring"].status is Status.UNKNOWN
    assert "banana" in c["io_uring"].why
    assert c["kernel"].status is Status.PARTIAL
    assert "config.gz" in c["kernel"].evidence[-1].value


def test_unreadable_file_is_unknown(tmp_path):
    src = machine(tmp_path)
    os.remove(tmp_path / "proc/sys/kernel/osrelease")
    (tmp_path / "proc/sys/kernel/osrelease").mkdir()  # reading a directory fails, even for root
    c = caps(src)
    assert c["kernel"].status is Status.UNKNOWN
    assert "osrelease" in c["kernel"].why


def test_binding_not_recorded_is_unknown(tmp_path):
    c = caps(machine(tmp_path))
    assert c["io_uring binding"].status is Status.UNKNOWN
    assert "not recorded" in c["io_uring binding"].why


def test_recorded_binding_replays(tmp_path):
    c = caps(machine(tmp_path, binding=GOOD_BINDING))
    assert c["io_uring binding"].status is Status.YES
    assert c["io_uring binding"].details["last_op"] == 62


def test_a_binding_that_dies_with_sigill_is_a_verdict(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "liburing"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = binding_selftest()
    assert out["loaded"] is False
    assert out["signal"] == "SIGILL"
    # and through the probe itself, live: the verdict, not a crash
    cap = {c.name: c for c in probe(Source("/"), ["iouring"]).capabilities}["io_uring binding"]
    assert cap.status is Status.NO
    assert "SIGILL" in cap.why
    assert "2024.5.3" in cap.fix


def test_a_missing_binding_is_a_verdict(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "liburing"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'liburing'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    out = binding_selftest()
    assert out == {"loaded": False, "missing": True, "error": "the liburing binding is not installed"}


def test_segfault_is_a_verdict_too(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "liburing"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    out = binding_selftest()
    assert out["loaded"] is False and out["signal"] == "SIGSEGV"
