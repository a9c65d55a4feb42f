"""Chat completions as planner runs: the latest message is the goal, the run's events become the reply.

    goal = conversation_goal(messages, max_messages=200, max_chars=200_000)  # or ConversationError
    turns = conversation_turns(messages)              # the earlier turns, for the planner's prompts
    narration, reply = Narration(), ChatReply("think")
    for event in events:                              # the run's events, as they happen
        for kind, text in narration.feed(event):
            delta = reply.delta(kind, text)           # a chunk's `delta` (None: nothing to send)
    for kind, text in narration.finish(final_text(result)):
        reply.delta(kind, text)
    reply.close()                                     # ends an open `<think>` block
    reply.message()                                   # the whole assistant message

The last user message is the goal; the earlier turns go to the planner as a conversation of
their own (`Planner.run(conversation=...)`), never inside the goal. The reply shows the plan
and the steps as reasoning, in one `ReasoningFormat`, then the answer; arguments and outputs
in code spans (a front end's Markdown reads no `$` maths or `*` emphasis in them), and a
partial failure said in the answer itself. How a message continues a waiting run, and how
front ends' background tasks are answered, is `planweave.planner.serve.turns`.
Nothing here knows about HTTP: routes, keys, limits and error responses are `planweave.planner.serve.app`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from planweave.executor.events import (
    RunEvent,
    RunStarted,
    StepAdded,
    StepCancelled,
    StepFailed,
    StepProgressed,
    StepRestored,
    StepRetrying,
    StepSkipped,
    StepSucceeded,
)
from planweave.executor.plan import Step
from planweave.executor.requests import InputAnswered, InputRequested
from planweave.executor.store import RunSummary
from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlanRejected, PlanUpdated
from planweave.planner.state import PlannerState
from planweave.tools.errors import SetupError

if TYPE_CHECKING:
    from planweave.planner.result import PlannerResult

__all__ = [
    "ChatMessage",
    "ChatReply",
    "ConversationError",
    "Narration",
    "ReasoningFormat",
    "completion_usage",
    "conversation_goal",
    "conversation_turns",
    "final_text",
    "planweave_fields",
]

ReasoningFormat = Literal["think", "field", "off"]
"""How the plan and step progress reach the chat front end.

- `think`: inside `<think>...</think>` at the start of `content` (Open WebUI and LibreChat fold it away).
- `field`: as `reasoning_content` deltas beside `content` (DeepSeek's field); `content` is the answer only.
- `off`: not at all; `content` is the answer only.
"""


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation. Other fields (`name`, `tool_calls`, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_ContentPart] | None = None


class ConversationError(SetupError, ValueError):
    """A conversation that cannot become a goal. The server answers it with HTTP 400 in OpenAI's
    error shape: `param` names the field at fault, `code` is OpenAI's code when there is one."""

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


# --- the conversation as a goal ---------------------------------------------------------------

_REASONING_BLOCK = re.compile(
    r"<(think|thinking|reasoning)>.*?</\1>\s*|<details type=\"reasoning\".*?</details>\s*", re.S
)


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part in message.content:
        if part.type not in ("text", "input_text") or part.text is None:
            raise ConversationError(
                f"message {index} has a `{part.type}` part; planweave plans from text only: send the text, "
                "or describe what the attachment holds.",
                param=f"messages.{index}.content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def conversation_goal(messages: Sequence[ChatMessage], *, max_messages: int, max_chars: int) -> str:
    """The last user message: the goal (the earlier turns are `conversation_turns`). Raises `ConversationError`."""
    if len(messages) > max_messages:
        raise ConversationError(
            f"the conversation has {len(messages)} messages; this server takes at most {max_messages} "
            "(`--max-messages`); start a new conversation.",
            code="context_length_exceeded",
            param="messages",
        )
    texts = [_text(m, i) for i, m in enumerate(messages)]
    chars = sum(len(t) for t in texts)
    if chars > max_chars:
        raise ConversationError(
            f"the conversation has {chars} characters; this server takes at most {max_chars} "
            "(`--max-chars`); start a new conversation or shorten it.",
            code="context_length_exceeded",
            param="messages",
        )
    last = messages[-1]
    if last.role != "user":
        raise ConversationError(
            f"the last message is from the `{last.role}`; planweave answers the user's last message, "
            "so end the conversation with a `user` message.",
            param=f"messages.{len(messages) - 1}.role",
        )
    goal = texts[-1].strip()
    if not goal:
        raise ConversationError("the last user message is empty; say what you want done.", param="messages")
    return goal


_MARKER = re.compile(r"\n*\[//\]: # \(planweave[^)]*\)\s*")


def conversation_turns(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The turns before the last message, oldest first, as `{"role", "text"}`: assistant turns
    without their reasoning blocks (our own progress, sent back by the front end) or planweave's
    conversation marker; tool messages and empty turns left out."""
    turns = []
    for i, m in enumerate(messages[:-1]):
        if m.role not in ("user", "assistant", "system", "developer"):
            continue
        text = _text(m, i)
        if m.role == "assistant":
            text = _MARKER.sub("", _REASONING_BLOCK.sub("", text))
        text = text.strip()
        if text:
            turns.append({"role": "system" if m.role == "developer" else m.role, "text": text})
    return turns


# --- what a chat front end shows ---------------------------------------------------------------

_Piece = tuple[Literal["reasoning", "answer"], str]

_NARRATED_DECISIONS = {"replan": "Replanning", "budget_stop": "Stopped", "resume": "Continued"}
_ANSWERED = {"approve": "approved", "edit": "approved with your arguments", "deny": "denied", "answer": "answered"}


def _plain(text: str, limit: int) -> str:
    """Prose of the model's in progress lines: one line, `$` and `*` escaped (no maths, no emphasis)."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return re.sub(r"([$*_\\])", r"\\\1", text)


def _preview(value: Any, limit: int = 160) -> str:
    """A value in one Markdown code span: front ends read no `$` maths or `*` emphasis inside it."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def final_text(result: PlannerResult) -> str:
    if result.status == "failed":
        return f"The run failed: {result.error or 'no reason was recorded'}"
    if result.status == "waiting":
        from planweave.planner.serve.turns import ask_text

        return ask_text(result.requests)
    answer = result.answer or f"The run ended ({result.status}) without an answer."
    unsaid = [s for s in result.failed_steps if (result.steps[s].error or s) not in answer]
    if result.status == "partial" and result.error and unsaid:
        # Said where the user reads, not only in the folded progress block.
        answer += f"\n\n**Not everything worked:** {result.error}"
    return answer


class Narration:
    """Turns run events into progress lines (reasoning) and answer text, in order.

    Each event is folded into `state` (the run's `PlannerState`, the fold the live view, the
    run store and the tracer share) before it is narrated."""

    def __init__(self) -> None:
        self.state = PlannerState()
        self.streamed = ""
        """Answer text sent since the last reset."""

    def feed(self, e: RunEvent) -> Iterator[_Piece]:
        self.state.apply(e)
        match e:
            case AnswerDelta():
                if e.reset and self.streamed:
                    yield "answer", "\n\n*(The answer above is discarded: the model's reply was invalid; asking again.)*\n\n"
                    self.streamed = ""
                if e.text:
                    self.streamed += e.text
                    yield "answer", e.text
            case RunStarted():
                yield "reasoning", "Planning…\n"
            case StepAdded():
                step = self.state.steps[e.step_id].step
                if isinstance(step, Step):
                    step = step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
                step = step or {}
                why = f" ({_plain(step['description'], 80)})" if step.get("description") else ""
                yield "reasoning", f"- planned `{e.step_id}`{why}: `{e.tool}` {_preview(step.get('args', {}), 120)}\n"
            case PlanUpdated():
                steps = len(e.step_ids)
                why = f": {_plain(e.rationale, 300)}" if e.rationale else ""
                if steps:
                    yield "reasoning", f"Round {e.round} planned, {steps} step{'s' * (steps != 1)}{why}\n"
                else:
                    yield "reasoning", f"No tools needed{why}\n"
            case PlanRejected():
                problems = "".join(f"  - {_plain(p, 300)}\n" for p in e.errors)
                yield "reasoning", f"The model's reply was invalid; asking again (re-ask {e.reask}):\n{problems}"
            case StepSucceeded():
                yield "reasoning", f"- `{e.step_id}` done in {e.duration_s:.2f}s: {_preview(e.output)}\n"
            case StepRestored():
                yield "reasoning", f"- `{e.step_id}` reused from the recorded run\n"
            case StepRetrying():
                yield "reasoning", (
                    f"- `{e.step_id}` attempt {e.attempt} failed ({_plain(e.error, 160)}); "
                    f"retrying in {e.delay_s:.1f}s\n"
                )
            case StepFailed():
                yield "reasoning", f"- `{e.step_id}` failed: {_plain(e.error, 300)}\n"
            case StepSkipped() | StepCancelled():
                status = self.state.steps[e.step_id].status  # `skipped` or `cancelled`
                reason = f": {_plain(e.reason, 300)}" if e.reason else ""
                yield "reasoning", f"- `{e.step_id}` {status}{reason}\n"
            case Decision() if e.action in _NARRATED_DECISIONS:
                reason = e.reason.removeprefix("resumed: ")
                yield "reasoning", f"{_NARRATED_DECISIONS[e.action]}: {_plain(reason, 300)}\n"
            case InputRequested():
                yield "reasoning", f"- `{e.step_id}` waits for you\n"
            case InputAnswered():
                action = str(e.answer.get("action", "answer"))
                yield "reasoning", f"- `{e.step_id}`: {_ANSWERED.get(action, action)}\n"
            case LLMCalled() if e.error:
                yield "reasoning", f"- a model call failed: {_plain(e.error, 300)}\n"
            case StepProgressed() if e.progress_kind != "partial":  # a tool's progress or notice
                amount = f"{e.done:g}/{e.total:g} " if e.done is not None and e.total else ""
                yield "reasoning", f"- `{e.step_id}` {amount}{_plain(e.message or '', 160)}\n"
            case _:
                pass

    def finish(self, final: str) -> Iterator[_Piece]:
        """Whatever of the final answer has not streamed (a budget stop's summary, a failure)."""
        if final == self.streamed:
            return
        if final.startswith(self.streamed):
            yield "answer", final[len(self.streamed) :]
        else:
            yield "answer", ("\n\n" if self.streamed else "") + final
        self.streamed = final


class ChatReply:
    """Puts narration pieces into chat deltas, in one reasoning format."""

    def __init__(self, fmt: ReasoningFormat) -> None:
        self.fmt = fmt
        self.thinking = False
        self.content: list[str] = []
        self.reasoning: list[str] = []

    def delta(self, kind: str, text: str) -> dict[str, str] | None:
        if kind == "reasoning" and self.fmt == "off":
            return None
        if kind == "reasoning" and self.fmt == "field":
            self.reasoning.append(text)
            return {"reasoning_content": text}
        if self.fmt == "think" and (kind == "reasoning") != self.thinking:
            opening = ("\n\n" if self.content else "") + "<think>\n"  # a tag starts its own line
            text = (opening if kind == "reasoning" else "</think>\n\n") + text
            self.thinking = kind == "reasoning"
        self.content.append(text)
        return {"content": text}

    def close(self) -> dict[str, str] | None:
        return self.delta("answer", "") if self.thinking else None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.fmt == "field":
            message["reasoning_content"] = "".join(self.reasoning)
        return message


def completion_usage(result: PlannerResult | RunSummary | None) -> dict[str, int]:
    """The tokens this request's run used (none for a run it only followed: `RunSummary`)."""
    if result is None or isinstance(result, RunSummary):
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    tin, tout = result.usage.input_tokens, result.usage.output_tokens
    return {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}


def planweave_fields(run_id: str, result: PlannerResult | RunSummary | None) -> dict[str, Any]:
    """planweave's own fields on the last chunk / the completion (clients ignore unknown fields); for a
    run the request followed (`RunSummary`), the whole run's."""
    if result is None:
        return {"run_id": run_id, "status": "failed"}
    if isinstance(result, RunSummary):
        return {"run_id": run_id, "status": result.status, "cost_usd": result.cost_usd, "llm_calls": result.llm_calls}
    return {"run_id": run_id, "status": result.status, "cost_usd": result.usage.cost_usd,
            "llm_calls": result.usage.llm_calls}
