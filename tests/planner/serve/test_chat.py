"""The chat protocol without HTTP: a conversation as a goal, a run's events as the reply.

`tests/planner/test_server.py` checks the same through the real server and the `openai` client.
"""

from __future__ import annotations

import pytest

from planweave.executor import Step
from planweave.executor.events import RunEvent, RunStarted, StepAdded, StepSucceeded
from planweave.planner.serve.chat import (
    ChatMessage, ChatReply, ConversationError, Narration, ReasoningFormat, conversation_goal, conversation_turns,
)
from planweave.planner.events import AnswerDelta, PlanUpdated


def messages(*turns: tuple[str, object]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": role, "content": content}) for role, content in turns]


def goal(*turns: tuple[str, object], max_messages: int = 200, max_chars: int = 200_000) -> str:
    return conversation_goal(messages(*turns), max_messages=max_messages, max_chars=max_chars)


# --- the conversation as a goal ------------------------------------------------------------------


def test_the_last_user_message_is_the_goal_and_earlier_turns_a_conversation() -> None:
    turns = (
        ("developer", "Answer briefly."),
        ("user", "What is the capital\nof France?"),
        ("assistant", "<think>\nPlanning…\n</think>\n\nParis."),  # our own progress is left out
        ("assistant", "<think>x</think>Yes.\n\n[//]: # (planweave run=abc session=def)"),  # and our marker
        ("tool", "   "),  # tool turns are left out
        ("user", [{"type": "text", "text": "And is it"}, {"type": "input_text", "text": "still?"}]),
    )
    assert goal(*turns) == "And is it\nstill?"  # never the earlier turns pasted in
    assert conversation_turns(messages(*turns)) == [
        {"role": "system", "text": "Answer briefly."},
        {"role": "user", "text": "What is the capital\nof France?"},
        {"role": "assistant", "text": "Paris."},
        {"role": "assistant", "text": "Yes."},
    ]
    assert goal(("user", "  add 1 and 2  ")) == "add 1 and 2"


@pytest.mark.parametrize(
    ("turns", "limits", "message", "param", "code"),
    [
        (
            [("user", "a")] * 3, {"max_messages": 2},
            "the conversation has 3 messages; this server takes at most 2 (`--max-messages`); start a new conversation.",
            "messages", "context_length_exceeded",
        ),
        (
            [("user", "abc"), ("user", "de")], {"max_chars": 4},
            "the conversation has 5 characters; this server takes at most 4 (`--max-chars`); start a new "
            "conversation or shorten it.",
            "messages", "context_length_exceeded",
        ),
        (
            [("user", "hi"), ("assistant", "yo")], {},
            "the last message is from the `assistant`; planweave answers the user's last message, so end the "
            "conversation with a `user` message.",
            "messages.1.role", None,
        ),
        (
            [("user", [{"type": "image_url", "image_url": {"url": "data:,"}}])], {},
            "message 0 has a `image_url` part; planweave plans from text only: send the text, or describe what "
            "the attachment holds.",
            "messages.0.content", None,
        ),
        ([("user", " \n")], {}, "the last user message is empty; say what you want done.", "messages", None),
    ],
)  # fmt: skip
def test_a_conversation_that_cannot_be_a_goal_says_why_and_where(
    turns: list[tuple[str, object]], limits: dict[str, int], message: str, param: str, code: str | None
) -> None:
    with pytest.raises(ConversationError) as caught:
        goal(*turns, **limits)
    assert (caught.value.message, caught.value.param, caught.value.code) == (message, param, code)
    assert str(caught.value) == message


# --- the run as a reply --------------------------------------------------------------------------


def events() -> list[RunEvent]:
    step = Step(id="x", tool="add", args={"a": 1, "b": 2}, description="add them")
    return [
        RunStarted(run_id="r", goal="add"),
        StepAdded(run_id="r", step_id="x", tool="add", step=step),
        PlanUpdated(run_id="r", round=1, rationale="Add.", step_ids=["x"]),
        StepSucceeded(run_id="r", step_id="x", output=3.0, attempts=1, duration_s=0.01),
        AnswerDelta(run_id="r", text="It is thr"),
        AnswerDelta(run_id="r", text="", reset=True),
        AnswerDelta(run_id="r", text="It is "),
    ]


def reply_to(fmt: ReasoningFormat, final: str) -> tuple[list[dict[str, str]], ChatReply]:
    narration, reply = Narration(), ChatReply(fmt)
    deltas = [reply.delta(kind, text) for e in events() for kind, text in narration.feed(e)]
    deltas += [reply.delta(kind, text) for kind, text in narration.finish(final)]
    deltas.append(reply.close())
    return [d for d in deltas if d is not None], reply


REASONING = (
    "Planning…\n"
    '- planned `x` (add them): `add` `{"a": 1, "b": 2}`\n'
    "Round 1 planned, 1 step: Add.\n"
    "- `x` done in 0.01s: `3.0`\n"
)
DISCARDED = "\n\n*(The answer above is discarded: the model's reply was invalid; asking again.)*\n\n"


def test_think_puts_the_progress_in_a_think_block_before_the_answer() -> None:
    deltas, reply = reply_to("think", "It is 3.")
    content = reply.message()["content"]
    assert content == f"<think>\n{REASONING}</think>\n\nIt is thr{DISCARDED}It is 3."
    assert "".join(d["content"] for d in deltas) == content
    assert reply.message() == {"role": "assistant", "content": content}


def test_field_sends_the_progress_beside_the_answer_and_off_leaves_it_out() -> None:
    deltas, reply = reply_to("field", "It is 3.")
    assert "".join(d.get("reasoning_content", "") for d in deltas) == REASONING
    assert reply.message() == {
        "role": "assistant", "content": f"It is thr{DISCARDED}It is 3.", "reasoning_content": REASONING
    }  # fmt: skip
    _, off = reply_to("off", "Something else.")
    assert off.message() == {"role": "assistant", "content": f"It is thr{DISCARDED}It is \n\nSomething else."}
