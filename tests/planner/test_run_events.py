"""A planner run's events go through the run's one bus, under its one failure policy
(against the fake model server over real HTTP; litellm and instructor are not patched)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from planweave.executor import RunEvent
from planweave.planner import Planner
from planweave.planner.events import LLMCalled, PlannerFinished, PlanUpdated
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools import tool


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        s.enqueue(
            Reply.json_obj({"rationale": "r", "steps": [{"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}], "answer": None}),
            Reply.json_obj({"action": "finish", "answer": "It is 3.", "reason": ""}),
        )
        yield s


def planner(server: FakeModelServer, **kw: Any) -> Planner:
    return Planner(model="openai/fake-model", api_base=server.base_url, api_key="sk-fake", tools=[add], **kw)


def broken_sync(event: RunEvent) -> None:
    raise RuntimeError("sync observer bug")


async def broken_async(event: RunEvent) -> None:
    await asyncio.sleep(0)
    raise RuntimeError("async observer bug")


async def test_failing_subscribers_are_reported_for_planner_events_and_the_run_goes_on(
    server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[RunEvent] = []
    with caplog.at_level(logging.ERROR, logger="planweave.events"):
        result = await planner(server).run("add", subscribers=[broken_sync, broken_async, seen.append])
    assert result.status == "succeeded" and result.answer == "It is 3."
    kinds = [ev.kind for ev in seen]
    # Planner and executor events arrive in one order through one bus, ending with the planner's.
    assert kinds[0] == "run_started" and kinds[-1] == "planner_finished"
    assert kinds.index("step_added") < kinds.index("plan_updated") < kinds.index("decision") < kinds.index("run_finished")
    assert sum(isinstance(ev, LLMCalled) for ev in seen) == 2
    for name in ("broken_sync", "broken_async"):
        for kind in ("plan_updated", "llm_called", "decision", "answer_delta", "planner_finished", "step_succeeded"):
            assert any(f".{name}` failed on a `{kind}` event of run `{result.run_id}`" in m for m in caplog.messages), (
                name, kind,
            )


async def test_planner_events_are_in_the_recorded_run_and_the_summary(server: FakeModelServer) -> None:
    p = planner(server)
    result = await p.run("add")
    assert p.store is not None
    record = p.store.get_run(result.run_id)
    kinds = [ev["kind"] for ev in record.events]
    assert PlanUpdated.kind in kinds and kinds[-1] == PlannerFinished.kind
    summary = record.summary
    assert (summary.status, summary.answer, summary.llm_calls) == ("succeeded", "It is 3.", 2)
    assert summary.input_tokens == result.usage.input_tokens and summary.cost_usd is None  # unknown model: unpriced
