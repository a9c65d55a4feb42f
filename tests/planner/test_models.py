"""What the model writes: a planned step's `retry` overrides the planner's default policy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from planweave.planner.models import DEFAULT_STEP_RETRY, PlannedStep
from planweave.tools import ToolError


def test_without_retry_a_planned_step_gets_the_default() -> None:
    step = PlannedStep.model_validate(["a", "calculator", {"expression": "1"}])
    assert step.retry_policy(DEFAULT_STEP_RETRY) is DEFAULT_STEP_RETRY


def test_the_default_retries_transient_errors_only() -> None:
    policy = DEFAULT_STEP_RETRY
    assert policy.max_attempts == 3 and policy.delay(1) <= 0.55 and policy.delay(2) <= 1.1
    assert policy.retries(ConnectionError("reset"))
    assert policy.retries(TimeoutError())
    assert policy.retries(ToolError("HTTP 503", permanent=False))
    assert not policy.retries(ToolError("`x.txt` does not exist", permanent=True))
    assert not policy.retries(ZeroDivisionError("division by zero"))
    assert not policy.retries(ValueError("bad"))


def test_a_number_of_attempts_overrides_only_the_attempts() -> None:
    step = PlannedStep.model_validate({"id": "post", "tool": "http_get", "args": {}, "retry": 1})
    policy = step.retry_policy(DEFAULT_STEP_RETRY)
    assert policy.max_attempts == 1 and policy.retry_on == DEFAULT_STEP_RETRY.retry_on


def test_an_impossible_retry_is_rejected() -> None:
    for attempts in (0, 500):
        with pytest.raises(ValidationError, match="retry"):
            PlannedStep.model_validate({"id": "a", "tool": "t", "retry": attempts})
