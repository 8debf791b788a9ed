from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gpubench.errors import UserError
from gpubench.results import dbfile
from gpubench.results.model import Run, RunStatus
from gpubench.results.store import Store, default_db_path
from gpubench.results.writer import WriterIdentity
from tests.factories import REPO, RANDREAD, RANDWRITE, SEQREAD, failed, measured, run_of, waived


def _without_id(run: Run) -> dict:
    return run.to_dict()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_default_db_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GPUBENCH_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "gpubench" / "results.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "gpubench" / "results.db"
    monkeypatch.setenv("GPUBENCH_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"


def test_round_trip_run_with_results(tmp_path: Path) -> None:
    run = run_of((measured(SEQREAD, rounds=[(1.0, 2.5), (3.25,)]), waived(RANDREAD), failed(RANDWRITE, "verify mismatch at offset 4096")))
    with Store.open(tmp_path / "r.db") as store:
        run_id = store.begin_run(dataclasses.replace(run, results=()))
        for result in run.results:
            store.add_result(run_id, result)
        store.finish_run(run_id, RunStatus.COMPLETE, run.ended)
    with Store.open(tmp_path / "r.db", create=False, readonly=True) as store:
        back = store.get_run(str(run_id))
    assert back.id == run_id
    assert back.to_dict() == run.to_dict()
    assert back.results == run.results


def test_put_result_replaces_a_case_s_earlier_rounds_and_keeps_the_plan_order(tmp_path: Path) -> None:
    first = measured(RANDREAD, (1.0, 2.0))
    other = measured(SEQREAD, (5.0,))
    later = measured(RANDREAD, rounds=[(1.0, 2.0), (3.0,)])  # rounds 1 and 2 of the first case, stored after the other
    with Store.open(tmp_path / "r.db") as store:
        run_id = store.begin_run(run_of())
        for result in (first, other, later):
            store.put_result(run_id, result)
        back = store.get_run(str(run_id))
    assert [(r.case, r.samples) for r in back.results] == [(RANDREAD.name, (1.0, 2.0, 3.0)), (SEQREAD.name, (5.0,))]


def test_result_is_committed_before_the_run_finishes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    writer = Store.open(db)
    run_id = writer.begin_run(run_of())
    writer.add_result(run_id, measured(RANDREAD))
    with Store.open(db, create=False, readonly=True) as reader:
        seen = reader.get_run("latest")
        assert seen.status is RunStatus.RUNNING  # this process is alive
        assert [r.case for r in seen.results] == [RANDREAD.name]
    # and through a plain sqlite3 connection, as another program would see it
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT count(*) FROM results").fetchone()[0] == 1
    raw.close()
    writer.close()


def test_a_commit_refused_by_a_reader_leaves_the_store_usable(tmp_path: Path) -> None:
    """A reader holding a read transaction (another program's) can refuse the writer's COMMIT;
    that one result is reported lost, and the next one is stored."""
    db = tmp_path / "r.db"
    with Store.open(db) as writer:
        run_id = writer.begin_run(run_of())
        writer._db.execute("PRAGMA busy_timeout = 50")
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM results").fetchone()
        with pytest.raises(UserError, match="locked by another process"):
            writer.add_result(run_id, measured(SEQREAD))
        reader.execute("COMMIT")
        reader.close()
        writer.add_result(run_id, measured(RANDREAD))
        writer.finish_run(run_id, RunStatus.COMPLETE, 1700000200.0)
    with Store.open(db, create=False, readonly=True) as store:
        back = store.get_run(str(run_id))
    assert [r.case for r in back.results] == [RANDREAD.name]
    assert back.status is RunStatus.COMPLETE


def test_running_run_of_a_dead_process_reads_interrupted_and_is_persisted(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    dead = WriterIdentity(hostname=WriterIdentity.current().hostname, pid=_dead_pid(), pid_start=None, boot_id=None)
    with Store.open(db) as store:
        run_id = store.begin_run(run_of(), writer=dead)
        store.add_result(run_id, measured(RANDREAD))
    with Store.open(db, create=False, readonly=True) as reader:
        run = reader.get_run(str(run_id))
        assert run.status is RunStatus.INTERRUPTED
        assert [r.case for r in run.results] == [RANDREAD.name]
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT status FROM runs").fetchone()[0] == "running"  # read-only left it alone
    raw.close()
    with Store.open(db) as store:
        assert store.list_runs()[0].run.status is RunStatus.INTERRUPTED
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    raw.close()


def test_other_boot_or_recycled_pid_reads_interrupted(tmp_path: Path) -> None:
    me = WriterIdentity.current()
    with Store.open(tmp_path / "r.db") as store:
        live = store.begin_run(run_of(), writer=me)
        other_boot = store.begin_run(run_of(), writer=dataclasses.replace(me, boot_id="00000000-dead-beef"))
        recycled = store.begin_run(run_of(), writer=dataclasses.replace(me, pid_start=(me.pid_start or 0) + 1))
        elsewhere = store.begin_run(run_of(), writer=dataclasses.replace(me, hostname=me.hostname + "-other", pid=_dead_pid()))
        assert store.get_run(str(live)).status is RunStatus.RUNNING
        assert store.get_run(str(other_boot)).status is RunStatus.INTERRUPTED
        assert store.get_run(str(recycled)).status is RunStatus.INTERRUPTED
        # a run written on another host cannot be checked from here
        assert store.get_run(str(elsewhere)).status is RunStatus.RUNNING


def test_sigkilled_writer_keeps_completed_results(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    script = f"""
import os, signal
from tests.factories import RANDREAD, SEQREAD, measured, run_of
from gpubench.results.store import Store
store = Store.open({str(db)!r})
run_id = store.begin_run(run_of())
store.add_result(run_id, measured(RANDREAD))
store.add_result(run_id, measured(SEQREAD))
os.kill(os.getpid(), signal.SIGKILL)
"""
    # python -c imports from its working directory: the repository, for tests.factories
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert child.returncode == -9, child.stderr
    with Store.open(db, create=False, readonly=True) as store:
        run = store.get_run("latest")
    assert run.status is RunStatus.INTERRUPTED
    assert [r.case for r in run.results] == [RANDREAD.name, SEQREAD.name]


def test_hot_journal_from_a_killed_writer_is_read_without_touching_the_file(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Store.open(db) as store:
        store.import_run(run_of((measured(RANDREAD),)))
    script = f"""
import os, signal, sqlite3
db = sqlite3.connect({str(db)!r}, isolation_level=None)
db.execute("PRAGMA cache_size = 1")
db.execute("BEGIN IMMEDIATE")
for i in range(3000):
    db.execute("INSERT INTO results (run_id, benchmark, case_name, params, unit, higher_is_better, status, reason, samples, sample_metrics, extra, telemetry, started, ended) VALUES (1, 'b', ?, '{{}}', 'u', 1, 'ok', '', ?, '[]', '{{}}', '{{}}', 0, 0)", (str(i), "[" + ",".join(["1.0"] * 200) + "]"))
os.kill(os.getpid(), signal.SIGKILL)
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -9, child.stderr
    journal = db.with_name(db.name + "-journal")
    assert journal.exists() and journal.stat().st_size > 0
    before = (db.read_bytes(), journal.read_bytes())
    with Store.open(db, create=False, readonly=True) as store:
        assert [r.case for r in store.get_run("latest").results] == [RANDREAD.name]
    assert (db.read_bytes(), journal.read_bytes()) == before
    with Store.open(db) as store:  # a writer recovers it in place
        assert [r.case for r in store.get_run("latest").results] == [RANDREAD.name]
    assert not journal.exists()


def test_run_references(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.db") as store:
        a = store.import_run(run_of(uid="abcdef01" + "0" * 24, started=1.0))
        b = store.import_run(run_of(uid="abcdef02" + "0" * 24, started=3.0))
        c = store.import_run(run_of(uid="12345678" + "0" * 24, started=2.0))
        assert store.get_run(str(a)).id == a
        assert store.get_run("latest").id == b
        assert store.get_run("ABCDEF02").id == b
        assert store.get_run("123456").id == c  # six digits: a uid prefix, since no run has that number
        with pytest.raises(UserError, match="matches runs"):
            store.get_run("abcdef")
        with pytest.raises(UserError, match="no run 99"):
            store.get_run("99")
        with pytest.raises(UserError, match="at least 6 hex"):
            store.get_run("abc")
        with pytest.raises(UserError, match="no run with uid starting"):
            store.get_run("ffffff")
        listing = store.list_runs()
        assert [entry.run.id for entry in listing] == [b, c, a]
        assert [entry.run.id for entry in store.list_runs(limit=1)] == [b]


def test_a_whole_uid_names_its_run_even_where_it_begins_another(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.db") as store:
        short = store.import_run(run_of(uid="abcdef12"))
        store.import_run(run_of(uid="abcdef12" + "0" * 24))
        assert store.get_run("abcdef12").id == short
        with pytest.raises(UserError, match="matches runs"):
            store.get_run("abcdef1")
        for ref in ("\u00b3", "\u0663"):  # superscript three, Arabic-Indic three: digits, but not run numbers
            with pytest.raises(UserError, match="unknown run"):
                store.get_run(ref)


def test_list_counts_results_by_status(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.db") as store:
        store.import_run(run_of((measured(RANDREAD), measured(SEQREAD), waived(RANDWRITE))))
        (entry,) = store.list_runs()
    assert entry.counts == {"ok": 2, "waived": 1}
    assert entry.n_results == 3
    assert entry.run.results == ()


def test_import_twice_is_refused(tmp_path: Path) -> None:
    run = run_of((measured(),))
    with Store.open(tmp_path / "r.db") as store:
        first = store.import_run(run)
        with pytest.raises(UserError, match=f"already in the history as run {first}"):
            store.import_run(run)
        assert len(store.list_runs()) == 1


def test_import_of_a_running_run_is_stored_interrupted(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.db") as store:
        run_id = store.import_run(run_of(status=RunStatus.RUNNING, ended=None))
        assert store.get_run(str(run_id)).status is RunStatus.INTERRUPTED


def test_newer_schema_is_refused_and_file_untouched(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    Store.open(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {dbfile.schema_version() + 1}")
    raw.close()
    before = db.read_bytes()
    for kwargs in ({"create": False, "readonly": True}, {"create": True}):
        with pytest.raises(UserError, match="newer gpubench"):
            Store.open(db, **kwargs)
    assert db.read_bytes() == before


def test_older_schema_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.db"
    run = run_of((measured(),))
    with Store.open(db) as store:
        store.import_run(run)

    def add_notes(connection: sqlite3.Connection) -> None:
        connection.execute("ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(dbfile, "MIGRATIONS", [*dbfile.MIGRATIONS, add_notes])
    before = db.read_bytes()
    # read-only: migrated in a private copy; the file stays at version 1
    with Store.open(db, create=False, readonly=True) as store:
        assert store.get_run("latest").to_dict() == run.to_dict()
    assert db.read_bytes() == before
    with Store.open(db) as store:
        assert store.get_run("latest").to_dict() == run.to_dict()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "notes" in [row[1] for row in raw.execute("PRAGMA table_info(runs)")]
    raw.close()


def test_failed_migration_leaves_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.db"
    Store.open(db).close()

    def broken(connection: sqlite3.Connection) -> None:
        connection.execute("ALTER TABLE runs ADD COLUMN x TEXT")
        raise sqlite3.OperationalError("simulated failure")

    monkeypatch.setattr(dbfile, "MIGRATIONS", [*dbfile.MIGRATIONS, broken])
    with pytest.raises(UserError, match="simulated failure"):
        Store.open(db)
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "x" not in [row[1] for row in raw.execute("PRAGMA table_info(runs)")]
    raw.close()


def test_fresh_database_is_created_at_the_current_version(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "r.db"
    Store.open(db).close()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == dbfile.schema_version()
    assert raw.execute("PRAGMA application_id").fetchone()[0] == dbfile.APPLICATION_ID
    raw.close()


def test_corrupted_file_is_one_line_error_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    db.write_bytes(b"this is not sqlite at all\x00\xff" * 200)
    before = db.read_bytes()
    for kwargs in ({"create": False, "readonly": True}, {"create": True}):
        with pytest.raises(UserError) as err:
            Store.open(db, **kwargs)
        assert "not a gpubench result database" in str(err.value) and "\n" not in str(err.value)
    assert db.read_bytes() == before


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    with pytest.raises(UserError, match="not a gpubench result history"):
        Store.open(db)
    assert db.read_bytes() == before


def test_tables_without_a_schema_version_are_not_called_empty(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Store.open(db) as store:
        store.import_run(run_of((measured(),)))
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA user_version = 0")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    for kwargs in ({"create": False, "readonly": True}, {"create": True}):
        with pytest.raises(UserError) as err:
            Store.open(db, **kwargs)
        assert str(err.value) == (f"{db} has tables but no gpubench schema version (PRAGMA user_version is 0): "
                                  f"not a gpubench result history, or a damaged one")
    assert db.read_bytes() == before


def test_an_empty_database_file_is_called_empty(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    db.write_bytes(b"")
    with pytest.raises(UserError, match="is empty, not a gpubench result history"):
        Store.open(db, create=False, readonly=True)


def test_missing_file_is_not_created_by_readers(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    with pytest.raises(UserError, match="no result history"):
        Store.open(db, create=False, readonly=True)
    assert not db.exists()


def test_directory_path_is_refused(tmp_path: Path) -> None:
    for kwargs in ({"create": False, "readonly": True}, {"create": True}):
        with pytest.raises(UserError, match="is a directory, not a result database: --db and GPUBENCH_DB name the file, e.g. "):
            Store.open(tmp_path, **kwargs)


def test_a_device_or_pipe_is_refused_before_sqlite_writes_a_journal_beside_it(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for readonly in (False, True):
        with pytest.raises(UserError, match="is not a regular file"):
            Store.open(pipe, create=not readonly, readonly=readonly)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_unwritable_locations_are_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the directory"):
        Store.open(blocker / "sub" / "r.db")
    # /proc is read-only for every user, root included
    with pytest.raises(UserError):
        Store.open(Path("/proc/gpubench-test/r.db"))


@pytest.mark.skipif(os.geteuid() == 0, reason="file permissions do not bind root; the /proc case above covers it")
def test_read_only_file_and_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    db = directory / "r.db"
    with Store.open(db) as store:
        store.import_run(run_of())
    before = db.read_bytes()
    db.chmod(0o444)
    with pytest.raises(UserError, match="read-only"):
        Store.open(db)
    db.chmod(0o644)
    directory.chmod(0o555)
    try:
        with pytest.raises(UserError, match="read-only"):
            Store.open(db)
        with Store.open(db, create=False, readonly=True) as store:  # reading still works
            assert len(store.list_runs()) == 1
    finally:
        directory.chmod(0o755)
    assert db.read_bytes() == before
