"""Errors raised by the planner. The whole tree is drawn in `planweave.tools.errors`."""

from __future__ import annotations

from planweave.tools.errors import ConfigError, RuntimeFailure

__all__ = ["BudgetExceededError", "ConfigError", "LLMError", "PlanningError"]


class LLMError(RuntimeFailure):
    """A model call failed for good: retries and fallbacks are exhausted, or the error is permanent."""

    def __init__(self, message: str, *, model: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status_code = status_code


class PlanningError(RuntimeFailure):
    """The model did not produce a valid plan within the allowed re-asks. `errors` holds the last problems."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class BudgetExceededError(RuntimeFailure):
    """A run reached one of its budgets (`budget` names which)."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget
