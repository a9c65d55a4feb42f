"""Running the server: bind the port, answer `/health` at once, build the app behind it.

The app needs FastAPI, the planner (executor, tools, networkx) and the model libraries
(litellm, instructor): seconds of imports. A server should say it is alive long before that
(`planweave serve` answers `/health` within half a second of starting). So `run_server` binds
the port and serves `_Front`, a small ASGI app that needs only uvicorn: it answers `/health`
itself (`"models": "loading"`) while a daemon thread builds the real app (`Background`), and
hands every request to that app once it is built; a request that comes earlier awaits the
build without blocking the event loop. If the build fails (a broken run store, an unknown
tool), the server stops and `run_server` raises that error, as if it had failed before serving.

Shutting down (SIGINT or SIGTERM): uvicorn stops accepting connections, and `_Front` tells the
built app (its `state.shutdown(grace_s)`, when it has one): the planner's app gives running
runs a grace period, then records them `interrupted` (resumable) and ends each client's stream
with an error event. uvicorn waits for that (`shutdown_grace_s` plus `SHUTDOWN_MARGIN_S`).

This module imports nothing heavy (uvicorn only inside `run_server`), so the command line can
start serving before it has imported the app. `planweave.planner.serve.app` re-exports the
public names (`serve`, `bind`, `PortInUseError`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import math
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from planweave.planner.errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

T = TypeVar("T")

DEFAULT_SHUTDOWN_GRACE_S = 5.0
"""How long running runs may go on after SIGINT or SIGTERM before they are interrupted."""
SHUTDOWN_MARGIN_S = 10.0
"""What uvicorn waits beyond the grace period: for interrupted runs to record themselves and for
their streams to send the final error event."""

LoadState = Literal["loading", "ready", "failed"]
"""loading: the work is still going; ready: it finished; failed: it raised (see `Background.error`)."""


class Background(Generic[T]):
    """`load()` run once on a daemon thread; `result()` awaits it from any event loop.

    A daemon thread rather than a loop's executor: shutting down must not wait for an import
    that is still going. Imports are CPU work under one interpreter lock, so the thread slows
    the loop a little but never stops it: the loop answers between the thread's time slices.
    """

    def __init__(self, load: Callable[[], T], *, name: str, on_done: Callable[[], object] | None = None) -> None:
        self._load_fn = load
        self._name = name
        self._on_done = on_done
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._value: T | None = None
        self.error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def state(self) -> LoadState:
        if not self._done.is_set():
            return "loading"
        return "failed" if self.error is not None else "ready"

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._load_fn()
        except BaseException as exc:  # kept for everyone who awaits the result
            self.error = exc
        with self._lock:
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass
        if self._on_done is not None:
            self._on_done()

    async def wait(self) -> None:
        """Return once the work is done, well or not (start it if nobody did)."""
        self.start()
        if self._done.is_set():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done.is_set():
                return
            self._waiters.append((loop, future))
        await future

    async def result(self) -> T:
        """What `load()` returned; raises what it raised."""
        await self.wait()
        if self.error is not None:
            raise self.error
        return self._value  # type: ignore[return-value]  # set whenever error is None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Front:
    """The ASGI app uvicorn serves: `/health` at once, everything else by the built app."""

    def __init__(self, app: Background[ASGIApp], *, shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S) -> None:
        self.app = app
        self.shutdown_grace_s = shutdown_grace_s
        self.server: Any = None
        """The `uvicorn.Server` serving this (set by `run_server`): its `should_exit` says shutdown began."""
        self._watch: asyncio.Task[None] | None = None
        self._startup: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        probe = scope["path"] if scope["type"] == "http" and scope["method"] == "GET" else None
        if probe == "/health" and self.app.state == "loading":
            await _send_json(send, 200, {"status": "ok", "models": "loading"})
            return
        if probe == "/ready" and self.app.state == "loading":  # a load balancer sends nothing here yet
            await _send_json(send, 503, {"status": "not_ready", "code": "starting", "reason": "the server is starting."})
            return
        await self.app.wait()
        if self.app.error is not None:  # the server is stopping; say why to whoever asked meanwhile
            if scope["type"] == "http":
                error = self.app.error
                message = f"planweave could not start: {type(error).__name__}: {error}"
                body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
                await _send_json(send, 503, body)
            return
        app = await self.app.result()
        await app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.app.start()  # the build starts with the server, not at the first request
                if self.server is not None:
                    self._watch = asyncio.create_task(self._on_exit(self.server), name="planweave-shutdown-watch")
                    self._startup = asyncio.create_task(self._on_built(), name="planweave-startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


    async def _on_built(self) -> None:
        """Once the app is built, start what it runs beside its routes (`state.startup`, when it has one)."""
        await self.app.wait()
        if self.app.state != "ready":
            return
        built = await self.app.result()
        startup = getattr(getattr(built, "state", None), "startup", None)
        if startup is not None:
            try:
                await startup()
            except Exception:  # the routes still serve; each run connects what it needs itself
                logging.getLogger("planweave.server").exception("the server's start-up failed")

    async def _on_exit(self, server: Any) -> None:
        """Once shutdown begins, let the built app wind its runs down (`state.shutdown`).

        uvicorn exposes the start of shutdown only as `should_exit` (set by its signal handler,
        or by whoever stops it), which its own main loop polls too."""
        while not server.should_exit:
            await asyncio.sleep(0.05)
        if self.app.state != "ready":
            return
        built = await self.app.result()
        shutdown = getattr(getattr(built, "state", None), "shutdown", None)
        if shutdown is not None:
            await shutdown(self.shutdown_grace_s)


async def _send_json(send: Send, status: int, body: object) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# --- the port ----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class PortInUseError(ConfigError):
    """The address `serve` should listen on is taken (by another server, or an earlier `planweave serve`)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"port {port} on `{host}` is already in use (another server is listening there); "
            f"stop that server or pick another port with `--port`."
        )
        self.host, self.port = host, port


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, as uvicorn would bind it; `PortInUseError` when it is taken.

    Binding before uvicorn starts turns a busy port into one clear error (uvicorn logs it and exits 1).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on `{host}` port {port} ({exc.strerror}); pick another `--port` or `--host`."
            ) from exc
        raise PortInUseError(host, port) from exc
    sock.set_inheritable(True)
    return sock


def check_exposure(host: str, api_key: str | None) -> None:
    """`ConfigError` when `host` is reachable from other machines and no API key guards it, or the key is blank."""
    if api_key is not None and not api_key.strip():
        from planweave.planner.serve._guard import check_api_key

        check_api_key(api_key)  # raises, saying why
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"refusing to listen on `{host}` without an API key: anyone who can reach it could run tools "
            "and spend your model budget. Set `PLANWEAVE_API_KEY` (or pass `--api-key`), or listen on 127.0.0.1."
        )


def run_server(
    build: Callable[[], ASGIApp],
    *,
    host: str,
    port: int,
    api_key: str | None,
    log_level: str = "info",
    on_start: Callable[[str], object] | None = None,
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S,
) -> None:
    """Serve the app `build()` returns (built on a worker thread) until interrupted; see the module doc.

    `api_key` is the key the app will require (only checked here: a public `host` needs one).
    `shutdown_grace_s`: how long running runs may go on after SIGINT or SIGTERM.
    """
    check_exposure(host, api_key)
    import uvicorn

    sock = bind(host, port)
    with sock:
        sock.listen(2048)  # connections made while uvicorn starts wait in the backlog instead of being refused
        bound_port = sock.getsockname()[1]
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        if on_start is not None:
            on_start(f"http://{shown}:{bound_port}/v1")
        server: uvicorn.Server | None = None

        def stop_if_failed() -> None:
            if app.error is not None and server is not None:
                server.should_exit = True  # uvicorn's main loop checks it; run_server then raises the error

        app: Background[ASGIApp] = Background(build, name="planweave-serve-startup", on_done=stop_if_failed)
        front = _Front(app, shutdown_grace_s=shutdown_grace_s)
        server = front.server = uvicorn.Server(
            uvicorn.Config(
                front, host=host, port=bound_port, log_level=log_level, ws="none",
                timeout_graceful_shutdown=math.ceil(shutdown_grace_s + SHUTDOWN_MARGIN_S),
            )
        )
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; serving is over, as asked
            pass
    if app.error is not None:
        raise app.error
    if not server.started:  # the app failed to start up; uvicorn has logged why (as `uvicorn.run` does)
        raise SystemExit(3)
