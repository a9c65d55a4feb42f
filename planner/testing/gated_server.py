"""`GatedServer`: a real HTTP server on 127.0.0.1 whose chosen paths answer only when released.

For tests of runs that must be caught mid-step (killed, resumed, taken over) at a known point::

    with GatedServer(hold=("/slow",)) as server:
        run_workflow_fetching(server.url("/fast"), server.url("/slow"))   # `/fast` answers at once
        wait_until(lambda: "/slow" in server.requests, "the slow step reached the server")
        ...                                                               # kill, resume, ...
        server.release.set()                                              # `/slow` answers now

Each answer is `text/plain`, the path asked for; `requests` lists every path asked, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["GatedServer"]


class GatedServer:
    """A `GET` server on 127.0.0.1; paths starting with one of `hold` (default: every path) wait until
    `release` is set (at most `hold_s` seconds) before they answer.

    Started when made; `close()` (or leaving the `with` block) releases and stops it."""

    def __init__(self, hold: Iterable[str] = ("/",), *, hold_s: float = 60.0) -> None:
        self.requests: list[str] = []
        """Every path asked for, in order (appended as each request arrives, before it waits)."""
        self.release = threading.Event()
        """Set it to let held requests answer (and every later one at once)."""
        held = tuple(hold)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path.startswith(held):
                    outer.release.wait(hold_s)
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        threading.Thread(target=self._server.serve_forever, name="planweave-gated-server", daemon=True).start()

    def url(self, path: str) -> str:
        """The server's URL for `path` (which starts with `/`)."""
        return self.base + path

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GatedServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
