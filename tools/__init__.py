"""Tools: what planweave steps call. The bottom layer: imports nothing from `executor` or `planner`.

Every name below is imported on first use (the built-in tools import httpx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planweave.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from planweave.tools.base import (
        Tool as Tool,
        ToolContext as ToolContext,
        ToolProgress as ToolProgress,
        ToolRegistry as ToolRegistry,
        format_validation_error as format_validation_error,
        tool as tool,
    )
    from planweave.tools.mcp import (
        MCPServer as MCPServer,
        connect_mcp as connect_mcp,
        load_mcp_config as load_mcp_config,
    )
    from planweave.tools.ask import (
        ask_user as ask_user,
    )
    from planweave.tools.builtin import (
        builtin_tools as builtin_tools,
    )
    from planweave.tools.errors import (
        ConfigError as ConfigError,
        MCPConfigError as MCPConfigError,
        MCPConnectionError as MCPConnectionError,
        MCPStartError as MCPStartError,
        MCPToolError as MCPToolError,
        PlanweaveError as PlanweaveError,
        RuntimeFailure as RuntimeFailure,
        SetupError as SetupError,
        ToolArgumentsError as ToolArgumentsError,
        ToolDefinitionError as ToolDefinitionError,
        ToolError as ToolError,
        ToolNotFoundError as ToolNotFoundError,
        ToolOutputError as ToolOutputError,
        ToolRefusedError as ToolRefusedError,
    )

_WHERE = {
    "Tool": "planweave.tools.base",
    "ToolContext": "planweave.tools.base",
    "ToolProgress": "planweave.tools.base",
    "MCPServer": "planweave.tools.mcp",
    "connect_mcp": "planweave.tools.mcp",
    "load_mcp_config": "planweave.tools.mcp",
    "MCPConfigError": "planweave.tools.errors",
    "MCPConnectionError": "planweave.tools.errors",
    "MCPStartError": "planweave.tools.errors",
    "MCPToolError": "planweave.tools.errors",
    "ToolRegistry": "planweave.tools.base",
    "format_validation_error": "planweave.tools.base",
    "tool": "planweave.tools.base",
    "builtin_tools": "planweave.tools.builtin",
    "ask_user": "planweave.tools.ask",
    "ConfigError": "planweave.tools.errors",
    "PlanweaveError": "planweave.tools.errors",
    "RuntimeFailure": "planweave.tools.errors",
    "SetupError": "planweave.tools.errors",
    "ToolArgumentsError": "planweave.tools.errors",
    "ToolDefinitionError": "planweave.tools.errors",
    "ToolError": "planweave.tools.errors",
    "ToolNotFoundError": "planweave.tools.errors",
    "ToolOutputError": "planweave.tools.errors",
    "ToolRefusedError": "planweave.tools.errors",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
