"""A small MCP server written with the official SDK, for the tests (run over stdio as a
subprocess, or served over Streamable HTTP by `http_app`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("demo", log_level="CRITICAL")


class Sum(BaseModel):
    total: float


@server.tool()
def add(a: float, b: float) -> Sum:
    """Add two numbers."""
    return Sum(total=a + b)


@server.tool(structured_output=False)
def shout(text: str) -> str:
    """Upper-case a text (a text-only result)."""
    return text.upper()


@server.tool()
def reject(reason: str) -> str:
    """Always answers with an error result."""
    raise ToolError(f"rejected: {reason}")


@server.tool()
async def count_to(n: int, ctx: Context) -> str:
    """Count to n, reporting progress after each number."""
    for i in range(n):
        await ctx.report_progress(i + 1, n, f"counted {i + 1}")
    return f"counted to {n}"


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def crash_once(marker: str) -> str:
    """Exit the whole server the first time (when `marker` does not exist yet), answer after."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(3)
    return f"survived in {os.getpid()}"


@server.tool()
async def wait_for(path: str) -> str:
    """Wait until the file `path` exists (lets a test hold a call open)."""
    while not Path(path).exists():
        await asyncio.sleep(0.01)
    return "released"


def http_app():  # type: ignore[no-untyped-def]
    return server.streamable_http_app()


if __name__ == "__main__":
    if "--fail-at-start" in sys.argv:
        print("demo server: refusing to start", file=sys.stderr)
        sys.exit(2)
    server.run()
