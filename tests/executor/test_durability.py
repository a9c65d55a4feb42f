"""A recorded run's guarantee, through a real store (SQLite and PostgreSQL): steps wait for the durability of the
results they depend on (and only for those), events are committed in batches in order, and
a store that becomes locked, full or taken over mid-run stops the run (fail closed) so that
it resumes once the store works again."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Executor, Step
from planweave.executor.durability import Journal, journal_of
from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.executor.store import (
    RunInterruptedError,
    RunLeasedError,
    StoreFullError,
    StoreLockedError,
    StoreReadOnlyError,
)
from planweave.tools import tool


def durable_kinds(backend: Any, run_id: str) -> list[tuple[str, str | None]]:
    """What another connection sees committed: (kind, step id) in order."""
    return [(k, s) for k, s in backend.sql("SELECT kind, step_id FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]


def test_the_recorder_is_the_runs_journal(store: Any) -> None:
    rec = store.recorder()
    assert isinstance(rec, Journal) and journal_of([print, rec]) is rec and journal_of([print]) is None


def test_a_step_starts_only_once_its_inputs_are_durable(backend: Any) -> None:
    store = backend.open()
    seen: dict[str, list[tuple[str, str | None]]] = {}

    @tool
    def look(name: str, run_id: str) -> str:
        """Record what is committed when this step starts."""
        seen[name] = durable_kinds(backend, run_id)
        return name

    run_id = "chain-" + secrets.token_hex(4)
    steps = [
        Step(id=f"s{i}", tool="look", args={"name": f"s{i}", "run_id": run_id}, depends_on=[f"s{i - 1}"] if i else [])
        for i in range(30)
    ]
    result = Executor([look]).run_sync(steps, run_id=run_id, subscribers=[store.recorder()])
    assert result.ok
    for i in range(1, 30):
        assert ("step_succeeded", f"s{i - 1}") in seen[f"s{i}"], f"s{i} started before s{i - 1}'s success was durable"
    assert store.summary(run_id).status == "succeeded"  # the run returned once its end was durable


def test_a_finished_run_gives_up_its_lease_with_its_last_event(backend: Any) -> None:
    import time

    store = backend.open()
    run_id = "lease-" + secrets.token_hex(4)
    steps = [Step(id=f"s{i}", tool="noop", depends_on=[f"s{i - 1}"] if i else []) for i in range(5)]

    @tool
    def noop() -> None:
        """Do nothing."""

    before = time.time()
    result = Executor([noop]).run_sync(steps, run_id=run_id, subscribers=[store.recorder()])
    assert result.ok
    writer = store.writer()
    batches = writer.batches
    # As the run returned (no flush, no wait): the lease ended then, so another process can go on at once.
    ((expires, status),) = backend.sql("SELECT lease_expires, status FROM runs WHERE id = ?", (run_id,))
    assert status == "succeeded" and before <= expires <= time.time()
    assert writer.batches == batches  # (nothing was left to write for it)


async def test_steps_with_nothing_pending_do_not_wait_for_a_stuck_store(backend: Any) -> None:
    store = backend.open(busy_timeout_s=60)  # the writer waits for the lock all along
    held: list[Any] = []
    ran: list[str] = []
    free_ran = asyncio.Event()

    @tool
    def lock() -> str:
        """Take the store's write lock from another connection (as another process would)."""
        held.append(backend.lock_writes())
        return "locked"

    @tool
    def mark(name: str, after: Any = None) -> str:
        """Remember that the step ran."""
        ran.append(name)
        if name == "free":
            free_ran.set()
        return name

    async with Executor([lock, mark]).start(goal="g", subscribers=[store.recorder()]) as run:
        run.add_steps([Step(id="a", tool="lock")])
        while run.step_status("a") in ("pending", "ready", "running"):
            await asyncio.sleep(0)
        assert run.step_status("a") == "succeeded", run.step_error("a")
        # `a` succeeded, but its success cannot be committed while the lock is held.
        run.add_steps([Step(id="free", tool="mark", args={"name": "free"}),
                       Step(id="needs_a", tool="mark", args={"name": "needs_a", "after": "${a}"})])
        await free_ran.wait()  # a step with nothing pending ran at once
        assert ran == ["free"] and run.step_status("needs_a") == "pending"
        held[0]()
        run.close()
    assert run.result.ok and ran == ["free", "needs_a"]
    kinds = durable_kinds(backend, run.id)
    assert kinds.index(("step_succeeded", "a")) < kinds.index(("step_started", "needs_a"))


def test_events_are_committed_in_order_and_in_batches(backend: Any) -> None:
    store = backend.open()

    @tool
    async def noop() -> None:
        """Nothing."""

    steps = [Step(id="root", tool="noop")] + [Step(id=f"s{i}", tool="noop", depends_on=["root"]) for i in range(300)]
    result = Executor([noop]).run_sync(steps, subscribers=[store.recorder()])
    assert result.ok
    events = store.events(result.run_id)
    assert [e["kind"] for e in events][0] == "run_started" and events[-1]["kind"] == "run_finished"
    seqs = [r[0] for r in backend.sql("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (result.run_id,))]
    assert seqs == list(range(1, len(events) + 1))  # numbered in the order they happened, no gap
    for sid in ("root", "s0", "s299"):
        order = [e["kind"] for e in events if e.get("step_id") == sid]
        assert order == ["step_added", "step_started", "step_succeeded"]  # `step_ready` is not stored
    writer = store.writer()
    assert writer.batches * 4 <= len(events), f"{len(events)} events took {writer.batches} transactions"


def test_a_store_locked_mid_run_stops_the_run_and_it_resumes_later(backend: Any) -> None:
    store = backend.open(busy_timeout_s=0.2)
    held: list[Any] = []
    calls: list[str] = []

    @tool
    def work(name: str, after: Any = None) -> str:
        """Remember the call; `lock_store` takes the store's write lock and keeps it."""
        calls.append(name)
        if name == "lock_store" and calls.count(name) == 1:  # the first time only
            held.append(backend.lock_writes())
        return name

    steps = [
        Step(id="first", tool="work", args={"name": "first"}),
        Step(id="lock_store", tool="work", args={"name": "lock_store", "after": "${first}"}),
        Step(id="after", tool="work", args={"name": "after", "after": "${lock_store}"}),
    ]
    run_id = "locked-" + secrets.token_hex(4)
    with pytest.raises(RunInterruptedError) as err:
        Executor([work]).run_sync(steps, run_id=run_id, subscribers=[store.recorder()])
    assert calls == ["first", "lock_store"]  # `after` needs a result that was never recorded
    message = str(err.value)
    assert f"run `{run_id}` stopped: the run store `{store.path}` is locked by another process" in message
    assert f"`planweave resume {run_id}`" in message
    assert isinstance(err.value.cause, StoreLockedError) and err.value.__cause__ is err.value.cause
    held[0]()

    summary = store.summary(run_id)
    assert summary.status == "interrupted"
    state = store.get_run(run_id).resume_state()
    assert state.completed == {"first": "first"}  # `lock_store`'s success was never durable
    del calls[0]
    resumed = Executor([work]).run_sync(
        steps, run_id=run_id, completed=state.completed, subscribers=[store.recorder()]
    )
    assert resumed.ok and calls == ["lock_store", "lock_store", "after"]  # at least once: it runs again
    assert store.summary(run_id).status == "succeeded"


def test_a_full_store_stops_the_run_and_deleting_runs_makes_room(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteRunStore(path, max_bytes=160 * 4096)
    calls: list[str] = []

    @tool
    def big(name: str, after: Any = None) -> str:
        """A large, incompressible output."""
        calls.append(name)
        return name + ":" + secrets.token_hex(20_000)

    filler = Executor([big]).run_sync(
        [Step(id=f"f{i}", tool="big", args={"name": f"f{i}"}) for i in range(8)], subscribers=[store.recorder()]
    )
    assert filler.ok
    calls.clear()
    chain = [Step(id=f"c{i}", tool="big", args={"name": f"c{i}", "after": f"${{c{i - 1}}}" if i else None})
             for i in range(10)]
    run_id = "full-" + secrets.token_hex(4)
    with pytest.raises(RunInterruptedError) as err:
        Executor([big]).run_sync(chain, run_id=run_id, subscribers=[store.recorder()])
    assert isinstance(err.value.cause, StoreFullError)
    assert f"the run store `{path}` is full" in str(err.value)
    assert "`planweave prune --older-than 7d` or `planweave delete RUN_ID`" in str(err.value)
    recorded = [e["step_id"] for e in store.events(run_id) if e["kind"] == "step_succeeded"]
    assert len(calls) <= len(recorded) + 1 < 10  # no step started on an unrecorded result

    def pages() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("PRAGMA page_count").fetchone()[0])

    full = pages()
    store.delete(filler.run_id)
    assert pages() < full - 40  # the filler's pages went back to the disk
    assert path.stat().st_size <= pages() * 4096
    state = store.get_run(run_id).resume_state()
    resumed = Executor([big]).run_sync(chain, run_id=run_id, completed=state.completed, subscribers=[store.recorder()])
    assert resumed.ok and store.summary(run_id).status == "succeeded"


def test_a_run_taken_over_elsewhere_stops_here(backend: Any) -> None:
    store = backend.open()
    calls: list[str] = []

    @tool
    def work(name: str, after: Any = None) -> str:
        """`steal` plays another process forcing its way in (`planweave resume --force`)."""
        calls.append(name)
        if name == "steal":
            backend.sql("UPDATE runs SET owner = 'elsewhere:1:beef', lease_expires = 9e12")
        return name

    steps = [Step(id="steal", tool="work", args={"name": "steal"}),
             Step(id="next", tool="work", args={"name": "next", "after": "${steal}"})]
    with pytest.raises(RunLeasedError) as err:
        Executor([work]).run_sync(steps, subscribers=[store.recorder()])
    assert calls == ["steal"]
    assert "was taken over by `elsewhere:1:beef`" in str(err.value) and err.value.owner == "elsewhere:1:beef"


def test_nothing_of_a_taken_over_runs_batch_is_written(backend: Any) -> None:
    """The batch that finds the run taken over writes none of its events, blobs or counts."""
    store = backend.open()

    @tool
    def work(name: str, after: Any = None) -> str:
        if name == "steal":
            backend.sql("UPDATE runs SET owner = 'elsewhere:1:beef', lease_expires = 9e12")
            return "x" * 5000  # a blob-sized output, in the batch that must not be written
        return name

    steps = [Step(id="first", tool="work", args={"name": "first"}),
             Step(id="steal", tool="work", args={"name": "steal", "after": "${first}"}),
             Step(id="next", tool="work", args={"name": "next", "after": "${steal}"})]
    with pytest.raises(RunLeasedError):
        Executor([work]).run_sync(steps, subscribers=[store.recorder()])
    [(run_id, done)] = backend.sql("SELECT id, steps FROM runs")
    kinds = [(k, sid) for k, sid in backend.sql("SELECT kind, step_id FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]
    assert ("step_succeeded", "first") in kinds
    # (`steal`'s start may have been written before it took the run away: nothing after that is)
    assert ("step_succeeded", "steal") not in kinds
    assert not any(sid == "next" for k, sid in kinds if k != "step_added")
    assert backend.sql("SELECT COUNT(*) FROM blobs") == [(0,)]
    assert done == 3  # the steps added before; nothing from the lost batch
    store.close()


def test_a_read_only_store_reads_and_refuses_to_record(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    writable = SQLiteRunStore(path)

    @tool
    def echo(text: str) -> str:
        """The text."""
        return text

    done = Executor([echo]).run_sync([Step(id="a", tool="echo", args={"text": "hi"})], subscribers=[writable.recorder()])
    writable.close()
    store = SQLiteRunStore(path, read_only=True)
    assert store.read_only
    assert store.summary(done.run_id).status == "succeeded"
    assert store.export(done.run_id)["steps"][0]["output"] == "hi"
    assert store.stats()[0].runs == 1 and store.list_runs()[0].id == done.run_id
    calls: list[str] = []

    @tool
    def note(text: str) -> str:
        """Remember the call."""
        calls.append(text)
        return text

    with pytest.raises(StoreReadOnlyError) as err:
        Executor([note]).run_sync([Step(id="a", tool="note", args={"text": "x"})], subscribers=[store.recorder()])
    assert calls == []
    assert f"the run store `{path}` is read-only" in str(err.value) and "--no-record" in str(err.value)
    with pytest.raises(StoreReadOnlyError):
        store.prune(0)
