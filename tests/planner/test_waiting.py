"""People in the loop through the Python API: a planner run waits, is answered, continues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from planweave.executor.errors import AnswerError
from planweave.executor.requests import InputAnswer, InputRequest
from planweave.planner import Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools.base import tool

sent: list[str] = []


@tool(approval=True)
def send(to: str) -> str:
    """Send the report to someone."""
    sent.append(to)
    return f"sent to {to}"


@tool
def measure(name: str) -> int:
    """Measure something."""
    return len(name)


def plan() -> Reply:
    return Reply.json_obj({
        "rationale": "measure, ask, send",
        "steps": [
            {"id": "m", "tool": "measure", "args": {"name": "abcd"}},
            {"id": "who", "tool": "ask_user", "args": {"question": "Send it to whom?", "choices": ["ann", "bob"]}},
            {"id": "s", "tool": "send", "args": {"to": "${who}"}},
        ],
        "answer": None,
    })


def finish(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


def planner(server: FakeModelServer, home: Path, **kwargs: Any) -> Planner:
    return Planner(model="openai/fake", api_base=server.base_url, api_key="sk-test", tools=[send, measure], store=home, tracing=False, **kwargs)


async def test_a_run_waits_then_continues_later_with_answers_and_no_new_plan(tmp_path: Path) -> None:
    sent.clear()
    with FakeModelServer() as server:
        server.enqueue(plan(), finish("sent to bob"))
        events: list[str] = []
        first = await planner(server, tmp_path).run("send the measurement", subscribers=[lambda e: events.append(e.kind)])
        assert first.status == "waiting" and first.answer is None
        assert [r.step_id for r in first.requests] == ["who"]
        assert first.requests[0].question == "Send it to whom?"
        assert first.steps["m"].status == "succeeded" and first.steps["s"].status == "pending"
        assert "input_requested" in events
        assert planner(server, tmp_path).store.summary(first.run_id).status == "waiting"  # type: ignore[union-attr]

        with pytest.raises(AnswerError, match="offers the choices `ann`, `bob`"):
            await planner(server, tmp_path).respond(first.run_id, InputAnswer.reply("carl"))

        second = await planner(server, tmp_path).respond(first.run_id, InputAnswer.reply("Bob"))
        assert second.status == "waiting" and [r.step_id for r in second.requests] == ["s"]
        assert second.requests[0].args == {"to": "bob"}  # the answer fed the next step
        assert sent == []

        third = await planner(server, tmp_path).respond(first.run_id, InputAnswer.approve(), step_id="s")
        assert third.status == "succeeded" and third.answer == "sent to bob"
        assert sent == ["bob"]
        assert third.steps["m"].restored  # done once, in the first process
        assert len(server.chat_requests) == 2  # one plan, one join: answering planned nothing again
        kinds = [e["kind"] for e in planner(server, tmp_path).store.events(first.run_id)]  # type: ignore[union-attr]
        assert kinds.count("input_requested") == 2 and kinds.count("input_answered") == 2


async def test_a_callback_answers_in_process_and_the_stream_yields_the_request(tmp_path: Path) -> None:
    sent.clear()
    asked: list[InputRequest] = []

    def on_input(request: InputRequest) -> InputAnswer:
        asked.append(request)
        if request.kind == "question":
            return InputAnswer.reply("ann", by="callback")
        return InputAnswer.edit({"to": "ann@example.org"}, by="callback")

    with FakeModelServer() as server:
        server.enqueue(plan(), finish("done"))
        kinds = [e.kind async for e in planner(server, tmp_path, on_input=on_input).stream("send it")]
    assert [r.kind for r in asked] == ["question", "approval"]
    assert sent == ["ann@example.org"]
    assert kinds.count("input_requested") == 2 and kinds.count("input_answered") == 2
    assert kinds[-1] == "planner_finished"


async def test_a_denied_step_is_a_failure_the_planner_handles(tmp_path: Path) -> None:
    sent.clear()
    with FakeModelServer() as server:
        server.enqueue(plan(), finish("not sent: denied"))
        p = planner(server, tmp_path, on_input=lambda r: InputAnswer.reply("ann") if r.kind == "question" else InputAnswer.deny("wrong day"))
        result = await p.run("send it")
        join = server.chat_requests[-1].last_user_text  # results are data, in the user message
    assert sent == []
    assert result.status == "partial" and result.failed_steps == ["s"]
    assert "step `s` was not run: a person denied it: wrong day" in join  # the planner saw why


async def test_user_required_approval_for_a_tool(tmp_path: Path) -> None:
    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj({"rationale": "", "steps": [{"id": "m", "tool": "measure", "args": {"name": "x"}}], "answer": None}),
            finish("1"),
        )
        result = await planner(server, tmp_path, approve=["measure"]).run("measure x")
    assert result.status == "waiting" and result.requests[0].tool == "measure"
