"""Reading a chat message as the answer a waiting run asked for; front ends' background tasks."""

from __future__ import annotations

from planweave.executor.requests import InputRequest
from planweave.planner.serve.chat import _preview, _plain
from planweave.planner.serve.tasks import background_task, offline_task_reply
from planweave.planner.serve.turns import read_answer

from .frontends import OPEN_WEBUI_TITLE, open_webui_task

APPROVAL = InputRequest(run_id="r", step_id="s", tool="send", kind="approval", args={"to": "ann"})
QUESTION = InputRequest(run_id="r", step_id="q", tool="ask_user", kind="question", question="Which?", choices=["a", "b"])


def test_yes_no_and_json_answer_an_approval_and_anything_else_asks_again() -> None:
    for text in ("yes", "Yes!", "ok", "approve"):
        assert read_answer(APPROVAL, text).action == "approve"  # type: ignore[union-attr]
    denied = read_answer(APPROVAL, "no, not on Fridays")
    assert denied.action == "deny" and denied.reason == "not on Fridays"  # type: ignore[union-attr]
    edited = read_answer(APPROVAL, '{"to": "bob"}')
    assert edited.action == "edit" and edited.args == {"to": "bob"}  # type: ignore[union-attr]
    again = read_answer(APPROVAL, "maybe later")
    assert isinstance(again, str) and again.startswith("I need a yes or a no before going on.")
    assert read_answer(QUESTION, "B").text == "b"  # type: ignore[union-attr]
    assert isinstance(read_answer(QUESTION, "c"), str)


def test_progress_values_are_code_spans_and_prose_is_escaped() -> None:
    assert _preview({"prompt": "p1: ${p1} | p2: ${p2}"}) == '`{"prompt": "p1: ${p1} | p2: ${p2}"}`'
    assert _preview("a `tick`") == "`` a `tick` ``"  # CommonMark: a longer fence, padded where a tick touches it
    assert _plain("2 * 3 * 4 costs $5", 100) == "2 \\* 3 \\* 4 costs \\$5"


def test_a_real_message_is_not_a_task_and_a_task_gets_its_format() -> None:
    assert background_task([{"role": "user", "content": "### Tasks for today: buy milk"}]) is None
    messages = open_webui_task(OPEN_WEBUI_TITLE, [{"role": "user", "content": "plan a trip to Rome in May"}])
    assert background_task(messages) == "title"
    assert offline_task_reply(messages) == '{"title": "Plan a trip to Rome"}'
