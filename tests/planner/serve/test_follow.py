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
