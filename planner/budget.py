"""The limits of one planner run (`Budget`) and the checks that stop it cleanly when one is hit.

A check raises `BudgetExceededError`; the run catches it, cancels its steps and ends with status
`budget_exceeded` and a best-effort answer. `max_seconds` is a timeout scope in the run itself.
Token and cost budgets are also kept *inside* each call: `LLMClient.max_tokens()` caps every
request's `max_tokens` by what the budget still allows, and a call whose prompt alone would pass
the budget is not sent. Calls made one after another therefore stay within the budget, up to how
far the provider's count of the last prompt exceeds planweave's estimate; calls made at the same
time (an `llm` step while the plan streams) are each capped by what was left when they started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from planweave.planner.errors import BudgetExceededError

if TYPE_CHECKING:
    from planweave.planner.llm import Usage

__all__ = ["Budget", "check_replans", "check_steps", "check_usage"]


class Budget(BaseModel):
    """Limits of one planner run. Hitting one stops the run cleanly with status `budget_exceeded`."""

    max_cost_usd: float | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_llm_calls: int | None = Field(30, gt=0)
    max_steps: int | None = Field(100, gt=0)
    max_replans: int | None = Field(3, ge=0)
    max_seconds: float | None = Field(None, gt=0)
    max_items_per_step: int = Field(1_000, gt=0)
    """Most items one `for_each` step may run; each item also counts against `max_steps`."""


def check_usage(budget: Budget, usage: Usage, *, before_call: bool = False) -> None:
    """Stop when the LLM calls, tokens or cost reached their budget (`before_call`: no room for one more call)."""
    u, b = usage, budget
    if b.max_llm_calls is not None and (u.llm_calls >= b.max_llm_calls if before_call else u.llm_calls > b.max_llm_calls):
        raise BudgetExceededError(
            "max_llm_calls", limit=b.max_llm_calls, used=u.llm_calls,
            message=f"the run reached its budget of {b.max_llm_calls} LLM calls",
        )
    if b.max_tokens is not None and u.total_tokens >= b.max_tokens:
        raise BudgetExceededError(
            "max_tokens", limit=b.max_tokens, used=u.total_tokens,
            message=f"the run used {u.total_tokens} tokens, over its budget of {b.max_tokens}",
        )
    if b.max_cost_usd is not None and u.cost_usd is not None and u.cost_usd >= b.max_cost_usd:
        raise BudgetExceededError(
            "max_cost_usd", limit=b.max_cost_usd, used=u.cost_usd,
            message=f"the run cost ${u.cost_usd:.4f}, over its budget of ${b.max_cost_usd:.4f}",
        )


def check_steps(budget: Budget, steps: int) -> None:
    """Stop before adding a step to a run that already has `steps`."""
    if budget.max_steps is not None and steps >= budget.max_steps:
        raise BudgetExceededError(
            "max_steps", limit=budget.max_steps, used=steps,
            message=f"the run reached its budget of {budget.max_steps} steps",
        )


def check_replans(budget: Budget, replans: int) -> None:
    """Stop when a run has replanned more often than its budget allows."""
    if budget.max_replans is not None and replans > budget.max_replans:
        raise BudgetExceededError(
            "max_replans", limit=budget.max_replans, used=replans,
            message=f"the run reached its budget of {budget.max_replans} replans",
        )
