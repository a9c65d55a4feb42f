"""`planweave serve`: the planner behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

    from planweave.planner import Planner
    from planweave.planner.serve.app import ServerConfig, create_app, serve

    serve(Planner(model="openai/gpt-4o-mini"), host="127.0.0.1", port=8000)   # blocks
    # a taken port raises `PortInUseError` (a `ConfigError`) before anything is served
    app = create_app(planner, ServerConfig(api_key="..."))                     # or mount the ASGI app

Endpoints (all but `/health` and `/ready` need `Authorization: Bearer KEY` when a key is configured):

    GET  /v1/models               the one model, `planweave`, with the model it plans with
    POST /v1/chat/completions     the conversation becomes a goal; the reply shows the plan and the
                                  steps as reasoning, then the answer (`stream: true` for SSE chunks)
    POST /v1/runs                 {"goal": ..., "inputs": {...}}: the run's typed events as SSE
    GET  /v1/runs, /v1/runs/{id}  the run store: list and export, as JSON
    GET  /v1/runs/{id}/events     the run's recorded events as SSE, following it as any replica records it
    GET  /health                  liveness, without a key: `{"status": "ok", "models": "loading"}`
                                  until the model libraries are loaded, then `"ready"`
    GET  /ready                   readiness, without a key: 200, or 503 with `{"status", "code", "reason"}`
                                  while starting, shutting down, or when the run store does not answer
    GET  /metrics                 Prometheus text (`planweave.planner.serve.ops`)

Replicas: every `planweave serve` on one run store acts as one service (`docs/deploy.md`). What
ties a conversation to its run lives in the conversation itself (`turns.marker`) and the store,
never in a process's memory, so any replica continues any conversation or answers any waiting
run, and each replica takes over runs whose replica died (`ServerConfig.takeover`).

Each request is its own planner run (one `Planner` serves them all: it keeps no per-run state),
recorded in the planner's run store. A client that disconnects cancels its run. Errors of a
run (failed, over budget) are normal replies saying so; errors of a request use OpenAI's
`{"error": {"message", "type", "param", "code"}}` shape. See `docs/chat-endpoint.md`.

The model libraries (litellm, instructor) take seconds to import, so the server loads them on a
worker thread at start-up (`_ModelLibraries`) and answers at once; a request that needs a model
awaits that load without blocking the event loop. `serve` goes further: it answers `/health`
before this module's own imports (FastAPI, the planner, networkx) are needed, and builds the
app on a worker thread (`planweave.planner.serve._launch`).

This module is the HTTP side (routes, keys, limits, error responses, running the server); how a
conversation becomes a goal and a run becomes a chat reply is `planweave.planner.serve.chat`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from planweave.executor.events import RunEvent
from planweave.executor.store import RunStore, StoreError
from planweave.planner.serve.follow import follow, follow_over
from planweave.planner.serve.ops import METRICS_CONTENT_TYPE, Metrics, Readiness
from planweave.planner.serve.services import Services
from planweave.planner.serve._guard import (
    ALLOWED_HOSTS_ENV, API_KEY_ENV, Guard, check_allowed_hosts, check_api_key, check_cors_origins,
)
from planweave.planner.serve._launch import (
    DEFAULT_SHUTDOWN_GRACE_S, SHUTDOWN_MARGIN_S, Background, LoadState, PortInUseError, bind, run_server,
)
from planweave.planner.serve.chat import (
    ChatMessage, ChatReply, ConversationError, Narration, ReasoningFormat, completion_usage, conversation_goal,
    conversation_turns, final_text, planweave_fields,
)
from planweave.planner.serve.tasks import background_task
from planweave.planner.serve.turns import ChatTurn, marker, read_turn
from planweave.planner.core import Planner
from planweave.planner.result import PlannerResult
from planweave.planner.errors import ConfigError
from planweave.tools.errors import PlanweaveError

__all__ = [
    "ChatMessage", "ChatRequest", "PortInUseError", "ReasoningFormat", "RunRequest", "ServerConfig", "bind", "create_app",
    "serve",
]

log = logging.getLogger("planweave.server")

_CANCEL_GRACE_S = 10.0
"""How long a request that goes away waits for its cancelled run to record itself."""


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class ServerConfig(BaseModel):
    """Settings of the HTTP server (the planner's own settings are the `Planner`'s).

    Browsers are kept out unless asked for (see `docs/security.md`): a request must name this
    server in `Host` (a loopback name with the bound port, or one of `allowed_hosts`), must not
    come from another site (`Origin`, `Sec-Fetch-Site`) unless that origin is in `cors_origins`,
    and must send its body as `application/json`.
    """

    api_key: str | None = Field(default_factory=lambda: os.environ.get(API_KEY_ENV), validate_default=True)
    """Clients must send `Authorization: Bearer <api_key>`; None: no authentication (loopback only).
    A blank key is refused: it would look like protection and be none."""
    model_id: str = "planweave"
    """The model name clients choose (`GET /v1/models` lists it)."""
    reasoning: ReasoningFormat = "think"
    """Default of how progress is shown; a request may ask for another with `reasoning_format`."""
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_messages: int = Field(200, gt=0)
    max_chars: int = Field(200_000, gt=0)
    """Most characters of text in one conversation (all messages together)."""
    max_concurrent_runs: int | None = Field(32, gt=0)
    """New runs are refused with 429 while this many are running; None: no limit."""
    cors_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the API directly (custom front ends), as `scheme://host[:port]`;
    empty: none, and every cross-site browser request is refused. `*` allows any site (unsafe without a key)."""
    allowed_hosts: list[str] = Field(default_factory=lambda: _env_list(ALLOWED_HOSTS_ENV), validate_default=True)
    """`Host` names the server answers to besides loopback ones (`name`: any port, `name:port`: that
    port; `*`: any host). Needed behind a reverse proxy or on a public address; default from
    `PLANWEAVE_ALLOWED_HOSTS` (comma-separated)."""

    @field_validator("api_key")
    @classmethod
    def _key_not_blank(cls, key: str | None) -> str | None:
        return check_api_key(key)

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        return check_cors_origins(origins)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_are_hosts(cls, hosts: list[str]) -> list[str]:
        return check_allowed_hosts(hosts)

    shutdown_grace_s: float = Field(DEFAULT_SHUTDOWN_GRACE_S, ge=0)
    """On SIGINT or SIGTERM, how long running runs may go on before they are interrupted
    (recorded `interrupted`, resumable; their clients get a final error event)."""
    takeover: bool = True
    """Run the take-over loop (`planweave.planner.worker.Worker`) beside the API: finish the runs of
    replicas that died (their lease expired) and queued runs. Harmless alone on one store (it then
    finishes, after a restart, what this server was running when it was killed); off: `--no-takeover`."""


# --- request bodies ---------------------------------------------------------------------------


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """What planweave reads of a chat-completions request. Sampling fields (`temperature`, `top_p`,
    `max_tokens`, `tools`, ...) are accepted and ignored: the planner chooses its own calls."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    reasoning_format: ReasoningFormat | None = None
    """planweave's extension: override the server's `reasoning` setting for this request."""


class RunRequest(BaseModel):
    """`POST /v1/runs`: a goal (and inputs, referenced by steps as `${inputs.name}`)."""

    model_config = ConfigDict(extra="forbid")
    goal: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)


class _APIError(Exception):
    """A request planweave will not serve, answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        message = hide_paths(message)
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type_
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


_HIDDEN_PATHS: dict[str, str] = {}
"""Directories and files of this machine that error messages name instead by a label (`hide_path`)."""


def hide_path(path: str | os.PathLike[str] | None, label: str) -> None:
    """Say `label` instead of `path` in every HTTP error from now on: a client has no business
    learning where the run store, the working directory or the user's home are."""
    if path is None:
        return
    text = os.fspath(path)
    if len(text) > 1 and os.path.isabs(text):
        _HIDDEN_PATHS[text.rstrip(os.sep) or text] = label


def hide_paths(text: str) -> str:
    """`text` with every registered path (longest first) replaced by its label; only whole path
    components, so `/app` is hidden in `/app/runs.db` but not in `/application`."""
    for path in sorted(_HIDDEN_PATHS, key=len, reverse=True):
        if path in text:
            pattern = r"(?<![\w.~-])" + re.escape(path) + r"(?![\w.~-])"
            text = re.sub(pattern, _HIDDEN_PATHS[path].replace("\\", "\\\\"), text)
    return text


def _hide_machine_paths() -> None:
    import sys
    import tempfile
    from pathlib import Path

    hide_path(sys.prefix, "<python>")
    hide_path(tempfile.gettempdir(), "<temp>")
    hide_path(Path.home(), "~")
    hide_path(Path.cwd(), "<working directory>")


# --- running -----------------------------------------------------------------------------------


class _ModelLibraries:
    """litellm and instructor, imported once on a daemon thread so the event loop never waits on them.

    `start` is called by the app's lifespan, by `serve` once the app is built, and by the first
    request (for servers that run no lifespan); `ready` is what a request that needs a model awaits.
    """

    def __init__(self) -> None:
        self._load = Background(_import_model_libraries, name="planweave-serve-models")

    @property
    def state(self) -> LoadState:
        return self._load.state

    def start(self) -> None:
        self._load.start()

    async def ready(self) -> None:
        """Return once the libraries are loaded (start loading them if nobody did); raise if they failed to."""
        await self._load.wait()
        error = self._load.error
        if error is not None:
            raise ConfigError(
                f"the model libraries failed to load ({type(error).__name__}: {error}); "
                "reinstall planweave (`pip install -c constraints.txt -e .`) and restart the server."
            )


def _import_model_libraries() -> None:
    from planweave.planner.llm import import_litellm

    import_litellm()
    import instructor  # noqa: F401  (structured calls need it; importing it costs as much again)


_MODEL_LIBRARIES = _ModelLibraries()
"""One per process, as imports are: every app in it shares the one load."""


class _Interrupted(Exception):
    """The server shut down while this run was going: it is recorded `interrupted` (resumable)."""

    def __init__(self, run_id: str, grace_s: float) -> None:
        super().__init__(
            f"planweave shut down while run `{run_id}` was going (it had {grace_s:g}s to finish); the run is "
            f"recorded as `interrupted`: resume it with `planweave resume {run_id}`, or send the request again."
        )
        self.run_id = run_id


class _Runs:
    """The server's shared state: the planner, the settings, and how many runs are going."""

    def __init__(self, planner: Planner, config: ServerConfig) -> None:
        self.planner = planner
        self.config = config
        self.active = 0
        self.created = int(time.time())
        self.models = _MODEL_LIBRARIES
        self.tasks: dict[str, asyncio.Task[PlannerResult]] = {}
        self.stopping = False
        """Shutdown began: no new runs."""
        self.interrupted: set[str] = set()
        self.metrics = Metrics()
        self.services = Services(planner, self.metrics, takeover=config.takeover, grace_s=config.shutdown_grace_s)
        self.metrics.in_flight.set_function(lambda: len(self.tasks) + self.services.in_flight())

    async def start(self) -> None:
        """Start what the replica runs beside its API (`Services`); once, however often called."""
        if not self.stopping:
            await self.services.start()

    async def shutdown(self, grace_s: float) -> None:
        """Stop admitting runs; give those running `grace_s` to finish, then interrupt the rest.

        An interrupted run is recorded `interrupted` (not `cancelled`: it can be resumed), and its
        client's stream ends with an error event saying so (`drive` raises `_Interrupted`)."""
        self.stopping = True
        taken_over = asyncio.ensure_future(self.services.stop_taking_over(grace_s))  # the same grace, meanwhile
        running = [t for t in self.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for run_id, task in list(self.tasks.items()):
            if not task.done():
                self.interrupted.add(run_id)
                task.cancel()
        await taken_over
        await self.services.stop()

    def admit(self) -> _Slot:
        """Reserve a run slot now, before any response starts (streamed or not), or raise 429.

        The caller releases it when the run's response is over (`_Slot.release`, idempotent):
        counting only once a stream's generator starts would let any number of streams in."""
        if self.stopping:
            self.metrics.rejected.labels("shutting_down").inc()
            raise _APIError(
                503, "planweave is shutting down and takes no new runs; send the request again in a moment.",
                code="server_shutting_down", type_="server_error",
            )
        limit = self.config.max_concurrent_runs
        if limit is not None and self.active >= limit:
            self.metrics.rejected.labels("limit").inc()
            raise _APIError(
                429,
                f"planweave is already running {self.active} runs, its limit (`--max-concurrent-runs`); "
                "retry in a moment.",
                code="rate_limit_exceeded",
                type_="rate_limit_error",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        return _Slot(self, uuid.uuid4().hex[:16])

    async def drive(
        self, goal: str, run_id: str, inputs: dict[str, Any] | None = None, start: _Start | None = None
    ) -> AsyncGenerator[RunEvent | PlannerResult, None]:
        """The run's events as they happen, then its result. Closing this early cancels the run and
        waits (shielded, bounded) until it has recorded itself as cancelled. `start` starts the run
        another way (a chat turn's conversation, or the answer that continues a waiting run). The
        caller holds the run's slot (`admit`) from before this starts until its response is over."""
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        await self.models.ready()
        task = asyncio.create_task(
            start([queue.put_nowait]) if start is not None
            else self.planner.run(goal, inputs=inputs, run_id=run_id, subscribers=[queue.put_nowait]),
            name=f"planweave-serve-{run_id}",
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        self.tasks[run_id] = task
        self.metrics.started.inc()
        task.add_done_callback(self._count_finished)
        try:
            while (event := await queue.get()) is not None:
                yield event
            if run_id in self.interrupted:
                store = self.planner.store
                if store is not None:  # recorded before the client hears of it
                    await asyncio.to_thread(store.set_status, run_id, "interrupted", error="the server shut down")
                raise _Interrupted(run_id, self.config.shutdown_grace_s)
            yield task.result()
        finally:
            self.tasks.pop(run_id, None)
            if not task.done():
                task.cancel()
                with anyio.move_on_after(_CANCEL_GRACE_S, shield=True):
                    await asyncio.wait({task})

    def _count_finished(self, task: asyncio.Task[PlannerResult]) -> None:
        if task.cancelled():
            status = "cancelled"
        elif task.exception() is not None:
            status = "error"
        else:
            status = task.result().status
        self.metrics.finished.labels(status).inc()


class _Slot:
    """One admitted run's place under `max_concurrent_runs`, held until `release` (safe to call twice)."""

    def __init__(self, runs: _Runs, run_id: str) -> None:
        self._runs: _Runs | None = runs
        self.run_id = run_id

    def release(self) -> None:
        if self._runs is not None:
            self._runs.active -= 1
            self._runs = None


class _AdmittedStream(EventSourceResponse):
    """A streamed run's response: its slot is released when the response is over, however it ends
    (finished, client gone, or never started because the connection closed first)."""

    def __init__(
        self, content: AsyncGenerator[str, None], slot: _Slot, headers: dict[str, str], *, grace_s: float
    ) -> None:
        super().__init__(content, headers=headers, sep="\n", shutdown_grace_period=grace_s)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
_Start = Callable[[list[Callable[[RunEvent], object]]], Coroutine[Any, Any, PlannerResult]]
"""Starts a run with these subscribers (`_Runs.drive`)."""


def _turn_start(planner: Planner, turn: ChatTurn, run_id: str) -> _Start:
    """How a chat turn's run starts: the answer continues the waiting run, else a new run of the goal
    with the earlier turns as its conversation, in the conversation's session."""
    if turn.waiting_run is not None and turn.answer is not None:
        waiting, answer, step = turn.waiting_run, turn.answer, turn.step_id
        return lambda subscribers: planner.respond(waiting, answer, step_id=step, subscribers=subscribers)
    return lambda subscribers: planner.run(
        turn.goal, run_id=run_id, subscribers=subscribers, conversation=turn.conversation, session_id=turn.session_id
    )


async def _task_reply(runs: _Runs, body: ChatRequest, config: ServerConfig) -> Response:
    """A front end's background task (`planweave.planner.serve.tasks`): one direct model call, not recorded."""
    from planweave.planner.llm import LLMClient
    from planweave.planner.serve.chat import _text

    await runs.models.ready()
    messages = [{"role": m.role, "content": _text(m, i)} for i, m in enumerate(body.messages)]
    try:
        text = await LLMClient(runs.planner.config).text(messages, prompt={"name": "front_end_task"}, purpose="front_end_task")
    except PlanweaveError as exc:
        raise _APIError(502, f"the model could not answer the front end's task: {exc}", type_="server_error") from exc
    return _direct_reply(body, config, text, None)


def _direct_reply(body: ChatRequest, config: ServerConfig, text: str, run_id: str | None) -> Response:
    """A reply that is not a run's: one message (or, streamed, one chunk)."""
    rid = run_id or uuid.uuid4().hex[:16]
    base = {"id": f"chatcmpl-{rid}", "created": int(time.time()), "model": config.model_id}
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if not body.stream:
        message = {"role": "assistant", "content": text}
        return JSONResponse({**base, "object": "chat.completion", "usage": usage,
                             "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]})

    async def chunks() -> AsyncGenerator[str, None]:
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            yield _json({**base, "object": "chat.completion.chunk", "choices": [choice],
                         **({"usage": usage} if finish else {})})
        yield "[DONE]"

    return EventSourceResponse(chunks(), sep="\n")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


async def _chat_events(
    runs: _Runs, goal: str, run_id: str, reply: ChatReply, start: _Start | None = None, footer: str = ""
) -> AsyncGenerator[tuple[dict[str, str] | None, PlannerResult | None], None]:
    """(delta, None) for each piece of the reply, then (None, result); a planweave error that stops
    the run from starting becomes the reply's text (and the result None). `footer` ends the reply of
    a run left waiting (the marker that lets the next message answer it)."""
    narration = Narration()
    try:
        async with aclosing(runs.drive(goal, run_id, start=start)) as items:
            async for item in items:
                if isinstance(item, PlannerResult):
                    waits = footer if item.status == "waiting" else ""
                    for kind, text in narration.finish(final_text(item) + waits):
                        yield reply.delta(kind, text), None
                    yield reply.close(), None
                    yield None, item
                    return
                for kind, text in narration.feed(item):
                    yield reply.delta(kind, text), None
    except PlanweaveError as exc:
        yield reply.delta("answer", f"planweave could not run this request: {exc}"), None
        yield reply.close(), None
        yield None, None


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


# --- the app -----------------------------------------------------------------------------------


def create_app(planner: Planner, config: ServerConfig | None = None) -> FastAPI:
    """The ASGI app serving `planner`. Run it with any ASGI server, or use `serve`."""
    config = config or ServerConfig()
    _ = planner.store  # open it now: a broken store fails at start, not on the first request
    # The runs it starts may be taken over by any replica or worker once their owner dies.
    planner = copy.copy(planner)
    planner.meta = {**planner.meta, "takeover": True}
    runs = _Runs(planner, config)
    readiness = Readiness(planner.store, runs.metrics, stopping=lambda: runs.stopping)
    _hide_machine_paths()
    store_path = getattr(planner.store, "path", None)
    if isinstance(store_path, str):
        hide_path(os.path.dirname(os.path.abspath(store_path)), "<run store directory>")
        hide_path(os.path.abspath(store_path), "<run store>")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runs.models.start()
        await runs.start()
        try:
            yield
        finally:
            await runs.services.stop()

    app = FastAPI(
        title="planweave", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.shutdown = runs.shutdown  # called by `serve` when SIGINT or SIGTERM arrives (`_launch._Front`)
    app.state.startup = runs.start  # called by `serve` once the app is built (it runs no lifespan of it)
    app.add_exception_handler(_APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)

    def model_card() -> dict[str, Any]:
        return {"id": config.model_id, "object": "model", "created": runs.created, "owned_by": "planweave",
                "planner_model": planner.model}

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "models": runs.models.state}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        problem = await readiness.check()
        if problem is None and runs.models.state != "ready":
            problem = (("starting", "the model libraries are still loading.") if runs.models.state == "loading"
                       else ("models_failed", "the model libraries failed to load; see the server's log."))
        if problem is None:
            return JSONResponse({"status": "ready"})
        code, reason = problem
        return JSONResponse({"status": "not_ready", "code": code, "reason": hide_paths(reason)}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        try:
            text = await runs.metrics.render(planner.store)
        except StoreError as exc:
            raise _APIError(503, f"the run store failed: {exc}", code="store_unavailable", type_="server_error") from exc
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        _check_model(model_id, config, param=None)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        _check_model(body.model, config, param="model")
        if body.n not in (None, 1):
            raise _APIError(400, f"`n` is {body.n}; planweave writes one reply per request, so use 1.", param="n")
        try:
            goal = conversation_goal(body.messages, max_messages=config.max_messages, max_chars=config.max_chars)
            task = background_task([{"role": m.role, "content": m.content} for m in body.messages]) is not None
            turn = None if task else await runs.metrics.timed(
                "read_turn", read_turn, body.messages, goal, conversation_turns(body.messages), planner.store
            )
        except ConversationError as exc:
            raise _APIError(400, exc.message, code=exc.code, param=exc.param) from exc
        slot = runs.admit()  # every model call counts, a front end's background task too
        held: _Slot | None = slot
        try:
            if turn is None:
                return await _task_reply(runs, body, config)  # a front end's title/tags/...: one model call
            if turn.reply is not None:  # the waiting run's request was not answered: ask again
                assert turn.waiting_run is not None
                return _direct_reply(
                    body, config, turn.reply + marker(turn.waiting_run, turn.session_id), turn.waiting_run
                )
            start = _turn_start(planner, turn, slot.run_id)
            run_id = turn.waiting_run or slot.run_id
            footer = marker(run_id, turn.session_id)
            reply = ChatReply(body.reasoning_format or config.reasoning)
            base = {"id": f"chatcmpl-{run_id}", "created": int(time.time()), "model": config.model_id}
            headers = {"X-Planweave-Run-Id": run_id}
            if body.stream:
                usage_chunk = bool(body.stream_options and body.stream_options.include_usage)
                stream = _chat_stream(runs, goal, run_id, reply, base, usage_chunk, start, footer)
                response = _AdmittedStream(stream, slot, headers, grace_s=_stream_grace(config))
                held = None  # the response releases it now
                return response
            result: PlannerResult | None = None
            try:
                async with anyio.create_task_group() as tg:

                    async def cancel_on_disconnect() -> None:
                        await _wait_disconnect(request)
                        tg.cancel_scope.cancel()

                    tg.start_soon(cancel_on_disconnect)
                    async with aclosing(_chat_events(runs, goal, run_id, reply, start, footer)) as events:
                        async for _, final in events:
                            result = final
                    tg.cancel_scope.cancel()
            except _Interrupted as exc:
                return _APIError(503, str(exc), code="server_shutting_down", type_="server_error").response()
            except Exception as exc:  # answered here, so the connection stays usable for the client's next request
                log.exception("chat run `%s` broke", run_id)
                return _bug(exc).response()
        finally:
            if held is not None:
                held.release()
        completion = {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": reply.message(), "finish_reason": "stop", "logprobs": None}],
            "usage": completion_usage(result),
            "planweave": planweave_fields(run_id, result),
        }
        return JSONResponse(completion, headers=headers)

    @app.post("/v1/runs")
    async def start_run(body: RunRequest) -> Response:
        if not body.goal.strip():
            raise _APIError(400, "the goal is empty; say what you want done.", param="goal")
        slot = runs.admit()
        stream = _event_stream(runs, body.goal, slot.run_id, body.inputs)
        try:
            # The response (and its run id) starts once the run's first event is out, which the
            # run's recorder saw first: by then any replica can find and follow the run.
            first = await anext(stream)
        except BaseException:
            await stream.aclose()
            slot.release()
            raise
        return _AdmittedStream(
            _prepend(first, stream), slot, {"X-Planweave-Run-Id": slot.run_id}, grace_s=_stream_grace(config)
        )

    @app.get("/v1/runs")
    def list_runs(
        status: str | None = None,
        kind: str | None = None,
        contains: str | None = None,
        limit: int = Query(50, ge=1, le=1000),
    ) -> dict[str, Any]:
        store = _store(planner)
        found = store.list_runs(status=status, kind=kind, contains=contains, limit=limit)
        return {"object": "list", "data": [{**r.model_dump(mode="json"), "total_tokens": r.total_tokens} for r in found]}

    @app.get("/v1/runs/{run_id}")
    def show_run(run_id: str) -> Response:
        store = _store(planner)
        try:
            exported = store.export(run_id)
        except StoreError as exc:
            raise _APIError(404, str(exc), code="run_not_found", param="run_id") from exc
        return Response(_json(exported), media_type="application/json")

    @app.get("/v1/runs/{run_id}/events")
    async def follow_run(run_id: str, request: Request) -> Response:
        store = _store(planner)
        try:
            summary = await runs.metrics.timed("follow", store.summary, run_id)
        except StoreError as exc:
            raise _APIError(404, str(exc), code="run_not_found", param="run_id") from exc
        after = _last_event_id(request.headers.get("last-event-id"))
        return EventSourceResponse(
            _follow_stream(runs, store, summary.id, after), headers={"X-Planweave-Run-Id": summary.id}, sep="\n",
            ping=15, shutdown_grace_period=_stream_grace(config),
        )

    app.add_middleware(
        Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes, allowed_hosts=config.allowed_hosts,
        cors_origins=config.cors_origins,
    )
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"],
            expose_headers=["X-Planweave-Run-Id"],
        )
    return app


def _stream_grace(config: ServerConfig) -> float:
    """How long sse_starlette lets a stream go on once shutdown begins (it cancels it after that):
    the runs' grace period, and time for an interrupted run to record itself and say so."""
    return config.shutdown_grace_s + SHUTDOWN_MARGIN_S


def _check_model(model_id: str, config: ServerConfig, *, param: str | None) -> None:
    if model_id != config.model_id:
        raise _APIError(
            404,
            f"The model `{model_id}` does not exist on this server; use `{config.model_id}` "
            "(`GET /v1/models` lists it).",
            code="model_not_found",
            param=param,
        )


def _store(planner: Planner) -> RunStore:
    store = planner.store
    if store is None:
        raise _APIError(404, "this server records no runs (its planner has `store=False`).", code="run_not_found")
    return store


async def _chat_stream(
    runs: _Runs, goal: str, run_id: str, reply: ChatReply, base: dict[str, Any], usage_chunk: bool,
    start: _Start | None = None, footer: str = "",
) -> AsyncGenerator[str, None]:
    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _json({**base, "object": "chat.completion.chunk", "choices": [choice], **extra})

    yield chunk({"role": "assistant", "content": ""})
    result: PlannerResult | None = None
    try:
        async with aclosing(_chat_events(runs, goal, run_id, reply, start, footer)) as events:
            async for delta, final in events:
                if delta:
                    yield chunk(delta)
                result = final or result
    except _Interrupted as exc:  # the server shut down: a last chunk saying so, then the end
        yield _json({"error": {"message": str(exc), "type": "server_error", "param": None,
                               "code": "server_shutting_down"}})  # fmt: skip
        yield "[DONE]"
        return
    except Exception as exc:  # a bug, not a run's failure: tell the client in OpenAI's stream error shape
        log.exception("chat run `%s` broke", run_id)
        error = _bug(exc)
        yield _json({"error": {"message": error.message, "type": error.type, "param": None, "code": None}})
        return
    extension = planweave_fields(run_id, result)
    if usage_chunk:
        yield chunk({}, "stop", planweave=extension)
        yield _json({**base, "object": "chat.completion.chunk", "choices": [], "usage": completion_usage(result)})
    else:  # not asked for, but harmless: front ends that read `usage` anywhere show it
        yield chunk({}, "stop", usage=completion_usage(result), planweave=extension)
    yield "[DONE]"


def _last_event_id(header: str | None) -> int:
    """Where a reconnecting follower left off (`Last-Event-ID`: the number of the last event it got)."""
    if header is None or not header.strip():
        return 0
    try:
        return max(0, int(header))
    except ValueError:
        raise _APIError(
            400, f"`Last-Event-ID` is `{header[:40]}`; send the `id` of the last event you got (a number), or none.",
            param="Last-Event-ID",
        ) from None


async def _follow_stream(runs: _Runs, store: RunStore, run_id: str, after: int) -> AsyncGenerator[ServerSentEvent, None]:
    try:
        async with aclosing(follow(store, run_id, after=after, metrics=runs.metrics)) as events:
            async for number, event in events:
                yield ServerSentEvent(_json(event), id=str(number))
        summary = await runs.metrics.timed("follow", store.summary, run_id)
    except StoreError as exc:
        yield ServerSentEvent(_json({"kind": "error", "run_id": run_id, "message": hide_paths(str(exc))}))
        return
    if summary.status == "interrupted" and follow_over(summary):
        message = (f"run `{run_id}` was interrupted and no service takes it over; resume it with "
                   f"`planweave resume {run_id}`.")
        yield ServerSentEvent(_json({"kind": "error", "run_id": run_id, "message": message, "status": "interrupted"}))


async def _prepend(first: str, rest: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    async with aclosing(rest):
        yield first
        async for item in rest:
            yield item


async def _event_stream(runs: _Runs, goal: str, run_id: str, inputs: dict[str, Any]) -> AsyncGenerator[str, None]:
    try:
        async with aclosing(runs.drive(goal, run_id, inputs)) as items:
            async for item in items:
                if isinstance(item, RunEvent):
                    yield _json(item.to_dict())
    except _Interrupted as exc:
        yield _json({"kind": "error", "run_id": run_id, "message": str(exc), "status": "interrupted"})
    except Exception as exc:
        if not isinstance(exc, PlanweaveError):
            log.exception("run `%s` broke", run_id)
        yield _json({"kind": "error", "run_id": run_id, "message": hide_paths(f"{type(exc).__name__}: {exc}")})


# --- errors in OpenAI's shape ------------------------------------------------------------------


async def _api_error(request: Request, exc: _APIError) -> JSONResponse:
    return exc.response()


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return _APIError(400, f"the request body is not valid JSON ({detail}); send a JSON object.").response()
    problems = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"`{loc}`: {e.get('msg')}" if loc else str(e.get("msg")))
    first = errors[0].get("loc", ()) if errors else ()
    param = ".".join(str(p) for p in first if p not in ("body", "query", "path")) or None
    return _APIError(422, "invalid request: " + "; ".join(problems), param=param).response()


def _bug(exc: Exception) -> _APIError:
    """A bug, not a run's failure (those are replies), in OpenAI's shape all the same."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return _APIError(500, f"planweave failed: {type(exc).__name__}: {exc}", type_="server_error")


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    return _bug(exc).response()  # Starlette logs the exception


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path}); see `docs/chat-endpoint.md` for the endpoints."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return _APIError(exc.status_code, message, headers=dict(exc.headers or {})).response()


# --- running the server ------------------------------------------------------------------------


def serve(
    planner: Planner,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    log_level: str = "info",
    on_start: Callable[[str], object] | None = None,
) -> None:
    """Serve `planner` over HTTP until interrupted. On SIGINT or SIGTERM it stops accepting
    connections, gives running runs `config.shutdown_grace_s`, then records them `interrupted`
    (resumable) and ends each client's stream with an error event.

    `on_start` is called with the API's base URL (`http://HOST:PORT/v1`) once the port is bound;
    `/health` answers from then on, while the app is built and the model libraries load.
    Raises `ConfigError` when `host` is not a loopback address and no API key is configured,
    `PortInUseError` (a `ConfigError`) when the port is taken, and what building the app raised
    (a broken run store, say) after stopping the server.
    """
    config = config or ServerConfig()
    run_server(
        lambda: start_app(planner, config), host=host, port=port, api_key=config.api_key, log_level=log_level,
        on_start=on_start, shutdown_grace_s=config.shutdown_grace_s,
    )


def start_app(planner: Planner, config: ServerConfig) -> FastAPI:
    """`create_app`, and the model libraries loading already (`run_server` runs no lifespan of this app)."""
    app = create_app(planner, config)
    _MODEL_LIBRARIES.start()
    return app
