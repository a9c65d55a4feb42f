"""The planner: an LLM plans graphs of tool calls that the executor runs as they stream in.

Importing this package is cheap: the names below are loaded on first use (so `planweave
--help` imports neither the executor nor litellm), and litellm on the first model call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planweave.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from planweave.planner.budget import Budget
    from planweave.planner.core import Planner
    from planweave.planner.errors import BudgetExceededError, ConfigError, LLMError, PlanningError
    from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
    from planweave.planner.llm import LLMCall, Usage
    from planweave.planner.llm_tool import llm_tool
    from planweave.planner.models import JoinDecision, PlannedStep, PlanUpdate
    from planweave.planner.result import PlannerResult, PlannerStatus
    from planweave.planner.resuming import ResumeOverrides, resume_run
    from planweave.planner.worker import Worker, WorkerEvent, WorkerStats, enqueue_workflow

_WHERE = {
    "Budget": "planweave.planner.budget",
    "Planner": "planweave.planner.core",
    "PlannerResult": "planweave.planner.result",
    "PlannerStatus": "planweave.planner.result",
    "BudgetExceededError": "planweave.planner.errors",
    "ConfigError": "planweave.planner.errors",
    "LLMError": "planweave.planner.errors",
    "PlanningError": "planweave.planner.errors",
    "AnswerDelta": "planweave.planner.events",
    "Decision": "planweave.planner.events",
    "LLMCalled": "planweave.planner.events",
    "PlannerFinished": "planweave.planner.events",
    "PlanRejected": "planweave.planner.events",
    "PlanUpdated": "planweave.planner.events",
    "LLMCall": "planweave.planner.llm",
    "Usage": "planweave.planner.llm",
    "llm_tool": "planweave.planner.llm_tool",
    "JoinDecision": "planweave.planner.models",
    "PlannedStep": "planweave.planner.models",
    "PlanUpdate": "planweave.planner.models",
    "ResumeOverrides": "planweave.planner.resuming",
    "resume_run": "planweave.planner.resuming",
    "Worker": "planweave.planner.worker",
    "WorkerEvent": "planweave.planner.worker",
    "WorkerStats": "planweave.planner.worker",
    "enqueue_workflow": "planweave.planner.worker",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
