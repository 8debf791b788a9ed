"""The result history: one SQLite file, one row per run and one row per result.

Crash safety: the database uses the rollback journal with synchronous=FULL, and every result is
committed in its own transaction the moment it is added, so a run killed with SIGKILL keeps every
completed result. The rollback journal (rather than WAL) keeps the history a single file that can
be copied, and lets read-only commands open it on read-only media, where WAL would need a
writable shared-memory file beside it.

Read commands open the file with SQLite's `mode=ro`: they can never create, truncate or rewrite
it. A run is stored as `running` with the pid, the process start time and the boot id of the
process writing it; when that process is gone it reads as `interrupted` (and is stored so where a
store opened for writing reads it; the read-only commands leave the file as it is).

The schema is versioned with PRAGMA user_version; MIGRATIONS[i] takes a database from version i
to i+1. An older file is migrated in place when opened for writing, and migrated in a private
in-memory copy when opened read-only, so reading never changes the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote

from gpubench.errors import UserError
from gpubench.results.model import Result, ResultStatus, Run, RunStatus, Summary
from gpubench.telemetry.summary import TelemetrySummary

# "GPUB": marks the file as a gpubench history (PRAGMA application_id)
APPLICATION_ID = 0x47505542
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
UID_PREFIX_MIN = 6


def _migrate_to_v1(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id            INTEGER PRIMARY KEY,
            uid           TEXT NOT NULL UNIQUE,
            label         TEXT NOT NULL,
            started       REAL NOT NULL,
            ended         REAL,
            status        TEXT NOT NULL,
            metadata      TEXT NOT NULL,  -- JSON
            profile       TEXT NOT NULL,  -- JSON
            hostname      TEXT,           -- writer of a running run: tells a crashed run from a live one
            pid           INTEGER,
            pid_start     INTEGER,        -- process start time in clock ticks since boot
            boot_id       TEXT,
            imported      INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """
        CREATE TABLE results (
            id                INTEGER PRIMARY KEY,
            run_id            INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            benchmark         TEXT NOT NULL,
            case_name         TEXT NOT NULL,
            params            TEXT NOT NULL,  -- JSON
            unit              TEXT NOT NULL,
            higher_is_better  INTEGER NOT NULL,
            status            TEXT NOT NULL,
            reason            TEXT NOT NULL,
            samples           TEXT NOT NULL,  -- JSON list of raw samples
            sample_metrics    TEXT NOT NULL,  -- JSON
            extra             TEXT NOT NULL,  -- JSON
            summary           TEXT,           -- JSON
            telemetry         TEXT NOT NULL,  -- JSON
            started           REAL NOT NULL,
            ended             REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX results_by_run ON results(run_id, id)")


# MIGRATIONS[i] upgrades a database at user_version i to i + 1 (inside one transaction).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_v1]


def schema_version() -> int:
    return len(MIGRATIONS)


def default_db_path() -> Path:
    """$GPUBENCH_DB, else $XDG_DATA_HOME/gpubench/results.db, else ~/.local/share/gpubench/results.db."""
    explicit = os.environ.get("GPUBENCH_DB")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home).expanduser() if data_home and os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "gpubench" / "results.db"


@dataclass(frozen=True)
class RunListing:
    """One line of `gpubench list`: a run without its results, and how its results ended."""

    run: Run
    counts: dict[str, int]  # ResultStatus value -> number of results

    @property
    def n_results(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class WriterIdentity:
    """Who is writing a running run: enough to tell later whether that process still exists."""

    hostname: str
    pid: int
    pid_start: int | None
    boot_id: str | None

    @classmethod
    def current(cls) -> WriterIdentity:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start_ticks(pid), _boot_id())


def _boot_id() -> str | None:
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], start time is [19])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _process_start_ticks(pid: int) -> int | None:
    fields = _proc_stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def writer_is_gone(hostname: str | None, pid: int | None, pid_start: int | None, boot_id: str | None) -> bool:
    """True when the process that stored a run as running provably no longer exists.

    A run written on another host cannot be checked from here and counts as alive."""
    if pid is None:
        return True
    if hostname is not None and hostname != socket.gethostname():
        return False
    current_boot = _boot_id()
    if boot_id and current_boot and boot_id != current_boot:
        return True
    if Path("/proc/self/stat").exists():
        fields = _proc_stat_fields(pid)
        if fields is None:
            return True
        if fields[0] in ("Z", "X"):  # exited, not yet reaped
            return True
        return pid_start is not None and _process_start_ticks(pid) != pid_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """The result history in one SQLite file. Use Store.open(); close() or `with`."""

    def __init__(self, path: Path, connection: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._db = connection

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, create: bool = True, *, readonly: bool = False) -> Store:
        """Open the history at `path`.

        create=True (the run and import commands): create the file and its directory if missing.
        readonly=True (every other command): the file must exist and is opened with mode=ro."""
        path = Path(path).expanduser()
        if create and readonly:
            raise ValueError("a read-only store cannot be created")
        if path.is_dir():
            raise UserError(f"{path} is a directory, not a result database: --db and GPUBENCH_DB name the file, e.g. {path / 'results.db'}")
        exists = path.exists()
        if exists and not path.is_file():
            raise UserError(f"{path} is not a regular file: --db and GPUBENCH_DB name a result database file")
        if not exists and not create:
            raise UserError(f"no result history at {path} (nothing has been run or imported there yet; --db or GPUBENCH_DB pick another)")
        if not readonly:
            _check_writable(path, exists)
        try:
            if readonly:
                connection = _connect_readonly(path)
            else:
                connection = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        except (sqlite3.Error, OSError) as e:
            raise UserError(f"cannot open the result database {path}: {e}") from None
        store = cls(path, connection, readonly)
        try:
            store._prepare(existed=exists)
        except BaseException:
            connection.close()
            raise
        return store

    def _prepare(self, existed: bool) -> None:
        with self._errors():
            self._db.execute("PRAGMA foreign_keys = ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version > schema_version():
            raise UserError(
                f"{self.path} was written by a newer gpubench (schema version {version}; this version reads up to "
                f"{schema_version()}): upgrade gpubench to read it"
            )
        if app_id != APPLICATION_ID and (tables or version):
            raise UserError(f"{self.path} is an SQLite database, but not a gpubench result history")
        if version == 0 and tables:
            raise UserError(f"{self.path} has tables but no gpubench schema version (PRAGMA user_version is 0): "
                            f"not a gpubench result history, or a damaged one")
        if version == 0 and existed and self.readonly:
            raise UserError(f"{self.path} is empty, not a gpubench result history")
        if not self.readonly:
            with self._errors():
                self._db.execute("PRAGMA journal_mode = DELETE")
                self._db.execute("PRAGMA synchronous = FULL")
        if version < schema_version():
            if self.readonly:
                self._migrate_private_copy(version)
            else:
                self._migrate(self._db, version)

    def _migrate(self, db: sqlite3.Connection, version: int) -> None:
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                # re-read under the write lock: another process may have migrated meanwhile
                version = db.execute("PRAGMA user_version").fetchone()[0]
                for step in range(version, schema_version()):
                    MIGRATIONS[step](db)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {schema_version()}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    db.execute("ROLLBACK")
                raise

    def _migrate_private_copy(self, version: int) -> None:
        memory = sqlite3.connect(":memory:", isolation_level=None)
        with self._errors():
            self._db.backup(memory)
        self._db.close()
        self._db = memory
        self._migrate(memory, version)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as e:
            message = str(e)
            if "readonly" in message or "read-only" in message:
                raise UserError(f"cannot write to the result database {self.path}: {message}") from None
            if "locked" in message or "busy" in message:
                raise UserError(f"the result database {self.path} is locked by another process: {message}") from None
            if "file is not a database" in message:
                raise UserError(f"{self.path} is not a gpubench result database (corrupted or not SQLite)") from None
            raise UserError(f"result database {self.path}: {message}") from None
        except sqlite3.DatabaseError as e:
            if "file is not a database" in str(e):
                raise UserError(f"{self.path} is not a gpubench result database (corrupted or not SQLite)") from None
            raise UserError(f"the result database {self.path} is damaged: {e}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise RuntimeError("this store was opened read-only")
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")  # can be refused while another program holds a read transaction
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                    self._db.execute("ROLLBACK")
                raise

    # --- writing ------------------------------------------------------------------------------

    def begin_run(self, run: Run, writer: WriterIdentity | None = None) -> int:
        """Store `run` as running by this process; returns its local id. Results it already
        carries are stored with it."""
        writer = writer or WriterIdentity.current()
        with self._transaction() as db:
            run_id = self._insert_run(db, run, RunStatus.RUNNING, writer, imported=False)
            for result in run.results:
                self._insert_result(db, run_id, result)
        return run_id

    def add_result(self, run_id: int, result: Result) -> None:
        """Store one finished result, committed before this returns."""
        with self._transaction() as db:
            self._require_run(db, run_id)
            self._insert_result(db, run_id, result)

    def put_result(self, run_id: int, result: Result) -> None:
        """Store a case's result, replacing the one stored for the same case of this run (the
        case's earlier rounds), committed before this returns."""
        with self._transaction() as db:
            self._require_run(db, run_id)
            row = _result_row(result)
            updated = db.execute(
                f"UPDATE results SET {', '.join(f'{column} = ?' for column in row)} WHERE run_id = ? AND benchmark = ? AND case_name = ?",
                (*row.values(), run_id, result.benchmark, result.case),
            )
            if updated.rowcount == 0:
                self._insert_result(db, run_id, result)

    def finish_run(self, run_id: int, status: RunStatus, ended: float) -> None:
        with self._transaction() as db:
            self._require_run(db, run_id)
            db.execute("UPDATE runs SET status = ?, ended = ? WHERE id = ?", (RunStatus(status).value, float(ended), run_id))

    def import_run(self, run: Run) -> int:
        """Add a run exported elsewhere; the same uid twice is refused. A run exported while it was
        still running can never finish here, so it is stored as interrupted."""
        status = RunStatus.INTERRUPTED if run.status is RunStatus.RUNNING else run.status
        with self._transaction() as db:
            row = db.execute("SELECT id FROM runs WHERE uid = ?", (run.uid,)).fetchone()
            if row:
                raise UserError(f"run {run.uid[:12]} is already in the history as run {row[0]}")
            run_id = self._insert_run(db, run, status, None, imported=True)
            for result in run.results:
                self._insert_result(db, run_id, result)
        return run_id

    @staticmethod
    def _require_run(db: sqlite3.Connection, run_id: int) -> None:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise UserError(f"no run {run_id} in the result history")

    @staticmethod
    def _insert_run(db: sqlite3.Connection, run: Run, status: RunStatus, writer: WriterIdentity | None, imported: bool) -> int:
        if db.execute("SELECT 1 FROM runs WHERE uid = ?", (run.uid,)).fetchone():
            raise UserError(f"a run with uid {run.uid} is already stored")
        cursor = db.execute(
            "INSERT INTO runs (uid, label, started, ended, status, metadata, profile, hostname, pid, pid_start, boot_id, imported)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.uid,
                run.label,
                float(run.started),
                None if run.ended is None else float(run.ended),
                status.value,
                _dumps(run.metadata),
                _dumps(run.profile),
                writer.hostname if writer else None,
                writer.pid if writer else None,
                writer.pid_start if writer else None,
                writer.boot_id if writer else None,
                int(imported),
            ),
        )
        return int(cursor.lastrowid)

    @staticmethod
    def _insert_result(db: sqlite3.Connection, run_id: int, result: Result) -> None:
        row = {"run_id": run_id, "benchmark": result.benchmark, "case_name": result.case, **_result_row(result)}
        db.execute(f"INSERT INTO results ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    # --- reading ------------------------------------------------------------------------------

    _RUN_COLUMNS = "id, uid, label, started, ended, status, metadata, profile, hostname, pid, pid_start, boot_id"

    def get_run(self, ref: str, with_results: bool = True) -> Run:
        """A run by local id, "latest", or a uid prefix of at least 6 hex digits."""
        row = self._find_run_row(str(ref).strip())
        run = self._run_from_row(row)
        if with_results:
            with self._errors():
                rows = self._db.execute(
                    "SELECT benchmark, case_name, params, unit, higher_is_better, status, reason, samples, sample_metrics,"
                    " extra, summary, telemetry, started, ended FROM results WHERE run_id = ? ORDER BY id",
                    (run.id,),
                ).fetchall()
            run = dataclasses.replace(run, results=tuple(_result_from_row(r) for r in rows))
        return run

    def _find_run_row(self, ref: str) -> tuple:
        select = f"SELECT {self._RUN_COLUMNS} FROM runs"
        with self._errors():
            if ref.lower() == "latest":
                row = self._db.execute(f"{select} ORDER BY started DESC, id DESC LIMIT 1").fetchone()
                if row is None:
                    raise UserError(f"the result history {self.path} has no runs yet")
                return row
            is_id = ref.isascii() and ref.isdigit() and int(ref) < 1 << 63  # '³' is a digit too; SQLite integers are 64-bit
            if is_id and len(ref) < UID_PREFIX_MIN:
                row = self._db.execute(f"{select} WHERE id = ?", (int(ref),)).fetchone()
                if row is None:
                    raise UserError(f"no run {ref} in {self.path} (see: gpubench list)")
                return row
            if is_id:
                row = self._db.execute(f"{select} WHERE id = ?", (int(ref),)).fetchone()
                if row is not None:
                    return row
            prefix = ref.lower()
            if len(prefix) < UID_PREFIX_MIN or any(c not in "0123456789abcdef" for c in prefix):
                raise UserError(
                    f"unknown run {ref!r}: give a run number, 'latest', or at least {UID_PREFIX_MIN} hex digits of its uid (see: gpubench list)"
                )
            rows = self._db.execute(f"{select} WHERE substr(uid, 1, ?) = ? ORDER BY id", (len(prefix), prefix)).fetchall()
        if not rows:
            raise UserError(f"no run with uid starting {prefix} in {self.path} (see: gpubench list)")
        exact = [r for r in rows if r[1] == prefix]  # a whole uid that begins another one
        if len(rows) > 1 and exact:
            return exact[0]
        if len(rows) > 1:
            ids = ", ".join(str(r[0]) for r in rows)
            raise UserError(f"uid prefix {prefix} matches runs {ids}: give more digits")
        return rows[0]

    def complete_runs_labelled(self, label: str) -> list[Run]:
        """Every complete run with exactly this label, with its results, oldest first."""
        with self._errors():
            ids = [row[0] for row in self._db.execute(
                "SELECT id FROM runs WHERE label = ? AND status = ? ORDER BY started, id", (label, RunStatus.COMPLETE.value))]
        return [self.get_run(str(run_id)) for run_id in ids]

    def list_runs(self, limit: int | None = None) -> list[RunListing]:
        """Runs, most recently started first, without their results but with counts of them."""
        query = f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started DESC, id DESC"
        params: tuple = ()
        if limit is not None:
            query += " LIMIT ?"
            params = (int(limit),)
        with self._errors():
            rows = self._db.execute(query, params).fetchall()
            counts: dict[int, dict[str, int]] = {}
            for run_id, status, count in self._db.execute("SELECT run_id, status, count(*) FROM results GROUP BY run_id, status"):
                counts.setdefault(run_id, {})[status] = count
        runs = [self._run_from_row(row) for row in rows]
        return [RunListing(run, counts.get(run.id, {})) for run in runs]

    def _run_from_row(self, row: Sequence) -> Run:
        run_id, uid, label, started, ended, status, metadata, profile, hostname, pid, pid_start, boot_id = row
        status = RunStatus(status)
        if status is RunStatus.RUNNING and writer_is_gone(hostname, pid, pid_start, boot_id):
            status = RunStatus.INTERRUPTED
            self._record_interrupted(run_id)
        return Run(
            uid=uid,
            label=label,
            started=started,
            ended=ended,
            status=status,
            metadata=_loads(metadata) or {},
            profile=_loads(profile) or {},
            id=run_id,
        )

    def _record_interrupted(self, run_id: int) -> None:
        if self.readonly:
            return
        try:
            with self._transaction() as db:
                db.execute(
                    "UPDATE runs SET status = ? WHERE id = ? AND status = ?",
                    (RunStatus.INTERRUPTED.value, run_id, RunStatus.RUNNING.value),
                )
        except UserError:
            pass  # busy or read-only after all: the run still reads as interrupted; stored next time


def _result_from_row(row: Sequence) -> Result:
    (benchmark, case, params, unit, higher_is_better, status, reason, samples, sample_metrics, extra, summary, telemetry, started, ended) = row
    return Result(
        benchmark=benchmark,
        case=case,
        params=_loads(params) or {},
        unit=unit,
        higher_is_better=bool(higher_is_better),
        status=ResultStatus(status),
        reason=reason,
        samples=tuple(float(x) for x in _loads(samples)),
        sample_metrics=tuple(dict(m) for m in _loads(sample_metrics)),
        extra=_loads(extra) or {},
        summary=Summary.from_dict(_loads(summary)) if summary else None,
        telemetry=TelemetrySummary.from_dict(stored) if (stored := _loads(telemetry)) else None,
        started=started,
        ended=ended,
    )


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that can never change the file.

    A writer killed inside a transaction leaves a hot journal that SQLite must roll back before
    anyone may read, which a read-only connection cannot do. Then the file and its journal are
    copied aside, recovered there, and read from an in-memory copy; the original stays as it is
    (the next writing command recovers it in place)."""
    uri = f"file:{quote(str(path.resolve()), safe='/')}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)
    journal = path.with_name(path.name + "-journal")
    if not journal.exists():
        return connection
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError:
        connection.close()
    with tempfile.TemporaryDirectory(prefix="gpubench-recover-") as scratch:
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        shutil.copyfile(journal, copy.with_name(copy.name + "-journal"))
        recovered = sqlite3.connect(str(copy), isolation_level=None)
        memory = sqlite3.connect(":memory:", isolation_level=None)
        try:
            recovered.backup(memory)
        finally:
            recovered.close()
    return memory


def _check_writable(path: Path, exists: bool) -> None:
    """Refuse, with one line, a history that cannot be written, before SQLite touches anything."""
    if exists:
        if not os.access(path, os.R_OK | os.W_OK):
            raise UserError(f"cannot write to the result database {path}: the file is read-only")
        directory = path.parent
    else:
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the directory {directory} for the result database: {e.strerror or e}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to the result database {path}: its directory {directory} is read-only (SQLite needs it for its journal)")


def _result_row(result: Result) -> dict[str, Any]:
    """A result's columns beside its run and case."""
    return {
        "params": _dumps(result.params),
        "unit": result.unit,
        "higher_is_better": int(bool(result.higher_is_better)),
        "status": ResultStatus(result.status).value,
        "reason": result.reason,
        "samples": _dumps(list(result.samples)),
        "sample_metrics": _dumps([dict(m) for m in result.sample_metrics]),
        "extra": _dumps(result.extra),
        "summary": _dumps(result.summary.to_dict()) if result.summary else None,
        "telemetry": _dumps(result.telemetry.to_dict() if result.telemetry else {}),
        "started": float(result.started),
        "ended": float(result.ended),
    }
