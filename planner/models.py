"""What the model is asked to produce: plan updates and join decisions (pydantic, for instructor)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planweave.executor.plan import RetryPolicy
from planweave.planner.streaming import MAX_DEPTH, MAX_STEPS, nesting_depth

__all__ = ["DEFAULT_STEP_RETRY", "JoinDecision", "PlanUpdate", "PlannedStep"]

DEFAULT_STEP_RETRY = RetryPolicy.exponential(
    max_attempts=3,
    initial_delay_s=0.5,
    backoff_factor=2.0,
    max_delay_s=4.0,
    retry_on=["ConnectionError", "TimeoutError", "TransportError", "ToolError"],
)
"""How a planned step is retried unless the model (or `Planner(step_retry=...)`) says otherwise:
3 attempts, 0.5 s then 1 s apart, for transient errors only. Those are connection failures and
timeouts (Python's, httpx's `TransportError`) and a tool's `ToolError` that is not `permanent`
(an HTTP 429 or 5xx, a step timeout); a permanent error (a missing file, a refused URL, `1/0`,
bad arguments) or any other exception fails at once, as trying again cannot help."""


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
    # Attempts only, not a whole `RetryPolicy`: the schema is in every plan request, and which
    # errors are transient is the tools' knowledge, not the model's.
    retry: int | None = Field(
        None,
        ge=1,
        le=10,
        description="Attempts on transient errors, if not 3; 1 for a step that must not run twice.",
    )

    @field_validator("args")
    @classmethod
    def _flat_enough(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The model's output is untrusted: deep nesting would only exhaust the stack downstream.
        if nesting_depth(value, MAX_DEPTH) > MAX_DEPTH:
            raise ValueError(f"`args` nests lists or objects more than {MAX_DEPTH} levels deep; use flat arguments")
        return value

    def retry_policy(self, default: RetryPolicy) -> RetryPolicy:
        """`default`, with the model's number of attempts when it set one."""
        if self.retry is None:
            return default
        return default.model_copy(update={"max_attempts": self.retry})

    @model_validator(mode="before")
    @classmethod
    def _compact(cls, data: Any) -> Any:
        """`[id, tool, args]` / `[id, tool, args, depends_on]` -> the object form."""
        if isinstance(data, (list, tuple)):
            if not 2 <= len(data) <= 4:
                raise ValueError(
                    "a compact step is `[id, tool, args]` or `[id, tool, args, depends_on]`; "
                    f"this one has {len(data)} items"
                )
            return dict(zip(("id", "tool", "args", "depends_on"), data, strict=False))
        return data


CompactStep = tuple[str, str, dict[str, Any]] | tuple[str, str, dict[str, Any], list[str]]
"""A plain step written short: `[id, tool, args]`, or `[id, tool, args, depends_on]`.

Every step's framing (`{"id": ..., "tool": ..., "args": {...}}`) costs about 16 tokens the
model must stream before the step can start; this form halves that (LLMCompiler's plans
are terse for the same reason)."""


class PlanUpdate(BaseModel):
    """The next steps of the plan (then a one-sentence rationale), or the final answer when no more tools are needed.

    Steps come first so the first one can start after a few tokens; each is an object or the
    compact `[id, tool, args]` form."""

    steps: list[CompactStep | PlannedStep] = Field(
        default_factory=list,
        description="Steps in dependency order: `[id, tool, args]` (or `[id, tool, args, depends_on]`), "
        "or an object when a step needs `when`, `for_each` or `description`.",
    )
    rationale: str = Field("", description="One short sentence: why these steps.")
    answer: str | None = Field(None, description="The final answer, only when no steps are needed.")

    @field_validator("steps", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_STEPS:
            raise ValueError(f"the plan has {len(value):,} steps; the limit is {MAX_STEPS:,}: plan fewer steps")
        return value

    def planned(self) -> list[PlannedStep]:
        """Every step as a `PlannedStep`."""
        return [s if isinstance(s, PlannedStep) else PlannedStep.model_validate(s) for s in self.steps]


class JoinDecision(BaseModel):
    """After a round of steps: finish with the answer, or replan."""

    action: Literal["finish", "replan"]
    answer: str | None = Field(None, description="The final answer, when action is finish.")
    reason: str = Field("", description="Why more steps are needed, when action is replan.")
