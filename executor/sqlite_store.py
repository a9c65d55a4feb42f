"""The embedded run store: one SQLite file in WAL mode, safe for several processes at once.

Each event is one row, written in its own short transaction before `append` returns
(WAL with `synchronous=NORMAL`: an event survives the process being killed; after a
power loss the last few may be rolled back, never half-written). Values over
`BLOB_THRESHOLD` bytes (step outputs, resolved arguments, prompts) are stored once
in `blobs`, keyed by their SHA-256, and events point at them.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from planweave.executor.events import RunEvent, RunStarted, StepAdded
from planweave.executor.store import FINAL_STATUSES, RunStore, RunSummary, StoredStatus, StoreError

__all__ = ["BLOB_THRESHOLD", "SQLiteRunStore"]

BLOB_THRESHOLD = 512
_BLOB_FIELDS = ("output", "args", "messages", "inputs", "step")
_SCHEMA_VERSION = 1
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
    pid INTEGER NOT NULL DEFAULT 0
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
);
CREATE INDEX IF NOT EXISTS events_step ON events (run_id, step_id, kind);
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""
_SUMMARY_COLUMNS = (
    "id, kind, name, goal, status, created_at, finished_at, duration_s, steps, llm_calls, "
    "input_tokens, output_tokens, cost_usd, answer, error, meta, host, pid"
)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SQLiteRunStore(RunStore):
    """Runs in one SQLite file. Safe to share between threads and between processes.

    Args:
        path: the database file (created with its directory when missing).
        mask: applied to every event before it is stored (see `planweave.executor.masking`).
        busy_timeout_s: how long a write waits for another process's write to finish.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        mask: Callable[[Any], Any] | None = None,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = str(Path(path).expanduser())
        self.mask = mask
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._seq: dict[str, int] = {}
        self._added: dict[str, set[str]] = {}
        self._host = socket.gethostname()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the run store's directory `{Path(self.path).parent}`: {exc.strerror}; "
                "set PLANWEAVE_HOME to a writable directory."
            ) from exc
        self._db = self._connect()

    # --- connection ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise StoreError(
                    f"the run store `{self.path}` was written by a newer planweave (schema {version}, "
                    f"this one reads {_SCHEMA_VERSION}); upgrade planweave or set PLANWEAVE_HOME elsewhere."
                )
            if version < _SCHEMA_VERSION:
                # Idempotent (IF NOT EXISTS), so two processes creating the store at once is fine.
                db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={_SCHEMA_VERSION}; COMMIT;")
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from exc
        return db

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"the run store `{self.path}` is locked by another process (waited {self.busy_timeout_s:g}s); "
                "retry when the other planweave process has finished, or set PLANWEAVE_HOME to use another store."
            )
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return StoreError(
                f"the run store `{self.path}` is corrupted ({text}); move the file aside "
                "(planweave then starts a new one) or set PLANWEAVE_HOME to another directory."
            )
        return StoreError(f"the run store `{self.path}` failed: {text}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
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
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing -------------------------------------------------------------------------------

    def begin(self, run_id: str, *, kind: str, name: str, goal: str, meta: dict[str, Any]) -> None:
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO runs (id, kind, name, goal, status, created_at, meta, host, pid) "
                    "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                    (run_id, kind, name, goal, now, _dumps(meta), self._host, os.getpid()),
                )
                self._seq[run_id] = 0
                self._added[run_id] = set()
            else:  # resuming: keep the events, continue the sequence
                merged = {**json.loads(row[0]), **meta, "resumed_at": now}
                db.execute(
                    "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, meta = ?, "
                    "host = ?, pid = ? WHERE id = ?",
                    (_dumps(merged), self._host, os.getpid(), run_id),
                )
                last = db.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
                self._seq[run_id] = int(last or 0)
                self._added[run_id] = {
                    r[0]
                    for r in db.execute(
                        "SELECT step_id FROM events WHERE run_id = ? AND kind = ?", (run_id, StepAdded.kind)
                    )
                }

    def append(self, event: RunEvent) -> None:
        run_id = event.run_id
        data = event.to_dict()
        if self.mask is not None:
            data = self.mask(data)
        kind = data["kind"]
        step_id = data.get("step_id")
        with self._write() as db:
            if run_id not in self._seq:
                raise StoreError(f"run `{run_id}` was not begun in the store `{self.path}`; call `begin` first.")
            def put(value: Any) -> dict[str, str]:
                text = _dumps(value)
                digest = hashlib.sha256(text.encode()).hexdigest()
                db.execute("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)", (digest, text))
                return {"$blob": digest}

            for key in _BLOB_FIELDS:
                if key in data and data[key] is not None:
                    # Long strings first (the same text in a step's args, output and plan is kept
                    # once), then whatever is still large as one piece.
                    value = _outline(data[key], put)
                    data[key] = put(value) if len(_dumps(value)) > BLOB_THRESHOLD else value
            self._seq[run_id] += 1
            db.execute(
                "INSERT INTO events (run_id, seq, kind, at, step_id, data) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, self._seq[run_id], kind, data["at"], step_id, _dumps(data)),
            )
            self._summarise(db, run_id, event, data)

    def _summarise(self, db: sqlite3.Connection, run_id: str, event: RunEvent, data: dict[str, Any]) -> None:
        if isinstance(event, RunStarted):
            db.execute(
                "UPDATE runs SET started_at = COALESCE(started_at, ?), goal = CASE WHEN ? != '' THEN ? ELSE goal END "
                "WHERE id = ?",
                (data["at"], data.get("goal", ""), data.get("goal", ""), run_id),
            )
            return
        if isinstance(event, StepAdded):
            if step_id_new(self._added.setdefault(run_id, set()), data.get("step_id")):
                db.execute("UPDATE runs SET steps = steps + 1 WHERE id = ?", (run_id,))
            return
        # Anything else counts as its class says (the planner's LLM calls, the end of a run).
        update = event.summary_update()
        if update is None:
            return
        if update.llm_calls or update.input_tokens or update.output_tokens or update.cost_usd != 0.0:
            db.execute(
                "UPDATE runs SET llm_calls = llm_calls + ?, input_tokens = input_tokens + ?, "
                "output_tokens = output_tokens + ?, cost_usd = cost_usd + ? WHERE id = ?",
                (update.llm_calls, update.input_tokens, update.output_tokens, update.cost_usd, run_id),
            )
        if update.status is not None:
            texts = {"error": update.error, "answer": update.answer}
            if self.mask is not None:
                texts = self.mask(texts)
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ? - COALESCE(started_at, created_at), "
                "error = COALESCE(?, error), answer = COALESCE(?, answer) WHERE id = ?",
                (update.status, data["at"], data["at"], texts["error"], texts["answer"], run_id),
            )

    def set_status(self, run_id: str, status: StoredStatus, *, error: str | None = None) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, error = COALESCE(?, error), "
                "finished_at = CASE WHEN ? = 'interrupted' THEN NULL ELSE ? END WHERE id = ?",
                (status, error, status, time.time(), run_id),
            )

    # --- reading -------------------------------------------------------------------------------

    def _summary(self, row: tuple[Any, ...]) -> RunSummary:
        (rid, kind, name, goal, status, created, finished, duration, steps, calls, tin, tout, cost, answer, error,
         meta, host, pid) = row
        if status == "running" and host == self._host and pid != os.getpid() and not _alive(pid):
            status = "interrupted"
        return RunSummary(
            id=rid,
            kind=kind,
            name=name,
            goal=goal,
            status=status,
            created_at=created,
            finished_at=finished,
            duration_s=duration,
            steps=steps,
            llm_calls=calls,
            input_tokens=tin,
            output_tokens=tout,
            cost_usd=cost,
            answer=answer,
            error=error,
            meta=json.loads(meta),
        )

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
        where: list[str] = []
        params: list[Any] = []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if name:
            where.append("name = ?")
            params.append(name)
        if contains:
            where.append("(goal LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\')")
            like = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [like, like]
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if status == "interrupted":
            where.append("status IN ('running', 'interrupted')")
        elif status:
            where.append("status = ?")
            params.append(status)
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        rows = [self._summary(r) for r in self._read(sql, params)]
        if status in ("running", "interrupted"):
            rows = [r for r in rows if r.status == status]
        return rows if limit is None else rows[:limit]

    def summary(self, run_id: str) -> RunSummary:
        rows = self._read(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows and run_id:
            like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._read(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 3", (like,))
            if len(rows) > 1:
                raise StoreError(
                    f"run id prefix `{run_id}` matches several runs ({', '.join(r[0] for r in rows)}, ...); "
                    "give more characters."
                )
        if not rows:
            raise StoreError(
                f"no run `{run_id}` in the store `{self.path}`; `planweave runs` lists the recorded runs."
            )
        return self._summary(rows[0])

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT data FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        blobs: dict[str, Any] = {}
        out = []
        for (text,) in rows:
            data = json.loads(text)
            def get(digest: str) -> Any:
                if digest not in blobs:
                    found = self._read("SELECT data FROM blobs WHERE hash = ?", (digest,))
                    if not found:
                        raise StoreError(
                            f"the run store `{self.path}` lost a value of run `{run_id}` (blob {digest[:12]}); "
                            "the file was edited or is corrupted."
                        )
                    blobs[digest] = _inline(json.loads(found[0][0]), get)
                return blobs[digest]

            for key in _BLOB_FIELDS:
                if data.get(key) is not None:
                    data[key] = _inline(data[key], get)
            out.append(data)
        return out

    def delete(self, run_id: str) -> None:
        rid = self.summary(run_id).id
        with self._write() as db:
            db.execute("DELETE FROM events WHERE run_id = ?", (rid,))
            db.execute("DELETE FROM runs WHERE id = ?", (rid,))
            self._collect_blobs(db)

    def prune(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        finished = tuple(FINAL_STATUSES) + ("interrupted",)
        marks = ", ".join("?" for _ in finished)
        with self._write() as db:
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT id FROM runs WHERE created_at < ? AND status IN ({marks})", (cutoff, *finished)
                )
            ]
            for rid in ids:
                db.execute("DELETE FROM events WHERE run_id = ?", (rid,))
                db.execute("DELETE FROM runs WHERE id = ?", (rid,))
            if ids:
                self._collect_blobs(db)
        return len(ids)

    @staticmethod
    def _collect_blobs(db: sqlite3.Connection) -> None:
        _collect_blobs_py(db)

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


def step_id_new(seen: set[str], step_id: Any) -> bool:
    if not isinstance(step_id, str) or step_id in seen:
        return False
    seen.add(step_id)
    return True


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$blob"), str)


def _outline(value: Any, put: Callable[[Any], dict[str, str]]) -> Any:
    """`value` with every long string replaced by a blob reference."""
    if isinstance(value, str):
        return put(value) if len(value) > BLOB_THRESHOLD else value
    if isinstance(value, dict):
        return {k: _outline(v, put) for k, v in value.items()}
    if isinstance(value, list):
        return [_outline(v, put) for v in value]
    return value


def _inline(value: Any, get: Callable[[str], Any]) -> Any:
    if _is_ref(value):
        return get(value["$blob"])
    if isinstance(value, dict):
        return {k: _inline(v, get) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline(v, get) for v in value]
    return value


def _collect_blobs_py(db: sqlite3.Connection) -> None:
    """Delete blobs that no event (or other blob) points at any more."""
    used: set[str] = set()

    def walk(value: Any) -> None:
        if _is_ref(value):
            used.add(value["$blob"])
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for (text,) in db.execute("SELECT data FROM events WHERE data LIKE '%\"$blob\"%'"):
        walk(json.loads(text))
    for (text,) in db.execute("SELECT data FROM blobs WHERE data LIKE '%\"$blob\"%'"):
        walk(json.loads(text))
    for (digest,) in db.execute("SELECT hash FROM blobs").fetchall():
        if digest not in used:
            db.execute("DELETE FROM blobs WHERE hash = ?", (digest,))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
