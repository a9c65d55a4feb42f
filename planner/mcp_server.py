"""planweave as an MCP server: any MCP client (a desktop assistant, an editor, an agent) can hand
planweave a goal or a workflow file and read back recorded runs.

    planweave mcp                                  # stdio: the client starts it as a subprocess
    planweave mcp --http --port 8765               # Streamable HTTP at http://127.0.0.1:8765/mcp

Tools: `run_goal` (plan and run a goal), `run_workflow` (run a workflow file), `get_run` and
`list_runs` (the run store). While a run goes on, each finished step is a progress notification;
a client that cancels its request cancels the run, which is recorded as `cancelled`.

Built on the official SDK's `MCPServer`; the command line (`planweave.planner.cli.app`) only
parses flags and calls `build_server` and `serve_stdio`/`serve_http`. (This module imports the
SDK at once: the SDK reads the tools' annotations, `Context` among them, when they are declared.)
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from planweave.executor.events import RunEvent, StepAdded, StepFailed, StepSkipped, StepSucceeded
from planweave.tools.mcp import MCPServer as MCPServerConfig

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from planweave.executor.result import StepResult
    from planweave.executor.store import RunStore
    from planweave.planner.core import Planner

__all__ = ["MCPSettings", "RunReport", "StepLine", "build_server", "serve_http", "serve_stdio"]


@dataclass
class MCPSettings:
    """How `planweave mcp` plans and runs what clients ask (the `run`/`exec` flags' equivalents)."""

    model: str | None = None
    api_base: str | None = None
    tools: list[str] = field(default_factory=list)
    """Tool specs as for `--tools` (default: every built-in tool)."""
    workspace: Path = Path(".")
    allow_private_hosts: bool = False
    http_timeout_s: float = 10.0
    budget: dict[str, Any] = field(default_factory=dict)
    """Default limits of each run (`Budget` fields); a client may lower or set them per call."""
    mcp: list[MCPServerConfig] = field(default_factory=list)
    """MCP servers whose tools planweave's plans may use in turn."""
    store: RunStore | None = None
    """Where runs are recorded (default: `$PLANWEAVE_HOME/runs.db`)."""
    name: str = "mcp"


class StepLine(BaseModel):
    id: str
    tool: str
    status: str
    summary: str = Field(description="The output (or error), shortened.")


class RunReport(BaseModel):
    """What `run_goal` and `run_workflow` answer."""

    run_id: str
    status: str
    answer: str | None = None
    error: str | None = None
    steps: list[StepLine] = Field(default_factory=list)
    outputs: dict[str, Any] | None = Field(None, description="Every step's output (workflows only).")


def _short(value: Any, limit: int = 200) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _step_lines(steps: Mapping[str, StepResult]) -> list[StepLine]:
    return [
        StepLine(id=sid, tool=s.tool, status=s.status, summary=_short(s.error if s.error else s.output))
        for sid, s in steps.items()
    ]


class _StepProgress:
    """Sends a progress notification each time a step of the run ends."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.added = 0
        self.done = 0

    def __call__(self, event: RunEvent) -> Awaitable[None] | None:
        if isinstance(event, StepAdded):
            self.added += 1
            return None
        if isinstance(event, StepSucceeded | StepFailed | StepSkipped):
            self.done += 1
            verb = {StepSucceeded: "succeeded", StepFailed: "failed", StepSkipped: "was skipped"}[type(event)]
            return self.ctx.report_progress(self.done, max(self.added, self.done), f"step `{event.step_id}` {verb}")
        return None


def _default_store(settings: MCPSettings) -> RunStore:
    if settings.store is None:
        from planweave.executor.store import open_store

        settings.store = open_store()
    return settings.store


async def _cancellable(
    run: Callable[[str], Awaitable[Any]], store: Callable[[], RunStore | None]
) -> tuple[str, Any]:
    """Run with a fresh run id; a cancelled request marks the recorded run `cancelled`."""
    run_id = uuid.uuid4().hex[:16]
    try:
        return run_id, await run(run_id)
    except asyncio.CancelledError:
        recorded = store()
        if recorded is not None:
            recorded.set_status(run_id, "cancelled", error="cancelled by the MCP client")
        raise


def _planner(settings: MCPSettings, model: str | None, tools: list[str] | None, budget: Mapping[str, Any]) -> Planner:
    from planweave.planner.budget import Budget
    from planweave.planner.core import Planner
    from planweave.tools.builtin import select_tools

    specs = [s for spec in (tools if tools is not None else settings.tools) for s in spec.split(",") if s.strip()]
    specs = [s for s in specs if s != "llm"]  # the planner adds its own `llm` tool
    selected = select_tools(
        specs, workspace=settings.workspace, allow_private_hosts=settings.allow_private_hosts,
        http_timeout_s=settings.http_timeout_s,
    ) if specs or tools is None else []
    limits = {**settings.budget, **{k: v for k, v in budget.items() if v is not None}}
    return Planner(
        model=model or settings.model, api_base=settings.api_base, tools=selected, budget=Budget(**limits),
        store=_default_store(settings), name=settings.name, mcp=settings.mcp,
    )


def build_server(settings: MCPSettings | None = None) -> MCPServer:
    """The MCP server offering `run_goal`, `run_workflow`, `get_run` and `list_runs`."""
    from planweave.tools.errors import PlanweaveError

    settings = settings or MCPSettings()
    server: MCPServer = MCPServer(
        "planweave",
        instructions="planweave plans a goal as a graph of tool calls and runs them in parallel. "
        "Use run_goal for a task in plain words, run_workflow for a workflow file, "
        "get_run and list_runs to look at recorded runs.",
        log_level="WARNING",
    )

    @server.tool()
    async def run_goal(
        goal: str,
        ctx: Context,
        model: str | None = None,
        tools: list[str] | None = None,
        max_cost_usd: float | None = None,
        max_steps: int | None = None,
        max_llm_calls: int | None = None,
        max_seconds: float | None = None,
    ) -> RunReport:
        """Plan GOAL as a graph of tool calls and run it; returns the answer, the status, the run id
        and a short summary of every step. `tools` selects tools (built-in names); the max_*
        arguments limit the run."""
        budget = {"max_cost_usd": max_cost_usd, "max_steps": max_steps, "max_llm_calls": max_llm_calls,
                  "max_seconds": max_seconds}
        try:
            planner = _planner(settings, model, tools, budget)
            progress = _StepProgress(ctx)
            run_id, result = await _cancellable(
                lambda rid: planner.run(goal, run_id=rid, subscribers=[progress]), lambda: planner.store
            )
        except PlanweaveError as exc:
            raise ToolError(str(exc)) from exc
        return RunReport(run_id=run_id, status=result.status, answer=result.answer, error=result.error,
                         steps=_step_lines(result.steps))

    @server.tool()
    async def run_workflow(file: str, ctx: Context, inputs: dict[str, Any] | None = None) -> RunReport:
        """Run a workflow file (.yaml, .json or .py) with the built-in tools and `llm`; `inputs`
        override its default inputs. Returns the status, the run id, each step and every output."""
        from planweave.executor.workflow import load_workflow
        from planweave.planner.llm import LLMClient, LLMConfig
        from planweave.planner.prompts import PromptLibrary
        from planweave.planner.run import make_llm_tool
        from planweave.tools.builtin import select_tools

        try:
            workflow = load_workflow(file)
            if settings.mcp:
                workflow = workflow.model_copy(update={"mcp": [*workflow.mcp, *settings.mcp]})
            llm = make_llm_tool(LLMClient(LLMConfig(model=settings.model, api_base=settings.api_base)), PromptLibrary())
            tools = select_tools(
                settings.tools, workspace=settings.workspace, allow_private_hosts=settings.allow_private_hosts,
                http_timeout_s=settings.http_timeout_s, extra=[llm],
            )
            store = _default_store(settings)
            progress = _StepProgress(ctx)
            meta = {"file": str(Path(file).resolve()), "inputs": inputs or {}, "via": "mcp"}

            async def go(rid: str) -> Any:
                recorder = store.recorder(kind="workflow", name=workflow.name, meta=meta)
                return await workflow.run(tools, inputs=inputs, run_id=rid, subscribers=[recorder, progress])

            run_id, result = await _cancellable(go, lambda: store)
        except PlanweaveError as exc:
            raise ToolError(str(exc)) from exc
        return RunReport(run_id=run_id, status=result.status, error=result.error, steps=_step_lines(result.steps),
                         outputs=result.outputs)

    @server.tool()
    def get_run(run_id: str) -> dict[str, Any]:
        """A recorded run: its summary (goal, status, answer, cost) and its steps."""
        try:
            record = _default_store(settings).get_run(run_id)
        except PlanweaveError as exc:
            raise ToolError(str(exc)) from exc
        steps = {sid: {k: _short(v) if k in ("output", "error") else v for k, v in step.items()}
                 for sid, step in record.steps().items()}
        return {"summary": record.summary.model_dump(mode="json"), "steps": steps}

    @server.tool()
    def list_runs(limit: int = 20, status: str | None = None, contains: str | None = None) -> list[dict[str, Any]]:
        """Recorded runs, newest first (optionally only those with `status`, or whose goal contains a text)."""
        runs = _default_store(settings).list_runs(status=status, contains=contains, limit=max(1, min(limit, 200)))
        return [
            {"id": r.id, "kind": r.kind, "goal": r.goal, "status": r.status, "created_at": r.created_at,
             "answer": _short(r.answer) if r.answer else None}
            for r in runs
        ]

    return server


def serve_stdio(settings: MCPSettings | None = None) -> None:
    """Serve over stdin/stdout until the client closes them. The MCP servers planweave uses in
    turn start first (a bad one fails here, not at the first run) and stay up between runs."""
    import contextlib

    from planweave.tools.mcp import connect_mcp

    settings = settings or MCPSettings()

    async def main() -> None:
        async with connect_mcp(settings.mcp) if settings.mcp else contextlib.nullcontext():
            await build_server(settings).run_stdio_async()

    asyncio.run(main())


class _RequireKey:
    """Every request must carry `Authorization: Bearer KEY` (as `planweave serve` asks)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
            if not hmac.compare_digest(given, self.key):
                from starlette.responses import JSONResponse

                reason = "no API key: send" if not given else "wrong API key: send"
                response = JSONResponse(
                    {"error": f"{reason} `Authorization: Bearer <key>` with the key planweave mcp was started with"},
                    status_code=401,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def serve_http(
    settings: MCPSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str | None = None,
    log_level: str = "warning",
    on_start: Callable[[str], object] | None = None,
) -> None:
    """Serve over Streamable HTTP at `/mcp`: loopback unless an API key guards it, like `planweave serve`."""
    import uvicorn

    from planweave.planner.serve._launch import bind, check_exposure

    check_exposure(host, api_key)
    app: ASGIApp = build_server(settings).streamable_http_app(host=host)
    if api_key:
        app = _RequireKey(app, api_key)
    sock = bind(host, port)
    with sock:
        sock.listen(2048)  # a client told the URL may connect before uvicorn starts: it waits, not refused
        if on_start is not None:
            on_start(f"http://{host}:{sock.getsockname()[1]}/mcp")
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass

