"""What a planner run returns: `PlannerResult`, with its `PlannerStatus`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from planweave.executor.result import BaseResult
from planweave.planner.llm import Usage
from planweave.tools.errors import PlanweaveError

__all__ = ["PlannerResult", "PlannerStatus"]

PlannerStatus = Literal["succeeded", "partial", "waiting", "failed", "budget_exceeded", "cancelled"]
"""How a planner run ended.

- `waiting`: everything left to do waits on people (`requests` says what each step asks): the
  run stopped there, recorded, and continues with `Planner.respond` (any process, any time).

- `succeeded`: the model gave its answer and every step that ran succeeded.
- `partial`: the model gave an answer, but at least one step failed on the way (the answer may
  be built around it); `failed_steps` names them, `error` says what the first one said. Not
  `ok`: the CLI exits 1 unless given `--allow-failed-steps`.
- `failed`: no answer: the model's plan or decision stayed invalid (an empty plan with no
  answer included) after its re-asks, or a model call failed for good; `error` says why.
- `budget_exceeded`: a budget stopped the run (`budget` names which); `answer` holds what was
  done so far.
- `cancelled`: the run was cancelled from outside (recorded in the run store; `Planner.run`
  raises `asyncio.CancelledError` instead of returning).
"""


class PlannerResult(BaseResult):
    """What `Planner.run`, `Planner.resume` and `Planner.plan` return."""

    status: PlannerStatus
    goal: str
    answer: str | None = None
    budget: str | None = None
    """Which budget stopped the run, when `status` is `budget_exceeded`."""
    rounds: int = 0
    replans: int = 0
    usage: Usage = Field(default_factory=Usage)
    llm_calls: list[dict[str, Any]] = Field(default_factory=list)
    prompts: dict[str, dict[str, str]] = Field(default_factory=dict)
    trace_id: str | None = None
    """The run's Langfuse trace, when tracing is on."""
    trace_url: str | None = None
    """Where to see that trace (the Langfuse host's `/trace/ID` link)."""

    def _status_error(self) -> PlanweaveError:
        if self.status == "budget_exceeded":
            from planweave.planner.errors import BudgetExceededError

            return BudgetExceededError(
                self.budget or "unknown", message=self.error or f"run `{self.run_id}` hit its budget"
            )
        return super()._status_error()
