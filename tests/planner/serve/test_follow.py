"""Following a run through the store (`planweave.planner.serve.follow`): a real SQLite store, a real
run recorded by an executor in this process and read through a second connection, as another
replica would."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from planweave.executor import Executor, Step
from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.planner.serve.follow import follow
from planweave.planner.serve.ops import Metrics
from planweave.tools import tool


def test_a_follower_gets_every_event_as_it_is_recorded_then_ends_with_the_run(tmp_path: Path) -> None:
    writer_store = SQLiteRunStore(tmp_path / "runs.db")
    reader_store = SQLiteRunStore(tmp_path / "runs.db")  # another connection, as another replica's
    release = threading.Event()

    @tool
    def gate(label: str) -> str:
        """Wait until released."""
        release.wait(30)
        return label

    async def scenario() -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
        run_id = "followed-run"
        steps = [Step(id="a", tool="gate", args={"label": "a"})]
        running = asyncio.create_task(Executor([gate]).run(steps, run_id=run_id, subscribers=[writer_store.recorder()]))
        while True:  # the run exists in the store once its first event is committed
            try:
                reader_store.summary(run_id)
                break
            except Exception:
                await asyncio.sleep(0.01)
        got: list[tuple[int, dict[str, Any]]] = []
        seen_started = asyncio.Event()

        async def read() -> None:
            async for number, event in follow(reader_store, run_id, after=0, metrics=Metrics(), wait_s=5):
                got.append((number, event))
                if event["kind"] == "step_started":
                    seen_started.set()

        reader = asyncio.create_task(read())
        await asyncio.wait_for(seen_started.wait(), 30)
        assert not reader.done()  # the run is going: the follower waits for more
        release.set()
        await running
        await asyncio.wait_for(reader, 30)
        return got, [e["kind"] for e in reader_store.events(run_id)]

    got, recorded = asyncio.run(scenario())
    assert [e["kind"] for _, e in got] == recorded and recorded[-1] == "run_finished"
    assert [n for n, _ in got] == list(range(1, len(recorded) + 1))


def test_a_follower_resumes_after_the_last_event_it_got(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.db")

    @tool
    def noop(label: str) -> str:
        """Return the label."""
        return label

    steps = [Step(id=f"s{i}", tool="noop", args={"label": str(i)}) for i in range(3)]
    Executor([noop]).run_sync(steps, run_id="done-run", subscribers=[store.recorder()])
    recorded = store.events("done-run")

    async def rest() -> list[tuple[int, dict[str, Any]]]:
        return [item async for item in follow(store, "done-run", after=len(recorded) - 2, metrics=Metrics())]

    assert asyncio.run(rest()) == [(len(recorded) - 1, recorded[-2]), (len(recorded), recorded[-1])]


class _CountingStore(SQLiteRunStore):
    """A SQLite store noting every read of events."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[int | None] = []
        """`after` of each `events_after`; None for each whole-run `events` read."""

    def events(self, run_id: str) -> list[dict[str, Any]]:
        self.reads.append(None)
        return SQLiteRunStore.events_after(self, run_id, 0)

    def events_after(self, run_id: str, after: int) -> list[dict[str, Any]]:
        found = super().events_after(run_id, after)
        self.reads.append(after)
        return found


def test_a_follower_reads_only_the_events_after_the_last_one_it_sent(tmp_path: Path) -> None:
    writer_store = SQLiteRunStore(tmp_path / "runs.db")
    reader_store = _CountingStore(tmp_path / "runs.db")
    gates = [threading.Event() for _ in range(3)]

    @tool
    def gate(label: str) -> str:
        """Wait until this step's gate opens."""
        gates[int(label)].wait(30)
        return label

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        steps = [Step(id=f"s{i}", tool="gate", args={"label": str(i)}, depends_on=[f"s{i - 1}"] if i else [])
                 for i in range(3)]
        running = asyncio.create_task(Executor([gate]).run(steps, run_id="r", subscribers=[writer_store.recorder()]))
        while True:  # the run exists in the store once its first event is committed
            try:
                reader_store.summary("r")
                break
            except Exception:
                await asyncio.sleep(0.01)
        got: list[tuple[int, dict[str, Any]]] = []
        # The run goes on in parts: each step waits until the follower has read the previous one's
        # success (a commit the next step waits for), so the follower reads the run several times.
        async for number, event in follow(reader_store, "r", after=0, metrics=Metrics(), wait_s=5):
            got.append((number, event))
            if event["kind"] == "step_added" and event["step_id"] == "s0":
                gates[0].set()
            if event["kind"] == "step_succeeded" and event["step_id"] != "s2":
                gates[int(event["step_id"][1]) + 1].set()
        await running
        return got

    got = asyncio.run(scenario())
    recorded = reader_store.events("r")
    assert [e for _, e in got] == recorded and [n for n, _ in got] == list(range(1, len(recorded) + 1))
    reads = reader_store.reads[:-1]  # (the last: this test's own whole read)
    assert None not in reads  # never the whole run again
    assert len(reads) >= 3 and reads == sorted(reads) and reads[0] == 0  # each read starts where the last left off
    assert set(reads) <= {n for n, _ in got} | {0}  # ... after an event it had sent
