"""An OpenAI-compatible fake model server for tests and benchmarks.

:class:`FakeModelServer` speaks real HTTP on ``127.0.0.1`` (random free port
by default) from a background daemon thread, using only the standard library
(:class:`http.server.ThreadingHTTPServer`).  Point any OpenAI-compatible
client at :attr:`FakeModelServer.base_url`::

    from planweave.planner.testing import FakeModelServer, Reply

    with FakeModelServer(replies=[Reply.text("hello")]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake")
        client.chat.completions.create(model="fake-model", messages=[...])
        assert server.chat_requests[0].messages[-1]["content"] == "..."

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}`` and
``POST /v1/chat/completions`` (plain JSON, or SSE when ``"stream": true``).
Anything else gets a 404 (405 for a wrong method) with an OpenAI-shaped
error body.

Replies come from a FIFO queue (``replies=`` and :meth:`FakeModelServer.enqueue`),
then from ``handler`` (a callable receiving the :class:`RecordedRequest`).
When both are exhausted the server answers 500 with
``"fake model server: no scripted reply left for request #N"`` where ``N``
is the 1-based number of the request among all requests received (any path)
since the start or the last :meth:`FakeModelServer.reset`.  If the
handler raises, the server answers 500 and keeps the exception in
:attr:`FakeModelServer.handler_errors`.  See :mod:`planweave.planner.testing.replies`
for reply kinds, the tokenisation rule and the timing model, and
:func:`planweave.planner.testing._render.estimate_prompt_tokens` for usage estimates.

Length limit: like a real provider, the server stops generating at the
request's ``max_tokens`` (or ``max_completion_tokens``; the smaller if both are
given).  Tokens are those of :func:`~planweave.planner.testing.replies.tokenize`
(the same ones that are streamed): when a reply has more, only the first
``max_tokens`` are sent, across the content and then each tool call's
arguments in order (a tool call that starts after the cut is left out), the
``finish_reason`` is ``"length"`` (streamed: on the last choice chunk), and
``usage.completion_tokens`` counts only the tokens sent (a reply's
``completion_tokens`` override is capped at the limit too).  A limit that is
not an integer >= 1 is refused with a 400 ``invalid_request_error`` naming the
parameter, before a scripted reply is used.

Prompt caching (``prompt_cache="openai"`` or ``"anthropic"``): the server
simulates a provider's prompt cache over the first message of each request
(where planweave puts a prompt's static part): the first time a first message
is seen it is written to the cache, every later time it is read from it. Its
tokens (``ceil(chars / 4)``) are reported in that provider's usage shape:
OpenAI's ``usage.prompt_tokens_details.cached_tokens`` (reads only, as OpenAI
caches automatically), or Anthropic's ``usage.cache_read_input_tokens`` and
``usage.cache_creation_input_tokens``. A reply's ``cached_tokens`` /
``cache_write_tokens`` override the simulation (and with ``prompt_cache=None``
are reported in the OpenAI shape).

HTTP/1.1 keep-alive is supported; streamed responses use chunked transfer
encoding, so a dropped stream surfaces in clients as an incomplete body.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from planweave.planner.testing._http import Dropped, HTTPServer, RequestHandler, Responder, Stopped
from planweave.planner.testing._render import (
    Emission,
    EmittedToolCall,
    completion_body,
    estimate_message_tokens,
    resolve_emission,
    stream_events,
    usage_dict,
    with_cache_usage,
)
from planweave.planner.testing.records import CHAT_PATH, MODELS_PATH, RecordedRequest
from planweave.planner.testing.replies import Reply

__all__ = ["FakeModelServer", "RecordedRequest", "ReplyHandler", "ReplyLike"]

#: What a reply queue entry or handler result may be: a ``str`` is ``Reply.text``.
ReplyLike = Reply | str
#: Signature of a dynamic reply handler.
ReplyHandler = Callable[[RecordedRequest], ReplyLike]


def _as_reply(value: ReplyLike) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply.text(value)
    raise TypeError(f"expected a Reply or str, got {type(value).__name__}")


class FakeModelServer:
    """An OpenAI-compatible chat-completions server running in a thread.

    Args:
        replies: initial FIFO queue of replies (``str`` means ``Reply.text``).
        handler: called with the :class:`RecordedRequest` when the queue is
            empty; returns the reply.  Called from server threads, possibly
            concurrently.
        ttft_s: default time to first token, in seconds.
        tokens_per_s: default streaming rate; ``None`` = as fast as possible.
        models: model ids listed by ``GET /v1/models``.
        host, port: bind address; ``port=0`` picks a free port.
        verbose: log every request to stderr (``http.server`` format).
        prompt_cache: ``"openai"`` or ``"anthropic"`` simulates that provider's
            prompt cache and reports it in its usage shape (see above).
        tokenizer: splits reply text into the streamed tokens (pieces that
            concatenate back to the text), e.g. a real model's tokenizer, in
            place of :func:`~planweave.planner.testing.replies.tokenize`; it
            sets the pacing and ``completion_tokens``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        replies: Iterable[ReplyLike] = (),
        *,
        handler: ReplyHandler | None = None,
        ttft_s: float = 0.0,
        tokens_per_s: float | None = None,
        models: Iterable[str] = ("fake-model",),
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        prompt_cache: Literal["openai", "anthropic"] | None = None,
        tokenizer: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        if ttft_s < 0:
            raise ValueError("ttft_s must be >= 0")
        if tokens_per_s is not None and tokens_per_s <= 0:
            raise ValueError("tokens_per_s must be > 0 or None")
        self.handler: ReplyHandler | None = handler
        self.ttft_s = ttft_s
        self.tokens_per_s = tokens_per_s
        self.models: tuple[str, ...] = tuple(models)
        self.verbose = verbose
        self.prompt_cache = prompt_cache
        self.tokenizer = tokenizer
        self._cached_prefixes: set[str] = set()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque(_as_reply(r) for r in replies)
        self._requests: list[RecordedRequest] = []
        self._handler_errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeModelServer:
        """Bind the socket and start serving in a daemon thread; return self."""
        if self._started:
            raise RuntimeError("FakeModelServer can only be started once")
        self._started = True
        self._httpd = HTTPServer((self._host, self._port), self)
        self._thread = self._httpd.serve_in_thread(f"fake-model-server-{self.port}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close every connection and join all threads.

        In-progress responses (delays, pauses, slow streams) are aborted.
        Idempotent.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.stop(thread, timeout)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("FakeModelServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI ``base_url``/``api_base``, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -------------------------------------------------------------- scripting

    def enqueue(self, *replies: ReplyLike) -> None:
        """Append replies to the FIFO queue."""
        converted = [_as_reply(r) for r in replies]
        with self._lock:
            self._queue.extend(converted)

    def clear_replies(self) -> None:
        """Drop every queued reply."""
        with self._lock:
            self._queue.clear()

    @property
    def pending_replies(self) -> int:
        """Number of queued replies not yet used."""
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Snapshot of the ``POST /v1/chat/completions`` requests."""
        return [r for r in self.requests if r.is_chat]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (``IndexError`` if none)."""
        with self._lock:
            return self._requests[-1]

    @property
    def handler_errors(self) -> list[BaseException]:
        """Exceptions raised by ``handler`` or while serving (answered with a 500)."""
        with self._lock:
            return list(self._handler_errors)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``count`` chat requests were received *and* answered.

        Returns the chat requests; raises ``TimeoutError`` otherwise.
        """
        deadline = time.monotonic() + timeout
        while True:
            chats = self.chat_requests
            if len(chats) >= count and all(r.finished for r in chats[:count]):
                return chats
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"expected {count} finished chat requests, got {len(chats)}"
                )
            time.sleep(0.005)

    def reset(self) -> None:
        """Forget recorded requests and handler errors, and clear the queue."""
        with self._lock:
            self._requests.clear()
            self._handler_errors.clear()
            self._queue.clear()
            self._cached_prefixes.clear()

    # ---------------------------------------------------------------- serving

    def _record(self, handler: RequestHandler) -> RecordedRequest:
        received_monotonic, received_time = time.monotonic(), time.time()
        raw = self._read_body(handler)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        path, _, query = handler.path.partition("?")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            record = RecordedRequest(
                number=len(self._requests) + 1,
                method=handler.command,
                path=path,
                query=query,
                headers=headers,
                raw_body=raw,
                body=body,
                received_monotonic=received_monotonic,
                received_time=received_time,
            )
            self._requests.append(record)
        return record

    @staticmethod
    def _read_body(handler: RequestHandler) -> bytes:
        if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = handler.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length > 0 else b""

    def _dispatch(self, handler: RequestHandler) -> None:
        record = self._record(handler)
        out = Responder(handler, record, self._stopping)
        try:
            self._route(record, out)
        except (Stopped, Dropped, OSError):
            handler.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug in a reply/handler: report it
            with self._lock:
                self._handler_errors.append(exc)
            handler.close_connection = True
            if record.status is None:
                message = f"fake model server: internal error {type(exc).__name__}: {exc}"
                try:
                    out.send_error_json(500, message, "server_error", "internal_error")
                except OSError:
                    pass
        finally:
            record._finished.set()

    def _route(self, record: RecordedRequest, out: Responder) -> None:
        path = record.path.rstrip("/")
        invalid = "invalid_request_error"
        if path == MODELS_PATH or path.startswith(MODELS_PATH + "/"):
            model_id = path[len(MODELS_PATH) + 1 :]
            if record.method != "GET":
                out.send_error_json(405, f"Method {record.method} not allowed.", invalid, None)
            elif path == MODELS_PATH:
                models = [self._model_obj(m) for m in self.models]
                out.send_json(200, {"object": "list", "data": models})
            elif model_id in self.models:
                out.send_json(200, self._model_obj(model_id))
            else:
                message = f"The model '{model_id}' does not exist"
                out.send_error_json(404, message, invalid, "model_not_found")
        elif path == CHAT_PATH:
            if record.method != "POST":
                out.send_error_json(405, f"Method {record.method} not allowed.", invalid, None)
            elif not isinstance(record.body, dict):
                message = "We could not parse the JSON body of your request."
                out.send_error_json(400, message, invalid, None)
            else:
                self._chat(record, out)
        else:
            message = f"Invalid URL ({record.method} {record.path})"
            out.send_error_json(404, message, invalid, None)

    @staticmethod
    def _model_obj(model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": 1700000000,
            "owned_by": "planweave-fake",
        }

    def _next_reply(self, record: RecordedRequest, out: Responder) -> Reply | None:
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        if queued is not None:
            return queued
        handler = self.handler
        if handler is None:
            out.send_error_json(
                500,
                f"fake model server: no scripted reply left for request #{record.number}",
                "server_error",
                "no_scripted_reply",
            )
            return None
        try:
            return _as_reply(handler(record))
        except Exception as exc:  # noqa: BLE001 - reported to the client and kept
            with self._lock:
                self._handler_errors.append(exc)
            out.send_error_json(
                500,
                f"fake model server: handler raised {type(exc).__name__}: {exc}",
                "server_error",
                "handler_error",
            )
            return None

    def _chat(self, record: RecordedRequest, out: Responder) -> None:
        limit, invalid = _output_limit(record.json)
        if invalid is not None:
            out.send_json(400, {"error": invalid})
            return
        reply = self._next_reply(record, out)
        if reply is None:
            return
        record.reply = reply
        out.sleep(reply.delay_s)
        if reply.disconnect:
            raise Dropped
        headers = dict(reply.headers)
        if reply.error is not None:
            headers.update(reply.error.error_headers())
            out.send_body(reply.error.status, reply.error.error_body().encode(), headers=headers)
            return

        body = record.json
        model = record.model or (self.models[0] if self.models else "fake-model")
        completion_id = f"chatcmpl-fake-{record.number}"
        created = int(record.received_time)
        ttft = reply.ttft_s if reply.ttft_s is not None else self.ttft_s
        rate = reply.tokens_per_s if reply.tokens_per_s is not None else self.tokens_per_s
        if rate is not None and rate == float("inf"):
            rate = None
        emission = resolve_emission(reply, body, record.number, self.tokenizer)
        usage = self._cache_usage(reply, usage_dict(reply, emission, body), record)
        if limit is not None:
            emission, usage = _cut(emission, usage, limit, explicit_finish=reply.finish_reason is not None)

        if not record.stream:
            n_tokens = emission.completion_tokens
            generation = (n_tokens - 1) / rate if rate is not None and n_tokens > 1 else 0.0
            out.sleep(ttft + generation + sum(reply.pause_after.values()))
            if reply.malformed_body is not None:
                out.send_body(200, reply.malformed_body.encode(), headers=headers)
                return
            completion = completion_body(
                emission, usage, completion_id=completion_id, model=model, created=created
            )
            payload = json.dumps(completion).encode()
            if reply.drop_after_chunks is not None:
                headers["Content-Type"] = "application/json"
                headers["Content-Length"] = str(len(payload))
                out.send_head(200, headers)
                out.write(payload[: len(payload) // 2])
                raise Dropped
            out.send_body(200, payload, headers=headers)
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        headers.update(
            {
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "Transfer-Encoding": "chunked",
            }
        )
        out.send_head(200, headers)
        start = time.monotonic() + ttft
        if reply.malformed_body is not None:
            out.sleep_until(start)
            out.write_event(reply.malformed_body)
            self._finish_stream(out)
            return
        events = stream_events(
            reply,
            emission,
            usage if include_usage else None,
            completion_id=completion_id,
            model=model,
            created=created,
        )
        paused = 0.0
        drop_after = reply.drop_after_chunks
        for event in events:
            if drop_after is not None and record.chunks_sent >= drop_after:
                raise Dropped
            if event.due_token is not None:
                pace = event.due_token / rate if rate is not None else 0.0
                out.sleep_until(start + pace + paused)
            out.write_event(json.dumps(event.payload))
            if event.pause_s > 0:
                out.sleep(event.pause_s)
                paused += event.pause_s
        if drop_after is not None and record.chunks_sent >= drop_after:
            raise Dropped
        self._finish_stream(out)

    def _cache_usage(self, reply: Reply, usage: dict[str, Any], record: RecordedRequest) -> dict[str, Any]:
        """``usage`` with the prompt-cache counts of this request, when there are any to report."""
        cached, written = 0, 0
        if self.prompt_cache is not None and record.messages:
            first = record.messages[0]
            key = json.dumps(first, sort_keys=True)
            with self._lock:
                seen = key in self._cached_prefixes
                self._cached_prefixes.add(key)
            tokens = min(estimate_message_tokens(first), usage["prompt_tokens"])
            cached, written = (tokens, 0) if seen else (0, tokens if self.prompt_cache == "anthropic" else 0)
        elif reply.cached_tokens is None and reply.cache_write_tokens is None:
            return usage
        cached = reply.cached_tokens if reply.cached_tokens is not None else cached
        written = reply.cache_write_tokens if reply.cache_write_tokens is not None else written
        return with_cache_usage(usage, self.prompt_cache or "openai", cached, written)

    @staticmethod
    def _finish_stream(out: Responder) -> None:
        out.record.completed = True
        out.write_chunk(b"data: [DONE]\n\n")
        out.write(b"0\r\n\r\n")


_LIMIT_PARAMS = ("max_tokens", "max_completion_tokens")


def _output_limit(body: dict[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    """The request's output token limit (``None``: no limit), or the error body for an invalid
    one, worded as OpenAI words it."""
    limits: list[int] = []
    for param in _LIMIT_PARAMS:
        value = body.get(param)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            message = f"Invalid type for '{param}': expected an integer, but got {type(value).__name__} instead."
            code = "invalid_type"
        elif value < 1:
            message = f"Invalid '{param}': integer below minimum value. Expected a value >= 1, but got {value} instead."
            code = "integer_below_min_value"
        else:
            limits.append(value)
            continue
        return None, {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return (min(limits) if limits else None), None


def _cut(
    emission: Emission, usage: dict[str, Any], limit: int, *, explicit_finish: bool
) -> tuple[Emission, dict[str, Any]]:
    """``emission`` and ``usage`` as a provider sends them when generation stops at ``limit``
    tokens: the first ``limit`` tokens (content, then each tool call's arguments), finish reason
    ``length`` (unless the reply scripted its own), and no more than the sent tokens counted."""
    if emission.completion_tokens > limit:
        left = limit
        content, content_tokens = emission.content, emission.content_tokens
        if content is not None:
            content_tokens = content_tokens[:left]
            content = "".join(content_tokens)
            left -= len(content_tokens)
        calls: list[EmittedToolCall] = []
        argument_tokens: list[tuple[str, ...]] = []
        for call, tokens in zip(emission.tool_calls, emission.argument_tokens):
            if left <= 0 and tokens:  # generation stopped before this call began
                break
            kept = tokens[:left]
            left -= len(kept)
            calls.append(EmittedToolCall(call.id, call.name, "".join(kept)))
            argument_tokens.append(kept)
        finish = emission.finish_reason if explicit_finish else "length"
        emission = Emission(content, tuple(calls), finish, content_tokens, tuple(argument_tokens))
    completion = min(usage["completion_tokens"], limit)
    return emission, {**usage, "completion_tokens": completion, "total_tokens": usage["prompt_tokens"] + completion}
