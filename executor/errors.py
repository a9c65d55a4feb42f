"""Errors raised by the executor. The whole tree is drawn in `planweave.tools.errors`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planweave.tools.errors import ConfigError, RuntimeFailure, SetupError, ToolError

if TYPE_CHECKING:
    from planweave.executor.result import BaseResult

__all__ = [
    "ForEachLimitError",
    "AnswerError",
    "NoSuchStepError",
    "PlanError",
    "PlanProblem",
    "ReferenceResolutionError",
    "RunFailedError",
    "RunNotStartedError",
    "StepDeniedError",
    "StepTimeoutError",
    "WorkflowFileError",
]


@dataclass(frozen=True, slots=True)
class PlanProblem:
    """One thing wrong with a plan. `step_id` is None for plan-wide problems (a cycle)."""

    step_id: str | None
    message: str

    def __str__(self) -> str:
        return self.message


class PlanError(SetupError):
    """A plan is invalid. Lists every problem found, each naming the step at fault and the fix.

    The message is compact on purpose: the planner feeds it back to the model to repair its plan.
    """

    def __init__(self, problems: list[PlanProblem]) -> None:
        self.problems = problems
        if len(problems) == 1:
            text = f"invalid plan: {problems[0].message}"
        else:
            text = f"invalid plan, {len(problems)} problems:\n" + "\n".join(f"- {p.message}" for p in problems)
        super().__init__(text)

    @property
    def step_ids(self) -> set[str]:
        return {p.step_id for p in self.problems if p.step_id is not None}


class WorkflowFileError(SetupError):
    """A workflow or plan file cannot be read, parsed or understood.

    `problems` lists every problem found (each naming the step and field at fault and what
    is allowed); `path` is the file.
    """

    def __init__(self, message: str, path: str | Path | None = None, problems: list[str] | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.problems = problems or [message]
        super().__init__(message)


class StepTimeoutError(ToolError):
    """A step attempt ran longer than its `timeout_s`. Retryable."""


class ReferenceResolutionError(ToolError):
    """A `${...}` reference could not be resolved when the step was about to run. Permanent."""

    permanent = True


class ForEachLimitError(ToolError):
    """A `for_each` step has more items than one step may fan out to, or than the run's step
    budget has left (each item counts as a step). Raised before any item runs."""

    permanent = True

    def __init__(self, message: str, *, step_id: str, items: int, limit: int) -> None:
        super().__init__(message, step_id=step_id)
        self.items = items
        self.limit = limit


class RunFailedError(RuntimeFailure):
    """A run ended without success (`failed`, `partial`, `cancelled`); `result` holds every step's outcome."""

    def __init__(self, result: BaseResult) -> None:
        self.result = result
        super().__init__(f"run `{result.run_id}` {result.status}: {result.error or 'see the step results'}")


class NoSuchStepError(SetupError, KeyError):
    """A result was asked for a step it does not have, or for the output of a step that produced none."""

    def __init__(self, message: str, *, step_id: str) -> None:
        super().__init__(message)
        self.step_id = step_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunNotStartedError(SetupError, RuntimeError):
    """A `Run` was used outside `async with executor.start(...) as run:`, or before it finished."""


class StepDeniedError(ToolError):
    """A person denied a step's approval (or declined its question), or nobody answered before its
    deadline. Permanent: the step's `on_failure` policy decides what the run does next."""

    permanent = True


class AnswerError(ConfigError):
    """An answer does not fit the request it answers: an edit for a question, a choice that is not
    offered, arguments the tool does not take, a step that waits for nothing."""

