"""Tools: what planweave steps call. The bottom layer: imports nothing from `executor` or `planner`.

Every name below is imported on first use, so that reading one module of this package
(the run store, for `planweave runs`) does not import all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planweave.tools.base import Tool, ToolContext, ToolRegistry, format_validation_error, tool
    from planweave.tools.builtin import builtin_tools
    from planweave.tools.errors import (
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

_WHERE = {
    "Tool": "planweave.tools.base",
    "ToolContext": "planweave.tools.base",
    "ToolRegistry": "planweave.tools.base",
    "format_validation_error": "planweave.tools.base",
    "tool": "planweave.tools.base",
    "builtin_tools": "planweave.tools.builtin",
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

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module `planweave.tools` has no attribute `{name}`")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
