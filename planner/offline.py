"""`planweave/offline`: a small deterministic rule-based model, registered as a litellm provider.

It lets the planner run with no key and no network, through the very same litellm
and instructor path as a real model. It handles what rules can: arithmetic, URLs,
workspace files, and goals made of several such parts (planned as parallel
branches plus a combining step). Anything else gets an honest answer saying it
needs a real model and how to configure one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from litellm import ModelResponse, Usage
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk

from planweave.planner.llm import OFFLINE_HINT

__all__ = ["OFFLINE_HINT", "OfflineLLM", "offline_reply"]

NOTE = "(answered by planweave's offline rule-based planner)"
"""Labels the offline `llm` tool's echo, a step output. Answers carry no such note: the CLI
prints `OFFLINE_HINT` once per run, beside the answer."""

_WORDS = {
    r"\bplus\b": "+",
    r"\bminus\b": "-",
    r"\btimes\b": "*",
    r"\bmultiplied by\b": "*",
    r"\bdivided by\b": "/",
    r"\bto the power of\b": "**",
    r"\bsquared\b": "**2",
}
_EXPR = re.compile(r"(?<![\w.])[-(]*\d[\d.\s]*(?:(?:\*\*|[-+*/%^])\s*[-(]*\s*\d[\d.]*\s*\)*\s*)+")
_URL = re.compile(r"https?://[^\s'\"<>)]+")
_FILE = re.compile(r"[\w./-]+\.(?:txt|md|json|csv|yaml|yml|py|log)\b")


def _section(prompt: str, title: str) -> str:
    m = re.search(rf"## {re.escape(title)}\n(.*?)(?:\n## |\Z)", prompt, re.S)
    return re.sub(r"^</?data-\w+>$\n?", "", m.group(1), flags=re.M).strip() if m else ""  # data delimiters


def _parts(goal: str) -> list[str]:
    pieces = re.split(r";|\n|\band then\b|\bthen\b|\balso\b|(?<=[a-z0-9)?]),\s|\band\b(?=\s+(?:what|compute|calculate|fetch|get|read|list|how|[-(]?\d))", goal, flags=re.I)
    return [p.strip(" .?!") for p in pieces if p and p.strip(" .?!")]


_TIMES_X = re.compile(r"(?<=\d)\s*[x×]\s*(?=[-(]*\d)")


def _expression(text: str) -> str | None:
    # Front ends turn `*` into `×` (and people write `x` or `÷`): read them as the operators.
    lowered = _TIMES_X.sub(" * ", text.lower()).replace("÷", "/").replace("×", "*")
    for pattern, op in _WORDS.items():
        lowered = re.sub(pattern, op, lowered)
    m = _EXPR.search(lowered)
    if not m:
        return None
    expr = m.group(0).strip().replace("^", "**")
    return expr if re.search(r"\d", expr) and re.search(r"[-+*/%]", expr) else None


def _steps_for(part: str, index: int) -> list[dict[str, Any]]:
    sid = f"p{index}"
    urls = _URL.findall(part)
    if urls:
        return [{"id": f"{sid}_{i}" if len(urls) > 1 else sid, "tool": "http_get", "args": {"url": u}}
                for i, u in enumerate(urls, 1)]
    expr = _expression(part)
    if expr:
        return [{"id": sid, "tool": "calculator", "args": {"expression": expr}, "description": part}]
    low = part.lower()
    if re.search(r"\blist\b.*\bfiles?\b|\bwhat files\b", low):
        return [{"id": sid, "tool": "list_files", "args": {"path": ".", "recursive": "recursive" in low}}]
    files = _FILE.findall(part)
    if files and re.search(r"\b(read|show|open|print|cat|contents?)\b", low):
        return [{"id": f"{sid}_{i}" if len(files) > 1 else sid, "tool": "read_file", "args": {"path": f}}
                for i, f in enumerate(files, 1)]
    return []


def plan_for(goal: str, tools: set[str]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    unhandled: list[str] = []
    for i, part in enumerate(_parts(goal), 1):
        found = [s for s in _steps_for(part, i) if s["tool"] in tools]
        if found:
            steps.extend(found)
        else:
            unhandled.append(part)
    if not steps:
        return {
            "rationale": "The offline planner has no rule for this goal.",
            "steps": [],
            "answer": (
                f"I cannot plan this goal offline: {goal!r}. The offline planner only handles arithmetic, "
                f"URLs to fetch and workspace files; a real model can plan anything else."
            ),
        }
    if len(steps) > 1 and "llm" in tools:
        refs = " | ".join(f"{s['id']}: ${{{s['id']}}}" for s in steps)
        steps.append({"id": "combine", "tool": "llm", "args": {"prompt": f"Combine the results for: {goal}", "context": refs}})
    rationale = f"{len(steps)} step(s) from rules; independent parts run in parallel."
    if unhandled:
        rationale += f" No rule for: {'; '.join(unhandled)}."
    return {"rationale": rationale, "steps": steps, "answer": None}


def _unhandled(goal: str) -> list[str]:
    """The parts of `goal` no rule can plan (said plainly in the answer)."""
    return [part for i, part in enumerate(_parts(goal), 1) if not _steps_for(part, i)]


# --- follow-ups that refer to earlier answers ----------------------------------------------

_ARITHMETIC = re.compile(r"\b(add|plus|subtract|minus|multiply|times|divide|double|halve|square)\b|[-+*/×÷^]", re.I)
_REFERENCE = re.compile(
    r"\b(?:the\s+(first|last|previous|latest)\s+(?:result|answer|number)|the\s+(?:result|answer)|that(?:\s+number)?|it)\b",
    re.I,
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _earlier_results(conversation: str) -> list[str]:
    """Numbers the assistant gave earlier, oldest first (what follows `=` when it says `a = b`)."""
    found: list[str] = []
    for line in conversation.splitlines():
        if not line.startswith("- assistant:"):
            continue
        text = line[len("- assistant:"):]
        results = re.findall(r"=\s*(-?\d+(?:\.\d+)?)", text) or _NUMBER.findall(text)
        found += results
    return found


def _with_references(goal: str, conversation: str) -> str:
    """A follow-up (`now add 100 to it`, `multiply the first result by 2`) with the earlier result
    it refers to written in, then put as an expression the rules read."""
    results = _earlier_results(conversation)
    if not results or not _ARITHMETIC.search(goal) or not _REFERENCE.search(goal):
        return goal
    text = _REFERENCE.sub(lambda m: results[0] if (m.group(1) or "").lower() == "first" else results[-1], goal)
    text = re.sub(r"^\s*(?:now|and|then|ok|okay)[,\s]+", "", text, flags=re.I)
    num = r"(-?\d+(?:\.\d+)?)"
    for pattern, repl in (
        (rf"\badd\s+{num}\s+to\s+{num}", r"\2 + \1"),
        (rf"\bsubtract\s+{num}\s+from\s+{num}", r"\2 - \1"),
        (rf"\bmultiply\s+{num}\s+by\s+{num}", r"\1 * \2"),
        (rf"\bdivide\s+{num}\s+by\s+{num}", r"\1 / \2"),
        (rf"\bdouble\s+{num}", r"\1 * 2"),
        (rf"\bhalve\s+{num}", r"\1 / 2"),
        (rf"\bsquare\s+{num}", r"\1 ** 2"),
    ):
        text = re.sub(pattern, repl, text, flags=re.I)
    return text


_RESULT = re.compile(r"^`([\w-]+)` \(([\w.-]+), (\w+)\): (.*)$", re.S)


def _results(prompt: str) -> list[str]:
    return [line[2:] for line in _section(prompt, "Results").splitlines() if line.startswith("- ")]


def _described(goal: str, results: list[str]) -> str:
    """The results as a user reads them (`17 * 23 = 391`), without the plan's step ids.

    The steps are found again from the goal: `plan_for` is deterministic and numbers steps by
    the part of the goal they answer, so a step id leads back to its expression, URL or file."""
    steps = {s["id"]: s for i, part in enumerate(_parts(goal), 1) for s in _steps_for(part, i)}
    out: list[str] = []
    for line in results:
        m = _RESULT.match(line)
        if m is None:
            continue
        sid, tool, status, text = m.groups()
        if sid == "combine":
            continue
        step = steps.get(sid)
        args = step["args"] if step is not None and step["tool"] == tool else {}
        subject = args.get("expression") or args.get("url") or args.get("path")
        if tool == "list_files" and subject:
            subject = f"files in {subject}"
        if status != "succeeded":
            text = f"failed: {text}"
        if tool == "calculator" and subject and status == "succeeded":
            out.append(f"{subject} = {text}")
        else:
            out.append(f"{subject}: {text}" if subject else text)
    said = "; ".join(out)
    missed = _unhandled(goal)
    if said and missed:
        # Said in the answer itself, not only in the plan's rationale: the user must not take
        # a partial answer for a whole one.
        said += (f". I could not do {'; '.join(repr(p) for p in missed)}: the offline planner has no rule for "
                 f"{'them' if len(missed) > 1 else 'it'} (a real model can).")
    return said


def offline_reply(messages: list[dict[str, Any]]) -> str:
    """The offline model's reply (JSON text) to a planweave prompt."""
    system = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    user = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    prompt = system + "\n" + user
    from planweave.planner.serve.tasks import offline_task_reply  # a chat front end's background task

    task = offline_task_reply(messages)
    if task is not None:
        return task
    # Only the latest user message is the goal; the conversation is read where a rule can use it.
    goal = _with_references(_section(prompt, "Goal"), _section(prompt, "Conversation so far"))
    if "Decide whether the goal is answered" in prompt:
        return json.dumps({"action": "finish", "answer": _described(goal, _results(prompt)) or "no results", "reason": ""})
    if "Plan the next steps" in prompt:
        if _section(prompt, "Already done"):
            done = [line[2:] for line in _section(prompt, "Already done").splitlines() if line.startswith("- ")]
            return json.dumps({"rationale": "Everything the rules can do is done.", "steps": [],
                               "answer": _described(goal, done) or "no results"})
        tools = set(re.findall(r"^- `([\w.-]+)`:", _section(prompt, "Tools"), re.M))
        return json.dumps(plan_for(goal, tools))
    # The `llm` tool or any other free-form request: echo the context, honestly labelled.
    context = _section(prompt, "Context") or user
    return f"{context.strip()} {NOTE}"


def _usage(messages: list[dict[str, Any]], text: str) -> Usage:
    prompt_tokens = max(1, sum(len(str(m.get("content", ""))) for m in messages) // 4)
    completion = max(1, len(text) // 4)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


class OfflineLLM(CustomLLM):
    """litellm custom provider `planweave`: `model="planweave/offline"`."""

    def _response(self, model: str, messages: list[dict[str, Any]], model_response: ModelResponse) -> ModelResponse:
        text = offline_reply(messages)
        model_response.choices[0].message.content = text
        model_response.choices[0].finish_reason = "stop"
        model_response.model = model
        model_response.usage = _usage(messages, text)
        model_response.created = int(time.time())
        return model_response

    def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        return self._response(model, messages, kwargs["model_response"])

    async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        return self._response(model, messages, kwargs["model_response"])

    def _chunks(self, messages: list[dict[str, Any]]) -> Iterator[GenericStreamingChunk]:
        text = offline_reply(messages)
        for i in range(0, len(text), 16):
            yield {"text": text[i : i + 16], "is_finished": False, "finish_reason": "", "usage": None,
                   "index": 0, "tool_use": None}
        u = _usage(messages, text)
        yield {"text": "", "is_finished": True, "finish_reason": "stop", "index": 0, "tool_use": None,
               "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                         "total_tokens": u.total_tokens}}

    def streaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        yield from self._chunks(messages)

    async def astreaming(  # type: ignore[override]  # litellm declares it as returning an iterator
        self, model: str, messages: list[Any], *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        for chunk in self._chunks(messages):
            yield chunk
