"""Events: the history a run keeps is the same, event for event, as what a subscriber sees live."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from planweave.executor import Executor, RunEvent, Step, StepAdded
from planweave.executor.events import EVENT_TYPES, EventBus
from planweave.planner.testing import await_until
from planweave.tools import tool


# The executor's own kinds (the planner adds its events to `EVENT_TYPES` when imported).
EXECUTOR_EVENTS = {kind: cls for kind, cls in EVENT_TYPES.items() if cls.__module__ == "planweave.executor.events"}


@tool
async def echo(value: Any) -> Any:
    return value


@tool
async def boom() -> None:
    raise ValueError("no")


@tool
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def plan() -> list[Step]:
    """A run that emits every kind of event but `step_cancelled` (see the second run)."""
    return [
        Step(id="old", tool="echo", args={"value": 1}),
        Step(id="a", tool="echo", args={"value": "${old}"}),
        Step(id="b", tool="boom", on_failure="continue", retry={"max_attempts": 2, "initial_delay_s": 0}),
        Step(id="c", tool="echo", args={"value": "${b}"}),
        Step(id="d", tool="echo", args={"value": [1, 2]}, depends_on=["a"], when="${a} == 1"),
    ]


def without_time(events: list[RunEvent]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        data = ev.to_dict()
        for key in ("at", "duration_s"):
            data.pop(key, None)
        out.append(data)
    return out


async def test_kept_history_equals_what_a_subscriber_sees() -> None:
    ex = Executor([echo, boom])
    live: list[RunEvent] = []
    with_subscriber = await ex.run(plan(), completed={"old": 1}, run_id="r", subscribers=[live.append])
    async with ex.start(plan(), completed={"old": 1}, run_id="r") as run:
        pass
    assert with_subscriber.ok and run.result.ok
    kept = run.history
    assert {ev.kind for ev in kept} == set(EXECUTOR_EVENTS) - {"step_cancelled"}
    assert without_time(kept) == without_time(live)
    assert run.history == kept and all(x is y for x, y in zip(run.history, kept))  # built once
    replayed = [ev async for ev in run.events()]
    assert replayed == kept


async def test_cancelled_steps_are_in_the_history() -> None:
    ex = Executor([nap])
    async with ex.start([Step(id="s", tool="nap", args={"seconds": 5})], run_id="r") as run:
        await await_until(lambda: run.step_status("s") == "running", "`s` was running")
        run.cancel()
    assert [ev.kind for ev in run.history][-2:] == ["step_cancelled", "run_finished"]


async def test_subscriber_added_mid_run_sees_later_events_and_history_keeps_order() -> None:
    ex = Executor([nap])
    late: list[RunEvent] = []
    async with ex.start(
        [Step(id="a", tool="nap", args={"seconds": 0}), Step(id="b", tool="nap", args={"seconds": 0.02}, depends_on=["a"])]
    ) as run:
        while run.step_status("a") != "succeeded":
            await asyncio.sleep(0.001)
        run.subscribe(late.append)
    history = run.history
    assert [ev.kind for ev in history][0] == "run_started" and history[-1].kind == "run_finished"
    assert history[-len(late) :] == late and all(x is y for x, y in zip(history[-len(late) :], late))
    assert [(ev.kind, getattr(ev, "step_id", None)) for ev in late][-2:] == [("step_succeeded", "b"), ("run_finished", None)]
    times = [ev.at for ev in history]
    assert times == sorted(times)


async def test_steps_added_in_one_batch_share_the_batch_time() -> None:
    async with Executor([echo]).start([Step(id=f"s{i}", tool="echo", args={"value": i}) for i in range(3)]) as run:
        pass
    added = [ev for ev in run.history if isinstance(ev, StepAdded)]
    assert [ev.step_id for ev in added] == ["s0", "s1", "s2"]
    assert len({ev.at for ev in added}) == 1


def test_note_builds_each_event_kind_with_its_fields_in_order() -> None:
    seen: list[RunEvent] = []
    bus = EventBus([seen.append], run_id="r")
    assert len(EXECUTOR_EVENTS) == 11
    for kind, cls in EXECUTOR_EVENTS.items():
        if cls is StepAdded:
            continue  # added with `defer`, one per step of a batch
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("run_id", "at")]
        values = [f"{kind}.{name}" for name in names]
        bus.note(kind, *values)
        event = seen[-1]
        assert type(event) is cls and event.run_id == "r"
        assert event == cls(run_id="r", at=event.at, **dict(zip(names, values)))


def test_without_listeners_events_are_built_when_read() -> None:
    bus = EventBus(run_id="r")
    bus.note("step_ready", "a")
    bus.defer(lambda run_id, at: [StepAdded(run_id=run_id, at=at, step_id="b", tool="t", step={})])
    assert [(type(ev).__name__, ev.run_id) for ev in bus.history] == [("StepReady", "r"), ("StepAdded", "r")]
    assert EventBus(keep_history=False).history == []


async def test_run_started_is_stamped_with_the_run_start() -> None:
    async with Executor([echo]).start([Step(id="a", tool="echo", args={"value": 1})]) as run:
        pass
    assert run.history[0].at == run.started_at == run.result.started_at
