"""An OpenAI-compatible fake model server for tests and benchmarks.

:class:`FakeModelServer` speaks real HTTP on ``127.0.0.1`` (random free port
by default) from a background daemon thread, using only the standard library
(:class:`http.server.ThreadingHTTPServer`).  Point any OpenAI-compatible
client at :attr:`FakeModelServer.base_url`::

    from planner.testing import FakeModelServer, Reply

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
is the 1-based number of the request among all requests received.  If the
handler raises, the server answers 500 and keeps the exception in
:attr:`FakeModelServer.handler_errors`.  See :mod:`planner.testing.replies`
for reply kinds, the tokenisation rule and the timing model, and
:func:`planner.testing._render.estimate_prompt_tokens` for usage estimates.

HTTP/1.1 keep-alive is supported; streamed responses use chunked transfer
encoding, so a dropped stream surfaces in clients as an incomplete body.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from planner.testing._render import (
    completion_body,
    resolve_emission,
    stream_events,
    usage_dict,
)
from planner.testing.replies import Reply

__all__ = ["FakeModelServer", "RecordedRequest", "ReplyHandler", "ReplyLike"]

#: What a reply queue entry or handler result may be: a ``str`` is ``Reply.text``.
ReplyLike = Reply | str
#: Signature of a dynamic reply handler.
ReplyHandler = Callable[["RecordedRequest"], ReplyLike]

_CHAT_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"


class _Stopped(Exception):
    """Raised inside a request thread when the server is shutting down."""


class _Dropped(Exception):
    """Raised to close the connection on purpose (scripted fault)."""


def _as_reply(value: ReplyLike) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply.text(value)
    raise TypeError(f"expected a Reply or str, got {type(value).__name__}")


@dataclass(eq=False)
class RecordedRequest:
    """One HTTP request received by the server, and how it was answered.

    Request fields are set before any handler sees the request.  Response
    fields are updated by the serving thread while it responds; the times
    are recorded *just before* the corresponding bytes are written, so once a
    client has read the last byte, ``last_byte_monotonic`` is final.  Use
    :meth:`wait_finished` to wait until the server is done with the request.

    ``headers`` keys are lower-cased.  ``body`` is the parsed JSON body
    (``None`` if absent or not valid JSON).  ``first_byte_monotonic`` /
    ``last_byte_monotonic`` are :func:`time.monotonic` values of the first and
    last response bytes (``None`` if nothing was sent).
    """

    number: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any
    received_monotonic: float
    received_time: float
    reply: Reply | None = None
    status: int | None = None
    first_byte_monotonic: float | None = None
    last_byte_monotonic: float | None = None
    chunks_sent: int = 0
    completed: bool = False
    client_disconnected: bool = False
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def is_chat(self) -> bool:
        """True for ``POST /v1/chat/completions``."""
        return self.method == "POST" and self.path == _CHAT_PATH

    @property
    def json(self) -> dict[str, Any]:
        """The body if it is a JSON object, else an empty dict."""
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        """The requested ``model``."""
        value = self.json.get("model")
        return value if isinstance(value, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request ``messages`` (empty list if absent)."""
        value = self.json.get("messages")
        return value if isinstance(value, list) else []

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed response."""
        return bool(self.json.get("stream"))

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The request ``tools`` (empty list if absent)."""
        value = self.json.get("tools")
        return value if isinstance(value, list) else []

    @property
    def tool_choice(self) -> Any:
        """The request ``tool_choice`` (``None`` if absent)."""
        return self.json.get("tool_choice")

    @property
    def last_user_text(self) -> str:
        """Text of the last ``user`` message ("" if none)."""
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return "".join(
                        part.get("text", "")
                        for part in content
                        if isinstance(part, dict) and isinstance(part.get("text"), str)
                    )
                return ""
        return ""

    @property
    def finished(self) -> bool:
        """True once the server has finished responding to this request."""
        return self._finished.is_set()

    def wait_finished(self, timeout: float | None = 5.0) -> bool:
        """Wait until the server has finished responding; return ``finished``."""
        return self._finished.wait(timeout)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections and threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: FakeModelServer) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-model-server-conn-{client_address[1]}",
            daemon=True,
        )
        with self._lock:
            self._connections.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects are normal in tests; report anything else.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, _Stopped)):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open client connection (wakes blocked readers)."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, timeout: float) -> None:
        """Wait for connection threads to exit (at most ``timeout`` in total)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _RequestHandler(BaseHTTPRequestHandler):
    """Serves one connection; all behaviour lives in :class:`FakeModelServer`."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeModelServer/1.0"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.server.owner._dispatch(self)

    def do_POST(self) -> None:
        self.server.owner._dispatch(self)

    def do_PUT(self) -> None:
        self.server.owner._dispatch(self)

    def do_DELETE(self) -> None:
        self.server.owner._dispatch(self)

    def do_PATCH(self) -> None:
        self.server.owner._dispatch(self)


class _Responder:
    """Writes one response on a handler, recording timing on the request."""

    def __init__(
        self, handler: _RequestHandler, record: RecordedRequest, stop: threading.Event
    ) -> None:
        self.handler = handler
        self.record = record
        self.stop = stop

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up (and abort) if the server is stopping."""
        if seconds > 0 and self.stop.wait(seconds):
            raise _Stopped
        if self.stop.is_set():
            raise _Stopped

    def sleep_until(self, deadline: float) -> None:
        """Sleep until the :func:`time.monotonic` ``deadline``."""
        self.sleep(deadline - time.monotonic())

    def write(self, data: bytes) -> None:
        """Write raw bytes, recording first/last byte times."""
        now = time.monotonic()
        if self.record.first_byte_monotonic is None:
            self.record.first_byte_monotonic = now
        self.record.last_byte_monotonic = now
        try:
            self.handler.wfile.write(data)
        except OSError:
            self.record.client_disconnected = True
            self.record.completed = False
            raise

    def send_head(self, status: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers (plus ``Server``, ``Date``, ``x-request-id``)."""
        self.record.status = status
        handler = self.handler
        phrase = handler.responses.get(status, ("",))[0]
        lines = [
            f"{handler.protocol_version} {status} {phrase}",
            f"Server: {handler.version_string()}",
            f"Date: {handler.date_time_string()}",
            f"x-request-id: req_fake_{self.record.number}",
        ]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a complete response with a ``Content-Length`` body."""
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        all_headers.update(headers or {})
        self.send_head(status, all_headers)
        self.record.completed = True
        self.write(body)

    def send_json(
        self, status: int, value: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send ``value`` as a JSON response."""
        self.send_body(status, json.dumps(value).encode(), headers=headers)

    def send_error_json(self, status: int, message: str, type_: str, code: str | None) -> None:
        """Send an OpenAI-shaped error (exactly these fields, no defaults)."""
        error = {"message": message, "type": type_, "param": None, "code": code}
        self.send_json(status, {"error": error})

    def write_chunk(self, data: bytes) -> None:
        """Write one HTTP/1.1 chunk of a chunked body."""
        self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def write_event(self, data: str) -> None:
        """Write one SSE ``data:`` event as one chunk."""
        self.write_chunk(f"data: {data}\n\n".encode())
        self.record.chunks_sent += 1


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
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque(_as_reply(r) for r in replies)
        self._requests: list[RecordedRequest] = []
        self._handler_errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeModelServer:
        """Bind the socket and start serving in a daemon thread; return self."""
        if self._started:
            raise RuntimeError("FakeModelServer can only be started once")
        self._started = True
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-model-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
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
        httpd.shutdown()
        thread.join(timeout)
        httpd.close_connections()
        httpd.join_threads(timeout)
        httpd.server_close()
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

    # ---------------------------------------------------------------- serving

    def _record(self, handler: _RequestHandler) -> RecordedRequest:
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
    def _read_body(handler: _RequestHandler) -> bytes:
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

    def _dispatch(self, handler: _RequestHandler) -> None:
        record = self._record(handler)
        out = _Responder(handler, record, self._stopping)
        try:
            self._route(record, out)
        except (_Stopped, _Dropped, OSError):
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

    def _route(self, record: RecordedRequest, out: _Responder) -> None:
        path = record.path.rstrip("/")
        invalid = "invalid_request_error"
        if path == _MODELS_PATH or path.startswith(_MODELS_PATH + "/"):
            model_id = path[len(_MODELS_PATH) + 1 :]
            if record.method != "GET":
                out.send_error_json(405, f"Method {record.method} not allowed.", invalid, None)
            elif path == _MODELS_PATH:
                models = [self._model_obj(m) for m in self.models]
                out.send_json(200, {"object": "list", "data": models})
            elif model_id in self.models:
                out.send_json(200, self._model_obj(model_id))
            else:
                message = f"The model '{model_id}' does not exist"
                out.send_error_json(404, message, invalid, "model_not_found")
        elif path == _CHAT_PATH:
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

    def _next_reply(self, record: RecordedRequest, out: _Responder) -> Reply | None:
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

    def _chat(self, record: RecordedRequest, out: _Responder) -> None:
        reply = self._next_reply(record, out)
        if reply is None:
            return
        record.reply = reply
        out.sleep(reply.delay_s)
        if reply.disconnect:
            raise _Dropped
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
        emission = resolve_emission(reply, body, record.number)
        usage = usage_dict(reply, emission, body)

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
                raise _Dropped
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
                raise _Dropped
            if event.due_token is not None:
                pace = event.due_token / rate if rate is not None else 0.0
                out.sleep_until(start + pace + paused)
            out.write_event(json.dumps(event.payload))
            if event.pause_s > 0:
                out.sleep(event.pause_s)
                paused += event.pause_s
        if drop_after is not None and record.chunks_sent >= drop_after:
            raise _Dropped
        self._finish_stream(out)

    @staticmethod
    def _finish_stream(out: _Responder) -> None:
        out.record.completed = True
        out.write_chunk(b"data: [DONE]\n\n")
        out.write(b"0\r\n\r\n")
