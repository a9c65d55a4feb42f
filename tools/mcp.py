"""MCP servers as tool sources: any Model Context Protocol server's tools become planweave tools.

    from planweave.tools.mcp import MCPServer

    files = MCPServer.stdio("npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp")
    docs = MCPServer.http("http://127.0.0.1:8000/mcp", headers={"Authorization": "Bearer ..."})
    planner = Planner(mcp=[files, docs])        # or Executor(..., mcp=[...]); a workflow's `mcp:`

Each server's tools keep the server's JSON schemas (`Tool.from_schema`), so a plan's arguments are
checked before anything runs; a name two servers share (or a local tool has) is prefixed with the
server's name (`files_read`). Calls go through the official SDK (`mcp.Client`, a `ClientSession`);
a result's `structuredContent`, else its text, is the step's output. An `isError` result raises
`MCPToolError` (permanent: not retried); a broken connection raises `MCPConnectionError`
(transient: retried by the step's policy). Progress notifications become `step_progress` events.

A server is started once per process (per event loop) and shared by every run using it:
`connect_mcp` counts its users and stops it when the last one leaves. A stdio server that dies
is started again at once, and the step that saw it die is told so with a `notice` event.
"""

from planweave.tools._mcp_client import MCPConnections, connect_mcp, mcp_tools_into, result_output
from planweave.tools._mcp_config import MCPServer, load_mcp_config, parse_mcp_servers

__all__ = [
    "MCPConnections",
    "MCPServer",
    "connect_mcp",
    "load_mcp_config",
    "mcp_tools_into",
    "parse_mcp_servers",
    "result_output",
]
