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

This module is the HTTP side: settings, request bodies, routes and running the server. Beside it:
`_runs` admits, drives and interrupts runs; `_replies` answers chat completions and streams runs'
events; `_errors` puts every error in OpenAI's shape; `_guard` checks keys, hosts and origins;
`_launch` binds the port and builds the app; `services` runs the take-over loop; how a
conversation becomes a goal and a run becomes a chat reply is `planweave.planner.serve.chat`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse

from planweave.executor.store import RunStore, StoreError
from planweave.planner.core import Planner
from planweave.planner.serve._errors import APIError, hide_machine_paths, hide_path, hide_paths, install_error_handlers
from planweave.planner.serve._guard import (
    ALLOWED_HOSTS_ENV, API_KEY_ENV, Guard, check_allowed_hosts, check_api_key, check_cors_origins,
)
from planweave.planner.serve._launch import DEFAULT_SHUTDOWN_GRACE_S, PortInUseError, bind, run_server
from planweave.planner.serve._replies import (
    chat_completion, check_model, event_stream, follow_stream, json_text, last_event_id, prepend, stream_grace,
)
from planweave.planner.serve._runs import MODEL_LIBRARIES, AdmittedStream, Runs
from planweave.planner.serve.chat import ChatMessage, ReasoningFormat
from planweave.planner.serve.ops import METRICS_CONTENT_TYPE, Readiness

__all__ = [
    "ChatMessage", "ChatRequest", "PortInUseError", "ReasoningFormat", "RunRequest", "ServerConfig", "bind", "create_app",
    "serve",
]

log = logging.getLogger("planweave.server")

_MODEL_LIBRARIES = MODEL_LIBRARIES
"""The process's one load of the model libraries (`_runs.MODEL_LIBRARIES`; tests await it)."""


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



# --- the app -----------------------------------------------------------------------------------


def create_app(planner: Planner, config: ServerConfig | None = None) -> FastAPI:
    """The ASGI app serving `planner`. Run it with any ASGI server, or use `serve`."""
    config = config or ServerConfig()
    _ = planner.store  # open it now: a broken store fails at start, not on the first request
    # The runs it starts may be taken over by any replica or worker once their owner dies.
    planner = copy.copy(planner)
    planner.meta = {**planner.meta, "takeover": True}
    runs = Runs(planner, config)
    readiness = Readiness(planner.store, runs.metrics, stopping=lambda: runs.stopping)
    hide_machine_paths()
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
    install_error_handlers(app)

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
            raise APIError(503, f"the run store failed: {exc}", code="store_unavailable", type_="server_error") from exc
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        check_model(model_id, config, param=None)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        return await chat_completion(runs, body, request)

    @app.post("/v1/runs")
    async def start_run(body: RunRequest) -> Response:
        if not body.goal.strip():
            raise APIError(400, "the goal is empty; say what you want done.", param="goal")
        slot = runs.admit()
        stream = event_stream(runs, body.goal, slot.run_id, body.inputs)
        try:
            # The response (and its run id) starts once the run's first event is out, which the
            # run's recorder saw first: by then any replica can find and follow the run.
            first = await anext(stream)
        except BaseException:
            await stream.aclose()
            slot.release()
            raise
        return AdmittedStream(
            prepend(first, stream), slot, {"X-Planweave-Run-Id": slot.run_id}, grace_s=stream_grace(config)
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
            raise APIError(404, str(exc), code="run_not_found", param="run_id") from exc
        return Response(json_text(exported), media_type="application/json")

    @app.get("/v1/runs/{run_id}/events")
    async def follow_run(run_id: str, request: Request) -> Response:
        store = _store(planner)
        try:
            summary = await runs.metrics.timed("follow", store.summary, run_id)
        except StoreError as exc:
            raise APIError(404, str(exc), code="run_not_found", param="run_id") from exc
        after = last_event_id(request.headers.get("last-event-id"))
        return EventSourceResponse(
            follow_stream(runs, store, summary.id, after), headers={"X-Planweave-Run-Id": summary.id}, sep="\n",
            ping=15, shutdown_grace_period=stream_grace(config),
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




def _store(planner: Planner) -> RunStore:
    store = planner.store
    if store is None:
        raise APIError(404, "this server records no runs (its planner has `store=False`).", code="run_not_found")
    return store



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
    MODEL_LIBRARIES.start()
    return app
