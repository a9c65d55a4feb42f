"""What the events of one run have said so far, and the plain line each event prints.

    model = RunModel()
    for event in events:                  # or subscribe `model.apply` to a run
        model.apply(event)
        line = plain_line(event, model)   # what a non-terminal prints for it, or None
    print(model.status, model.answer, model.summary_line(model="openai/gpt-4o-mini"))

`RunModel` is the state behind the command line's live view (`planweave.planner.cli.live.LiveView`):
the one fold of events that the run store, the tracer and the chat narration use too
(`planweave.planner.state.PlannerState`: steps with their states, attempts and times, the
planning rounds, the LLM usage and the streamed answer), plus what the view shows beside
each step. `plain_line` is how the view reports an event where nothing is drawn
in place (piped, in CI, in a log file); `summary_line` is the closing line of a run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from planweave.executor.requests import InputAnswered, InputRequested
from planweave.executor.events import (
    RunEvent, RunFinished, StepCancelled, StepFailed, StepProgressed, StepRestored, StepRetrying, StepSkipped,
    StepStarted, StepSucceeded,
)
from planweave.executor.plan import Step
from planweave.executor.state import StepProgress
from planweave.planner.events import Decision, PlanRejected, PlanUpdated
from planweave.planner.cli.render import StepState, format_seconds
from planweave.planner.cli.terminal import clean
from planweave.planner.state import PlannerState, PlanningRound

__all__ = ["RoundView", "RunModel", "StepView", "plain_line", "summary_line"]


def _output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(clean(text).split())
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
class StepView(StepProgress):
    """One step as the view knows it: the fold's `StepProgress` and the short text shown beside it."""

    detail: str = ""
    """Why it was skipped or cancelled, or a short form of its output (made once, not per redraw)."""
    reported: str = ""
    """What its tool last reported while running (`step_progress`): `3/10 pages`, a partial output."""


RoundView = PlanningRound


class RunModel(PlannerState):
    """Everything the events of one run have said so far (`LiveView` catches any error in `apply`):
    the planner's fold (`planweave.planner.state.PlannerState`) and what the view draws from it."""

    step_type = StepView
    steps: dict[str, StepView]  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._duration_s: float | None = None

    def apply(self, event: RunEvent) -> None:
        super().apply(event)
        match event:
            case StepSucceeded():
                self.steps[event.step_id].detail = _one_line(_output_text(event.output), 60)
            case StepRestored():
                self.steps[event.step_id].detail = "restored from an earlier run"
            case StepProgressed() if event.step_id in self.steps:
                self.steps[event.step_id].reported = progress_text(event)
            case StepSkipped() | StepCancelled():
                self.steps[event.step_id].detail = event.reason
            case RunFinished() if not self.planner:
                self._duration_s = event.duration_s  # a workflow run: the executor's own measure
            case _:
                pass

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


def progress_text(ev: StepProgressed) -> str:
    """A tool's report in a few words: `2/5 counted 2`, `partial: ...`, or a notice as it is."""
    if ev.progress_kind == "partial":
        return "partial: " + _one_line(_output_text(ev.partial), 60)
    if ev.progress_kind == "progress" and ev.done is not None:
        amount = f"{ev.done:g}/{ev.total:g}" if ev.total else f"{ev.done:g}"
        return f"{amount} {_one_line(ev.message, 60)}" if ev.message else amount
    return _one_line(ev.message or "", 120)


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
    if isinstance(ev, StepProgressed) and ev.progress_kind != "partial":  # partial outputs would flood a log
        return f"step {sid}: {progress_text(ev)}"
    if isinstance(ev, InputRequested):
        return f"step {sid} waits for a person" + (" to answer a question" if ev.request.get("kind") == "question" else " to approve it")
    if isinstance(ev, InputAnswered):
        action = str(ev.answer.get("action", ""))
        by = f" ({ev.answer['by']})" if ev.answer.get("by") else ""
        return f"step {sid}: {'answered' if action == 'answer' else action}{by}"
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
