"""Running MCP servers: one shared connection per server and process, and their tools as
planweave tools. Public names are re-exported by `planweave.tools.mcp`."""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from planweave.tools._mcp_config import _NAME_BAD, MCPServer
from planweave.tools.base import Tool, ToolContext, ToolProgress, ToolRegistry
from planweave.tools.errors import MCPConnectionError, MCPStartError, MCPToolError

if TYPE_CHECKING:
    from mcp import Client
    from mcp_types import CallToolResult, Tool as MCPToolInfo

__all__ = ["MCPConnections", "connect_mcp", "mcp_tools_into", "result_output"]

log = logging.getLogger("planweave.mcp")


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the exception groups anyio's task groups wrap errors in."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _why(exc: BaseException) -> str:
    leaf = _leaf(exc)
    return f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__


class _Session:
    """One connection to a server: a task that holds the SDK client open until told to stop.

    The SDK's client lives in anyio task groups, which must be entered and left by the same
    task; so one task owns it, and calls from any run's task go through it concurrently.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.client: Client | None = None
        self.tools: list[MCPToolInfo] = []
        self.server_name = ""
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and self.client is not None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._own(), name=f"mcp-server-{self.server.label}")
        try:
            async with asyncio.timeout(self.server.start_timeout_s):
                await self._ready.wait()
        except TimeoutError:
            await self.stop()
            raise MCPStartError(self._start_message(f"no answer within {self.server.start_timeout_s:g}s"),
                                server=self.server.label) from None
        if self._error is not None:
            missing = isinstance(_leaf(self._error), FileNotFoundError)
            raise MCPStartError(self._start_message(_why(self._error), missing), server=self.server.label) from None

    def _start_message(self, why: str, missing: bool = False) -> str:
        s = self.server
        if s.url is not None:
            return (f"MCP server `{s.label}` at `{s.url}` cannot be reached ({why}); check the URL "
                    "is the server's Streamable HTTP endpoint (often ending in `/mcp`) and that it is running.")
        if missing:
            return (f"MCP server `{s.label}` (`{s.describe()}`) did not start ({why}); check `{s.command}` is "
                    "installed and on PATH, or give its full path.")
        return (f"MCP server `{s.label}` (`{s.describe()}`) did not start ({why}); check the command runs "
                "on its own and speaks MCP over stdio (its error output is above).")

    async def _own(self) -> None:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client

        s = self.server
        try:
            async with AsyncExitStack() as stack:
                if s.url is not None:
                    import httpx2

                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(headers=dict(s.headers), timeout=httpx2.Timeout(30.0, read=300.0))
                    )
                    transport: Any = streamable_http_client(s.url, http_client=http)
                else:
                    params = StdioServerParameters(command=str(s.command), args=list(s.args), env=dict(s.env) or None, cwd=s.cwd)
                    transport = stdio_client(params, errlog=sys.stderr)
                client = await stack.enter_async_context(Client(transport))
                self.tools = await self._list_tools(client)
                info = client.server_info
                self.server_name = info.name if info is not None else ""
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported by `start`, or seen as a dead session
            if not self._ready.is_set():
                self._error = exc
            else:
                log.warning("MCP server `%s` connection ended: %s", s.label, _why(exc))
        finally:
            self.client = None
            self._ready.set()

    @staticmethod
    async def _list_tools(client: Client) -> list[MCPToolInfo]:
        tools: list[MCPToolInfo] = []
        cursor: str | None = None
        for _ in range(100):  # a server whose pages never end cannot hang the start
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def stop(self) -> None:
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            # The SDK closes a stdio server politely (stdin, then SIGTERM, then SIGKILL, each
            # bounded); past that, cancel the owner task rather than wait on a stuck server.
            done, _ = await asyncio.wait({task}, timeout=10)
            if not done:
                task.cancel()


class _Shared:
    """A server shared by every run in this process (per event loop), counted by its users."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.users = 0
        self.session: _Session | None = None
        self.restarts = 0
        self._lock = asyncio.Lock()
        self.made: dict[tuple[str, str], tuple[MCPToolInfo, Tool]] = {}
        """Tools built from the session's listing, by (remote name, name): building one compiles its
        schema, so every run joining the server reuses them (rebuilt when a restart relists)."""

    def tool(self, prefix: str, info: MCPToolInfo, taken: set[str]) -> Tool:
        name = _free_name(prefix, info, taken)
        cached = self.made.get((info.name, name))
        if cached is not None and cached[0] is info:
            return cached[1]
        made = _make_tool(self.server, name, prefix, info)
        self.made[(info.name, name)] = (info, made)
        return made

    @property
    def label(self) -> str:
        """The configured name, else the name the server gives itself, else `MCPServer.label`."""
        own = self.session.server_name if self.session is not None else ""
        return self.server.name or _NAME_BAD.sub("_", own) or self.server.label

    async def current(self) -> _Session:
        """The live session, starting (or restarting) one when there is none."""
        async with self._lock:
            if self.session is None or not self.session.alive:
                if self.session is not None:
                    await self.session.stop()
                session = _Session(self.server)
                await session.start()
                self.session = session
            return self.session

    async def restart_after(self, dead: _Session) -> str:
        """Start a stdio server again (reconnect to a URL) after `dead` lost its connection:
        once, however many calls saw it go. Says what happened, for the message."""
        verb = "restart" if self.server.command is not None else "reconnect"
        async with self._lock:
            if self.session is not dead and self.session is not None and self.session.alive:
                return f"another call already {verb}ed it"
            await dead.stop()
            self.session = None
            try:
                session = _Session(self.server)
                await session.start()
            except MCPStartError as exc:
                return f"{verb}ing failed too: {exc}"
            self.session = session
            self.restarts += 1
            log.warning("MCP server `%s` lost its connection; %sed it (%d so far)", self.label, verb, self.restarts)
            return f"it was {verb}ed"

    async def close(self) -> None:
        async with self._lock:
            if self.session is not None:
                await self.session.stop()
                self.session = None


_POOL: dict[tuple[int, str], _Shared] = {}


def _pool_key(server: MCPServer) -> tuple[int, str]:
    return id(asyncio.get_running_loop()), server.key


def _text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "type", "") == "text")


def result_output(result: CallToolResult) -> Any:
    """A successful call's step output: `structuredContent`, else the text (one string), else
    the content blocks as JSON (images, resources)."""
    if result.structured_content is not None:
        return result.structured_content
    blocks = result.content
    if all(getattr(b, "type", "") == "text" for b in blocks):
        return _text(result) if blocks else None
    return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]


async def _call(
    server: MCPServer, remote_name: str, tool_name: str, args: dict[str, Any], ctx: ToolContext
) -> Any:
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND

    shared = _POOL.get(_pool_key(server))
    if shared is None or shared.users == 0:
        raise MCPConnectionError(
            f"tool `{tool_name}` needs MCP server `{server.label}`, which is not connected; "
            "use it inside `async with connect_mcp(...)` (or a planner/executor given `mcp=`).",
            server=server.label, tool=tool_name,
        )
    session = await shared.current()
    label = shared.label
    client = session.client
    if client is None:  # died between the check and now
        raise MCPConnectionError(f"MCP server `{label}` went away before `{tool_name}` was called; try again.",
                                 server=label, tool=tool_name)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        ctx.progress(progress, total, message)

    try:
        result = await client.call_tool(
            remote_name, args, read_timeout_seconds=server.call_timeout_s, progress_callback=on_progress
        )
    except MCPError as exc:
        if exc.code in (INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND):
            raise MCPToolError(
                f"MCP server `{label}` refused `{remote_name}`: {exc.message}; fix the arguments or the tool name.",
                server=label, tool=tool_name,
            ) from None
        if exc.code == CONNECTION_CLOSED:
            outcome = await shared.restart_after(session)
            what = "exited during" if server.command is not None else "closed the connection during"
            message = f"MCP server `{label}` {what} `{remote_name}` (it crashed); {outcome.rstrip('.')}."
            if ctx.report is not None:
                ctx.report(ToolProgress("notice", message=message))
            raise MCPConnectionError(message + " The call can be tried again.", server=label, tool=tool_name) from None
        raise MCPConnectionError(
            f"the call of `{remote_name}` on MCP server `{label}` failed ({exc.message}); it can be tried again.",
            server=label, tool=tool_name,
        ) from None
    except Exception as exc:  # the transport's own errors (closed streams, HTTP failures): transient
        raise MCPConnectionError(
            f"the connection to MCP server `{label}` broke during `{remote_name}` ({_why(exc)}); "
            "it can be tried again.",
            server=label, tool=tool_name,
        ) from exc
    if result.is_error:
        text = _text(result) or "no details given"
        raise MCPToolError(
            f"MCP tool `{remote_name}` of server `{label}` reported an error: {text}",
            server=label, tool=tool_name,
        )
    return result_output(result)


def _tool_name(raw: str) -> str:
    name = _NAME_BAD.sub("_", raw)[:64]
    return name if name and not name[0].isdigit() and name[0] != "-" else f"_{name}"[:64]


def _free_name(prefix: str, info: MCPToolInfo, taken: set[str]) -> str:
    """The tool's own name, or with its server's name in front when the name is taken."""
    name = _tool_name(info.name)
    return _tool_name(f"{prefix}_{info.name}") if name in taken else name


def _make_tool(server: MCPServer, name: str, prefix: str, info: MCPToolInfo) -> Tool:
    remote = info.name

    async def call(args: dict[str, Any], ctx: ToolContext) -> Any:
        return await _call(server, remote, name, args, ctx)

    description = info.description or info.title or f"`{remote}` from MCP server `{prefix}`"
    made = Tool.from_schema(name, description, info.input_schema, call, output_schema=info.output_schema)
    _MCP_TOOLS.add(made)
    return made


_MCP_TOOLS: weakref.WeakSet[Tool] = weakref.WeakSet()
"""Tools made from MCP servers: a registry's own names are the others'."""


class MCPConnections:
    """The servers one planner, executor or run uses, and the tools they offer.

    Use `connect_mcp` (an async context manager): it starts the servers not yet running in
    this process, lists their tools, and on exit stops those nobody else uses.
    """

    def __init__(self, servers: Sequence[MCPServer], shared: list[_Shared], taken: Iterable[str]) -> None:
        self.servers = list(servers)
        self._shared = shared
        self.tools: list[Tool] = []
        names = set(taken)
        for server, entry in zip(servers, shared, strict=True):
            session = entry.session
            infos = session.tools if session is not None else []
            prefix = _tool_name(server.name or (session.server_name if session else "") or server.label)
            for info in infos:
                t = entry.tool(prefix, info, names)
                names.add(t.name)
                self.tools.append(t)

    def restarts(self, server: MCPServer) -> int:
        """How often `server` was restarted after a crash (in this process)."""
        return sum(e.restarts for s, e in zip(self.servers, self._shared, strict=True) if s.key == server.key)


@asynccontextmanager
async def connect_mcp(
    servers: Iterable[MCPServer | str], *, taken: Iterable[str] = ()
) -> AsyncIterator[MCPConnections]:
    """Start (or join) `servers` and yield their tools; `taken` are names already in use (a
    tool whose name is taken gets its server's name as a prefix)."""
    resolved = [s if isinstance(s, MCPServer) else MCPServer.parse(s) for s in servers]
    joined: list[_Shared] = []
    try:
        for server in resolved:
            key = _pool_key(server)
            entry = _POOL.get(key)
            if entry is None:
                entry = _POOL[key] = _Shared(server)
            entry.users += 1
            joined.append(entry)
            await entry.current()
        yield MCPConnections(resolved, joined, taken)
    finally:
        for entry in joined:
            entry.users -= 1
            if entry.users == 0:
                key = _pool_key(entry.server)
                if _POOL.get(key) is entry:
                    del _POOL[key]
                await entry.close()


@asynccontextmanager
async def mcp_tools_into(registry: ToolRegistry, servers: Iterable[MCPServer | str]) -> AsyncIterator[MCPConnections]:
    """`connect_mcp`, registering the servers' tools in `registry` (replacing the same servers'
    tools from an earlier connection; a name the registry's own tools use gets a prefix)."""
    own = [t.name for t in registry if t not in _MCP_TOOLS]
    async with connect_mcp(servers, taken=own) as connections:
        for t in connections.tools:
            registry.register(t, replace=True)
        yield connections
