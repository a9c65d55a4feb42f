"""What a run produced: per-step outcomes and the run's status.

`RunResult` (a workflow or plan run by the executor) and the planner's `PlannerResult`
share `BaseResult`: `status`, `ok`, `duration_s`, `failed_steps` and `raise_for_status()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, Field, computed_field

from planweave.executor.errors import NoSuchStepError
from planweave.executor.requests import InputRequest

if TYPE_CHECKING:
    from planweave.tools.errors import PlanweaveError

__all__ = ["BaseResult", "RunResult", "RunStatus", "StepResult", "StepStatus", "describe_failed_steps"]

StepStatus = Literal["pending", "ready", "waiting", "running", "succeeded", "failed", "skipped", "cancelled"]
"""A step's state. The last four are final; every step of a run that ended ends in exactly one
of them (a run that is `waiting` keeps its waiting steps, and those needing them `pending`).

- `pending`: waiting for the steps it needs.
- `ready`: its inputs are available; waiting for a concurrency slot.
- `waiting`: waiting for a person to approve it or answer its question (`result.requests`).
- `running`: an attempt is in progress (or waiting out a retry delay).
- `succeeded`: it produced an output.
- `failed`: its last attempt failed (see `error`); its `on_failure` policy was applied.
- `skipped`: its `when` condition was false, or a step it needs did not succeed.
- `cancelled`: the run was cancelled or failed before the step could finish.
"""

RunStatus = Literal["running", "waiting", "succeeded", "partial", "failed", "cancelled"]
"""A run's state; every run ends in one of the last five.

- `running`: steps are still being run.
- `waiting`: everything left to do waits on people (`requests` says what each step asks); the
  run stopped there and is recorded, and continues when they answer (`planweave respond`,
  `Planner.respond`). Not `ok`: the CLI exits 3.
- `succeeded`: every step that ran succeeded (skipped steps were skipped by their `when`),
  and the workflow's success criteria hold.
- `partial`: the run went to its end, but at least one step failed with `on_failure:
  continue` (or `replan`, handled by a planner, or a failure handler's `Recovery.proceed()`);
  `failed_steps` names them, `error` says what the first one said. Not `ok`: the CLI exits 1
  unless given `--allow-failed-steps`.
- `failed`: a step failed with policy `fail` (or `replan` with no planner to handle it), a
  deadline passed, or a success criterion did not hold; `error` says which.
- `cancelled`: the run was cancelled from outside.
"""


@dataclass(slots=True)
class StepResult:
    """One step's outcome. A plain dataclass (pydantic validates and serialises it inside
    `RunResult`): a 10,000-step run builds 10,000 of these, and this is 8x cheaper."""

    id: str
    tool: str
    status: StepStatus
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    restored: bool = False
    """True when the output came from a recorded run (resume) rather than a new call."""

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


def describe_failed_steps(steps: Mapping[str, StepResult]) -> str | None:
    """One line naming the failed steps and the first one's error (the `error` of a `partial` run),
    or None when no step failed."""
    failed = [s for s in steps.values() if s.status == "failed"]
    if not failed:
        return None
    first = failed[0]
    reason = f": {first.error}" if first.error else ""
    if len(failed) == 1:
        return f"step `{first.id}` failed{reason}"
    names = ", ".join(f"`{s.id}`" for s in failed)
    return f"{len(failed)} steps failed ({names}); `{first.id}`{reason or ' failed'}"


class BaseResult(BaseModel):
    """What every run returns, workflow or planner: its steps, its status and how long it took.

    `ok` is true only for `succeeded`; `raise_for_status()` turns anything else into an error
    from planweave's tree (`RunFailedError`, or the planner's `BudgetExceededError`)."""

    run_id: str
    status: str
    """Narrowed by each subclass (`RunStatus`, `PlannerStatus`)."""
    steps: dict[str, StepResult] = Field(default_factory=dict)
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    requests: list[InputRequest] = Field(default_factory=list)
    """What the run waits for when it is `waiting`: one open request per waiting step."""

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @computed_field  # type: ignore[prop-decorator]  # mypy does not follow pydantic's decorator stacking
    @property
    def failed_steps(self) -> list[str]:
        """Ids of the steps that ended `failed`, in plan order (also in the JSON form)."""
        return [sid for sid, s in self.steps.items() if s.status == "failed"]

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the steps that succeeded, by step id."""
        return {sid: s.output for sid, s in self.steps.items() if s.status == "succeeded"}

    def output(self, step_id: str) -> Any:
        """The output of one succeeded step; `KeyError` naming the step's state otherwise."""
        step = self.steps.get(step_id)
        if step is None:
            raise NoSuchStepError(f"no step `{step_id}` in run `{self.run_id}`", step_id=step_id)
        if step.status != "succeeded":
            raise NoSuchStepError(
                f"step `{step_id}` has no output: it {step.status}" + (f" ({step.error})" if step.error else ""),
                step_id=step_id,
            )
        return step.output

    def by_status(self, status: StepStatus) -> list[str]:
        return [sid for sid, s in self.steps.items() if s.status == status]

    def raise_for_status(self, *, allow_failed_steps: bool = False) -> Self:
        """Return self when the run succeeded (or, with `allow_failed_steps`, ended `partial`);
        raise otherwise: `RunFailedError` carrying this result, or a subclass's own error."""
        if self.ok or (allow_failed_steps and self.status == "partial"):
            return self
        raise self._status_error()

    def _status_error(self) -> PlanweaveError:
        from planweave.executor.errors import RunFailedError

        return RunFailedError(self)


class RunResult(BaseResult):
    """What `Executor.run` and `Workflow.run` return."""

    status: RunStatus
    goal: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)
    replan_requests: list[str] = Field(default_factory=list)
    """Steps that failed with `on_failure: replan`, in the order they failed."""
