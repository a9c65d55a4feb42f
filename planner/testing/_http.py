"""HTTP plumbing of :class:`planweave.planner.testing.FakeModelServer` (private).

:class:`HTTPServer` is a :class:`~http.server.ThreadingHTTPServer` that keeps
track of its connections and their threads so that ``stop()`` can close and
join all of them; :class:`Responder` writes one response while recording
timing on the :class:`~planner.testing.records.RecordedRequest`.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from planweave.planner.testing.records import RecordedRequest

__all__ = ["Dropped", "HTTPServer", "RequestHandler", "Responder", "Stopped"]


class Owner(Protocol):
    """What the HTTP layer needs from the server object."""

    verbose: bool

    def _dispatch(self, handler: RequestHandler) -> None: ...


class Stopped(Exception):
    """Raised inside a request thread when the server is shutting down."""


class Dropped(Exception):
    """Raised to close the connection on purpose (scripted fault)."""


class HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections and threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: Owner) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        super().__init__(address, RequestHandler)

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
        if isinstance(exc, (ConnectionError, TimeoutError, Stopped)):
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

    def serve_in_thread(self, name: str) -> threading.Thread:
        """Serve in a started daemon thread named `name`."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread, timeout: float) -> None:
        """Stop serving, close every connection, join the serving and connection threads."""
        self.shutdown()
        thread.join(timeout)
        self.close_connections()
        self.join_threads(timeout)
        self.server_close()


class RequestHandler(BaseHTTPRequestHandler):
    """Serves one connection; all behaviour lives in :class:`FakeModelServer`."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeModelServer/1.0"
    server: HTTPServer

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


class Responder:
    """Writes one response on a handler, recording timing on the request."""

    def __init__(
        self, handler: RequestHandler, record: RecordedRequest, stop: threading.Event
    ) -> None:
        self.handler = handler
        self.record = record
        self.stop = stop

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up (and abort) if the server is stopping."""
        if seconds > 0 and self.stop.wait(seconds):
            raise Stopped
        if self.stop.is_set():
            raise Stopped

    def sleep_until(self, deadline: float) -> None:
        """Sleep until the :func:`time.monotonic` ``deadline``."""
        self.sleep(deadline - time.monotonic())

    def write(self, data: bytes, *, body: bool = True) -> None:
        """Write raw bytes, recording first/last (body) byte times."""
        now = time.monotonic()
        if self.record.first_byte_monotonic is None:
            self.record.first_byte_monotonic = now
        if body and self.record.first_body_monotonic is None:
            self.record.first_body_monotonic = now
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
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body=False)

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
