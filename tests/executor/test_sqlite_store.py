"""Leases (claim, expiry on any host, force, prune) and `wait_changed`, on both stores (the
`backend` fixture), and the SQLite store's schema migration: a file written by the previous
schema keeps working, read and resumed in place."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Executor, Step
from planweave.executor.events import RunFinished, RunStarted, StepAdded, StepStarted, StepSucceeded
from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.executor.store import RunLeasedError
from planweave.planner.testing import wait_until
from planweave.tools import tool

ELSEWHERE = "otherhost:42:cafe"
"""A lease owner on another host: its PID means nothing here, only its lease's expiry counts."""


@tool
def echo(text: str) -> str:
    """The text."""
    return text


def test_a_live_lease_is_refused_and_force_takes_it_over(backend: Any) -> None:
    store = backend.open()
    store.begin("r1", kind="workflow", name="", goal="g", meta={})
    expires = time.time() + 600
    backend.sql("UPDATE runs SET owner = ?, lease_expires = ? WHERE id = 'r1'", (ELSEWHERE, expires))
    assert store.summary("r1").status == "running"
    with pytest.raises(RunLeasedError) as err:
        store.claim("r1")
    assert (err.value.run_id, err.value.owner, err.value.expires_at) == ("r1", ELSEWHERE, expires)
    assert f"run `r1` is owned by the live process `{ELSEWHERE}`" in str(err.value)
    assert "`planweave resume --force`" in str(err.value)
    with pytest.raises(RunLeasedError):  # nor may a recorder start it
        store.begin("r1", kind="workflow", name="", goal="g", meta={})

    lease = store.claim("r1", force=True)
    assert lease.forced and lease.previous_owner == ELSEWHERE and lease.previous_expires_at == expires
    assert lease.owner == store.owner and lease.expires_at > time.time()
    assert backend.sql("SELECT owner FROM runs WHERE id = 'r1'")[0][0] == store.owner


def test_an_expired_lease_reads_interrupted_on_any_host_and_is_claimed_and_pruned(backend: Any) -> None:
    store = backend.open(lease_s=0.2)
    for run_id in ("dead", "old"):
        store.begin(run_id, kind="planner", name="", goal="g", meta={})
    # Both now belong to a process on another host that stopped renewing them.
    backend.sql("UPDATE runs SET owner = ?", (ELSEWHERE,))
    wait_until(lambda: [r.status for r in store.list_runs()] == ["interrupted"] * 2, "the leases expired")
    assert {r.id for r in store.list_runs(status="interrupted")} == {"dead", "old"}

    live = backend.open()  # claims with the default (long) lease
    lease = live.claim("dead")  # no force: its owner is gone
    assert not lease.forced and lease.previous_owner == ELSEWHERE
    live.begin("live", kind="planner", name="", goal="g", meta={})
    backend.sql("UPDATE runs SET created_at = created_at - 3600")
    assert store.prune(60) == 1  # `old` only: `dead` is claimed by this process again, `live` is running
    assert sorted(r.id for r in store.list_runs()) == ["dead", "live"]


def test_a_lease_is_renewed_while_the_run_lives(backend: Any) -> None:
    store = backend.open(lease_s=0.3)
    first: list[float] = []

    @tool
    async def wait_for_renewal() -> str:
        """Return once the run's lease has been renewed past its first expiry."""
        import asyncio

        def expiry() -> float:
            return float(backend.sql("SELECT lease_expires FROM runs")[0][0])

        first.append(expiry())
        while expiry() <= first[0]:
            await asyncio.sleep(0.01)
        return "renewed"

    result = Executor([wait_for_renewal]).run_sync([Step(id="a", tool="wait_for_renewal")], subscribers=[store.recorder()])
    assert result.ok and store.summary(result.run_id).status == "succeeded"


def test_the_writer_copies_a_grown_wal_back_while_runs_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A chain commits once per step from its loop (no automatic checkpoint there); the writer
    # thread copies the WAL back into the database once it holds `_CHECKPOINT_BYTES`.
    monkeypatch.setattr("planweave.executor.sqlite_store._CHECKPOINT_BYTES", 64 * 1024)
    store = SQLiteRunStore(tmp_path / "runs.db")
    empty = Path(store.path).stat().st_size
    chain = [Step(id=f"s{i}", tool="echo", args={"text": "x" * 200}, depends_on=[f"s{i - 1}"] if i else []) for i in range(300)]
    result = Executor([echo]).run_sync(chain, subscribers=[store.recorder()])
    assert result.ok
    assert Path(store.path + "-wal").stat().st_size > 64 * 1024
    wait_until(lambda: Path(store.path).stat().st_size > 64 * 1024 > empty, "the WAL copied into the database file")
    store.close()
    assert len(SQLiteRunStore(tmp_path / "runs.db").events(result.run_id)) == 1 + 300 * 3 + 1


def test_release_lets_another_owner_claim_at_once(store: Any) -> None:
    store.begin("r", kind="workflow", name="", goal="g", meta={})
    store.release("r")
    assert store.summary("r").status == "interrupted"


SCHEMA_1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', goal TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL, duration_s REAL,
    steps INTEGER NOT NULL DEFAULT 0, llm_calls INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL DEFAULT 0, answer TEXT, error TEXT,
    meta TEXT NOT NULL DEFAULT '{}', host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_created ON runs (created_at DESC);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    at REAL NOT NULL, step_id TEXT, data TEXT NOT NULL, PRIMARY KEY (run_id, seq)
);
CREATE INDEX events_step ON events (run_id, step_id, kind);
CREATE TABLE blobs (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
PRAGMA user_version=1;
"""


def old_store(path: Path) -> dict[str, list[dict[str, object]]]:
    """A store as planweave's schema 1 wrote it (each event's whole JSON in `data`); returns the events."""
    t = 1_700_000_000.0
    a, b = Step(id="a", tool="echo", args={"text": "one"}), Step(id="b", tool="echo", args={"text": "${a}!"})
    runs = {
        "done1": [
            RunStarted(run_id="done1", at=t, goal="old goal"),
            StepAdded(run_id="done1", at=t, step_id="a", tool="echo", step=a),
            StepStarted(run_id="done1", at=t + 1, step_id="a", tool="echo", attempt=1, args={"text": "one"}),
            StepSucceeded(run_id="done1", at=t + 2, step_id="a", output="one", attempts=1, duration_s=1.0),
            RunFinished(run_id="done1", at=t + 3, status="succeeded", duration_s=3.0),
        ],
        "cut1": [  # killed after `a`: its process is long gone
            RunStarted(run_id="cut1", at=t, goal="old goal"),
            StepAdded(run_id="cut1", at=t, step_id="a", tool="echo", step=a),
            StepAdded(run_id="cut1", at=t, step_id="b", tool="echo", step=b, deps=["a"]),
            StepSucceeded(run_id="cut1", at=t + 2, step_id="a", output="one", attempts=1, duration_s=1.0),
        ],
    }
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_1)
    for run_id, events in runs.items():
        status = "succeeded" if run_id == "done1" else "running"
        db.execute(
            "INSERT INTO runs (id, kind, name, goal, status, created_at, started_at, steps, host, pid) "
            "VALUES (?, 'workflow', 'old', 'old goal', ?, ?, ?, ?, 'otherhost', 1)",
            (run_id, status, t, t, sum(isinstance(e, StepAdded) for e in events)),
        )
        for seq, event in enumerate(events, 1):
            data = event.to_dict()
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, seq, data["kind"], data["at"], data.get("step_id"), json.dumps(data, separators=(",", ":"))),
            )
    db.close()
    return {run_id: [e.to_dict() for e in events] for run_id, events in runs.items()}


def test_a_schema_1_file_is_migrated_in_place_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    written = old_store(path)

    read_only = SQLiteRunStore(path, read_only=True)  # reading an old file needs no migration
    assert read_only.events("done1") == written["done1"] and read_only.summary("cut1").status == "interrupted"

    store = SQLiteRunStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert {"owner", "heartbeat", "lease_expires"} <= {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    assert store.events("done1") == written["done1"]
    assert store.export("done1")["steps"][0]["output"] == "one"
    assert {r.id: r.status for r in store.list_runs()} == {"done1": "succeeded", "cut1": "interrupted"}

    state = store.get_run("cut1").resume_state()
    assert [s.id for s in state.steps] == ["a", "b"] and state.completed == {"a": "one"}
    result = Executor([echo]).run_sync(
        state.steps, run_id="cut1", completed=state.completed, subscribers=[store.recorder()]
    )
    assert result.ok and result.steps["b"].output == "one!"
    events = store.events("cut1")
    assert events[: len(written["cut1"])] == written["cut1"]  # the old rows, as they were
    assert events[-1]["kind"] == "run_finished" and store.summary("cut1").status == "succeeded"
    assert store.summary("cut1").steps == 2  # re-added steps are not counted twice


async def test_wait_changed_wakes_on_another_connections_write_and_times_out_without_one(backend: Any) -> None:
    import asyncio

    store = backend.open()
    other = backend.open()  # another replica on the same database
    store.begin("r1", kind="workflow", name="", goal="g", meta={})
    run_marker = store.change_marker("r1")
    any_marker = store.change_marker()

    started = time.monotonic()
    assert await store.wait_changed(run_marker, "r1", timeout_s=0.3) == run_marker  # nothing happened
    assert time.monotonic() - started >= 0.3

    async def write_later() -> None:
        await asyncio.sleep(0.1)
        other.claim("r1", force=True)  # the lease moves: a change to the run

    writing = asyncio.create_task(write_later())
    changed = await store.wait_changed(run_marker, "r1", timeout_s=10)
    await writing
    assert changed != run_marker
    assert store.change_marker() != any_marker
    assert store.change_marker("missing") is None
    other.close()
    store.close()


@pytest.mark.parametrize("count", [1, 2, 63, 64, 85, 150])
def test_a_batch_of_any_size_is_written_whole_and_in_order(backend: Any, count: int) -> None:
    """Rows go in a few multi-row statements (SQLite): every size comes out whole, in order."""
    store = backend.open()
    store.begin("r1", kind="workflow", name="", goal="g", meta={})
    events = [StepStarted(run_id="r1", step_id=f"s{i}", tool="echo", attempt=1) for i in range(count)]
    outcome = store.write_batch([("r1", e) for e in events])
    assert not outcome.failed
    rows = backend.sql("SELECT seq, step_id FROM events WHERE run_id = ? ORDER BY seq", ("r1",))
    assert rows == [(i + 1, f"s{i}") for i in range(count)]
    backend.sql("UPDATE runs SET owner = ? WHERE id = 'r1'", (ELSEWHERE,))
    for _ in range(2):  # (twice: a lost batch leaves nothing behind to trip the next one)
        lost = store.write_batch([("r1", e) for e in events])
        assert isinstance(lost.failed.get("r1"), RunLeasedError)
    assert backend.sql("SELECT COUNT(*) FROM events WHERE run_id = ?", ("r1",)) == [(count,)]
    store.close()


def test_events_after_reads_the_rest_of_a_run(backend: Any) -> None:
    """What following a run reads on each change: the events after those already sent."""
    store = backend.open()
    result = Executor([echo]).run_sync(
        [Step(id=f"s{i}", tool="echo", args={"text": "x" * (600 if i == 2 else 1)}) for i in range(4)],
        subscribers=[store.recorder()],
    )
    every = store.events(result.run_id)
    assert len(every) > 8
    for after in (0, 1, 5, len(every) - 1, len(every), len(every) + 3):
        assert store.events_after(result.run_id, after) == every[after:]
    assert any(e.get("output") == "x" * 600 for e in store.events_after(result.run_id, 5))  # (a blob, resolved)
    store.close()


def test_a_long_steps_start_is_written_while_it_runs(backend: Any) -> None:
    """Nobody waits for a step's start to be durable, yet another process following the run
    sees it soon (the writer looks again every `VISIBLE_S` while a run lives), not only when
    the step ends or the lease is renewed (every third of the lease: 10 s by default)."""
    import threading

    store = backend.open()
    seen = threading.Event()

    @tool
    def slow() -> str:
        """Runs until the test saw its start in the store."""
        seen.wait(30)
        return "done"

    @tool
    def first() -> str:
        time.sleep(0.5)  # (meanwhile the writer writes this step's start and goes idle)
        return "ok"

    def started() -> bool:
        rows = backend.sql("SELECT COUNT(*) FROM events WHERE kind = 'step_started' AND step_id = 'slow'")
        return rows[0][0] == 1

    saw_it: list[bool] = []

    def watch() -> None:
        try:
            wait_until(started, "`slow`'s start in the store", timeout_s=5)
            saw_it.append(True)
        finally:
            seen.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = Executor([first, slow]).run_sync(
        [Step(id="first", tool="first"), Step(id="slow", tool="slow", depends_on=["first"])],
        subscribers=[store.recorder()],
    )
    watcher.join()
    assert result.ok
    assert saw_it == [True]  # (while `slow` ran: it waits for this)
    store.close()
