"""Use an MCP server's tools from planweave: start examples/mcp_server.py over stdio, check a
plan against the server's JSON schemas, run it, and watch the server's progress reports.

The same server works from the command line:
    planweave tools --mcp "python examples/mcp_server.py"
"""

import asyncio
import sys
from pathlib import Path

from planweave import Executor, MCPServer, Step

units = MCPServer.stdio(sys.executable, str(Path(__file__).with_name("mcp_server.py")))


async def main() -> None:
    async with Executor(mcp=[units]) as executor:  # starts the server; stops it at the end
        print("tools:", ", ".join(executor.tools.names()))
        result = await executor.run(
            [
                Step(id="fever", tool="to_celsius", args={"fahrenheit": 101.3}),
                Step(id="words", tool="count_words", args={"text": "plans run in parallel"}),
            ],
            subscribers=[lambda e: print("progress:", e.message) if e.kind == "step_progress" else None],
        )
    print(result.status, result.outputs["fever"], result.outputs["words"])


asyncio.run(main())
