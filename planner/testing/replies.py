"""Scripted replies for :class:`planweave.planner.testing.FakeModelServer`.

A :class:`Reply` describes *one* response of the fake server to one
``POST /v1/chat/completions`` request.  Replies are immutable (frozen pydantic
models); the ``with_*`` helpers return modified copies.

Reply kinds (at most one *payload* kind per reply):

* **text** – ``Reply.text("hello")`` or ``Reply(content="hello")``.
* **structured JSON** – ``Reply.json_obj({...})``.  When the request carries
  ``tools``, the JSON is emitted as a *tool call* to the function named by
  ``tool_choice`` (``{"type": "function", "function": {"name": ...}}``) or,
  failing that, to the first tool; otherwise (no tools, or
  ``tool_choice="none"``) it is emitted as the message content.  The same
  script therefore works with instructor's TOOLS mode and its JSON modes.
* **explicit tool calls** – ``Reply.tool_call("name", {"a": 1})`` or
  ``Reply.parallel_tool_calls(ToolCall(...), ToolCall(...))``; may be combined
  with ``content`` (content is streamed first).
* **faults** – ``Reply.http_error(429, retry_after=2)`` (OpenAI-shaped error
  body), ``Reply.malformed()`` (status 200, invalid JSON),
  ``Reply.dropped(after_chunks=3)`` (connection closed mid-response, no
  ``[DONE]``), ``Reply.disconnected()`` (connection closed before any byte),
  and ``delay_s`` (wait before sending anything, works with every kind).

Streaming ("tokens")
--------------------
The streamed text of a reply (:attr:`Reply.stream_text`) is the content (or
the serialised JSON) followed by the argument strings of each tool call, in
order. Each part is split into tokens by :func:`tokenize`: a token is a run of
1-4 word characters or of 1-3 punctuation characters, optionally preceded by
one space, or else a run of whitespace. English prose gives about 3.5
characters per token and JSON about 2.5 (somewhat more tokens than a real BPE
tokenizer, which makes streams finer-grained). Every pause offset (see below)
is also forced to be a token boundary. Every token is sent as one SSE chunk
and counts as one completion token. A request's ``max_tokens`` (or
``max_completion_tokens``) cuts the reply after that many tokens, with
``finish_reason="length"``, as a real provider does (see
:class:`~planweave.planner.testing.FakeModelServer`); pauses past the cut are
not taken.

Timing
------
After the response headers, token ``k`` (0-based) is sent at
``ttft_s + k / tokens_per_s`` seconds plus the sum of the pauses already
taken; ``tokens_per_s=None`` means "as fast as possible".  ``ttft_s`` and
``tokens_per_s`` left at ``None`` inherit the server-wide defaults; use
``tokens_per_s=math.inf`` to force full speed on one reply.  ``pause_after``
maps a character offset into :attr:`Reply.stream_text` to a number of seconds:
the stream stops for that long right after the token ending at that offset
(offset ``0`` pauses right after the initial role chunk, offset
``len(stream_text)`` pauses just before the final chunk).  Non-streamed
responses are sent when the last token would have been streamed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_MALFORMED_BODY",
    "HttpError",
    "JsonPath",
    "Reply",
    "ToolCall",
    "json_spans",
    "tokenize",
]

#: Body sent by :meth:`Reply.malformed` unless another one is given.
DEFAULT_MALFORMED_BODY = '{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'

#: A path into a JSON value: dict keys and list indices, e.g. ``("steps", 0)``.
JsonPath = tuple[str | int, ...]

_TOKEN_RE = re.compile(r" ?\w{1,4}| ?[^\w\s]{1,3}|\s+")

# status -> (default message, type, code), modelled on OpenAI's error bodies.
_ERROR_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("Forbidden.", "invalid_request_error", None),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "timeout", None),
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request.",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
}


def tokenize(text: str, boundaries: Sequence[int] = ()) -> list[str]:
    r"""Split ``text`` into the fake server's streaming "tokens".

    A token is (regex ``" ?\w{1,4}| ?[^\w\s]{1,3}|\s+"``) a run of 1-4 word
    characters or of 1-3 other non-space characters, optionally preceded by
    one space, or else a run of whitespace.  Each offset in
    ``boundaries`` (``0 < offset < len(text)``; others are ignored) is made a
    token boundary by splitting the token that spans it.  The tokens always
    concatenate back to ``text``; the empty string has no tokens.
    """
    cuts = {0, len(text)}
    for match in _TOKEN_RE.finditer(text):
        cuts.add(match.start())
        cuts.add(match.end())
    cuts.update(b for b in boundaries if 0 < b < len(text))
    ordered = sorted(cuts)
    return [text[a:b] for a, b in zip(ordered, ordered[1:]) if b > a]


def json_spans(value: Any) -> tuple[str, dict[JsonPath, tuple[int, int]]]:
    """Serialise ``value`` exactly like ``json.dumps(value)`` and locate values.

    Returns the JSON text and a mapping from every :data:`JsonPath` in
    ``value`` (``()`` is the whole document) to the ``(start, end)`` character
    span of that sub-value in the text.
    """
    spans: dict[JsonPath, tuple[int, int]] = {}

    def dump(node: Any, path: JsonPath, offset: int) -> str:
        if isinstance(node, Mapping):
            parts = ["{"]
            cur = offset + 1
            for i, (key, child) in enumerate(node.items()):
                if not isinstance(key, str):
                    raise TypeError(f"JSON object keys must be str, got {key!r}")
                prefix = (", " if i else "") + json.dumps(key) + ": "
                parts.append(prefix)
                cur += len(prefix)
                text = dump(child, (*path, key), cur)
                parts.append(text)
                cur += len(text)
            parts.append("}")
            out = "".join(parts)
        elif isinstance(node, (list, tuple)):
            parts = ["["]
            cur = offset + 1
            for i, child in enumerate(node):
                if i:
                    parts.append(", ")
                    cur += 2
                text = dump(child, (*path, i), cur)
                parts.append(text)
                cur += len(text)
            parts.append("]")
            out = "".join(parts)
        else:
            out = json.dumps(node)
        spans[path] = (offset, offset + len(out))
        return out

    return dump(value, (), 0), spans


class ToolCall(BaseModel):
    """One tool (function) call emitted by a :class:`Reply`.

    ``arguments`` may be a mapping (serialised with ``json.dumps``) or a raw
    string, which is sent verbatim (it may deliberately be invalid JSON).
    ``id`` defaults to ``call_fake_<request number>_<index>``.  The field is
    typed ``str``; use :meth:`of` for a type-checker-friendly way to pass a
    mapping.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    arguments: str = "{}"
    id: str | None = None

    @classmethod
    def of(
        cls,
        name: str,
        arguments: Mapping[str, Any] | str = "{}",
        *,
        id: str | None = None,  # noqa: A002 - mirrors the OpenAI field name
    ) -> ToolCall:
        """Build a tool call from a name and a mapping or raw string of arguments."""
        if not isinstance(arguments, str):
            arguments = json.dumps(dict(arguments))
        return cls(name=name, arguments=arguments, id=id)

    @field_validator("arguments", mode="before")
    @classmethod
    def _dump_arguments(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return json.dumps(dict(value))
        return value


class HttpError(BaseModel):
    """An HTTP error response with an OpenAI-shaped body.

    The body is ``{"error": {"message", "type", "param", "code"}}``; fields
    left at ``None`` get defaults that depend on ``status`` (e.g. 429 ->
    ``type="requests"``, ``code="rate_limit_exceeded"``).  ``retry_after``
    (seconds) adds a ``Retry-After`` header.  ``body`` replaces the whole
    response body verbatim.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: int = Field(ge=400, le=599)
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = Field(default=None, ge=0)
    body: str | None = None

    def error_body(self) -> str:
        """Return the JSON text of the response body."""
        if self.body is not None:
            return self.body
        default_message, default_type, default_code = _ERROR_DEFAULTS.get(
            self.status,
            (f"Fake HTTP error {self.status}.", "api_error", None),
        )
        return json.dumps(
            {
                "error": {
                    "message": self.message if self.message is not None else default_message,
                    "type": self.type if self.type is not None else default_type,
                    "param": self.param,
                    "code": self.code if self.code is not None else default_code,
                }
            }
        )

    def error_headers(self) -> dict[str, str]:
        """Return the extra response headers (``Retry-After`` if configured)."""
        if self.retry_after is None:
            return {}
        seconds = self.retry_after
        text = str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
        return {"Retry-After": text}


class Reply(BaseModel):
    """One scripted response of the fake model server.

    Payload fields (``content``/``structured`` are mutually exclusive, and
    ``structured`` cannot be combined with ``tool_calls``):

    * ``content``: assistant text.
    * ``structured``: a JSON object/array, emitted as tool call or content
      depending on the request (see the module docstring).
    * ``tool_calls``: explicit tool calls.

    Fault fields: ``error`` (HTTP error), ``malformed_body`` (status 200 with
    this invalid body; when streaming it is sent as one ``data:`` event
    followed by ``[DONE]``), ``drop_after_chunks`` (streaming: close the
    connection after that many ``data:`` events, counting the initial role
    chunk, without ``[DONE]``; non-streaming: send the headers and half the
    body, then close), ``disconnect`` (close without sending anything).

    Timing fields: ``delay_s`` (before anything is sent), ``ttft_s``,
    ``tokens_per_s``, ``pause_after`` (see the module docstring).

    Other: ``finish_reason`` overrides the computed one (``"length"`` if the
    request's ``max_tokens`` cut the reply short, else ``"tool_calls"`` if tool
    calls were emitted, else ``"stop"``); ``prompt_tokens`` and
    ``completion_tokens`` override the usage estimates (``completion_tokens``
    is still capped at the request's ``max_tokens``); ``cached_tokens`` and
    ``cache_write_tokens`` are the prompt tokens read from and written to a
    provider's prompt cache (they override the server's ``prompt_cache``
    simulation; see :class:`~planweave.planner.testing.FakeModelServer` for
    the usage shapes); ``headers`` are extra response headers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str | None = None
    structured: dict[str, Any] | list[Any] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None

    error: HttpError | None = None
    malformed_body: str | None = None
    drop_after_chunks: int | None = Field(default=None, ge=0)
    disconnect: bool = False

    delay_s: float = Field(default=0.0, ge=0)
    ttft_s: float | None = Field(default=None, ge=0)
    tokens_per_s: float | None = Field(default=None, gt=0)
    pause_after: dict[int, float] = Field(default_factory=dict)

    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    cached_tokens: int | None = Field(default=None, ge=0)
    cache_write_tokens: int | None = Field(default=None, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Reply:
        if self.content is not None and self.structured is not None:
            raise ValueError("a Reply cannot have both content and structured")
        if self.structured is not None and self.tool_calls:
            raise ValueError("a Reply cannot have both structured and tool_calls")
        if self.structured is not None:
            json.dumps(self.structured)  # raises TypeError if not JSON-serialisable
        size = len(self.stream_text)
        for offset, seconds in self.pause_after.items():
            if not 0 <= offset <= size:
                raise ValueError(f"pause offset {offset} outside the stream text (0..{size})")
            if seconds < 0 or math.isnan(seconds):
                raise ValueError(f"pause duration must be >= 0, got {seconds}")
        return self

    # ------------------------------------------------------------------ helpers

    @property
    def json_text(self) -> str | None:
        """The serialised ``structured`` payload (``json.dumps``), if any."""
        return None if self.structured is None else json.dumps(self.structured)

    @property
    def stream_text(self) -> str:
        """Text whose character offsets ``pause_after`` refers to.

        It is the content (or :attr:`json_text`) followed by each tool call's
        arguments string.
        """
        head = (self.json_text if self.structured is not None else self.content) or ""
        return head + "".join(call.arguments for call in self.tool_calls)

    @property
    def is_fault(self) -> bool:
        """True if this reply is an error, malformed body or disconnect."""
        return self.error is not None or self.malformed_body is not None or self.disconnect

    # ------------------------------------------------------------- constructors

    @classmethod
    def text(cls, content: str, **options: Any) -> Reply:
        """A plain assistant text reply; ``options`` are other :class:`Reply` fields."""
        return cls(content=content, **options)

    @classmethod
    def json_obj(cls, value: dict[str, Any] | list[Any], **options: Any) -> Reply:
        """A structured JSON reply (tool call if the request has tools, else content)."""
        return cls(structured=value, **options)

    @classmethod
    def tool_call(
        cls,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        id: str | None = None,  # noqa: A002 - mirrors the OpenAI field name
        **options: Any,
    ) -> Reply:
        """A reply with a single tool call (``arguments`` dict or raw string)."""
        call = ToolCall.of(name, arguments if arguments is not None else "{}", id=id)
        return cls(tool_calls=(call,), **options)

    @classmethod
    def parallel_tool_calls(cls, *calls: ToolCall, **options: Any) -> Reply:
        """A reply with several tool calls (``ToolCall`` objects) in one message."""
        return cls(tool_calls=tuple(calls), **options)

    @classmethod
    def http_error(
        cls,
        status: int,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        type: str | None = None,  # noqa: A002 - mirrors the OpenAI field name
        code: str | None = None,
        **options: Any,
    ) -> Reply:
        """An HTTP error reply with an OpenAI-shaped error body."""
        error = HttpError(
            status=status, message=message, retry_after=retry_after, type=type, code=code
        )
        return cls(error=error, **options)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0, **options: Any) -> Reply:
        """Shorthand for a 429 reply with a ``Retry-After`` header."""
        return cls.http_error(429, retry_after=retry_after, **options)

    @classmethod
    def malformed(cls, body: str = DEFAULT_MALFORMED_BODY, **options: Any) -> Reply:
        """A status-200 reply whose body is not valid JSON."""
        return cls(malformed_body=body, **options)

    @classmethod
    def dropped(
        cls,
        after_chunks: int = 2,
        content: str = "This response will be cut off before it is complete.",
        **options: Any,
    ) -> Reply:
        """A text reply whose connection is closed after ``after_chunks`` events."""
        return cls(content=content, drop_after_chunks=after_chunks, **options)

    @classmethod
    def disconnected(cls, **options: Any) -> Reply:
        """A reply that closes the connection without sending any response."""
        return cls(disconnect=True, **options)

    # ------------------------------------------------------------ modifiers

    def with_latency(
        self, *, ttft_s: float | None = None, tokens_per_s: float | None = None
    ) -> Reply:
        """Return a copy with per-reply time-to-first-token and/or token rate.

        Arguments left at ``None`` keep their current value.
        """
        changes: dict[str, Any] = {}
        if ttft_s is not None:
            changes["ttft_s"] = ttft_s
        if tokens_per_s is not None:
            changes["tokens_per_s"] = tokens_per_s
        return self._replace(**changes)

    def with_delay(self, seconds: float) -> Reply:
        """Return a copy that waits ``seconds`` before sending anything."""
        return self._replace(delay_s=seconds)

    def with_pause_after(
        self, after: int | str, seconds: float, *, occurrence: int = 1
    ) -> Reply:
        """Return a copy that pauses the stream for ``seconds``.

        ``after`` is a character offset into :attr:`stream_text`, or a
        substring: the pause then happens right after the ``occurrence``-th
        (1-based) occurrence of it.
        """
        if isinstance(after, str):
            text = self.stream_text
            start = -1
            for _ in range(occurrence):
                start = text.find(after, start + 1)
                if start < 0:
                    raise ValueError(
                        f"{after!r} occurs fewer than {occurrence} time(s) in the stream text"
                    )
            offset = start + len(after)
        else:
            offset = after
        return self._replace(pause_after={**self.pause_after, offset: seconds})

    def with_pause_after_json(self, path: JsonPath, seconds: float) -> Reply:
        """Return a copy that pauses right after the JSON sub-value at ``path``.

        Only for ``structured`` replies.  ``path`` is a tuple of keys/indices,
        e.g. ``("steps", 0)`` pauses right after the first complete step
        object of ``{"steps": [...]}``.
        """
        if self.structured is None:
            raise ValueError("with_pause_after_json needs a structured (json_obj) reply")
        _, spans = json_spans(self.structured)
        if path not in spans:
            raise KeyError(f"JSON path {path!r} not found in the structured payload")
        return self._replace(pause_after={**self.pause_after, spans[path][1]: seconds})

    def _replace(self, **changes: Any) -> Reply:
        # model_copy(update=...) skips validation; re-validate instead.
        return type(self).model_validate({**self.model_dump(), **changes})
