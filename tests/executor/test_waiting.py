"""Steps that wait for people: approvals, questions, deadlines, and runs that end `waiting`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from planweave.executor import Executor
from planweave.executor.plan import Step
from planweave.executor.requests import InputAnswer, InputRequest, check_answer
from planweave.executor.errors import AnswerError
from planweave.executor.store import open_store
from planweave.tools.ask import ask_user
from planweave.tools.base import tool

written: list[dict[str, Any]] = []


@tool(approval=True)
def send(to: str, text: str) -> str:
    """Send a message."""
    written.append({"to": to, "text": text})
    return f"sent to {to}"


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def plan() -> list[Step]:
    return [
        Step(id="total", tool="add", args={"a": 2, "b": 3}),
        Step(id="mail", tool="send", args={"to": "ann", "text": "total ${total}"}),
        Step(id="after", tool="add", args={"a": "${total}", "b": 1}, depends_on=["mail"]),
        Step(id="side", tool="add", args={"a": 10, "b": 1}),
    ]


async def test_without_a_responder_the_run_ends_waiting_and_independent_steps_finish() -> None:
    result = await Executor([send, add]).run(plan())
    assert result.status == "waiting"
    assert result.steps["mail"].status == "waiting"
    assert result.steps["after"].status == "pending"
    assert result.output("side") == 11 and result.output("total") == 5
    [request] = result.requests
    assert (request.step_id, request.kind, request.tool) == ("mail", "approval", "send")
    assert request.args == {"to": "ann", "text": "total 5"}  # references resolved: the person sees what runs
    assert "waiting for a person: step `mail` needs approval" in (result.error or "")
    assert not result.ok


@pytest.mark.parametrize(
    ("answer", "status", "sent"),
    [
        (InputAnswer.approve(), "succeeded", {"to": "ann", "text": "total 5"}),
        (InputAnswer.edit({"to": "bob", "text": "hi"}), "succeeded", {"to": "bob", "text": "hi"}),
        (InputAnswer.deny("not today"), "failed", None),
    ],
)
async def test_a_responder_approves_edits_or_denies(answer: InputAnswer, status: str, sent: Any) -> None:
    written.clear()
    seen: list[InputRequest] = []

    async def responder(request: InputRequest) -> InputAnswer:
        seen.append(request)
        return answer

    result = await Executor([send, add], responder=responder).run(plan())
    assert [r.step_id for r in seen] == ["mail"]
    assert result.status == status
    if sent is None:
        assert written == []
        assert result.steps["mail"].error == "step `mail` was not run: a person denied it: not today"
        assert result.steps["mail"].error_type == "StepDeniedError"
        assert result.steps["after"].status in ("skipped", "cancelled")
    else:
        assert written == [sent]


async def test_requests_and_answers_are_events_and_the_fold_sees_them() -> None:
    from planweave.executor.state import RunState

    async def responder(request: InputRequest) -> InputAnswer:
        return InputAnswer.deny("no", by="test")

    async with Executor([send, add], responder=responder).start([Step(id="mail", tool="send", args={"to": "a", "text": "b"}, on_failure="continue")]) as run:
        pass
    kinds = [e.kind for e in run.history]
    assert kinds.index("input_requested") < kinds.index("input_answered") < kinds.index("step_failed")
    state = RunState.fold(run.history)
    assert state.answers["mail"].action == "deny" and state.answers["mail"].by == "test"
    assert state.requests == {}
    assert run.result.status == "partial"


async def test_a_step_can_ask_for_approval_and_the_user_can_require_it_for_a_tool() -> None:
    steps = [Step(id="a", tool="add", args={"a": 1, "b": 1}, approval=True), Step(id="b", tool="add", args={"a": 2, "b": 2})]
    result = await Executor([add]).run(steps)
    assert [r.step_id for r in result.requests] == ["a"] and result.output("b") == 4
    result = await Executor([add], approve=["add"]).run(steps)
    assert sorted(r.step_id for r in result.requests) == ["a", "b"]


async def test_a_question_answer_is_the_step_output_and_feeds_later_steps() -> None:
    steps = [
        Step(id="n", tool="ask_user", args={"question": "How many?", "choices": ["1", "2", "3"]}),
        Step(id="sum", tool="add", args={"a": "${n}", "b": 10}),
    ]
    result = await Executor([ask_user, add]).run(steps)
    assert result.status == "waiting" and result.requests[0].choices == ["1", "2", "3"]
    answered = await Executor([ask_user, add]).run(steps, answers={"n": InputAnswer.reply("2")})
    assert answered.output("n") == "2" and answered.output("sum") == 12


async def test_a_deadline_denies_an_approval_and_gives_a_question_its_default() -> None:
    never = asyncio.Event()

    async def slow(request: InputRequest) -> InputAnswer:
        await never.wait()
        raise AssertionError("not reached")

    steps = [
        Step(id="mail", tool="send", args={"to": "a", "text": "b"}, answer_within_s=0.01, on_failure="continue"),
        Step(id="city", tool="ask_user", args={"question": "Which city?", "default": "Paris"}, answer_within_s=0.01),
    ]
    result = await Executor([send, ask_user], responder=slow).run(steps)
    assert result.steps["mail"].error == "step `mail` was not run: nobody answered in time"
    assert result.output("city") == "Paris"
    assert result.status == "partial"


async def test_a_deadline_that_passed_while_the_run_was_stopped_applies_on_resume() -> None:
    steps = [Step(id="city", tool="ask_user", args={"question": "Which city?", "default": "Rome"}, answer_within_s=0.001)]
    first = await Executor([ask_user]).run(steps)
    if first.status == "succeeded":  # the deadline passed before the step asked: already applied
        assert first.output("city") == "Rome"
        return
    [request] = first.requests
    request = request.model_copy(update={"deadline_at": request.requested_at})  # passed by now
    again = await Executor([ask_user]).run(steps, requests={"city": request})
    assert again.output("city") == "Rome"


def test_answers_are_checked_against_the_request() -> None:
    question = InputRequest(run_id="r", step_id="q", tool="ask_user", kind="question", question="Which?", choices=["Paris", "Rome"])
    assert check_answer(question, InputAnswer.reply("rome")).text == "Rome"
    assert check_answer(question, InputAnswer.reply("1")).text == "Paris"
    with pytest.raises(AnswerError, match="offers the choices `Paris`, `Rome`; `Oslo` is not one of them"):
        check_answer(question, InputAnswer.reply("Oslo"))
    with pytest.raises(AnswerError, match="asks a question"):
        check_answer(question, InputAnswer.approve())
    approval = InputRequest(run_id="r", step_id="m", tool="send", kind="approval", args={"to": "a", "text": "b"})
    with pytest.raises(AnswerError, match="the edited arguments do not fit `send`: .*`text` is required"):
        check_answer(approval, InputAnswer.edit({"to": "x"}), send)
    with pytest.raises(AnswerError, match="rather than answering with text"):
        check_answer(approval, InputAnswer.reply("yes"))


async def test_a_waiting_run_is_recorded_waiting_and_resumes_from_the_store(tmp_path: Any) -> None:
    store = open_store(tmp_path)
    written.clear()
    first = await Executor([send, add]).run(plan(), subscribers=[store.recorder(kind="workflow", name="w")], run_id="r1")
    assert first.status == "waiting"
    assert store.summary("r1").status == "waiting"
    assert [r.id for r in store.list_runs(status="waiting")] == ["r1"]
    state = store.get_run("r1").resume_state()
    assert list(state.requests) == ["mail"] and state.completed == {"total": 5, "side": 11}
    again = await Executor([send, add]).run(
        state.steps, completed=state.completed, requests=state.requests, answers={"mail": InputAnswer.approve(by="test")},
        run_id="r1", subscribers=[store.recorder(kind="workflow", name="w")],
    )
    assert again.status == "succeeded" and again.output("after") == 6
    assert written == [{"to": "ann", "text": "total 5"}]
    assert store.summary("r1").status == "succeeded"
    kinds = [e["kind"] for e in store.events("r1")]
    assert kinds.count("input_requested") == 1 and kinds.count("input_answered") == 1
