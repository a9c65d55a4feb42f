"""The planner: an LLM plans graphs of tool calls that the executor runs as they stream in.

Importing this package is cheap: the names below are loaded on first use (so `planweave
--help` imports neither the executor nor litellm), and litellm on the first model call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.budget import Budget
    from planner.core import Planner
    from planner.errors import BudgetExceededError, ConfigError, LLMError, PlanningError
    from planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
    from planner.llm import LLMCall, Usage
    from planner.models import JoinDecision, PlannedStep, PlanUpdate
    from planner.result import PlannerResult, PlannerStatus

_WHERE = {
    "Budget": "planner.budget",
    "Planner": "planner.core",
    "PlannerResult": "planner.result",
    "PlannerStatus": "planner.result",
    "BudgetExceededError": "planner.errors",
    "ConfigError": "planner.errors",
    "LLMError": "planner.errors",
    "PlanningError": "planner.errors",
    "AnswerDelta": "planner.events",
    "Decision": "planner.events",
    "LLMCalled": "planner.events",
    "PlannerFinished": "planner.events",
    "PlanRejected": "planner.events",
    "PlanUpdated": "planner.events",
    "LLMCall": "planner.llm",
    "Usage": "planner.llm",
    "JoinDecision": "planner.models",
    "PlannedStep": "planner.models",
    "PlanUpdate": "planner.models",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module `planner` has no attribute `{name}`")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
