"""Events: the history a run keeps is the same, event for event, as what a subscriber sees live."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

import planweave.executor
from planweave.tools.errors import ConfigError
from planweave.executor import Executor, RunEvent, Step, StepAdded
from planweave.executor.events import EVENT_TYPES, EventBus, NotedBatch, build_noted, event_from_dict, register_event_type
from planweave.planner.testing import await_until
from planweave.tools import tool


# The executor's own kinds (the planner registers its events when imported).
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
    assert with_subscriber.status == run.result.status == "partial"  # `b` fails with `on_failure: continue`
    kept = run.history
    # (a cache hit needs an earlier run: tests/executor/test_cache.py)
    assert {ev.kind for ev in kept} == set(EXECUTOR_EVENTS) - {"step_cancelled", "step_cache_hit", "step_progress"}
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
    assert len(EXECUTOR_EVENTS) == 13
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
    bus.defer("step_added", lambda run_id, at: [StepAdded(run_id=run_id, at=at, step_id="b", tool="t", step={})])
    assert [(type(ev).__name__, ev.run_id) for ev in bus.history] == [("StepReady", "r"), ("StepAdded", "r")]
    assert EventBus(keep_history=False).history == []


class NoReady(list[RunEvent]):
    """A subscriber that says it has no use for `step_ready` (as the run store's recorder does)."""

    ignored_kinds: ClassVar[frozenset[str]] = frozenset({"step_ready"})

    def __call__(self, event: RunEvent) -> None:
        self.append(event)


async def test_events_every_subscriber_ignores_are_not_built_for_them_but_kept() -> None:
    ex = Executor([echo, boom])
    quiet = NoReady()
    async with ex.start(plan(), completed={"old": 1}, run_id="r", subscribers=[quiet]) as run:
        pass
    assert "step_ready" not in {ev.kind for ev in quiet}
    history = run.history
    assert [ev for ev in history if ev.kind != "step_ready"] == list(quiet)  # the others, the same objects' values
    assert any(ev.kind == "step_ready" for ev in history)  # built when the history is read
    times = [ev.at for ev in history]
    assert times == sorted(times)


async def test_an_ignored_kind_still_reaches_a_subscriber_or_iterator_that_wants_it() -> None:
    ex = Executor([echo, boom])
    quiet, everything = NoReady(), []
    await ex.run(plan(), completed={"old": 1}, run_id="r", subscribers=[quiet, everything.append])
    assert any(ev.kind == "step_ready" for ev in everything)
    assert [ev.kind for ev in quiet] == [ev.kind for ev in everything]  # built for one: delivered to all, as before
    bus = EventBus([NoReady()], run_id="r")
    bus.note("step_ready", "a")
    assert [ev.kind for ev in bus.history] == ["step_ready"]
    seen: list[str] = []

    async def listen() -> None:
        async for ev in bus.iterate(replay=False):
            seen.append(ev.kind)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    bus.note("step_ready", "b")  # an iterator listens now: built as it happens
    bus.close()
    await task
    assert seen == ["step_ready"]


class Unbuilt(list[RunEvent]):
    """A subscriber that takes a step's start and success, and a plan's steps being added,
    unbuilt (as the run store's recorder does), and builds them itself to compare."""

    noted_kinds: ClassVar[frozenset[str]] = frozenset({"step_added", "step_started", "step_succeeded"})

    def __init__(self, *, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken
        self.unbuilt = 0
        self.batches: list[int] = []

    def __call__(self, event: RunEvent) -> None:
        self.append(event)

    def noted(self, run_id: str, kind: str, at: float, fields: tuple[Any, ...]) -> None:
        if self.broken:
            raise RuntimeError("noted observer bug")
        self.unbuilt += 1
        self.append(build_noted(run_id, (kind, at, fields)))

    def noted_batch(self, run_id: str, batch: NotedBatch) -> None:
        if self.broken:
            raise RuntimeError("noted batch observer bug")
        events = batch.build(run_id, batch.at)
        assert {ev.kind for ev in events} == {batch.kind}
        assert batch.fields is None or [build_noted(run_id, noted) for noted in batch.unbuilt(run_id)] == events
        self.batches.append(len(events))
        self.extend(events)


async def test_kinds_every_subscriber_takes_unbuilt_are_handed_over_unbuilt_and_kept() -> None:
    ex = Executor([echo, boom])
    unbuilt = Unbuilt()
    async with ex.start(plan(), completed={"old": 1}, run_id="r", subscribers=[unbuilt]) as run:
        pass
    starts_and_successes = [ev for ev in run.history if ev.kind in ("step_started", "step_succeeded")]
    assert unbuilt.unbuilt == len(starts_and_successes) >= 2
    assert unbuilt.batches == [sum(ev.kind == "step_added" for ev in run.history)]  # the plan's steps: one batch
    assert list(unbuilt) == run.history  # the same events, field for field, as the history builds them
    both, plain = Unbuilt(), []
    await ex.run(plan(), completed={"old": 1}, run_id="r", subscribers=[both, plain.append])
    assert both.unbuilt == 0 and not both.batches and both == plain  # one subscriber wants them built: built for all
    bus = EventBus([Unbuilt()], run_id="r")
    seen: list[RunEvent] = []

    async def listen() -> None:
        async for ev in bus.iterate(replay=False):
            seen.append(ev)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    bus.note("step_started", "a", "echo", 1, {})  # an iterator listens: built as it happens
    bus.close()
    await task
    assert [ev.kind for ev in seen] == ["step_started"] and bus.subscribers[0].unbuilt == 0  # type: ignore[attr-defined]


def test_a_failing_unbuilt_subscriber_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus([Unbuilt(broken=True)], run_id="r")
    with caplog.at_level(logging.ERROR, logger="planweave.events"):
        bus.note("step_succeeded", "a", 1, 1, 0.5)
        bus.defer("step_added", lambda run_id, at: [StepAdded(run_id=run_id, at=at, step_id="b", tool="t", step={})])
    assert bus.subscriber_errors == 2
    assert "failed on a `step_succeeded` event of run `r`" in caplog.text
    assert "failed on a batch of `step_added` events of run `r`" in caplog.text
    assert [ev.kind for ev in bus.history] == ["step_succeeded", "step_added"]


async def test_run_started_is_stamped_with_the_run_start() -> None:
    async with Executor([echo]).start([Step(id="a", tool="echo", args={"value": 1})]) as run:
        pass
    assert run.history[0].at == run.started_at == run.result.started_at


# --- one failure policy -----------------------------------------------------------------------


def broken_sync(event: RunEvent) -> None:
    raise RuntimeError("sync observer bug")


async def broken_async(event: RunEvent) -> None:
    await asyncio.sleep(0)
    raise RuntimeError("async observer bug")


async def test_a_failing_subscriber_is_logged_and_counted_and_the_run_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[RunEvent] = []
    with caplog.at_level(logging.ERROR, logger="planweave.events"):
        async with Executor([echo]).start(
            [Step(id="a", tool="echo", args={"value": 1})], run_id="r", subscribers=[broken_sync, broken_async, seen.append]
        ) as run:
            pass
    assert run.result.ok and run.result.steps["a"].output == 1
    kinds = [ev.kind for ev in run.history]
    assert [ev.kind for ev in seen] == kinds  # the subscriber after the broken ones saw everything
    assert run.subscriber_errors == 2 * len(kinds)  # every event, both subscribers (the async ones awaited by exit)
    for name in ("broken_sync", "broken_async"):  # each failure names the subscriber and the event kind
        for kind in set(kinds):
            assert any(f".{name}` failed on a `{kind}` event of run `r`" in m for m in caplog.messages), (name, kind)
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert {str(e) for e in errors} == {"sync observer bug", "async observer bug"}


async def test_an_async_subscriber_is_awaited_before_the_run_exits() -> None:
    seen: list[str] = []

    async def slow_observer(event: RunEvent) -> None:
        await asyncio.sleep(0.001)
        seen.append(event.kind)

    async with Executor([echo]).start([Step(id="a", tool="echo", args={"value": 1})], subscribers=[slow_observer]) as run:
        pass
    assert sorted(seen) == sorted(ev.kind for ev in run.history) and run.subscriber_errors == 0


@register_event_type
@dataclass(slots=True, kw_only=True)
class Noted(RunEvent):
    """An event of a layer above the executor (as the planner's are)."""

    kind: ClassVar[str] = "test_noted"
    text: str


async def test_an_upper_layer_emits_through_the_bus_and_its_events_read_back() -> None:
    seen: list[RunEvent] = []
    async with Executor([echo]).start([Step(id="a", tool="echo", args={"value": 1})], subscribers=[seen.append]) as run:
        run.emit(Noted(run_id=run.id, text="inside"))
        streamed = run.events()
    run.emit(Noted(run_id=run.id, text="after"))  # e.g. the planner's final event
    kinds = [ev.kind for ev in run.history]
    assert kinds[0] == "run_started" and "test_noted" in kinds[1:-2] and kinds[-2:] == ["run_finished", "test_noted"]
    assert [ev.kind for ev in seen] == kinds
    assert [ev.kind async for ev in streamed] == kinds  # first read after the run: replays it all
    back = event_from_dict(run.history[-1].to_dict())
    assert type(back) is Noted and back == run.history[-1]


def test_registering_event_types() -> None:
    assert EVENT_TYPES["test_noted"] is Noted and register_event_type(Noted) is Noted  # again: a no-op

    @dataclass(slots=True, kw_only=True)
    class Clash(RunEvent):
        kind: ClassVar[str] = "step_added"

    with pytest.raises(ConfigError) as err:
        register_event_type(Clash)
    assert str(err.value) == (
        f"event kind `step_added` of `{__name__}.test_registering_event_types.<locals>.Clash` is taken by "
        "`planweave.executor.events.StepAdded`; give the class its own `kind`."
    )
    with pytest.raises(ConfigError, match="not a subclass of `RunEvent`"):
        register_event_type(dict)  # type: ignore[type-var]
    with pytest.raises(TypeError):
        EVENT_TYPES["x"] = Noted  # type: ignore[index]
    with pytest.raises(ConfigError, match="unknown event kind `nope`"):
        event_from_dict({"kind": "nope", "run_id": "r"})


def test_the_executor_names_no_event_kind_of_a_layer_above() -> None:
    import planweave.planner.events as planner_events

    kinds = {cls.kind for cls in vars(planner_events).values() if isinstance(cls, type) and issubclass(cls, RunEvent)}
    assert {"plan_updated", "decision", "llm_called", "planner_finished"} <= kinds
    source = Path(planweave.executor.__file__).resolve().parent
    for path in sorted(source.glob("*.py")):
        text = path.read_text()
        for kind in kinds - {RunEvent.kind}:
            assert f'"{kind}"' not in text and f"'{kind}'" not in text, f"{path.name} names `{kind}`"
