"""One fold of a run's events into its state: the steps with their status, attempts, times,
output or error, and the run's own status.

    state = RunState()
    for event in events:          # live (subscribe `state.apply`), or read back from the store
        state.apply(event)
    state.steps["fetch"].status   # "succeeded"

Every consumer of events (the run store's records, the command line's live view, the tracer,
the chat narration) reads step state from this fold instead of keeping its own. Layers above
extend it for their own events by subclassing `RunState` and handling their classes in
`apply` before handing the rest to `super().apply` (the planner's `PlannerState` adds rounds,
LLM calls and usage).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import ValidationError

from planweave.executor.events import (
    RunEvent,
    RunFinished,
    RunStarted,
    StepAdded,
    StepCancelled,
    StepFailed,
    StepReady,
    StepRestored,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from planweave.executor.plan import Step
from planweave.executor.requests import InputAnswer, InputAnswered, InputRequest, InputRequested
from planweave.executor.result import StepStatus

__all__ = ["RunState", "StepProgress"]


@dataclass(slots=True)
class StepProgress:
    """One step as its events describe it. Times are wall-clock (`time.time()`) from the events."""

    id: str
    tool: str = ""
    deps: list[str] = field(default_factory=list)
    step: Step | dict[str, Any] | None = None
    """The step as added (a dict once read back from a stored run)."""
    max_attempts: int | None = None
    status: StepStatus = "pending"
    attempt: int = 0
    """The attempt running now, or the last one."""
    args: dict[str, Any] | None = None
    """The arguments of the latest attempt, every reference resolved."""
    added_at: float | None = None
    started_at: float | None = None
    """When the first attempt started."""
    finished_at: float | None = None
    duration_s: float | None = None
    """As reported by the executor when the step ended."""
    retry_at: float | None = None
    """While waiting to retry: when the next attempt is due."""
    retries: list[dict[str, Any]] = field(default_factory=list)
    """One entry (`attempt`, `error`, `error_type`, `delay_s`) per failed attempt that was retried."""
    output: Any = None
    error: str | None = None
    """Why it failed (the error's message), or why it was skipped or cancelled."""
    error_type: str | None = None
    last_error: str | None = None
    """`ErrorType: message` of the latest failed attempt."""
    restored: bool = False
    """Its output came from a recorded earlier run (resume)."""

    def elapsed(self, now: float) -> float | None:
        if self.duration_s is not None:
            return self.duration_s
        if self.started_at is None:
            return None
        return (self.finished_at or now) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a stored run's export shows (`RunRecord.steps`)."""
        out: dict[str, Any] = {
            "id": self.id, "tool": self.tool, "deps": list(self.deps), "status": self.status, "attempts": self.attempt,
            "started_at": self.started_at, "finished_at": self.finished_at,
        }  # fmt: skip
        if self.args is not None:
            out["args"] = self.args
        if self.retries:
            out["retries"] = self.retries
        if self.status == "succeeded":
            out.update(output=self.output, restored=self.restored)
        elif self.status in ("failed", "skipped", "cancelled"):
            out["error"] = self.error
        return out


def _max_attempts(step: Step | dict[str, Any]) -> int | None:
    retry = step.retry.max_attempts if isinstance(step, Step) else step.get("retry")
    if isinstance(retry, dict):  # a step read back from JSON; `retry: 3` is short for 3 attempts
        retry = retry.get("max_attempts")
    return retry if isinstance(retry, int) else None


class RunState:
    """Everything a run's events have said so far about the run and its steps."""

    step_type: ClassVar[type[StepProgress]] = StepProgress
    """What `steps` holds (a subclass may add fields or properties for its own view)."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.goal = ""
        self.inputs: dict[str, Any] = {}
        self.run_status = "running"
        """The executor's status (`running` until `RunFinished`)."""
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.run_duration_s: float | None = None
        """As reported by the executor's `RunFinished`."""
        self.steps: dict[str, StepProgress] = {}
        """Every step, in the order added (a step added again keeps its place)."""
        self.outputs: dict[str, Any] = {}
        """Outputs of the steps that succeeded or were restored (kept when a step is added again)."""
        self.requests: dict[str, InputRequest] = {}
        """Steps waiting for a person, by step id: asked and not answered yet."""
        self.answers: dict[str, InputAnswer] = {}
        """People's answers, by step id (the latest for each step)."""

    @classmethod
    def fold(cls, events: Iterable[RunEvent]) -> RunState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    @property
    def status(self) -> str:
        return self.run_status

    def _step(self, step_id: str, tool: str = "") -> StepProgress:
        found = self.steps.get(step_id)
        if found is None:  # a step whose `StepAdded` was missed (a subscriber attached late)
            found = self.steps[step_id] = self.step_type(step_id, tool)
        return found

    def apply(self, event: RunEvent) -> None:
        """Fold one event in. Events of classes it does not know are ignored."""
        match event:
            case StepStarted():
                s = self._step(event.step_id, event.tool)
                s.status, s.attempt, s.retry_at, s.args = "running", event.attempt, None, event.args
                s.tool = event.tool or s.tool
                if s.started_at is None:
                    s.started_at = event.at
            case StepSucceeded():
                s = self._finish(event.step_id, event.at, "succeeded", event.duration_s, event.attempts)
                s.output = self.outputs[event.step_id] = event.output
                if s.started_at is None:
                    s.started_at = event.at - event.duration_s
            case StepReady():
                self._step(event.step_id).status = "ready"
            case StepAdded():
                step = event.step
                self.steps[event.step_id] = self.step_type(
                    event.step_id, event.tool, list(event.deps), step, _max_attempts(step), added_at=event.at
                )
            case StepRetrying():
                s = self._step(event.step_id)
                s.attempt, s.retry_at = event.attempt, event.at + event.delay_s
                s.last_error = f"{event.error_type}: {event.error}" if event.error_type else event.error
                s.retries.append(
                    {"attempt": event.attempt, "error": event.error, "error_type": event.error_type,
                     "delay_s": event.delay_s}
                )  # fmt: skip
            case StepFailed():
                s = self._finish(event.step_id, event.at, "failed", event.duration_s, event.attempts)
                s.error, s.error_type = event.error, event.error_type
                s.last_error = f"{event.error_type}: {event.error}" if event.error_type else event.error
            case StepRestored():
                s = self._finish(event.step_id, event.at, "succeeded", None, None)
                s.output = self.outputs[event.step_id] = event.output
                s.restored = True
            case StepSkipped() | StepCancelled():
                s = self._finish(event.step_id, event.at, "skipped" if isinstance(event, StepSkipped) else "cancelled",
                                 None, None)  # fmt: skip
                s.error = event.reason
            case InputRequested():
                self._step(event.step_id).status = "waiting"
                self.requests[event.step_id] = InputRequest.model_validate(event.request)
            case InputAnswered():
                self.requests.pop(event.step_id, None)
                self.answers[event.step_id] = InputAnswer.model_validate(event.answer)
            case RunStarted():
                self.run_id, self.goal, self.started_at = event.run_id, event.goal or self.goal, event.at
                self.inputs = dict(event.inputs or {})
            case RunFinished():
                self.run_status, self.error = event.status, event.error or self.error
                self.finished_at, self.run_duration_s = event.at, event.duration_s
            case _:
                pass

    def _finish(
        self, step_id: str, at: float, status: StepStatus, duration_s: float | None, attempts: int | None
    ) -> StepProgress:
        s = self._step(step_id)
        s.status, s.finished_at, s.retry_at = status, at, None
        if duration_s is not None:
            s.duration_s = duration_s
        if attempts:
            s.attempt = attempts
        return s

    def resume_fields(self) -> dict[str, Any]:
        """Fields a layer above adds to the `ResumeState` of a resumed run (the planner's rounds)."""
        return {}

    def resumable_steps(self) -> tuple[list[Step], set[str]]:
        """The steps a resumed run adds again, in order, and the ids of those it cannot rebuild
        (steps with Python handlers: the workflow file brings them back)."""
        steps: list[Step] = []
        handlers: set[str] = set()
        for s in self.steps.values():
            if isinstance(s.step, Step):
                steps.append(s.step)
            elif isinstance(s.step, dict):
                if s.step.get("handler") is not None:
                    # Never imported from the store (its content may come from `store import`):
                    # the workflow file, checked by its loader's trust rules, brings it back.
                    handlers.add(s.id)
                    continue
                try:
                    steps.append(Step.model_validate(s.step))
                except ValidationError:
                    handlers.add(s.id)
        return steps, handlers
