"""What a workflow's failure handler is told, and what it may decide.

    def on_failure(failure: StepFailure) -> Recovery:
        if failure.tool == "http_get" and failure.attempt < 5:
            return Recovery.retry(delay_s=2.0, max_attempts=5)
        return Recovery.proceed()

    executor = Executor(tools, failure_handler=on_failure)

The handler is called on every failed attempt; its `Recovery` overrides the step's retry policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["FailureHandler", "Recovery", "StepFailure"]


@dataclass(frozen=True, slots=True)
class StepFailure:
    """What a workflow's failure handler is told about a failed attempt."""

    step_id: str
    tool: str
    error: BaseException
    attempt: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """A failure handler's decision: `Recovery.retry()`, `Recovery.fail()` or `Recovery.proceed()`."""

    action: Literal["retry", "fail", "continue"]
    delay_s: float | None = None
    max_attempts: int = 3

    @classmethod
    def retry(cls, *, delay_s: float | None = None, max_attempts: int = 3) -> Recovery:
        """Try the step again (after `delay_s`, or the step's backoff), up to `max_attempts` in all."""
        return cls("retry", delay_s, max_attempts)

    @classmethod
    def fail(cls) -> Recovery:
        """Fail the step and the whole run."""
        return cls("fail")

    @classmethod
    def proceed(cls) -> Recovery:
        """Mark the step failed, skip what needs it, and let the rest of the run go on."""
        return cls("continue")


FailureHandler = Callable[[StepFailure], "Recovery | Awaitable[Recovery]"]
