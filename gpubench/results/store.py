"""The result history: one SQLite file, one row per run and one row per result.

Crash safety: the database uses the rollback journal with synchronous=FULL, and every result is
committed in its own transaction the moment it is added, so a run killed with SIGKILL keeps every
completed result. The rollback journal (rather than WAL) keeps the history a single file that can
be copied, and lets read-only commands open it on read-only media, where WAL would need a
writable shared-memory file beside it.

Read commands open the file with SQLite's `mode=ro`: they can never create, truncate or rewrite
it. A run is stored as `running` with who writes it (gpubench.results.writer); when that process
is gone it reads as `interrupted` (and is stored so where a store opened for writing reads it; the
read-only commands leave the file as it is).

The schema is versioned (gpubench.results.dbfile): an older file is migrated in place when opened
for writing, and migrated in a private in-memory copy when opened read-only, so reading never
changes the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from gpubench.errors import UserError
from gpubench.results import dbfile
from gpubench.results.dbfile import APPLICATION_ID, check_writable, connect_readonly
from gpubench.results.model import Result, ResultStatus, Run, RunStatus, Summary
from gpubench.results.writer import WriterIdentity, writer_is_gone
from gpubench.telemetry.summary import TelemetrySummary

UID_PREFIX_MIN = 6


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

    def to_dict(self) -> dict[str, Any]:
        """One entry of `gpubench list --json`."""
        run = self.run
        return {"id": run.id, "uid": run.uid, "label": run.label, "started": run.started, "ended": run.ended,
                "status": run.status.value, "results": self.counts,
                "kernel": run.metadata.get("kernel"), "hostname": run.metadata.get("hostname")}


class RunInProgress(UserError):
    """A run whose process is still writing it cannot be deleted."""

    def __init__(self, run_id: int, writer: WriterIdentity) -> None:
        super().__init__(f"run {run_id} is in progress ({writer.describe()}): let it finish or stop it first; "
                         f"a stopped run stays stored as interrupted")
        self.run_id = run_id


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
            check_writable(path, exists)
        try:
            if readonly:
                connection = connect_readonly(path)
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
        if version > dbfile.schema_version():
            raise UserError(
                f"{self.path} was written by a newer gpubench (schema version {version}; this version reads up to "
                f"{dbfile.schema_version()}): upgrade gpubench to read it"
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
        if version < dbfile.schema_version():
            if self.readonly:
                self._migrate_private_copy()
            else:
                self._migrate(self._db)

    def _migrate(self, db: sqlite3.Connection) -> None:
        with self._errors():
            dbfile.migrate(db)

    def _migrate_private_copy(self) -> None:
        memory = sqlite3.connect(":memory:", isolation_level=None)
        with self._errors():
            self._db.backup(memory)
        self._db.close()
        self._db = memory
        self._migrate(memory)

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

    def delete_runs(self, run_ids: Sequence[int]) -> None:
        """Delete these runs with their results, all or none. A run still being written (by a live
        process, or on another host, where that cannot be checked) is refused: RunInProgress."""
        with self._transaction() as db:
            for run_id in run_ids:
                row = db.execute("SELECT status, hostname, pid, pid_start, boot_id FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise UserError(f"no run {run_id} in {self.path} (see: gpubench list)")
                status, hostname, pid, pid_start, boot_id = row
                if status == RunStatus.RUNNING.value and not writer_is_gone(hostname, pid, pid_start, boot_id):
                    raise RunInProgress(run_id, WriterIdentity(hostname, pid, pid_start, boot_id))
            db.executemany("DELETE FROM runs WHERE id = ?", [(run_id,) for run_id in run_ids])

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
            if is_id:  # a run number; one long enough to be a uid prefix too is looked up as that next
                row = self._db.execute(f"{select} WHERE id = ?", (int(ref),)).fetchone()
                if row is not None:
                    return row
                if len(ref) < UID_PREFIX_MIN:
                    raise UserError(f"no run {ref} in {self.path} (see: gpubench list)")
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
