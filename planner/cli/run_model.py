"""What the events of one run have said so far, and the plain line each event prints.

    model = RunModel()
    for event in events:                  # or subscribe `model.apply` to a run
        model.apply(event)
        line = plain_line(event, model)   # what a non-terminal prints for it, or None
    print(model.status, model.answer, model.summary_line(model="openai/gpt-4o-mini"))

`RunModel` is the state behind the command line's live view (`planweave.planner.cli.live.LiveView`):
the steps with their states, attempts and times, the planning rounds, the LLM usage and
the streamed answer. `plain_line` is how the view reports an event where nothing is drawn
in place (piped, in CI, in a log file); `summary_line` is the closing line of a run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from planweave.executor.events import (
    RunEvent, RunFinished, RunStarted, StepAdded, StepCancelled, StepFailed, StepReady, StepRestored, StepRetrying,
    StepSkipped, StepStarted, StepSucceeded,
)
from planweave.executor.plan import Step
from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
from planweave.planner.cli.render import StepState, format_seconds

__all__ = ["RoundView", "RunModel", "StepView", "plain_line", "summary_line"]


def _output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_line(
    *,
    status: str,
    duration_s: float,
    run_id: str,
    llm_calls: int | None = None,
    tokens: int | None = None,
    cost_usd: float | None = None,
    model: str | None = None,
    trace_url: str | None = None,
) -> str:
    """The closing line of a run, for example

    `succeeded in 2.41s | model openai/gpt-4o-mini | 3 LLM calls, 1840 tokens, cost $0.0012 | run r-1 | trace URL`

    The LLM part is left out when `llm_calls` is None (a workflow run); a cost of None is
    printed as `unknown`, never as 0.
    """
    parts = [f"{status} in {duration_s:.2f}s"]
    if model:
        parts.append(f"model {model}")
    if llm_calls is not None:
        cost = "unknown" if cost_usd is None else f"${cost_usd:.4f}"
        parts.append(f"{llm_calls} LLM call{'' if llm_calls == 1 else 's'}, {tokens or 0} tokens, cost {cost}")
    parts.append(f"run {run_id}")
    if trace_url:
        parts.append(f"trace {trace_url}")
    return " | ".join(parts)


@dataclass(slots=True)
class StepView:
    """One step as the view knows it. Times are wall-clock (`time.time()`) from the events."""

    id: str
    tool: str
    status: str = "pending"
    """A `StepStatus`: `pending`, `ready`, `running` (also while waiting to retry) or a final state."""
    deps: list[str] = field(default_factory=list)
    attempt: int = 0
    """The attempt running now, or the last one."""
    max_attempts: int | None = None
    started_at: float | None = None
    """When the first attempt started."""
    finished_at: float | None = None
    duration_s: float | None = None
    """As reported by the executor when the step ended."""
    retry_at: float | None = None
    """While waiting to retry: when the next attempt is due."""
    last_error: str | None = None
    """`ErrorType: message` of the latest failed attempt."""
    detail: str = ""
    """Why it was skipped or cancelled, or a short form of its output."""
    restored: bool = False
    step: Step | dict[str, Any] | None = None

    def elapsed(self, now: float) -> float | None:
        if self.duration_s is not None:
            return self.duration_s
        if self.started_at is None:
            return None
        return (self.finished_at or now) - self.started_at


@dataclass(slots=True)
class RoundView:
    round: int
    rationale: str
    step_ids: list[str]
    decision: str | None = None
    reason: str = ""


class RunModel:
    """Everything the events of one run have said so far (`LiveView` catches any error in `apply`)."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.goal = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.run_status = "running"
        """The executor's status (`running` until `RunFinished`)."""
        self.planner_status: str | None = None
        self.error: str | None = None
        self.steps: dict[str, StepView] = {}
        self.rounds: list[RoundView] = []
        self.rejections = 0
        self.llm_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd: float | None = 0.0
        """None once any call's price is unknown."""
        self.answer = ""
        self.planner = False
        """True once a planner event was seen (the run has LLM calls to report)."""
        self._duration_s: float | None = None

    @property
    def status(self) -> str:
        return self.planner_status or self.run_status

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def duration_s(self, now: float | None = None) -> float:
        if self._duration_s is not None:
            return self._duration_s
        if self.started_at is None:
            return 0.0
        return (self.finished_at or (time.time() if now is None else now)) - self.started_at

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in list(self.steps.values()):
            out[s.status] = out.get(s.status, 0) + 1
        return out

    def states(self) -> dict[str, StepState]:
        """Step states for `planweave.planner.cli.render` (to draw the run's graph in its colours)."""
        return {s.id: StepState(s.status, s.duration_s, s.attempt or None) for s in list(self.steps.values())}

    def plan_steps(self) -> list[Step | dict[str, Any]]:
        """The steps the run was given, in the order they were added (for `planweave.planner.cli.render`)."""
        return [s.step for s in list(self.steps.values()) if s.step is not None]

    def apply(self, ev: RunEvent) -> None:
        if isinstance(ev, RunStarted):
            self.run_id, self.goal, self.started_at = ev.run_id, ev.goal or self.goal, ev.at
        elif isinstance(ev, StepAdded):
            step = ev.step
            retry = step.retry.max_attempts if isinstance(step, Step) else step.get("retry")
            if isinstance(retry, dict):  # a step read back from JSON; `retry: 3` is short for 3 attempts
                retry = retry.get("max_attempts")
            self.steps[ev.step_id] = StepView(
                ev.step_id, ev.tool, deps=list(ev.deps), max_attempts=retry if isinstance(retry, int) else None, step=step
            )
        elif isinstance(ev, PlanUpdated):
            self.planner = True
            self.rounds.append(RoundView(ev.round, ev.rationale, list(ev.step_ids)))
        elif hasattr(ev, "step_id"):
            self._apply_step(ev)
        else:
            self._apply_run(ev)

    def _step(self, ev: Any) -> StepView:
        view = self.steps.get(ev.step_id)
        if view is None:  # a step whose `StepAdded` was missed (a view attached late)
            view = self.steps[ev.step_id] = StepView(ev.step_id, getattr(ev, "tool", "?"))
        return view

    def _apply_step(self, ev: RunEvent) -> None:
        s = self._step(ev)
        if isinstance(ev, StepReady):
            s.status = "ready"
        elif isinstance(ev, StepStarted):
            s.status, s.attempt, s.retry_at = "running", ev.attempt, None
            s.tool = ev.tool or s.tool
            if s.started_at is None:
                s.started_at = ev.at
        elif isinstance(ev, StepRetrying):
            s.attempt = ev.attempt
            s.last_error = f"{ev.error_type}: {ev.error}" if ev.error_type else ev.error
            s.retry_at = ev.at + ev.delay_s
        elif isinstance(ev, StepSucceeded):
            self._finish(s, ev, "succeeded", ev.duration_s, ev.attempts)
            s.detail = _one_line(_output_text(ev.output), 60)
        elif isinstance(ev, StepRestored):
            self._finish(s, ev, "succeeded", None, None)
            s.restored, s.detail = True, "restored from an earlier run"
        elif isinstance(ev, StepFailed):
            self._finish(s, ev, "failed", ev.duration_s, ev.attempts)
            s.last_error = f"{ev.error_type}: {ev.error}" if ev.error_type else ev.error
        elif isinstance(ev, StepSkipped):
            self._finish(s, ev, "skipped", None, None)
            s.detail = ev.reason
        elif isinstance(ev, StepCancelled):
            self._finish(s, ev, "cancelled", None, None)
            s.detail = ev.reason

    @staticmethod
    def _finish(s: StepView, ev: RunEvent, status: str, duration: float | None, attempts: int | None) -> None:
        s.status, s.finished_at, s.retry_at = status, ev.at, None
        if duration is not None:
            s.duration_s = duration
        if attempts:
            s.attempt = attempts

    def _apply_run(self, ev: RunEvent) -> None:
        if isinstance(ev, LLMCalled):
            self.planner = True
            self.llm_calls += ev.attempts + ev.reasks
            self.input_tokens += ev.input_tokens
            self.output_tokens += ev.output_tokens
            if ev.cost_usd is None:
                self.cost_usd = None
            elif self.cost_usd is not None:
                self.cost_usd += ev.cost_usd
        elif isinstance(ev, PlanRejected):
            self.planner = True
            self.rejections += 1
        elif isinstance(ev, Decision):
            self.planner = True
            if self.rounds and self.rounds[-1].round == ev.round:
                self.rounds[-1].decision, self.rounds[-1].reason = ev.action, ev.reason
            else:
                self.rounds.append(RoundView(ev.round, "", [], ev.action, ev.reason))
        elif isinstance(ev, AnswerDelta):
            self.planner = True
            if getattr(ev, "reset", False):  # the join is asked again: its answer starts over
                self.answer = ""
            self.answer += ev.text
        elif isinstance(ev, RunFinished):
            self.run_status, self.error = ev.status, ev.error or self.error
            self.finished_at = ev.at
            if not self.planner:
                self._duration_s = ev.duration_s
        elif isinstance(ev, PlannerFinished):
            self.planner = True
            self.planner_status, self.finished_at = ev.status, ev.at
            if ev.answer:  # the final word (a budget stop's best-effort answer was never streamed)
                self.answer = ev.answer
            u = ev.usage
            if u:  # the planner's own totals are authoritative (they include tools' LLM calls)
                self.llm_calls = int(u.get("llm_calls", self.llm_calls))
                self.input_tokens = int(u.get("input_tokens", self.input_tokens))
                self.output_tokens = int(u.get("output_tokens", self.output_tokens))
                self.cost_usd = u.get("cost_usd", self.cost_usd)

    def summary_line(self, *, model: str | None = None, trace_url: str | None = None, now: float | None = None) -> str:
        """`summary_line` for this run (the LLM part only for planner runs)."""
        return summary_line(
            status=self.status,
            duration_s=self.duration_s(now),
            run_id=self.run_id or "?",
            llm_calls=self.llm_calls if self.planner or self.llm_calls else None,
            tokens=self.tokens,
            cost_usd=self.cost_usd,
            model=model,
            trace_url=trace_url,
        )


# --- plain lines (not a terminal) --------------------------------------------------------------


def plain_line(ev: RunEvent, model: RunModel) -> str | None:
    """The line a non-terminal prints for `ev` (already applied to `model`), or None."""
    sid = getattr(ev, "step_id", None)
    s = model.steps.get(sid) if sid else None
    tries = f"/{s.max_attempts}" if s and s.max_attempts and s.max_attempts > 1 else ""
    if isinstance(ev, StepStarted):
        if ev.attempt == 1:
            return f"step {sid} started ({ev.tool})"
        return f"step {sid} attempt {ev.attempt}{tries} started"
    if isinstance(ev, StepRetrying):
        return (
            f"step {sid} attempt {ev.attempt}{tries} failed ({_one_line((s.last_error if s else None) or ev.error, 160)}); "
            f"retrying in {ev.delay_s:.2f}s"
        )
    if isinstance(ev, StepSucceeded):
        after = f" after {ev.attempts} attempts" if ev.attempts > 1 else ""
        return f"step {sid} succeeded in {format_seconds(ev.duration_s)}{after}"
    if isinstance(ev, StepRestored):
        return f"step {sid} restored from an earlier run"
    if isinstance(ev, StepFailed):
        after = f" after {ev.attempts} attempts" if ev.attempts > 1 else ""
        return f"step {sid} failed{after}: {_one_line((s.last_error if s else None) or ev.error, 200)}"
    if isinstance(ev, StepSkipped):
        return f"step {sid} skipped: {_one_line(ev.reason, 200)}"
    if isinstance(ev, StepCancelled):
        return f"step {sid} cancelled" + (f": {_one_line(ev.reason, 200)}" if ev.reason else "")
    if isinstance(ev, PlanUpdated):
        n = len(ev.step_ids)
        ids = ", ".join(ev.step_ids[:12]) + (", ..." if n > 12 else "")
        return f"round {ev.round}: planned {n} step{'' if n == 1 else 's'}" + (f" ({ids})" if n else "")
    if isinstance(ev, PlanRejected):
        return f"round {ev.round}: plan rejected, re-asking ({_one_line('; '.join(ev.errors), 200)})"
    if isinstance(ev, Decision):
        if ev.action == "replan":
            return f"round {ev.round}: replanning" + (f": {_one_line(ev.reason, 200)}" if ev.reason else "")
        if ev.action in ("budget_stop", "cancel"):
            return f"round {ev.round}: {ev.action.replace('_', ' ')}" + (f": {_one_line(ev.reason, 200)}" if ev.reason else "")
    return None
