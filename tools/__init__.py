"""Tools: what planweave steps call. The bottom layer: imports nothing from `executor` or `planner`."""

from planweave.tools.base import Tool, ToolContext, ToolRegistry, format_validation_error, tool
from planweave.tools.builtin import builtin_tools
from planweave.tools.errors import (
    ConfigError,
    PlanweaveError,
    RuntimeFailure,
    SetupError,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolError,
    ToolNotFoundError,
    ToolOutputError,
    ToolRefusedError,
)

__all__ = [
    "ConfigError",
    "PlanweaveError",
    "RuntimeFailure",
    "SetupError",
    "Tool",
    "ToolArgumentsError",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolNotFoundError",
    "ToolOutputError",
    "ToolRefusedError",
    "ToolRegistry",
    "builtin_tools",
    "format_validation_error",
    "tool",
]
