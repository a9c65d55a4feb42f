"""What a run asks people, and what they answer: `InputRequest`, `InputAnswer` and their events.

A step waits for a person when its tool asks for approval (`@tool(approval=True)`), the step
does (`approval: true`), the user does (`Executor(approve=["write_file"])`), or its tool is a
question (`ask_user`). The executor emits `InputRequested`, waits (`planweave.executor.waiting`),
then emits `InputAnswered` with what the person decided:

    InputAnswer.approve()                       run the call as shown
    InputAnswer.edit({"path": "notes.txt"})     run it with these arguments instead
    InputAnswer.deny("not on Fridays")          fail the step with this reason (its `on_failure` decides)
    InputAnswer.reply("Paris")                  a question's answer: the step's output

A request with a deadline that passes unanswered is denied, or a question gets its default
(`expired`). Both events are recorded with the run, traced, and shown by `planweave show`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from planweave.executor.errors import AnswerError
from planweave.executor.events import RunEvent, register_event_type
from planweave.tools.errors import ToolArgumentsError

if TYPE_CHECKING:
    from planweave.tools.base import Tool

__all__ = [
    "AnswerAction",
    "InputAnswer",
    "InputAnswered",
    "InputKind",
    "InputRequest",
    "InputRequested",
    "check_answer",
    "expired",
    "pick_answers",
]

InputKind = Literal["approval", "question"]
"""What a waiting step needs: `approval` (approve, edit or deny the call) or `question` (an answer)."""

AnswerAction = Literal["approve", "edit", "deny", "answer"]


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InputRequest(BaseModel):
    """One step waiting for a person."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    step_id: str
    tool: str
    kind: InputKind
    args: dict[str, Any] = Field(default_factory=dict)
    """The call's arguments with references resolved (a question: `ask_user`'s arguments)."""
    question: str = ""
    """What to ask: the question, or `Run TOOL with ARGS?` for an approval."""
    choices: list[str] | None = None
    default: str | None = None
    requested_at: float = Field(default_factory=time.time)
    deadline_at: float | None = None
    """When an unanswered request is denied (a question gets its `default`); None: no deadline."""

    def how_to_answer(self, command: str = "planweave respond") -> str:
        """The command that answers this request, as one line for a terminal."""
        base = f"{command} {self.run_id} --step {self.step_id}"
        if self.kind == "question":
            return f"`{base} --answer TEXT`"
        return f"`{base} --approve` (or `--deny REASON`, or `--edit JSON`)"

    def describe(self) -> str:
        """One line saying what the step waits for."""
        if self.kind == "question":
            choices = f" (choices: {', '.join(self.choices)})" if self.choices else ""
            return f"step `{self.step_id}` asks: {self.question}{choices}"
        return f"step `{self.step_id}` needs approval to run `{self.tool}` with {_short(self.args)}"


class InputAnswer(BaseModel):
    """A person's answer to an `InputRequest` (build one with the class methods)."""

    model_config = ConfigDict(extra="forbid")

    action: AnswerAction
    args: dict[str, Any] | None = None
    """`edit`: the arguments to run the call with instead."""
    reason: str = ""
    """`deny`: why (the step fails with it)."""
    text: str | None = None
    """`answer`: the answer to a question (the step's output)."""
    by: str = ""
    """Who or what answered (`terminal`, `respond`, `chat`, `callback`, `deadline`), for the record."""

    @classmethod
    def approve(cls, *, by: str = "") -> InputAnswer:
        return cls(action="approve", by=by)

    @classmethod
    def edit(cls, args: dict[str, Any], *, by: str = "") -> InputAnswer:
        return cls(action="edit", args=args, by=by)

    @classmethod
    def deny(cls, reason: str = "", *, by: str = "") -> InputAnswer:
        return cls(action="deny", reason=reason, by=by)

    @classmethod
    def reply(cls, text: str, *, by: str = "") -> InputAnswer:
        return cls(action="answer", text=text, by=by)


def check_answer(request: InputRequest, answer: InputAnswer, tool: Tool | None = None) -> InputAnswer:
    """`answer` made to fit `request` (a choice matched whatever its case, or by its number), or
    `AnswerError` saying why it does not fit; `tool` validates an edit's arguments."""
    where = f"step `{request.step_id}`"
    if request.kind == "question":
        if answer.action in ("approve", "edit"):
            raise AnswerError(f"{where} asks a question ({request.question!r}); answer it with text, not an {answer.action}.")
        if answer.action == "answer":
            text = (answer.text or "").strip()
            if not text:
                raise AnswerError(f"{where} asks {request.question!r}; the answer is empty.")
            if request.choices:
                by_case = {c.casefold(): c for c in request.choices}
                if text.casefold() in by_case:
                    text = by_case[text.casefold()]
                elif text.isdigit() and 1 <= int(text) <= len(request.choices):
                    text = request.choices[int(text) - 1]
                else:
                    raise AnswerError(
                        f"{where} offers the choices {', '.join(f'`{c}`' for c in request.choices)}; "
                        f"`{text}` is not one of them: answer with one (or its number)."
                    )
            return answer.model_copy(update={"text": text})
        return answer
    if answer.action == "answer":
        raise AnswerError(
            f"{where} needs approval to run `{request.tool}`; approve it, deny it (with a reason) "
            "or edit its arguments, rather than answering with text."
        )
    if answer.action == "edit":
        if answer.args is None:
            raise AnswerError(f"{where}: an edit needs the arguments to run `{request.tool}` with, as a JSON object.")
        if tool is not None:
            try:
                tool.validate_args(answer.args)
            except ToolArgumentsError as exc:
                raise AnswerError(f"{where}: the edited arguments do not fit `{request.tool}`: {exc}") from None
    return answer


def expired(request: InputRequest) -> InputAnswer:
    """What an unanswered request becomes at its deadline: denied, or a question's default."""
    if request.kind == "question" and request.default is not None:
        return InputAnswer.reply(request.default, by="deadline")
    return InputAnswer.deny("nobody answered before the deadline", by="deadline")


@register_event_type
@dataclass(slots=True, kw_only=True)
class InputRequested(RunEvent):
    """A step waits for a person (`request` is an `InputRequest` as JSON)."""

    kind: ClassVar[str] = "input_requested"
    step_id: str
    request: dict[str, Any] = field(default_factory=dict)


@register_event_type
@dataclass(slots=True, kw_only=True)
class InputAnswered(RunEvent):
    """A person (or the deadline) answered a waiting step (`answer` is an `InputAnswer` as JSON)."""

    kind: ClassVar[str] = "input_answered"
    step_id: str
    answer: dict[str, Any] = field(default_factory=dict)


def pick_answers(
    requests: dict[str, InputRequest],
    answer: InputAnswer,
    *,
    step_id: str | None,
    run_id: str,
    tools: Mapping[str, Tool] | None = None,
) -> dict[str, InputAnswer]:
    """`answer` for the open request of `step_id` (or the only open one), checked against it:
    `{step_id: answer}`, or `AnswerError` naming the open requests."""
    if not requests:
        raise AnswerError(f"run `{run_id}` waits for no answer; `planweave runs --status waiting` lists the runs that do.")
    listed = ", ".join(f"`{s}`" for s in requests)
    if step_id is None:
        if len(requests) > 1:
            raise AnswerError(f"run `{run_id}` waits on several steps ({listed}); say which with `--step ID`.")
        step_id = next(iter(requests))
    request = requests.get(step_id)
    if request is None:
        raise AnswerError(f"step `{step_id}` of run `{run_id}` waits for no answer; the steps that do: {listed}.")
    if request.deadline_at is not None and time.time() >= request.deadline_at:
        late = "gets its default" if request.kind == "question" and request.default is not None else "is denied"
        raise AnswerError(
            f"step `{step_id}` of run `{run_id}` had until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(request.deadline_at))} "
            f"to be answered; it {late} when the run continues: `planweave resume {run_id}`."
        )
    return {step_id: check_answer(request, answer, (tools or {}).get(request.tool))}
