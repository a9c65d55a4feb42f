"""The executor's fold of a run's events (`planweave.executor.state.RunState`), extended with
what the planner's events say: planning rounds, decisions, LLM calls, usage and the answer.

    state = PlannerState.fold(events)   # or subscribe `state.apply` to a run
    state.rounds[-1].decision, state.llm_calls, state.answer

The command line's live view (`planweave.planner.cli.run_model.RunModel`) is this state plus
how to draw it; a stored planner run is resumed from it (`RunRecord.resume_state(PlannerState)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planweave.executor.events import RunEvent
from planweave.executor.state import RunState
from planweave.planner.events import (
    AnswerDelta,
    Decision,
    LLMCalled,
    LLMCallStarted,
    PlannerFinished,
    PlanRejected,
    PlanUpdated,
)

__all__ = ["PlannerState", "PlanningRound"]


@dataclass(slots=True)
class PlanningRound:
    round: int
    rationale: str
    step_ids: list[str]
    decision: str | None = None
    """What the planner decided at the end of the round (`finish`, `replan`, ...), once it has."""
    reason: str = ""


class PlannerState(RunState):
    """`RunState` plus the planner's rounds, LLM usage and answer."""

    def __init__(self) -> None:
        super().__init__()
        self.planner_status: str | None = None
        """The planner's final status (`PlannerFinished`): it overrides the executor's."""
        self.rounds: list[PlanningRound] = []
        self.planned_rounds = 0
        """The highest round that produced a plan."""
        self.replans = 0
        self.rejections = 0
        self.llm_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd: float | None = 0.0
        """None once any call's price is unknown."""
        self.answer = ""
        """The answer as streamed so far (the final one once the planner has finished)."""
        self.planner = False
        """True once a planner event was seen (the run has LLM calls to report)."""
        self.planned_step_ids: set[str] = set()
        """Steps of the rounds whose plan was finished (`PlanUpdated`); a step added but not in
        here belongs to a round that was cut off (the process died while the plan streamed)."""
        self.last_decision: Decision | None = None
        """The latest `finish`, `replan`, `budget_stop` or `cancel` (a `resume` is not a decision)."""
        self.open_calls: dict[str, LLMCallStarted] = {}
        """Requests started and not ended: in flight, or cut off by a crash."""

    @property
    def status(self) -> str:
        return self.planner_status or self.run_status

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def apply(self, event: RunEvent) -> None:
        match event:
            case AnswerDelta():
                self.planner = True
                if event.reset:  # the join is asked again: its answer starts over
                    self.answer = ""
                self.answer += event.text
            case LLMCallStarted():
                self.planner = True
                self.llm_calls += 1
                self.open_calls[event.call_id] = event
            case LLMCalled():
                self.planner = True
                if not event.call_id or self.open_calls.pop(event.call_id, None) is None:
                    self.llm_calls += event.attempts + event.reasks  # not counted at its start
                self.input_tokens += event.input_tokens
                self.output_tokens += event.output_tokens
                if event.cost_usd is None:
                    self.cost_usd = None
                elif self.cost_usd is not None:
                    self.cost_usd += event.cost_usd
            case PlanUpdated():
                self.planner = True
                self.planned_rounds = max(self.planned_rounds, event.round)
                self.rounds.append(PlanningRound(event.round, event.rationale, list(event.step_ids)))
                self.planned_step_ids.update(event.step_ids)
            case PlanRejected():
                self.planner = True
                self.rejections += 1
            case Decision():
                self.planner = True
                if event.action == "replan":
                    self.replans += 1
                if event.action != "resume":
                    self.last_decision = event
                if self.rounds and self.rounds[-1].round == event.round:
                    self.rounds[-1].decision, self.rounds[-1].reason = event.action, event.reason
                else:
                    self.rounds.append(PlanningRound(event.round, "", [], event.action, event.reason))
            case PlannerFinished():
                self.planner = True
                self.planner_status, self.finished_at = event.status, event.at
                if event.answer:  # the final word (a budget stop's best-effort answer was never streamed)
                    self.answer = event.answer
                usage = event.usage
                if usage:  # the planner's own totals are authoritative (they include tools' LLM calls)
                    self.llm_calls = int(usage.get("llm_calls", self.llm_calls))
                    self.input_tokens = int(usage.get("input_tokens", self.input_tokens))
                    self.output_tokens = int(usage.get("output_tokens", self.output_tokens))
                    self.cost_usd = usage.get("cost_usd", self.cost_usd)
            case _:
                super().apply(event)

    def unplanned_steps(self) -> list[str]:
        """Steps added in a round whose plan was cut off before it finished, in order."""
        return [sid for sid in self.steps if sid not in self.planned_step_ids]

    def resume_fields(self) -> dict[str, Any]:
        return {"rounds": self.planned_rounds, "replans": self.replans}
