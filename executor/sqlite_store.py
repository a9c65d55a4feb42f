"""The embedded run store: one SQLite file in WAL mode, safe for several processes at once.

Events are written by the store's writer thread (`planweave.executor._writer`), many per
transaction (WAL with `synchronous=NORMAL`: a committed event survives the process being
killed; after a power loss the last few may be rolled back, never half-written). Values
over `BLOB_THRESHOLD` bytes (step outputs, resolved arguments, prompts) are stored once in
`blobs`, keyed by their SHA-256, and events point at them. Since schema 2, `events` is keyed
by (run id, seq) alone (`WITHOUT ROWID`, no second index: every query reads one run's events),
and a row's JSON leaves out what its columns hold. `step_ready` events are not stored: a step
that was ready but had not started when its process died is simply pending on resume.

Each run row carries its lease (`owner` = `host:pid:random`, `heartbeat`, `lease_expires`):
claimed in one `BEGIN IMMEDIATE` transaction, renewed by the writer thread while the run
lives, and checked by every batch the writer commits (a run taken over elsewhere fails
closed here). Schema 1 files (no lease columns) are migrated in place when opened writable.

A store whose file or directory is not writable opens read-only (`runs`, `show`, `stats`,
`export` work; recording raises `StoreReadOnlyError`). `max_bytes` caps the file's size
(SQLite's `max_page_count`): a full store raises `StoreFullError`, and `delete`/`prune`
give the space back.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from pydantic_core import to_json

from planweave.executor._leases import HOST as _HOST, abandon as _abandon, lease_live as _lease_live, process_owner
from planweave.executor._leases import resume as _resume
from planweave.executor._writer import BatchOutcome, EventWriter
from planweave.executor._encoding import (
    BLOB_THRESHOLD,
    blob_refs,
    decode_blob,
    decode_event,
    dumps,
    encode_events,
    encode_step_runs,
    escape_like,
    keep_status,
    run_filters,
    summary_from_row,
)
from planweave.executor.events import Noted, RunEvent, StepAdded
from planweave.executor.store import (
    FINAL_STATUSES,
    Lease,
    RunLeasedError,
    RunStore,
    RunSummary,
    StoredStatus,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
    DEFAULT_LEASE_S,
    _release_failed,
    default_lease_s,
)

__all__ = ["BLOB_THRESHOLD", "DEFAULT_LEASE_S", "SQLiteRunStore", "process_owner"]

log = logging.getLogger("planweave.store")

_SCHEMA_VERSION = 2
_CHECKPOINT_BYTES = 4 << 20
"""WAL size past which the writer thread copies it back (SQLite's default: 1,000 pages)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    goal TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    duration_s REAL,
    steps INTEGER NOT NULL DEFAULT 0,
    llm_calls INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL DEFAULT 0,
    answer TEXT,
    error TEXT,
    meta TEXT NOT NULL DEFAULT '{}',
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    heartbeat REAL,
    lease_expires REAL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    step_id TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""
# Schema 1 -> 2: the lease columns.
_MIGRATE_1 = """
ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN heartbeat REAL;
ALTER TABLE runs ADD COLUMN lease_expires REAL;
"""
_SUMMARY_COLUMNS = (
    "id, kind, name, goal, status, created_at, finished_at, duration_s, steps, llm_calls, "
    "input_tokens, output_tokens, cost_usd, answer, error, meta, host, pid"
)
_LEASE_COLUMNS = ", owner, lease_expires"
_NO_LEASE_COLUMNS = ", '' AS owner, NULL AS lease_expires"  # a read-only schema 1 file

_CHUNKS = (64, 16, 4, 2, 1)
"""Rows per INSERT statement: a batch's rows go in statements of these sizes, largest first (a
step's start and success, in a chain of steps, take one statement).
One statement for many rows, not one per row (`executemany`): the sqlite3 module lets go of
the GIL around each statement, and a writer thread taking it back once per row would wait for
the event loop each time."""


def _insert_sql(rows: int, *, fenced: bool) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows)
    if not fenced:
        return f"INSERT INTO events (run_id, seq, kind, at, step_id, data) VALUES {values}"
    # Fencing too: the rows are written only while this process owns the run (its owner name is
    # in the connection's temporary table, `_know_owner`; the run id is the last parameter).
    return (
        f"INSERT INTO events (run_id, seq, kind, at, step_id, data) SELECT * FROM (VALUES {values}) "
        "WHERE (SELECT owner FROM runs WHERE id = ?) = (SELECT owner FROM temp.planweave_owner)"
    )


_INSERTS = {(size, fenced): _insert_sql(size, fenced=fenced) for size in _CHUNKS for fenced in (False, True)}

_ONE_STATEMENT = 16
"""Most events a loop's commit writes without BEGIN and COMMIT (`SQLiteRunStore._write_one_statement`)."""


@functools.cache
def _one_statement(rows: int) -> str:
    return _insert_sql(rows, fenced=True)


def _insert_rows(db: sqlite3.Connection, run_id: str, rows: list[Any], *, fenced: bool) -> int:
    """Insert one run's rows, in a few statements (`_CHUNKS`); returns how many were written."""
    written = done = 0
    left = len(rows)
    for size in _CHUNKS:
        sql = _INSERTS[size, fenced]
        while left >= size:
            params = list(itertools.chain.from_iterable(rows[done : done + size]))
            if fenced:
                params.append(run_id)
            written += db.execute(sql, params).rowcount
            done += size
            left -= size
    return written


def _know_owner(db: sqlite3.Connection) -> None:
    """Give a writing connection this process's lease owner name, for the fenced INSERT; its
    events need no foreign-key check either (the fence finds the run's row, or writes nothing)."""
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA temp_store=MEMORY")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS planweave_owner (owner TEXT NOT NULL)")
    db.execute("DELETE FROM temp.planweave_owner")
    db.execute("INSERT INTO temp.planweave_owner (owner) VALUES (?)", (process_owner(),))


# SQLite's primary result codes (`sqlite3.Error.sqlite_errorcode & 0xFF`).
_BUSY, _LOCKED, _READONLY, _CORRUPT, _CANTOPEN, _FULL, _NOTADB = 5, 6, 8, 11, 14, 13, 26

class SQLiteRunStore(RunStore):
    """Runs in one SQLite file. Safe to share between threads and between processes.

    Args:
        path: the database file (created with its directory when missing).
        mask: applied to every event before it is stored (see `planweave.executor.masking`).
        busy_timeout_s: how long a write waits for another process's write to finish; past it,
            the write fails (`StoreLockedError`) and a recorded run stops (fails closed).
        lease_s: how long a run's lease lasts unless renewed (a dead owner's run reads as
            `interrupted` after at most this long, on any host); default `$PLANWEAVE_LEASE_S`, else 30 s.
        max_bytes: a cap on the file's size (None: as large as the disk allows).
        read_only: open for reading only (None: when the file or its directory is not writable).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        mask: Callable[[Any], Any] | None = None,
        busy_timeout_s: float = 10.0,
        lease_s: float | None = None,
        max_bytes: int | None = None,
        read_only: bool | None = None,
    ) -> None:
        self.path = str(Path(path).expanduser())
        self.mask = mask
        self.busy_timeout_s = busy_timeout_s
        self.lease_s = lease_s if lease_s is not None else default_lease_s()
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._writer: EventWriter | None = None
        self._wdb: sqlite3.Connection | None = None  # the writer thread's connection
        self._idb: sqlite3.Connection | None = None  # loops' own commits (`write_batch(wait=False)`)
        self._wseq: dict[str, int] = {}  # writer thread: last seq written, by run
        self._wadded: dict[str, set[str]] = {}  # writer thread: step ids added, by run
        self._wrenewed: dict[str, float] = {}  # writer thread: when a batch last renewed the run's lease
        if read_only is None:
            read_only = not self._writable()
        self.read_only = read_only
        if not read_only:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the run store's directory `{Path(self.path).parent}`: {exc.strerror}; "
                    "set PLANWEAVE_HOME to a writable directory."
                ) from exc
        self._db = self._connect()

    @property
    def owner(self) -> str:
        """The owner name this process claims leases with."""
        return process_owner()

    # --- connection ----------------------------------------------------------------------------

    def _writable(self) -> bool:
        path = Path(self.path)
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK):
            # WAL needs its -wal and -shm files beside the database.
            wal, shm = Path(self.path + "-wal"), Path(self.path + "-shm")
            return path.exists() and all(p.exists() and os.access(p, os.W_OK) for p in (path, wal, shm))
        return not path.exists() or os.access(path, os.W_OK)

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            try:
                return self._open_writable()
            except StoreReadOnlyError:
                self.read_only = True  # e.g. a read-only file system: reading still works
        return self._open_read_only()

    def _open_writable(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = self._open(self.path, uri=False)
            # Before WAL: set on a new file, it lets `delete` and `prune` give space back in place.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            if version < _SCHEMA_VERSION:
                self._migrate(db)
            self._schema = _SCHEMA_VERSION
            return db
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise self._error(exc) from exc

    def _open_read_only(self) -> sqlite3.Connection:
        if not Path(self.path).exists():
            raise StoreReadOnlyError(
                f"there is no run store at `{self.path}` and its directory is not writable; "
                "set PLANWEAVE_HOME to a writable directory."
            )
        uri = "file:" + urllib.parse.quote(self.path) + "?mode=ro"
        last: sqlite3.Error | None = None
        # Without write access to the directory, a WAL file may lack its -shm: then only an
        # immutable read works (nobody can be writing it without that access either).
        for suffix in ("", "&immutable=1"):
            try:
                db = self._open(uri + suffix, uri=True)
                version = db.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(version)
                self._schema = version
                return db
            except sqlite3.Error as exc:
                last = exc
        assert last is not None
        raise self._error(last) from last

    def _open(self, target: str, *, uri: bool) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False, uri=uri)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        if self.max_bytes is not None:
            page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count={max(1, int(self.max_bytes) // page)}")
        return db

    def _check_version(self, version: int) -> None:
        if version > _SCHEMA_VERSION:
            raise StoreError(
                f"the run store `{self.path}` was written by a newer planweave (schema {version}, "
                f"this one reads {_SCHEMA_VERSION}); upgrade planweave or set PLANWEAVE_HOME elsewhere."
            )

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        # In one write transaction, reading the version again: two processes opening an old
        # file at once migrate it once.
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
            elif version == 1:
                for statement in _MIGRATE_1.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version < _SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _error(self, exc: sqlite3.Error) -> StoreError:
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        text = str(exc)
        if code in (_BUSY, _LOCKED):
            return StoreLockedError(
                f"the run store `{self.path}` is locked by another process (waited {self.busy_timeout_s:g}s); "
                "retry when the other planweave process has finished, or set PLANWEAVE_HOME to use another store."
            )
        if code == _FULL:
            return StoreFullError(
                f"the run store `{self.path}` is full (the disk, or the store's size cap, has no room left); "
                "free space with `planweave prune --older-than 7d` or `planweave delete RUN_ID` (both give the "
                "space back), or set PLANWEAVE_HOME to a disk with room."
            )
        if code == _READONLY or (code == _CANTOPEN and not self._writable()):
            return self._read_only_error()
        if code in (_CORRUPT, _NOTADB):
            return StoreError(
                f"the run store `{self.path}` is corrupted ({text}); move the file aside "
                "(planweave then starts a new one) or set PLANWEAVE_HOME to another directory."
            )
        return StoreError(f"the run store `{self.path}` failed: {text}")

    def _read_only_error(self) -> StoreReadOnlyError:
        return StoreReadOnlyError(
            f"the run store `{self.path}` is read-only (the file or its directory is not writable): runs can be "
            "listed, shown and exported, not recorded; make it writable (`chmod u+w`), set PLANWEAVE_HOME to a "
            "writable directory, or run with `--no-record`."
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise self._read_only_error()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise self._error(exc) from exc

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if self._writer is not None:
            self._writer.flush()  # read this process's own writes
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        with self._lock:
            self._db.close()

    # --- leases --------------------------------------------------------------------------------

    def _leased_error(self, run_id: str, owner: str, expires: float | None) -> RunLeasedError:
        when = time.strftime("%H:%M:%S", time.localtime(expires)) if expires else "?"
        left = max(0.0, (expires or 0.0) - time.time())
        return RunLeasedError(
            f"run `{run_id}` is owned by the live process `{owner}` (its lease expires at {when}, in {left:.0f}s "
            "unless renewed); wait for it to finish, or take it over with `planweave resume --force` "
            "if that process is stuck or gone.",
            run_id=run_id,
            owner=owner,
            expires_at=expires,
        )

    def _take(self, db: sqlite3.Connection, run_id: str, row: tuple[Any, ...], *, force: bool, now: float) -> Lease:
        """Claim `run_id` inside the caller's write transaction; `row` is (owner, lease_expires, host, pid)."""
        owner, expires, host, pid = row
        me = process_owner()
        live = owner != me and _lease_live(run_id, owner, expires, host, pid, now)
        if live and not force:
            raise self._leased_error(run_id, owner or f"{host}:{pid}", expires)
        expiry = now + self.lease_s
        db.execute(
            "UPDATE runs SET owner = ?, heartbeat = ?, lease_expires = ?, host = ?, pid = ? WHERE id = ?",
            (me, now, expiry, _HOST, os.getpid(), run_id),
        )
        previous = owner if owner and owner != me else None
        return Lease(
            run_id=run_id, owner=me, expires_at=expiry, previous_owner=previous,
            previous_expires_at=expires if previous else None, forced=live,
        )

    def claim(self, run_id: str, *, force: bool = False) -> Lease:
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT owner, lease_expires, host, pid FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run `{run_id}` in the store `{self.path}`; `planweave runs` lists the recorded runs.")
            return self._take(db, run_id, row, force=force, now=now)

    def release(self, run_id: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET lease_expires = ? WHERE id = ? AND owner = ?", (time.time(), run_id, process_owner())
            )

    def abandon(self, run_id: str) -> None:
        _abandon(run_id)

    def writer(self) -> EventWriter:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = EventWriter(self, heartbeat_s=max(0.05, self.lease_s / 3))
        return self._writer

    def renew_leases(self, run_ids: list[str]) -> dict[str, StoreError]:
        lost: dict[str, StoreError] = {}
        try:
            db = self._writer_db()
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                for run_id in run_ids:
                    if not self._renew(db, run_id, now):
                        lost[run_id] = self._lost(db, run_id)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, StoreError) as exc:
            # Not fatal by itself: if the lease expires meanwhile and another process claims
            # the run, this process's next write fails closed.
            log.warning("could not renew run leases in `%s`: %s", self.path, exc)
        return lost

    def _renew(self, db: sqlite3.Connection, run_id: str, now: float) -> bool:
        cursor = db.execute(
            "UPDATE runs SET heartbeat = ?, lease_expires = ? WHERE id = ? AND owner = ?",
            (now, now + self.lease_s, run_id, process_owner()),
        )
        return cursor.rowcount > 0

    def _lost(self, db: sqlite3.Connection, run_id: str) -> StoreError:
        row = db.execute("SELECT owner, lease_expires FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return StoreError(
                f"run `{run_id}` was not begun in the store `{self.path}` (or was deleted while it ran); "
                "call `begin` first: its events are not recorded."
            )
        return RunLeasedError(
            f"run `{run_id}` was taken over by `{row[0]}` (`planweave resume --force`); this process stops it.",
            run_id=run_id,
            owner=row[0],
            expires_at=row[1],
        )

    # --- writing -------------------------------------------------------------------------------

    def begin(self, run_id: str, *, kind: str, name: str, goal: str, meta: dict[str, Any]) -> Lease:
        now = time.time()
        me = process_owner()
        with self._write() as db:
            row = db.execute(
                "SELECT meta, owner, lease_expires, host, pid FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                expiry = now + self.lease_s
                db.execute(
                    "INSERT INTO runs (id, kind, name, goal, status, created_at, meta, host, pid, owner, heartbeat, "
                    "lease_expires) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, kind, name, goal, now, dumps(meta), _HOST, os.getpid(), me, now, expiry),
                )
                lease = Lease(run_id=run_id, owner=me, expires_at=expiry)
            else:  # resuming: keep the events, continue the sequence
                lease = self._take(db, run_id, row[1:], force=False, now=now)
                merged = {**json.loads(row[0]), **meta, "resumed_at": now}
                db.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, meta = ? WHERE id = ?",
                    (dumps(merged), run_id),
                )
        _resume(run_id)
        # The writer reads the run's sequence and steps afresh (another process may have written it).
        self.writer().call(lambda: (self._wseq.pop(run_id, None), self._wadded.pop(run_id, None),
                                    self._wrenewed.pop(run_id, None)))
        return lease

    def _writer_db(self) -> sqlite3.Connection:
        if self._wdb is None:
            if self.read_only:
                raise self._read_only_error()
            try:
                db = self._open(self.path, uri=False)
                db.execute("PRAGMA wal_autocheckpoint=0")  # `checkpoint`, outside the write lock
                _know_owner(db)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            self._wdb = db
        return self._wdb

    def _inline_db(self) -> sqlite3.Connection:
        if self._idb is None:
            if self.read_only:
                raise self._read_only_error()
            try:
                db = self._open(self.path, uri=False)
                db.execute("PRAGMA busy_timeout=0")  # never hold a loop up: the thread waits instead
                db.execute("PRAGMA wal_autocheckpoint=0")  # the thread checkpoints (`checkpoint`)
                _know_owner(db)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            self._idb = db
        return self._idb

    def checkpoint(self) -> None:
        """Copy the WAL back into the database once it holds `_CHECKPOINT_BYTES` (as SQLite's
        own automatic checkpoint would, but off the write lock: loops go on committing)."""
        try:
            if os.path.getsize(self.path + "-wal") < _CHECKPOINT_BYTES:
                return
        except OSError:
            return  # no WAL (yet): nothing to copy
        try:
            self._writer_db().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (sqlite3.Error, StoreError) as exc:
            log.warning("could not checkpoint the run store `%s`: %s", self.path, exc)

    def close_writer(self) -> None:
        for db in (self._wdb, self._idb):
            if db is not None:
                db.close()
        self._wdb = self._idb = None

    def write_batch(
        self, items: list[tuple[str, RunEvent | Noted]], *, wait: bool = True, release: frozenset[str] = frozenset()
    ) -> BatchOutcome:
        """Write the events in one transaction, and give up this process's lease of the runs in
        `release` in it. `wait=False` (a loop writing a few events itself) uses a connection that
        does not wait for another process's lock: then `busy` says so."""
        outcome = BatchOutcome()
        by_run: dict[str, list[RunEvent | Noted]] = {}
        for run_id, event in items:
            events = by_run.get(run_id)
            if events is None:
                by_run[run_id] = [event]
            else:
                events.append(event)
        try:
            db = self._writer_db() if wait else self._inline_db()
        except StoreError as exc:
            outcome.failed = dict.fromkeys(by_run, exc)
            _release_failed(release, by_run, exc)
            return outcome
        if not wait and not release and len(by_run) == 1:
            done = self._write_one_statement(db, by_run, outcome)
            if done is not None:
                return done
        seqs: dict[str, int] = {}
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                blobs: dict[str, str] = {}
                renewed: dict[str, float] = {}
                for run_id, events in by_run.items():
                    # Fencing: only the lease's owner writes (a run taken over elsewhere stops here),
                    # checked in the write transaction: by the lease's renewal now and then, else
                    # by the events' INSERT itself (`_insert_sql`).
                    fenced = True
                    if now - self._wrenewed.get(run_id, 0.0) >= self.lease_s / 6:
                        if not self._renew(db, run_id, now):
                            outcome.failed[run_id] = self._lost(db, run_id)
                            continue
                        renewed[run_id] = now
                        fenced = False
                    seq = self._write_run(db, run_id, events, blobs, outcome, fenced=fenced)
                    if seq is None:
                        outcome.failed[run_id] = self._lost(db, run_id)
                        continue
                    seqs[run_id] = seq
                if blobs:
                    db.executemany("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", blobs.items())
                for run_id in release:
                    if run_id not in outcome.failed:
                        db.execute("UPDATE runs SET lease_expires = ? WHERE id = ? AND owner = ?",
                                   (now, run_id, process_owner()))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            for run_id in by_run:
                self._wadded.pop(run_id, None)  # may hold steps of the rolled-back batch
            if not wait and (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (_BUSY, _LOCKED):
                outcome.busy = True
                return outcome
            error = self._error(exc)
            for run_id in by_run:
                outcome.failed.setdefault(run_id, error)
            _release_failed(release, by_run, error)
            outcome.finished.clear()
            return outcome
        self._wseq.update(seqs)
        self._wrenewed.update(renewed)
        return outcome

    def _write_one_statement(
        self, db: sqlite3.Connection, by_run: dict[str, list[RunEvent | Noted]], outcome: BatchOutcome
    ) -> BatchOutcome | None:
        """The usual batch of a loop's own commit (a step's start and success, in a chain of
        steps): a few plain events of one run whose lease was renewed lately, nothing else to
        update. Written by one fenced INSERT, its own transaction: no BEGIN and COMMIT around it.
        None when the batch is not of that kind (nothing was written: the caller writes it)."""
        ((run_id, events),) = by_run.items()
        seq = self._wseq.get(run_id)
        if (seq is None or run_id not in self._wadded or len(events) > _ONE_STATEMENT
                or time.time() - self._wrenewed.get(run_id, 0.0) >= self.lease_s / 6):
            return None
        params = encode_step_runs(run_id, events, seq=seq)
        if params is None:
            return None
        params.append(run_id)  # (the fence's)
        try:
            inserted = db.execute(_one_statement(len(events)), params).rowcount
        except sqlite3.Error as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (_BUSY, _LOCKED):
                outcome.busy = True
            else:
                outcome.failed[run_id] = self._error(exc)
            return outcome
        if inserted != len(events):  # (one statement: all or nothing) the run was taken over
            self._wadded.pop(run_id, None)
            outcome.failed[run_id] = self._lost(db, run_id)
            return outcome
        self._wseq[run_id] = seq + len(events)
        return outcome

    def _write_run(
        self,
        db: sqlite3.Connection,
        run_id: str,
        events: list[RunEvent | Noted],
        blobs: dict[str, str],
        outcome: BatchOutcome,
        *,
        fenced: bool,
    ) -> int | None:
        """Insert one run's events of a batch and update its summary; returns its last seq, or
        None when `fenced` and this process does not own the run (then nothing was written)."""
        seq = self._wseq.get(run_id)
        if seq is None:
            seq = int(db.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0] or 0)
        added = self._wadded.get(run_id)
        if added is None:
            added = self._wadded[run_id] = {
                r[0] for r in db.execute("SELECT step_id FROM events WHERE run_id = ? AND kind = ?", (run_id, StepAdded.kind))
            }
        own_blobs: dict[str, str] = {}
        batch = encode_events(run_id, events, seq=seq, added=added, mask=self.mask, blobs=own_blobs)
        rows = batch.rows
        inserted = _insert_rows(db, run_id, rows, fenced=fenced)
        if inserted != len(rows):
            if inserted or not fenced:  # (the owner cannot change inside the transaction)
                raise sqlite3.IntegrityError(f"run `{run_id}`: {inserted} of {len(rows)} events written")
            self._wadded.pop(run_id, None)  # (holds the steps of events that were not written)
            return None
        if own_blobs:
            blobs.update(own_blobs)
        if batch.started is not None:
            at, goal = batch.started
            db.execute(
                "UPDATE runs SET started_at = COALESCE(started_at, ?), goal = CASE WHEN ? != '' THEN ? ELSE goal END "
                "WHERE id = ?",
                (at, goal, goal, run_id),
            )
        for end in batch.finishes:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ? - COALESCE(started_at, created_at), "
                "error = COALESCE(?, error), answer = COALESCE(?, answer) WHERE id = ?",
                (end.status, end.at, end.at, end.error, end.answer, run_id),
            )
            outcome.finished.add(run_id)
        if batch.counts_changed:
            db.execute(
                "UPDATE runs SET steps = steps + ?, llm_calls = llm_calls + ?, input_tokens = input_tokens + ?, "
                "output_tokens = output_tokens + ?, cost_usd = cost_usd + ? WHERE id = ?",
                (batch.new_steps, batch.llm_calls, batch.input_tokens, batch.output_tokens, batch.cost_usd, run_id),
            )
        return batch.last_seq

    def set_status(self, run_id: str, status: StoredStatus, *, error: str | None = None) -> None:
        """Force a status, unless another live process owns the run (then nothing changes).
        `interrupted` and `queued` also give up this process's lease, so the run can be taken at once."""
        now = time.time()
        me = process_owner()
        with self._write() as db:
            row = db.execute("SELECT owner, lease_expires, host, pid FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or (row[0] != me and _lease_live(run_id, row[0], row[1], row[2], row[3], now)):
                return
            db.execute(
                "UPDATE runs SET status = ?, error = COALESCE(?, error), "
                "finished_at = CASE WHEN ? IN ('interrupted', 'queued') THEN NULL ELSE ? END, "
                "lease_expires = CASE WHEN ? IN ('interrupted', 'queued') AND owner = ? THEN ? ELSE lease_expires END "
                "WHERE id = ?",
                (status, error, status, now, status, me, now, run_id),
            )

    # --- reading -------------------------------------------------------------------------------

    @property
    def _columns(self) -> str:
        return _SUMMARY_COLUMNS + (_LEASE_COLUMNS if self._schema >= 2 else _NO_LEASE_COLUMNS)

    def _status(self, run_id: str, status: str, owner: str, expires: float | None, host: str, pid: int, now: float) -> str:
        if status == "running" and not _lease_live(run_id, owner, expires, host, pid, now):
            return "interrupted"
        return status

    def list_runs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        contains: str | None = None,
        since: float | None = None,
        limit: int | None = 50,
    ) -> list[RunSummary]:
        where, params = run_filters("?", status=status, kind=kind, name=name, contains=contains, since=since)
        now = time.time()
        rows = self._read(f"SELECT {self._columns} FROM runs{where} ORDER BY created_at DESC, rowid DESC", params)
        return keep_status([summary_from_row(r, now) for r in rows], status, limit)

    def summary(self, run_id: str) -> RunSummary:
        columns = self._columns
        rows = self._read(f"SELECT {columns} FROM runs WHERE id = ?", (run_id,))
        if not rows and run_id:
            like = escape_like(run_id) + "%"
            rows = self._read(f"SELECT {columns} FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 3", (like,))
            if len(rows) > 1:
                raise StoreError(
                    f"run id prefix `{run_id}` matches several runs ({', '.join(r[0] for r in rows)}, ...); "
                    "give more characters."
                )
        if not rows:
            raise StoreError(
                f"no run `{run_id}` in the store `{self.path}`; `planweave runs` lists the recorded runs."
            )
        return summary_from_row(rows[0], time.time())

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return self.events_after(run_id, 0)

    def events_after(self, run_id: str, after: int) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT kind, at, step_id, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after)
        )
        blobs: dict[str, Any] = {}

        def get(digest: str) -> Any:
            if digest not in blobs:
                found = self._read("SELECT data FROM blobs WHERE hash = ?", (digest,))
                if not found:
                    raise StoreError(
                        f"the run store `{self.path}` lost a value of run `{run_id}` (blob {digest[:12]}); "
                        "the file was edited or is corrupted."
                    )
                blobs[digest] = decode_blob(found[0][0], get)
            return blobs[digest]

        return [decode_event(run_id, kind, at, step_id, text, get) for kind, at, step_id, text in rows]

    def change_marker(self, run_id: str | None = None) -> Hashable:
        if run_id is None:
            # SQLite's own counter: it changes whenever another connection (the writer thread,
            # another process) commits to the file.
            return (self._read("PRAGMA data_version")[0][0],)
        lease = "owner, lease_expires" if self._schema >= 2 else "'', NULL"
        rows = self._read(
            f"SELECT status, {lease}, (SELECT MAX(seq) FROM events WHERE run_id = ?) FROM runs WHERE id = ?",
            (run_id, run_id),
        )
        return rows[0] if rows else None

    def delete(self, run_id: str) -> None:
        rid = self.summary(run_id).id
        with self._write() as db:
            db.execute("DELETE FROM events WHERE run_id = ?", (rid,))
            db.execute("DELETE FROM runs WHERE id = ?", (rid,))
            self._collect_blobs(db)
        self._reclaim()

    def prune(self, older_than_s: float) -> int:
        """Delete runs created more than `older_than_s` ago that have ended, were interrupted
        (including `running` rows whose owner died: their lease expired) or are still queued with
        no worker on them; returns how many."""
        cutoff = time.time() - older_than_s
        finished = tuple(FINAL_STATUSES) + ("interrupted", "running", "queued")
        marks = ", ".join("?" for _ in finished)
        with self._write() as db:
            now = time.time()
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT id, status, owner, lease_expires, host, pid FROM runs "
                    f"WHERE created_at < ? AND status IN ({marks})",
                    (cutoff, *finished),
                ).fetchall()
                if self._status(r[0], r[1], r[2], r[3], r[4], r[5], now) != "running"
                and not (r[1] == "queued" and _lease_live(r[0], r[2], r[3], r[4], r[5], now))  # a worker took it
            ]
            for rid in ids:
                db.execute("DELETE FROM events WHERE run_id = ?", (rid,))
                db.execute("DELETE FROM runs WHERE id = ?", (rid,))
            if ids:
                self._collect_blobs(db)
        if ids:
            self._reclaim()
        return len(ids)

    def _reclaim(self) -> None:
        """Give the space of deleted rows back to the file system (best effort)."""
        with self._lock:
            try:
                if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
                    # `executescript` steps the pragma to its end (`execute` frees one page per step).
                    self._db.executescript("PRAGMA incremental_vacuum;")
                else:  # a store made before incremental vacuum: rebuild it once
                    self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("could not give the space of deleted runs back in `%s`: %s", self.path, exc)

    @staticmethod
    def _collect_blobs(db: sqlite3.Connection) -> None:
        """Delete blobs that no event (or other blob) points at any more."""
        used = blob_refs(
            text
            for sql in ("SELECT data FROM events WHERE data LIKE '%\"$blob\"%'", "SELECT data FROM blobs WHERE data LIKE '%\"$blob\"%'")
            for (text,) in db.execute(sql).fetchall()
        )
        for (digest,) in db.execute("SELECT hash FROM blobs").fetchall():
            if digest not in used:
                db.execute("DELETE FROM blobs WHERE hash = ?", (digest,))

    def step_durations(self, run_ids: Iterable[str]) -> list[tuple[str, str, str, float]]:
        ids = list(run_ids)
        out: list[tuple[str, str, str, float]] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            tools: dict[tuple[str, str], str] = {}
            for rid, sid, tool in self._read(
                f"SELECT run_id, step_id, json_extract(data, '$.tool') FROM events "
                f"WHERE kind = 'step_added' AND run_id IN ({marks})",
                chunk,
            ):
                tools[(rid, sid)] = tool or ""
            for rid, sid, dur in self._read(
                f"SELECT run_id, step_id, json_extract(data, '$.duration_s') FROM events "
                f"WHERE kind IN ('step_succeeded', 'step_failed') AND run_id IN ({marks})",
                chunk,
            ):
                if dur is not None:
                    out.append((rid, sid, tools.get((rid, sid), ""), float(dur)))
        return out

    def cached_input_tokens(self, run_ids: Iterable[str]) -> dict[str, int]:
        ids = list(run_ids)
        totals: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            for rid, n in self._read(
                f"SELECT run_id, SUM(COALESCE(json_extract(data, '$.cached_input_tokens'), 0)) FROM events "
                f"WHERE json_extract(data, '$.cached_input_tokens') IS NOT NULL AND run_id IN ({marks}) GROUP BY run_id",
                chunk,
            ):
                if n:
                    totals[rid] = int(n)
        return totals

    # --- moving runs between stores ------------------------------------------------------------

    def import_run(
        self, summary: RunSummary, rows: list[tuple[str, int, str, float, str | None, str]], blobs: dict[str, str],
        *, replace: bool = False,
    ) -> None:
        s = summary
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (s.id,)).fetchone() is not None:
                if not replace:
                    raise StoreError(
                        f"run `{s.id}` is already in the store `{self.path}`; pass `--replace` to overwrite it."
                    )
                db.execute("DELETE FROM events WHERE run_id = ?", (s.id,))
                db.execute("DELETE FROM runs WHERE id = ?", (s.id,))
            db.execute(
                "INSERT INTO runs (id, kind, name, goal, status, created_at, finished_at, duration_s, steps, llm_calls, "
                "input_tokens, output_tokens, cost_usd, answer, error, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.id, s.kind, s.name, s.goal, s.status, s.created_at, s.finished_at, s.duration_s, s.steps,
                 s.llm_calls, s.input_tokens, s.output_tokens, s.cost_usd, s.answer, s.error, dumps(s.meta)),
            )
            db.executemany("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", blobs.items())
            db.executemany("INSERT INTO events (run_id, seq, kind, at, step_id, data) VALUES (?, ?, ?, ?, ?, ?)", rows)
