"""The server run store: runs in a PostgreSQL database, shared by processes on many hosts.

    store = open_store("postgresql://planweave:secret@db.internal:5432/planweave")

The same guarantees as the embedded SQLite store (`planweave.executor.sqlite_store`), with
PostgreSQL doing the locking:

- Events are written by the store's writer thread (`planweave.executor._writer`), many per
  transaction, each batch in ONE statement (one round trip, one commit): a data-modifying
  `WITH` that fences and updates the runs' rows, inserts the events and the new blobs, and
  notifies watchers. A committed event survives the process being killed, and (with
  PostgreSQL's default `synchronous_commit=on`) the server crashing or losing power.
- Fencing: the batch's `UPDATE runs ... WHERE owner = <this process>` locks each run's row
  and writes its events only when this process still owns its lease; a run taken over
  elsewhere fails closed here (`RunLeasedError`).
- Leases are claimed in a transaction holding the run's row (`SELECT ... FOR UPDATE`), renewed
  by the writer thread, and judged live as on SQLite (`planweave.executor._leases`).
- `wait_changed` sleeps on `LISTEN planweave_runs`: every committed write notifies the run's
  id (`pg_notify`), on a dedicated connection; if that connection drops, waiters poll.
- The schema is versioned (`planweave_schema`); migrations run in one transaction under an
  advisory lock, so two processes opening a new database at once migrate it once.

Errors map onto the store's tree: a refused or lost connection is a `StoreError` naming the
URL (password masked) and the fix; a full disk is `StoreFullError`; a read-only server or
user is `StoreReadOnlyError`; a lock held past `busy_timeout_s` is `StoreLockedError`.
Events are stored as JSON text (byte for byte as SQLite keeps them: JSONB refuses `\\u0000`
in strings, which tool outputs may hold); the statistics queries read it as `json`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    import psycopg
    import psycopg.errors
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised by open_store's message
    raise ImportError(
        "the PostgreSQL run store needs psycopg and psycopg-pool; install planweave[postgres] "
        "(`pip install 'planweave[postgres]'`)."
    ) from exc

from planweave.executor._encoding import (
    blob_refs,
    decode_blob,
    decode_event,
    dumps,
    encode_events,
    escape_like,
    keep_status,
    run_filters,
    summary_from_row,
)
from planweave.executor._leases import HOST, abandon, lease_live, process_owner, resume
from planweave.executor._writer import BatchOutcome, EventWriter
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
    mask_url,
)

__all__ = ["CHANNEL", "DEFAULT_LEASE_S", "SCHEMA_VERSION", "PostgresRunStore"]

log = logging.getLogger("planweave.store")

CHANNEL = "planweave_runs"
"""The LISTEN/NOTIFY channel: each committed write sends the run's id."""
_LOCK_KEY = 0x706C_616E_7765  # the advisory lock migrations take ("planwe")

# Each entry migrates from schema N to N + 1 (index N), in one transaction.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE SEQUENCE IF NOT EXISTS planweave_changes;
    CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        ord BIGINT GENERATED ALWAYS AS IDENTITY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        goal TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        duration_s DOUBLE PRECISION,
        steps BIGINT NOT NULL DEFAULT 0,
        llm_calls BIGINT NOT NULL DEFAULT 0,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION DEFAULT 0,
        answer TEXT,
        error TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        host TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL DEFAULT 0,
        owner TEXT NOT NULL DEFAULT '',
        heartbeat DOUBLE PRECISION,
        lease_expires DOUBLE PRECISION,
        changed BIGINT NOT NULL DEFAULT nextval('planweave_changes')
    );
    CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at DESC, ord DESC);
    CREATE INDEX IF NOT EXISTS runs_changed ON runs (changed);
    CREATE TABLE IF NOT EXISTS events (
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        step_id TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE IF NOT EXISTS blobs (
        hash TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS planweave_deletions (
        id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
        n BIGINT NOT NULL DEFAULT 0
    );
    INSERT INTO planweave_deletions (id, n) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema this planweave writes (`planweave_schema.version`)."""

_SUMMARY_COLUMNS = (
    "id, kind, name, goal, status, created_at, finished_at, duration_s, steps, llm_calls, "
    "input_tokens, output_tokens, cost_usd, answer, error, meta, host, pid, owner, lease_expires"
)
_NEXT = "nextval('planweave_changes')"

# One batch, one statement: fence and update each run's row (this process must own its lease),
# insert the events of the runs that passed, the new blobs, and notify watchers of each run.
# The arrays go in binary (`%(name)b`): several times faster to send than as text literals.
_WRITE_BATCH = f"""
WITH u AS (
    SELECT * FROM unnest(
        %(ids)b::text[], %(steps)b::bigint[], %(calls)b::bigint[], %(tin)b::bigint[], %(tout)b::bigint[],
        %(cost)b::float8[], %(nocost)b::bool[], %(started)b::float8[], %(goal)b::text[], %(status)b::text[],
        %(end_at)b::float8[], %(error)b::text[], %(answer)b::text[], %(release)b::bool[]
    ) AS u(id, steps, calls, tin, tout, cost, nocost, started, goal, status, end_at, error, answer, release)
), fence AS (
    UPDATE runs r SET
        heartbeat = %(now)b, lease_expires = CASE WHEN u.release THEN %(now)b ELSE %(expires)b END,
        changed = {_NEXT},
        steps = r.steps + u.steps, llm_calls = r.llm_calls + u.calls,
        input_tokens = r.input_tokens + u.tin, output_tokens = r.output_tokens + u.tout,
        cost_usd = CASE WHEN u.nocost THEN NULL ELSE r.cost_usd + u.cost END,
        started_at = COALESCE(r.started_at, u.started),
        goal = CASE WHEN u.goal <> '' THEN u.goal ELSE r.goal END,
        status = COALESCE(u.status, r.status),
        finished_at = CASE WHEN u.status IS NULL THEN r.finished_at ELSE u.end_at END,
        duration_s = CASE WHEN u.status IS NULL THEN r.duration_s
                          ELSE u.end_at - COALESCE(r.started_at, u.started, r.created_at) END,
        error = COALESCE(u.error, r.error),
        answer = COALESCE(u.answer, r.answer)
    FROM u WHERE r.id = u.id AND r.owner = %(me)b
    RETURNING r.id
), ins AS (
    INSERT INTO events (run_id, seq, kind, at, step_id, data)
    SELECT e.* FROM unnest(%(er)b::text[], %(es)b::bigint[], %(ek)b::text[], %(ea)b::float8[], %(esid)b::text[],
                           %(ed)b::text[]) AS e(run_id, seq, kind, at, step_id, data)
    WHERE e.run_id IN (SELECT id FROM fence)
), b AS (
    INSERT INTO blobs (hash, data)
    SELECT x.hash, x.data FROM unnest(%(bh)b::text[], %(bd)b::text[], %(br)b::text[]) AS x(hash, data, run_id)
    WHERE x.run_id IN (SELECT id FROM fence)
    ON CONFLICT (hash) DO NOTHING
)
SELECT id, pg_notify('{CHANNEL}', id) FROM fence
"""

# SQLSTATEs
_DISK_FULL = "53100"
_READ_ONLY = ("25006", "42501")  # read_only_sql_transaction, insufficient_privilege
_LOCKED = ("55P03", "57014", "40P01", "40001")  # lock_not_available, query_canceled, deadlock, serialization


class _Listener:
    """One connection listening on `CHANNEL`, on its own thread; wakes `wait_changed` callers."""

    def __init__(self, store: PostgresRunStore) -> None:
        self.store = store
        self.count = 0
        """Notifications received so far."""
        self.alive = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._waiters: dict[int, tuple[str | None, asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="planweave-store-listener", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def add(self, run_id: str | None) -> tuple[int, asyncio.Event]:
        event = asyncio.Event()
        with self._lock:
            key = id(event)
            self._waiters[key] = (run_id, asyncio.get_running_loop(), event)
        return key, event

    def remove(self, key: int) -> None:
        with self._lock:
            self._waiters.pop(key, None)

    def _wake(self, payload: str | None) -> None:
        with self._lock:
            self.count += 1
            targets = [(loop, ev) for rid, loop, ev in self._waiters.values() if rid is None or payload is None or rid == payload]
        for loop, ev in targets:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop is closed
                pass

    def _main(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = psycopg.connect(self.store.url, autocommit=True, connect_timeout=10,
                                       application_name="planweave-listener")
                conn.execute(f"LISTEN {CHANNEL}")
                self.alive = True
                self._ready.set()
                self._wake(None)  # anything may have changed while nobody listened
                delay = 0.1
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5):
                        self._wake(note.payload)
            except psycopg.Error as exc:
                if self.alive:
                    log.warning("stopped listening to the run store `%s` (%s); watchers poll until it is back",
                                self.store.path, exc)
                self.alive = False
                self._ready.set()
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self.alive = False
                if conn is not None:
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class PostgresRunStore(RunStore):
    """Runs in a PostgreSQL database. Safe to share between threads, processes and hosts.

    Args:
        url: `postgresql://user:password@host:port/database` (any libpq URL).
        mask: applied to every event before it is stored (see `planweave.executor.masking`).
        busy_timeout_s: how long a write waits for a row lock another process holds; past it
            the write fails (`StoreLockedError`) and a recorded run stops (fails closed).
        connect_timeout_s: how long to wait for the server when connecting.
        lease_s: how long a run's lease lasts unless renewed (default `$PLANWEAVE_LEASE_S`, else 30 s).
        migrate: bring the database's schema up to date when opening it (else a database
            with an older schema is an error naming `planweave store migrate`).
    """

    def __init__(
        self,
        url: str,
        *,
        mask: Callable[[Any], Any] | None = None,
        busy_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        lease_s: float | None = None,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self.path = mask_url(url)
        self.mask = mask
        self.busy_timeout_s = busy_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.lease_s = lease_s if lease_s is not None else default_lease_s()
        self.read_only = False
        self._lock = threading.RLock()
        self._writer: EventWriter | None = None
        self._wdb: psycopg.Connection[Any] | None = None  # the writer thread's connection
        self._idb: psycopg.Connection[Any] | None = None  # loops' own commits (`write_batch(wait=False)`)
        self._wseq: dict[str, int] = {}  # writer thread: last seq written, by run
        self._wadded: dict[str, set[str]] = {}  # writer thread: step ids added, by run
        self._listener: _Listener | None = None
        self._closed = False
        self.schema_before, self.schema_version = self._open_schema(migrate)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=4,
            open=False,
            timeout=connect_timeout_s,
            name="planweave-store",
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_s)),
                    "application_name": "planweave"},
            configure=self._configure,
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not used
        )
        self._pool.open(wait=False)

    @property
    def owner(self) -> str:
        """The owner name this process claims leases with."""
        return process_owner()

    # --- connections ---------------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"SET lock_timeout = {int(self.busy_timeout_s * 1000)}")

    def _connect(self, *, lock_timeout_ms: int | None = None, name: str = "planweave") -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)),
                                   application_name=name)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        try:
            conn.execute(f"SET lock_timeout = {lock_timeout_ms if lock_timeout_ms is not None else int(self.busy_timeout_s * 1000)}")
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc) from exc
        return conn

    def _open_schema(self, migrate: bool) -> tuple[int, int]:
        conn = self._connect()
        try:
            return self._migrate(conn, apply=migrate)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        finally:
            conn.close()

    def _migrate(self, conn: psycopg.Connection[Any], *, apply: bool) -> tuple[int, int]:
        """(version found, version now). In one transaction under an advisory lock, reading the
        version again: two processes opening an old database at once migrate it once."""
        found = self._version(conn)
        if found == SCHEMA_VERSION or (found > SCHEMA_VERSION and self._check_version(found)):
            return found, found
        if not apply:
            raise StoreError(
                f"the run store `{self.path}` has schema {found}, this planweave writes {SCHEMA_VERSION}; "
                "run `planweave store migrate` (or open it with migrations on)."
            )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS planweave_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM planweave_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO planweave_schema (version) VALUES (0)")
            version = int(row[0]) if row else 0
            self._check_version(version)
            for step in range(version, SCHEMA_VERSION):
                conn.execute(_MIGRATIONS[step].encode())
            conn.execute("UPDATE planweave_schema SET version = %s", (SCHEMA_VERSION,))
        return found, SCHEMA_VERSION

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        exists = conn.execute("SELECT to_regclass('planweave_schema') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT version FROM planweave_schema").fetchone()
        return int(row[0]) if row else 0

    def _check_version(self, version: int) -> bool:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store `{self.path}` was written by a newer planweave (schema {version}, "
                f"this one reads {SCHEMA_VERSION}); upgrade planweave or use another database."
            )
        return False

    def _error(self, exc: BaseException) -> StoreError:
        state = getattr(exc, "sqlstate", None) or ""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = text.replace(self.url, self.path)
        if state == _DISK_FULL:
            return StoreFullError(
                f"the run store `{self.path}` is full (the database server's disk has no room left); free space "
                "with `planweave prune --older-than 7d` or `planweave delete RUN_ID`, or give the server more disk."
            )
        if state in _READ_ONLY:
            return StoreReadOnlyError(
                f"the run store `{self.path}` is read-only ({text}): runs can be listed, shown and exported, not "
                "recorded; connect to the primary server with a user that may write, or run with `--no-record`."
            )
        if state in _LOCKED:
            return StoreLockedError(
                f"the run store `{self.path}` is locked by another process (waited {self.busy_timeout_s:g}s: {text}); "
                "retry when the other planweave process has finished."
            )
        if isinstance(exc, (psycopg.OperationalError, PoolTimeout)) or state.startswith("08") or state.startswith("57P"):
            return StoreError(
                f"cannot reach the run store `{self.path}`: {text}; check that the PostgreSQL server is running and "
                "that the URL (`--store` or PLANWEAVE_STORE_URL) names the right host, port, user and database."
            )
        return StoreError(f"the run store `{self.path}` failed: {text}")

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StoreError(f"the run store `{self.path}` was closed; open it again.")
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._conn() as conn:
            with conn.transaction():
                yield conn

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        if self._writer is not None:
            self._writer.flush()  # read this process's own writes
        for attempt in (1, 2):
            try:
                with self._conn() as conn:
                    return conn.execute(sql.encode(), params).fetchall()
            except StoreError as exc:
                # One retry on a lost connection (the pool drops the broken one): reads are idempotent.
                if attempt == 2 or not isinstance(exc.__cause__, psycopg.OperationalError):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._listener is not None:
            self._listener.close()
        self._closed = True
        self._pool.close()

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

    def _take(self, conn: psycopg.Connection[Any], run_id: str, row: tuple[Any, ...], *, force: bool, now: float) -> Lease:
        """Claim `run_id` in the caller's transaction, which holds its row; `row` is (owner, lease_expires, host, pid)."""
        owner, expires, host, pid = row
        me = process_owner()
        live = owner != me and lease_live(run_id, owner, expires, host, pid, now)
        if live and not force:
            raise self._leased_error(run_id, owner or f"{host}:{pid}", expires)
        expiry = now + self.lease_s
        conn.execute(
            f"UPDATE runs SET owner = %s, heartbeat = %s, lease_expires = %s, host = %s, pid = %s, changed = {_NEXT} "
            "WHERE id = %s",
            (me, now, expiry, HOST, os.getpid(), run_id),
        )
        _notify(conn, run_id)
        previous = owner if owner and owner != me else None
        return Lease(
            run_id=run_id, owner=me, expires_at=expiry, previous_owner=previous,
            previous_expires_at=expires if previous else None, forced=live,
        )

    def claim(self, run_id: str, *, force: bool = False) -> Lease:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT owner, lease_expires, host, pid FROM runs WHERE id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no run `{run_id}` in the store `{self.path}`; `planweave runs` lists the recorded runs.")
            lease = self._take(conn, run_id, row, force=force, now=now)
        resume(run_id)
        return lease

    def release(self, run_id: str) -> None:
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE runs SET lease_expires = %s, changed = {_NEXT} WHERE id = %s AND owner = %s",
                (time.time(), run_id, process_owner()),
            )
            if cur.rowcount:
                _notify(conn, run_id)

    def abandon(self, run_id: str) -> None:
        abandon(run_id)

    def writer(self) -> EventWriter:
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = EventWriter(self, heartbeat_s=max(0.05, self.lease_s / 3))
        return self._writer

    def renew_leases(self, run_ids: list[str]) -> dict[str, StoreError]:
        lost: dict[str, StoreError] = {}
        try:
            conn = self._writer_db()
            now = time.time()
            rows = conn.execute(
                "UPDATE runs SET heartbeat = %s, lease_expires = %s WHERE id = ANY(%s) AND owner = %s RETURNING id",
                (now, now + self.lease_s, run_ids, process_owner()),
            ).fetchall()
            kept = {r[0] for r in rows}
            for run_id in run_ids:
                if run_id not in kept:
                    lost[run_id] = self._lost(conn, run_id)
        except (psycopg.Error, StoreError) as exc:
            self._drop_writer_db()
            # Not fatal by itself: if the lease expires meanwhile and another process claims
            # the run, this process's next write fails closed.
            log.warning("could not renew run leases in `%s`: %s", self.path, exc)
        return lost

    def _lost(self, conn: psycopg.Connection[Any], run_id: str) -> StoreError:
        row = conn.execute("SELECT owner, lease_expires FROM runs WHERE id = %s", (run_id,)).fetchone()
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
        expiry = now + self.lease_s
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT INTO runs (id, kind, name, goal, status, created_at, meta, host, pid, owner, heartbeat, "
                "lease_expires) VALUES (%s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                (run_id, kind, name, goal, now, dumps(meta), HOST, os.getpid(), me, now, expiry),
            ).fetchone()
            if inserted is not None:
                lease = Lease(run_id=run_id, owner=me, expires_at=expiry)
                _notify(conn, run_id)
            else:  # resuming: keep the events, continue the sequence
                row = conn.execute(
                    "SELECT meta, owner, lease_expires, host, pid FROM runs WHERE id = %s FOR UPDATE", (run_id,)
                ).fetchone()
                assert row is not None  # runs are deleted in transactions holding their rows
                lease = self._take(conn, run_id, row[1:], force=False, now=now)
                merged = {**json.loads(row[0]), **meta, "resumed_at": now}
                conn.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, meta = %s WHERE id = %s",
                    (dumps(merged), run_id),
                )
        resume(run_id)
        # The writer reads the run's sequence and steps afresh (another process may have written it).
        self.writer().call(lambda: (self._wseq.pop(run_id, None), self._wadded.pop(run_id, None)))
        return lease

    def _writer_db(self) -> psycopg.Connection[Any]:
        if self._wdb is None or self._wdb.closed:
            self._wdb = self._connect(name="planweave-writer")
        return self._wdb

    def _inline_db(self) -> psycopg.Connection[Any]:
        if self._idb is None or self._idb.closed:
            # Never hold a loop up on another process's lock: the thread waits instead.
            self._idb = self._connect(lock_timeout_ms=50, name="planweave-inline")
        return self._idb

    def _drop_writer_db(self) -> None:
        for conn in (self._wdb, self._idb):
            if conn is not None and conn.broken:
                conn.close()  # the next write connects again

    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL checkpoints by itself."""

    def close_writer(self) -> None:
        for conn in (self._wdb, self._idb):
            if conn is not None:
                conn.close()
        self._wdb = self._idb = None

    def write_batch(
        self, items: list[tuple[str, RunEvent | Noted]], *, wait: bool = True, release: frozenset[str] = frozenset()
    ) -> BatchOutcome:
        """Write the events in one statement (one round trip, one transaction), giving up this
        process's lease of the runs in `release` in it. `wait=False` (a loop writing a few events
        itself) does not wait for another process's row lock: then `busy` says so."""
        by_run: dict[str, list[RunEvent | Noted]] = {}
        for run_id, event in items:
            events = by_run.get(run_id)
            if events is None:
                by_run[run_id] = [event]
            else:
                events.append(event)
        for run_id in release:
            by_run.setdefault(run_id, [])  # (a run's row is updated even without events)
        return self._write_runs(by_run, release, wait=wait, retry=True)

    def _write_runs(
        self, by_run: dict[str, list[RunEvent | Noted]], release: frozenset[str], *, wait: bool, retry: bool
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = self._writer_db() if wait else self._inline_db()
            blobs: list[tuple[str, str, str]] = []  # hash, JSON, the run that refers to it
            cols: dict[str, list[Any]] = {k: [] for k in (
                "ids", "steps", "calls", "tin", "tout", "cost", "nocost", "started", "goal", "status", "end_at",
                "error", "answer", "release", "er", "es", "ek", "ea", "esid", "ed")}
            seqs: dict[str, int] = {}
            finishing: set[str] = set()
            for run_id, events in by_run.items():
                seq = self._wseq.get(run_id)
                if seq is None:
                    seq = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = %s",
                                           (run_id,)).fetchone()[0])  # type: ignore[index]
                added = self._wadded.get(run_id)
                if added is None:
                    added = self._wadded[run_id] = {r[0] for r in conn.execute(
                        "SELECT step_id FROM events WHERE run_id = %s AND kind = %s", (run_id, StepAdded.kind))}
                own_blobs: dict[str, str] = {}  # (written only if the run passes the fence)
                batch = encode_events(run_id, events, seq=seq, added=added, mask=self.mask, blobs=own_blobs)
                for digest, text in own_blobs.items():
                    blobs.append((digest, text, run_id))
                seqs[run_id] = batch.last_seq
                end = batch.finishes[-1] if batch.finishes else None
                if end is not None:
                    finishing.add(run_id)
                cols["ids"].append(run_id)
                cols["steps"].append(batch.new_steps)
                cols["calls"].append(batch.llm_calls)
                cols["tin"].append(batch.input_tokens)
                cols["tout"].append(batch.output_tokens)
                cols["cost"].append(batch.cost_usd or 0.0)
                cols["nocost"].append(batch.cost_usd is None)
                cols["started"].append(batch.started[0] if batch.started else None)
                cols["goal"].append(batch.started[1] if batch.started else "")
                cols["status"].append(end.status if end else None)
                cols["end_at"].append(end.at if end else None)
                cols["error"].append(next((f.error for f in reversed(batch.finishes) if f.error is not None), None))
                cols["answer"].append(next((f.answer for f in reversed(batch.finishes) if f.answer is not None), None))
                cols["release"].append(run_id in release)
                for row in batch.rows:
                    cols["er"].append(row[0])
                    cols["es"].append(row[1])
                    cols["ek"].append(row[2])
                    cols["ea"].append(row[3])
                    cols["esid"].append(row[4])
                    cols["ed"].append(row[5])
            now = time.time()
            params: dict[str, Any] = {
                **cols, "bh": [b[0] for b in blobs], "bd": [b[1] for b in blobs], "br": [b[2] for b in blobs],
                "now": now, "expires": now + self.lease_s,
                "me": process_owner(),
            }
            owned = {r[0] for r in conn.execute(_WRITE_BATCH, params).fetchall()}
            for run_id, events in by_run.items():
                if run_id not in owned and (events or run_id not in release):
                    outcome.failed[run_id] = self._lost(conn, run_id)
                    self._wadded.pop(run_id, None)
                    seqs.pop(run_id, None)
        except (psycopg.Error, StoreError) as exc:
            for run_id in by_run:
                self._wadded.pop(run_id, None)  # may hold steps of the batch that failed
            self._drop_writer_db()
            if not wait and isinstance(exc, psycopg.OperationalError):
                outcome.busy = True  # the writer thread writes them (and reconnects), not the loop
                return outcome
            if retry and isinstance(exc, psycopg.OperationalError) and conn is not None and conn.closed:
                # The server dropped an idle connection (a restart, a failover): once more on a new
                # one. Never twice: had the lost statement committed, its events' (run, seq) keys
                # make the second attempt fail rather than write them again.
                return self._write_runs(by_run, release, wait=wait, retry=False)
            if not wait and getattr(exc, "sqlstate", None) in _LOCKED:
                outcome.busy = True
                return outcome
            error = exc if isinstance(exc, StoreError) else self._error(exc)
            for run_id, events in by_run.items():
                if events or run_id not in release:
                    outcome.failed.setdefault(run_id, error)
            _release_failed(release, {r for r, events in by_run.items() if events}, error)
            outcome.finished.clear()
            return outcome
        outcome.finished.update(r for r in finishing if r in owned)
        self._wseq.update(seqs)
        return outcome

    def set_status(self, run_id: str, status: StoredStatus, *, error: str | None = None) -> None:
        """Force a status, unless another live process owns the run (then nothing changes).
        `interrupted` and `queued` also give up this process's lease, so the run can be taken at once."""
        now = time.time()
        me = process_owner()
        with self._write() as conn:
            row = conn.execute(
                "SELECT owner, lease_expires, host, pid FROM runs WHERE id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None or (row[0] != me and lease_live(run_id, row[0], row[1], row[2], row[3], now)):
                return
            interrupted = status in ("interrupted", "queued")  # not ended: no finish time, no lease kept
            conn.execute(
                f"UPDATE runs SET status = %s, error = COALESCE(%s, error), finished_at = %s, changed = {_NEXT}, "
                "lease_expires = CASE WHEN %s AND owner = %s THEN %s ELSE lease_expires END WHERE id = %s",
                (status, error, None if interrupted else now, interrupted, me, now, run_id),
            )
            _notify(conn, run_id)

    # --- reading -------------------------------------------------------------------------------

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
        where, params = run_filters("%s", status=status, kind=kind, name=name, contains=contains, since=since)
        now = time.time()
        rows = self._read(f"SELECT {_SUMMARY_COLUMNS} FROM runs{where} ORDER BY created_at DESC, ord DESC", params)
        return keep_status([summary_from_row(r, now) for r in rows], status, limit)

    def summary(self, run_id: str) -> RunSummary:
        rows = self._read(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id = %s", (run_id,))
        if not rows and run_id:
            rows = self._read(
                f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id LIKE %s ESCAPE '\\' ORDER BY id LIMIT 3",
                (escape_like(run_id) + "%",),
            )
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
            "SELECT kind, at, step_id, data FROM events WHERE run_id = %s AND seq > %s ORDER BY seq", (run_id, after)
        )
        texts: dict[str, str] = {}
        wanted = blob_refs(r[3] for r in rows if '"$blob"' in r[3])
        if wanted:
            texts.update(self._read("SELECT hash, data FROM blobs WHERE hash = ANY(%s)", (list(wanted),)))
        blobs: dict[str, Any] = {}

        def get(digest: str) -> Any:
            if digest not in blobs:
                if digest not in texts:
                    found = self._read("SELECT data FROM blobs WHERE hash = %s", (digest,))
                    if not found:
                        raise StoreError(
                            f"the run store `{self.path}` lost a value of run `{run_id}` (blob {digest[:12]}); "
                            "the database was edited."
                        )
                    texts[digest] = found[0][0]
                blobs[digest] = decode_blob(texts[digest], get)
            return blobs[digest]

        return [decode_event(run_id, kind, at, step_id, text, get) for kind, at, step_id, text in rows]

    def change_marker(self, run_id: str | None = None) -> Hashable:
        if run_id is None:
            # The newest write to any run, the deletions, and the notifications this process
            # heard (a write whose change number was taken before another's commits after it).
            rows = self._read("SELECT (SELECT MAX(changed) FROM runs), (SELECT n FROM planweave_deletions)")
            heard = self._listener.count if self._listener is not None else 0
            return (*rows[0], heard)
        rows = self._read("SELECT status, owner, changed FROM runs WHERE id = %s", (run_id,))
        return rows[0] if rows else None

    def _start_listener(self) -> _Listener:
        with self._lock:
            if self._listener is None:
                self._listener = _Listener(self)
            return self._listener

    async def wait_changed(self, marker: Hashable, run_id: str | None = None, *, timeout_s: float) -> Hashable:
        """Wait until `change_marker(run_id)` differs from `marker`, or `timeout_s` passed; returns
        the current marker. Woken by PostgreSQL's notifications (any process's commits); polls
        (every 0.5 s at most) while the listening connection is down."""
        listener = self._listener
        if listener is None:
            listener = await asyncio.to_thread(self._start_listener)  # (not under a lock: this is a loop)
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while True:
            key, event = listener.add(run_id)  # before reading: a change after the read wakes us
            try:
                current = await asyncio.to_thread(self.change_marker, run_id)
                left = deadline - time.monotonic()
                if current != marker or left <= 0:
                    return current
                if listener.alive:
                    try:
                        await asyncio.wait_for(event.wait(), min(left, 5.0))
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(min(delay, left))
                    delay = min(delay * 2, 0.5)
            finally:
                listener.remove(key)

    def delete(self, run_id: str) -> None:
        rid = self.summary(run_id).id
        with self._write() as conn:
            conn.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (rid,))
            conn.execute("DELETE FROM events WHERE run_id = %s", (rid,))
            conn.execute("DELETE FROM runs WHERE id = %s", (rid,))
            self._deleted(conn, [rid])

    def prune(self, older_than_s: float) -> int:
        """Delete runs created more than `older_than_s` ago that have ended, were interrupted
        (including `running` rows whose owner died: their lease expired) or are still queued with
        no worker on them; returns how many."""
        cutoff = time.time() - older_than_s
        finished = [*FINAL_STATUSES, "interrupted", "running", "queued"]
        with self._write() as conn:
            now = time.time()
            rows = conn.execute(
                "SELECT id, status, owner, lease_expires, host, pid FROM runs "
                "WHERE created_at < %s AND status = ANY(%s) FOR UPDATE",
                (cutoff, finished),
            ).fetchall()
            ids = [r[0] for r in rows
                   if not (r[1] in ("running", "queued") and lease_live(r[0], r[2], r[3], r[4], r[5], now))]
            if ids:
                conn.execute("DELETE FROM events WHERE run_id = ANY(%s)", (ids,))
                conn.execute("DELETE FROM runs WHERE id = ANY(%s)", (ids,))
                self._deleted(conn, ids)
        return len(ids)

    @staticmethod
    def _deleted(conn: psycopg.Connection[Any], ids: list[str]) -> None:
        """Delete blobs nothing points at any more, count the deletion, notify watchers."""
        used = blob_refs(
            text
            for sql in ("SELECT data FROM events WHERE data LIKE '%\"$blob\"%'",
                        "SELECT data FROM blobs WHERE data LIKE '%\"$blob\"%'")
            for (text,) in conn.execute(sql.encode()).fetchall()
        )
        conn.execute("DELETE FROM blobs WHERE NOT (hash = ANY(%s))", (list(used),))
        conn.execute("UPDATE planweave_deletions SET n = n + 1")
        for rid in ids:
            _notify(conn, rid)

    def step_durations(self, run_ids: Iterable[str]) -> list[tuple[str, str, str, float]]:
        ids = list(run_ids)
        if not ids:
            return []
        tools: dict[tuple[str, str], str] = {}
        for rid, sid, tool in self._read(
            "SELECT run_id, step_id, data::json->>'tool' FROM events WHERE kind = 'step_added' AND run_id = ANY(%s)",
            (ids,),
        ):
            tools[(rid, sid)] = tool or ""
        out: list[tuple[str, str, str, float]] = []
        for rid, sid, dur in self._read(
            "SELECT run_id, step_id, (data::json->>'duration_s')::float8 FROM events "
            "WHERE kind IN ('step_succeeded', 'step_failed') AND run_id = ANY(%s) ORDER BY run_id, seq",
            (ids,),
        ):
            if dur is not None:
                out.append((rid, sid, tools.get((rid, sid), ""), float(dur)))
        return out

    def cached_input_tokens(self, run_ids: Iterable[str]) -> dict[str, int]:
        ids = list(run_ids)
        if not ids:
            return {}
        totals: dict[str, int] = {}
        for rid, n in self._read(
            "SELECT run_id, SUM(COALESCE((data::json->>'cached_input_tokens')::bigint, 0)) FROM events "
            "WHERE run_id = ANY(%s) AND data LIKE '%%\"cached_input_tokens\"%%' GROUP BY run_id",
            (ids,),
        ):
            if n:
                totals[rid] = int(n)
        return totals

    # --- moving runs between stores ------------------------------------------------------------

    def import_run(
        self, summary: RunSummary, rows: list[tuple[str, int, str, float, str | None, str]], blobs: dict[str, str],
        *, replace: bool = False,
    ) -> None:
        with self._write() as conn:
            existing = conn.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (summary.id,)).fetchone()
            if existing is not None:
                if not replace:
                    raise StoreError(
                        f"run `{summary.id}` is already in the store `{self.path}`; pass `--replace` to overwrite it."
                    )
                conn.execute("DELETE FROM events WHERE run_id = %s", (summary.id,))
                conn.execute("DELETE FROM runs WHERE id = %s", (summary.id,))
            s = summary
            conn.execute(
                "INSERT INTO runs (id, kind, name, goal, status, created_at, finished_at, duration_s, steps, llm_calls, "
                "input_tokens, output_tokens, cost_usd, answer, error, meta) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (s.id, s.kind, s.name, s.goal, s.status, s.created_at, s.finished_at, s.duration_s, s.steps,
                 s.llm_calls, s.input_tokens, s.output_tokens, s.cost_usd, s.answer, s.error, dumps(s.meta)),
            )
            if blobs:
                conn.execute(
                    "INSERT INTO blobs (hash, data) SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                    (list(blobs), list(blobs.values())),
                )
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO events (run_id, seq, kind, at, step_id, data) VALUES (%s, %s, %s, %s, %s, %s)", rows
                    )
            _notify(conn, summary.id)


def _notify(conn: psycopg.Connection[Any], run_id: str) -> None:
    conn.execute(f"SELECT pg_notify('{CHANNEL}', %s)", (run_id,))


