"""planweave: an LLM plans a graph of tool calls; a parallel executor runs it as it streams in.

    from planweave import Planner, tool

    result = Planner(tools=[...]).run_sync("what is 17 * 23?")
    print(result.status, result.answer)

The public API. Everything here is loaded on first use, so `import planweave` (and
`planweave --help`) imports neither the executor's graph library nor litellm.

The layers, one import path each: `planweave.planner` decides, `planweave.executor`
runs, `planweave.tools` acts; `planweave.prompts` holds the prompt templates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planweave.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from planweave.executor import (
        Executor,
        InputAnswer,
        InputRequest,
        Plan,
        PlanError,
        RetryPolicy,
        RunResult,
        RunStatus,
        Step,
        Workflow,
        load_workflow,
        open_store,
    )
    from planweave.planner.budget import Budget
    from planweave.planner.core import Planner
    from planweave.planner.llm_tool import llm_tool
    from planweave.planner.errors import BudgetExceededError
    from planweave.planner.result import PlannerResult
    from planweave.tools import MCPServer, PlanweaveError, Tool, ToolError, tool

__version__ = "0.1.0"

_WHERE = {
    "Budget": "planweave.planner",
    "BudgetExceededError": "planweave.planner",
    "Planner": "planweave.planner",
    "PlannerResult": "planweave.planner",
    "llm_tool": "planweave.planner",
    "Executor": "planweave.executor",
    "Plan": "planweave.executor",
    "PlanError": "planweave.executor",
    "RetryPolicy": "planweave.executor",
    "RunResult": "planweave.executor",
    "RunStatus": "planweave.executor",
    "Step": "planweave.executor",
    "Workflow": "planweave.executor",
    "load_workflow": "planweave.executor",
    "open_store": "planweave.executor",
    "MCPServer": "planweave.tools",
    "InputAnswer": "planweave.executor",
    "InputRequest": "planweave.executor",
    "PlanweaveError": "planweave.tools",
    "Tool": "planweave.tools",
    "ToolError": "planweave.tools",
    "tool": "planweave.tools",
}

__all__ = sorted([*_WHERE, "__version__"])
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
