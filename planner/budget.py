"""The limits of one planner run (`Budget`) and the checks that stop it cleanly when one is hit.

A check raises `BudgetStop`; the run catches it, cancels its steps and ends with status
`budget_exceeded` and a best-effort answer. `max_seconds` is a timeout scope in the run itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from planweave.planner.llm import Usage

__all__ = ["Budget", "BudgetStop", "check_replans", "check_steps", "check_usage"]


class Budget(BaseModel):
    """Limits of one planner run. Hitting one stops the run cleanly with status `budget_exceeded`."""

    max_cost_usd: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_llm_calls: int | None = Field(30, gt=0)
    max_steps: int | None = Field(100, gt=0)
    max_replans: int | None = Field(3, ge=0)
    max_seconds: float | None = Field(None, gt=0)


class BudgetStop(Exception):
    """A budget was hit; `budget` names which (`max_llm_calls`, `max_tokens`, ...)."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


def check_usage(budget: Budget, usage: Usage, *, before_call: bool = False) -> None:
    """Stop when the LLM calls, tokens or cost reached their budget (`before_call`: no room for one more call)."""
    u, b = usage, budget
    if b.max_llm_calls is not None and (u.llm_calls >= b.max_llm_calls if before_call else u.llm_calls > b.max_llm_calls):
        raise BudgetStop("max_llm_calls", f"the run reached its budget of {b.max_llm_calls} LLM calls")
    if b.max_tokens is not None and u.total_tokens >= b.max_tokens:
        raise BudgetStop("max_tokens", f"the run used {u.total_tokens} tokens, over its budget of {b.max_tokens}")
    if b.max_cost_usd is not None and u.cost_usd is not None and u.cost_usd >= b.max_cost_usd:
        raise BudgetStop(
            "max_cost_usd", f"the run cost ${u.cost_usd:.4f}, over its budget of ${b.max_cost_usd:.4f}"
        )


def check_steps(budget: Budget, steps: int) -> None:
    """Stop before adding a step to a run that already has `steps`."""
    if budget.max_steps is not None and steps >= budget.max_steps:
        raise BudgetStop("max_steps", f"the run reached its budget of {budget.max_steps} steps")


def check_replans(budget: Budget, replans: int) -> None:
    """Stop when a run has replanned more often than its budget allows."""
    if budget.max_replans is not None and replans > budget.max_replans:
        raise BudgetStop("max_replans", f"the run reached its budget of {budget.max_replans} replans")
