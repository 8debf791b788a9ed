"""The liburing binding's loader races with itself across processes; gpubench's import survives it."""

from __future__ import annotations

import pytest

from gpubench.bench.engines import uring_binding as uring

importer = pytest.importorskip("dynamic_import.importer", reason="the liburing binding is not installed")


def test_a_cache_file_removed_under_the_import_is_retried_and_never_yields_a_bare_module(monkeypatch):
    uring._forget_liburing()
    raced = []
    real_exists, real_load, real_remove = importer.exists, importer.load_cache, importer.remove

    def remove(path):
        if raced:
            return real_remove(path)
        raced.append(path)
        raise FileNotFoundError(2, "No such file or directory", path)  # another process removed it first

    # the first import finds the cache stale and loses the race to remove it
    monkeypatch.setattr(importer, "exists", lambda path: True if not raced else real_exists(path))
    monkeypatch.setattr(importer, "load_cache", lambda *args: None if not raced else real_load(*args))
    monkeypatch.setattr(importer, "remove", remove)
    liburing = uring.load_liburing()
    assert raced, "the race was not staged"
    assert hasattr(liburing, "io_uring") and hasattr(liburing, "io_uring_queue_init")


def test_an_import_that_yields_a_bare_module_is_an_import_error(monkeypatch):
    import types

    bare = types.ModuleType("liburing")
    monkeypatch.setattr(uring, "_forget_liburing", lambda: None)
    monkeypatch.setitem(__import__("sys").modules, "liburing", bare)
    monkeypatch.setattr(uring.time, "sleep", lambda s: None)
    with pytest.raises(ImportError, match="without its API"):
        uring.load_liburing()


def test_the_import_lock_lives_in_gpubenchs_own_directory_not_the_temporary_one(tmp_path, monkeypatch):
    runtime, temporary = tmp_path / "run", tmp_path / "tmp"
    runtime.mkdir()
    temporary.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(__import__("tempfile"), "tempdir", None)  # read TMPDIR again
    with uring._import_turn():
        assert (runtime / "gpubench" / "liburing-import.lock").exists()
    assert list(temporary.iterdir()) == []
