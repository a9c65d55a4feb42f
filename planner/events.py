"""The planner's own events, alongside the executor's (same base, same bus).

Each class is registered with the executor (`register_event_type`) so a stored run's events
read back as these classes, and says what it adds to the run's stored summary
(`summary_update`): the executor's store names none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from planweave.executor.events import RunEvent, SummaryUpdate, register_event_type

__all__ = ["AnswerDelta", "Decision", "LLMCallStarted", "LLMCalled", "PlanRejected", "PlanUpdated", "PlannerFinished"]


@dataclass(slots=True, kw_only=True)
class PlanUpdated(RunEvent):
    """A planning round produced steps (all of them already submitted to the executor)."""

    kind: ClassVar[str] = "plan_updated"
    round: int
    rationale: str
    step_ids: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class PlanRejected(RunEvent):
    """The model's plan had problems; it is re-asked with them (`reask` counts from 1)."""

    kind: ClassVar[str] = "plan_rejected"
    round: int
    reask: int
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class LLMCallStarted(RunEvent):
    """A request is about to be sent to a model provider (recorded before it is sent).

    It counts the request at once, so a request cut off by a crash is still counted and shows
    in the run; its `LLMCalled` (same `call_id`) brings the tokens, cost and output."""

    kind: ClassVar[str] = "llm_call_started"
    call_id: str
    purpose: str
    model: str
    attempt: int = 1
    """Which try this request is for its model (2 and up: transient retries)."""
    reask: int = 0
    """0 for the first ask; n for the n-th re-ask after invalid output."""
    prompt: dict[str, str] = field(default_factory=dict)

    def summary_update(self) -> SummaryUpdate:
        return SummaryUpdate(llm_calls=1)


@dataclass(slots=True, kw_only=True)
class LLMCalled(RunEvent):
    """A request to a model provider ended (answered, failed, or cut off by a crash)."""

    kind: ClassVar[str] = "llm_called"
    purpose: str
    model: str
    prompt: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    attempts: int = 1
    reasks: int = 0
    error: str | None = None
    started_at: float = 0.0
    cached_input_tokens: int = 0
    """Of `input_tokens`, those read from the provider's prompt cache."""
    cache_write_tokens: int = 0
    """Of `input_tokens`, those written to the provider's prompt cache."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The messages sent (after the last re-ask)."""
    output: Any = None
    """What the model returned (text, or the parsed object as a dict)."""
    call_id: str = ""
    """The `LLMCallStarted` this ends ("" in runs recorded before calls were recorded at start)."""
    attempt: int = 1
    """Which try this request was for its model (as in its `LLMCallStarted`)."""
    step_id: str | None = None
    """The step whose `llm` tool made the call, when known (a workflow's `llm` steps)."""

    def summary_update(self) -> SummaryUpdate:
        cost = self.cost_usd
        if cost is None and self.error and not self.input_tokens:
            cost = 0.0  # a call that failed before the provider billed anything
        return SummaryUpdate(
            llm_calls=0 if self.call_id else 1,  # counted by its `LLMCallStarted`
            input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost_usd=cost,
        )


@dataclass(slots=True, kw_only=True)
class Decision(RunEvent):
    """What the planner decided: `finish`, `replan`, `budget_stop`, `cancel` or `resume`."""

    kind: ClassVar[str] = "decision"
    action: str
    round: int
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class AnswerDelta(RunEvent):
    """The next piece of the answer as the model writes it. `reset`: forget the text so far
    (the model's decision was invalid and is asked again)."""

    kind: ClassVar[str] = "answer_delta"
    text: str
    reset: bool = False


@dataclass(slots=True, kw_only=True)
class PlannerFinished(RunEvent):
    kind: ClassVar[str] = "planner_finished"
    status: str
    answer: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    def summary_update(self) -> SummaryUpdate:
        return SummaryUpdate(status=self.status, answer=self.answer)


for _cls in (PlanUpdated, PlanRejected, LLMCallStarted, LLMCalled, Decision, AnswerDelta, PlannerFinished):
    register_event_type(_cls)
