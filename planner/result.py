"""What a planner run returns: `PlannerResult`, with its `PlannerStatus`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from planweave.executor.result import StepResult
from planweave.planner.llm import Usage

__all__ = ["PlannerResult", "PlannerStatus"]

PlannerStatus = Literal["succeeded", "failed", "budget_exceeded", "cancelled"]


class PlannerResult(BaseModel):
    run_id: str
    goal: str
    status: PlannerStatus
    answer: str | None = None
    error: str | None = None
    budget: str | None = None
    """Which budget stopped the run, when `status` is `budget_exceeded`."""
    steps: dict[str, StepResult] = Field(default_factory=dict)
    rounds: int = 0
    replans: int = 0
    usage: Usage = Field(default_factory=Usage)
    llm_calls: list[dict[str, Any]] = Field(default_factory=list)
    prompts: dict[str, dict[str, str]] = Field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    trace_id: str | None = None
    """The run's Langfuse trace, when tracing is on."""
    trace_url: str | None = None
    """Where to see that trace (the Langfuse host's `/trace/ID` link)."""

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"
