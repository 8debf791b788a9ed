"""The history's SQLite file: its tables and their migrations, and two ways of opening it that
never surprise the user: read-only without ever changing the file, and for writing only after
checking, with one clear line, that it can be written.

The schema is versioned with PRAGMA user_version; MIGRATIONS[i] takes a database from version i
to i+1.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from gpubench.errors import UserError

# "GPUB": marks the file as a gpubench history (PRAGMA application_id)
APPLICATION_ID = 0x47505542


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


def migrate(db: sqlite3.Connection) -> None:
    """Bring the database to schema_version() in one transaction: all steps or none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        # read under the write lock: another process may have migrated meanwhile
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


def connect_readonly(path: Path) -> sqlite3.Connection:
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


def check_writable(path: Path, exists: bool) -> None:
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
