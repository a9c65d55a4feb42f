"""The planner: an LLM plans graphs of tool calls that the executor runs as they stream in.

Importing this package is cheap: litellm is imported on the first model call.
"""

from planner.core import Budget, Planner, PlannerResult, PlannerStatus
from planner.errors import BudgetExceededError, ConfigError, LLMError, PlanningError
from planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
from planner.llm import LLMCall, Usage
from planner.models import JoinDecision, PlannedStep, PlanUpdate

__all__ = [
    "AnswerDelta",
    "Budget",
    "BudgetExceededError",
    "ConfigError",
    "Decision",
    "JoinDecision",
    "LLMCall",
    "LLMCalled",
    "LLMError",
    "PlanRejected",
    "PlanUpdate",
    "PlanUpdated",
    "PlannedStep",
    "Planner",
    "PlannerFinished",
    "PlannerResult",
    "PlannerStatus",
    "PlanningError",
    "Usage",
]
