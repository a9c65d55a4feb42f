"""One chat message, read as a turn of a conversation: a new goal, or the answer a waiting run asked for.

Chat front ends send the whole conversation with every request and keep no state of ours, so
a reply that leaves a run waiting ends with a marker, a Markdown comment the front end does
not show:

    [//]: # (planweave run=RUN_ID session=SESSION_ID step=STEP_ID)

The next request carries it back in the assistant's last message, and the user's new message
answers it (`read_answer`: yes / no and why / JSON arguments / the
answer to a question) and the same run continues, with no new plan; a message that does not
answer it is asked again. Otherwise the message is a new goal, planned with the earlier turns
as a conversation.

An answer can arrive after the question was already answered: the same message sent twice (a
front end's retry, a double click, a second window), to this replica or another. Then the run is
going on already (`running`, or `interrupted` until a replica takes it over) or waits for
something else (`step=` names what the marker's reply asked): the message does not start a new
goal nor answer the next question; it is the run's (`ChatTurn.followed_run`), and the reply
follows the run to where it stops, as the first answer's reply does. Runs of one conversation share its session id (`planweave runs --session`):
a marker's, else one derived from the conversation's opening (its system and first user
messages; two conversations that open with the very same words share it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from planweave.executor.errors import AnswerError
from planweave.executor.requests import InputAnswer, InputRequest, check_answer
from planweave.executor.store import RunStore, RunSummary, StoreError
from planweave.planner.serve.chat import ChatMessage, _text

__all__ = ["ChatTurn", "ask_text", "going_on", "marker", "read_answer", "read_turn"]

_MARKER = re.compile(r"\[//\]: # \(planweave run=(\w+) session=(\w+)(?: step=([A-Za-z0-9_-]+))?\)")
_YES = frozenset({"y", "yes", "ok", "okay", "approve", "approved", "go", "go ahead", "sure", "yes please", "do it",
                  "run it", "yep", "confirm", "confirmed"})
_NO = re.compile(r"^\s*(?:no|n|nope|deny|denied|don't|do not|stop|cancel|skip it|skip)\b[\s,.:;!-]*(.*)$", re.I | re.S)


def marker(run_id: str, session_id: str, step_id: str | None = None) -> str:
    """The invisible line that ends each reply that leaves a run waiting (Markdown renders a link
    definition as nothing); `step_id`: the step whose request the reply asks."""
    step = f" step={step_id}" if step_id else ""
    return f"\n\n[//]: # (planweave run={run_id} session={session_id}{step})"


@dataclass
class ChatTurn:
    """What one chat request asks of planweave."""

    goal: str
    conversation: list[dict[str, str]] = field(default_factory=list)
    session_id: str = ""
    waiting_run: str | None = None
    """The run this message answers (it continues, no new plan)."""
    step_id: str | None = None
    answer: InputAnswer | None = None
    reply: str | None = None
    """Answered without a run: the message did not answer the waiting run's request (asked again)."""
    followed_run: str | None = None
    """The run this message belongs to, which already went on without it (its request was answered
    before this message came: a message sent twice): the reply follows it."""


def ask_text(requests: Sequence[InputRequest]) -> str:
    """The assistant's message for a run that waits: what it asks, and how to answer."""
    if not requests:
        return "The run is waiting, but for nothing this conversation can answer."
    request = requests[0]
    if request.kind == "question":
        text = request.question
        if request.choices:
            text += "\n\nChoices: " + ", ".join(f"`{c}`" for c in request.choices) + "."
        if request.default is not None:
            text += f" (Default: `{request.default}`.)"
    else:
        args = json.dumps(request.args, ensure_ascii=False)
        text = (f"Step `{request.step_id}` wants to run `{request.tool}` with `{args}`.\n\n"
                "Reply **yes** to run it, **no** (and why) to skip it, or the arguments as JSON to change them.")
    if len(requests) > 1:
        text += f"\n\n({len(requests) - 1} more step{'s' if len(requests) > 2 else ''} will ask after this one.)"
    return text


def read_answer(request: InputRequest, text: str) -> InputAnswer | str:
    """The chat message `text` as an answer to `request`, or what to ask again when it is not one."""
    text = text.strip()
    if request.kind == "question":
        try:
            return check_answer(request, InputAnswer.reply(text, by="chat"))
        except AnswerError as exc:
            return f"{exc}\n\n{ask_text([request])}"
    if text.startswith("{"):
        try:
            args = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"That is not valid JSON ({exc.msg}).\n\n{ask_text([request])}"
        if isinstance(args, dict):
            return InputAnswer.edit(args, by="chat")
    if text.lower().strip(" .!") in _YES:
        return InputAnswer.approve(by="chat")
    no = _NO.match(text)
    if no is not None:
        return InputAnswer.deny(no.group(1).strip() or text, by="chat")
    return f"I need a yes or a no before going on.\n\n{ask_text([request])}"


def _markers(messages: Sequence[ChatMessage]) -> list[tuple[str, str, str]]:
    found = []
    for i, m in enumerate(messages):
        if m.role == "assistant":
            found += _MARKER.findall(_text(m, i))
    return found


def _opening_id(messages: Sequence[ChatMessage]) -> str:
    opening = []
    for i, m in enumerate(messages):
        if m.role in ("system", "developer", "user"):
            opening.append(f"{m.role}:{_text(m, i)}")
        if m.role == "user":
            break
    return hashlib.sha256("\n".join(opening).encode()).hexdigest()[:16]


def going_on(summary: RunSummary) -> bool:
    """Whether the run goes on without anyone answering: a process holds it (`running`), or a
    replica or worker will take it over (`queued`, or `interrupted` with `meta["takeover"]`)."""
    return summary.status in ("running", "queued") or (
        summary.status == "interrupted" and summary.meta.get("takeover") is True
    )


def read_turn(messages: Sequence[ChatMessage], goal: str, conversation: list[dict[str, str]],
              store: RunStore | None) -> ChatTurn:
    """What the last message is: the answer to the run the previous reply left waiting, or a new goal."""
    markers = _markers(messages)
    session_id = markers[-1][1] if markers else _opening_id(messages)
    turn = ChatTurn(goal=goal, conversation=conversation, session_id=session_id)
    last_assistant = next((m for m in reversed(messages[:-1]) if m.role == "assistant"), None)
    if last_assistant is None or store is None:
        return turn
    found = _MARKER.findall(_text(last_assistant, 0))
    if not found:
        return turn
    run_id, asked = found[-1][0], found[-1][2] or None
    try:
        record = store.get_run(run_id)
    except StoreError:
        return turn
    summary = record.summary
    if going_on(summary):
        turn.followed_run = summary.id
        return turn
    if summary.status != "waiting":
        return turn
    requests = list(record.resume_state().requests.values())
    if not requests:
        return turn
    if asked is not None and all(r.step_id != asked for r in requests):
        turn.followed_run = summary.id  # answered already: it waits for something else now
        return turn
    answer = read_answer(requests[0], goal)
    turn.waiting_run, turn.step_id = record.summary.id, requests[0].step_id
    if isinstance(answer, str):
        turn.reply = answer
    else:
        turn.answer = answer
    return turn
