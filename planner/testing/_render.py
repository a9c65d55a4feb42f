"""Turn a :class:`~planner.testing.replies.Reply` into OpenAI wire payloads.

Private helper of :mod:`planweave.planner.testing.fake_server`; everything here is pure
(no I/O, no sleeping) so it is easy to reason about and test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planweave.planner.testing.replies import Reply, tokenize

__all__ = [
    "Emission",
    "EmittedToolCall",
    "StreamEvent",
    "completion_body",
    "estimate_message_tokens",
    "estimate_prompt_tokens",
    "resolve_emission",
    "stream_events",
    "usage_dict",
    "with_cache_usage",
]


@dataclass(frozen=True)
class EmittedToolCall:
    """A tool call as it is put on the wire."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Emission:
    """What a reply emits for a given request (after resolving ``structured``).

    ``content`` is ``None`` when the message has no text (tool calls only).
    ``segments`` are the token lists of the content and of each tool call's
    arguments, in streaming order, with pause offsets forced as boundaries.
    """

    content: str | None
    tool_calls: tuple[EmittedToolCall, ...]
    finish_reason: str
    content_tokens: tuple[str, ...]
    argument_tokens: tuple[tuple[str, ...], ...]

    @property
    def completion_tokens(self) -> int:
        """Number of streamed tokens (content plus tool-call arguments)."""
        return len(self.content_tokens) + sum(len(t) for t in self.argument_tokens)


@dataclass(frozen=True)
class StreamEvent:
    """One SSE ``data:`` event of a streamed response.

    ``due_token`` is the index of the token this event is paced with (``None``:
    send immediately after the previous event); ``pause_s`` is slept after the
    event has been sent.
    """

    payload: dict[str, Any]
    due_token: int | None
    pause_s: float


def _chosen_tool(body: Mapping[str, Any]) -> str | None:
    """Name of the function a ``structured`` reply should call, or ``None``."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
    first = tools[0]
    if isinstance(first, Mapping):
        function = first.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


Splitter = Callable[[str], Sequence[str]]
"""A tokenizer for the fake server: ``text`` -> pieces that concatenate back to ``text``."""


def _split(text: str, boundaries: Sequence[int], splitter: Splitter | None) -> list[str]:
    """``text`` as streamed tokens: :func:`tokenize`'s, or ``splitter``'s with each boundary
    also made a cut (as :func:`tokenize` does)."""
    if splitter is None:
        return tokenize(text, boundaries)
    pieces = list(splitter(text))
    if "".join(pieces) != text:
        raise ValueError("the fake server's tokenizer returned pieces that do not make up the text")
    cuts, pos = {0, len(text)}, 0
    for piece in pieces:
        pos += len(piece)
        cuts.add(pos)
    cuts.update(b for b in boundaries if 0 < b < len(text))
    ordered = sorted(cuts)
    return [text[a:b] for a, b in zip(ordered, ordered[1:]) if b > a]


def resolve_emission(
    reply: Reply, body: Mapping[str, Any], number: int, splitter: Splitter | None = None
) -> Emission:
    """Decide content / tool calls for ``reply`` answering request ``number``."""
    content: str | None = reply.content
    calls: list[EmittedToolCall] = []
    if reply.structured is not None:
        json_text = reply.json_text or ""
        tool_name = _chosen_tool(body)
        if tool_name is None:
            content = json_text
        else:
            content = None
            calls.append(EmittedToolCall(f"call_fake_{number}_0", tool_name, json_text))
    for i, scripted in enumerate(reply.tool_calls):
        calls.append(
            EmittedToolCall(
                scripted.id or f"call_fake_{number}_{i}", scripted.name, scripted.arguments
            )
        )
    if content is None and not calls:
        content = ""

    pauses = sorted(reply.pause_after)
    start = 0
    content_tokens: tuple[str, ...] = ()
    if content is not None:
        content_tokens = tuple(_split(content, [p - start for p in pauses], splitter))
        start += len(content)
    argument_tokens: list[tuple[str, ...]] = []
    for call in calls:
        argument_tokens.append(tuple(_split(call.arguments, [p - start for p in pauses], splitter)))
        start += len(call.arguments)

    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    return Emission(content, tuple(calls), finish, content_tokens, tuple(argument_tokens))


def _text_of(value: Any) -> int:
    """Number of characters of text in a message ``content`` value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


def estimate_message_tokens(message: Any) -> int:
    """``ceil(chars / 4)`` of one message's text, as :func:`estimate_prompt_tokens` counts it."""
    return math.ceil(_text_of(message.get("content")) / 4) if isinstance(message, Mapping) else 0


def with_cache_usage(
    usage: dict[str, Any], shape: str, cached: int, written: int
) -> dict[str, Any]:
    """``usage`` with prompt-cache counts in a provider's shape: OpenAI's
    ``prompt_tokens_details.cached_tokens``, or Anthropic's
    ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` (as litellm and
    Anthropic-compatible gateways report them, beside ``prompt_tokens``)."""
    if shape == "openai":
        return {**usage, "prompt_tokens_details": {"cached_tokens": cached}}
    return {**usage, "cache_read_input_tokens": cached, "cache_creation_input_tokens": written}


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Estimate ``prompt_tokens``: ``ceil(chars / 4)``.

    ``chars`` counts the text of every message's ``content`` (strings, or the
    ``text`` of content parts) plus the ``name`` and ``arguments`` of every
    tool call in the messages.  Tool definitions are not counted.
    """
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            chars += _text_of(message.get("content"))
            tool_calls = message.get("tool_calls")
            if isinstance(tool_calls, list):
                for call in tool_calls:
                    function = call.get("function") if isinstance(call, Mapping) else None
                    if isinstance(function, Mapping):
                        for key in ("name", "arguments"):
                            if isinstance(function.get(key), str):
                                chars += len(function[key])
    return math.ceil(chars / 4)


def usage_dict(reply: Reply, emission: Emission, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``usage`` object of a response."""
    prompt = (
        reply.prompt_tokens if reply.prompt_tokens is not None else estimate_prompt_tokens(body)
    )
    completion = (
        reply.completion_tokens
        if reply.completion_tokens is not None
        else emission.completion_tokens
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(
    emission: Emission,
    usage: dict[str, Any],
    *,
    completion_id: str,
    model: str,
    created: int,
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": emission.content,
        "refusal": None,
    }
    if emission.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in emission.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": emission.finish_reason,
            }
        ],
        "usage": usage,
    }


def stream_events(
    reply: Reply,
    emission: Emission,
    usage: dict[str, Any] | None,
    *,
    completion_id: str,
    model: str,
    created: int,
) -> list[StreamEvent]:
    """The ``chat.completion.chunk`` events of a streamed response.

    Follows OpenAI's format: the first event carries ``role``; each tool call
    starts with a delta holding ``index``, ``id``, ``type``,
    ``function.name`` and ``function.arguments=""`` and continues with
    ``function.arguments`` pieces only; the last choice event has an empty
    delta and the ``finish_reason``.  When ``usage`` is given
    (``stream_options.include_usage``) every event carries ``"usage": null``
    and a final event with ``choices: []`` carries the usage.
    """
    pauses = reply.pause_after
    events: list[StreamEvent] = []

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if usage is not None:
            payload["usage"] = None
        return payload

    def tool_header(index: int) -> dict[str, Any]:
        call = emission.tool_calls[index]
        return {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }

    token = 0
    offset = 0
    start_pause = pauses.get(0, 0.0)
    if emission.content is not None:
        events.append(StreamEvent(chunk({"role": "assistant", "content": ""}), 0, start_pause))
        for piece in emission.content_tokens:
            offset += len(piece)
            events.append(StreamEvent(chunk({"content": piece}), token, pauses.get(offset, 0.0)))
            token += 1
    for index, tokens in enumerate(emission.argument_tokens):
        delta: dict[str, Any] = {"tool_calls": [tool_header(index)]}
        pause = 0.0
        if not events:
            delta = {"role": "assistant", "content": None, **delta}
            pause = start_pause
        events.append(StreamEvent(chunk(delta), token, pause))
        for piece in tokens:
            offset += len(piece)
            arguments = {"index": index, "function": {"arguments": piece}}
            events.append(
                StreamEvent(chunk({"tool_calls": [arguments]}), token, pauses.get(offset, 0.0))
            )
            token += 1
    events.append(StreamEvent(chunk({}, emission.finish_reason), None, 0.0))
    if usage is not None:
        final = chunk({})
        final["choices"] = []
        final["usage"] = usage
        events.append(StreamEvent(final, None, 0.0))
    return events
