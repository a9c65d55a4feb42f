"""What the model is asked to produce: plan updates and join decisions (pydantic, for instructor)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JoinDecision", "PlanUpdate", "PlannedStep"]


class PlannedStep(BaseModel):
    """A step as the model writes it (the executor's `Step`, minus what only humans set)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Short unique slug, e.g. `fetch_docs`.")
    tool: str = Field(description="Name of one of the tools.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments; may use ${step_id} references.")
    depends_on: list[str] = Field(default_factory=list)
    description: str = ""
    when: str | None = None
    for_each: str | None = None


class PlanUpdate(BaseModel):
    """The next steps of the plan, or the final answer when no more tools are needed."""

    rationale: str = Field(description="One short sentence: why these steps.")
    steps: list[PlannedStep] = Field(default_factory=list)
    answer: str | None = Field(None, description="The final answer, only when no steps are needed.")


class JoinDecision(BaseModel):
    """After a round of steps: finish with the answer, or replan."""

    action: Literal["finish", "replan"]
    answer: str | None = Field(None, description="The final answer, when action is finish.")
    reason: str = Field("", description="Why more steps are needed, when action is replan.")
