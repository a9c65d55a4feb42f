"""`PlannerResult`: the executor's `BaseResult` with the planner's statuses; `raise_for_status`
raises `BudgetExceededError` for a budget stop, `RunFailedError` otherwise."""

from __future__ import annotations

import json

import pytest

from planweave.executor import RunFailedError
from planweave.executor.result import BaseResult, StepResult
from planweave.planner.errors import BudgetExceededError
from planweave.planner.result import PlannerResult


def result(**kw: object) -> PlannerResult:
    return PlannerResult.model_validate({"run_id": "r1", "goal": "g", "started_at": 10.0, "finished_at": 12.0, **kw})


def test_planner_result_shares_the_base_with_run_result() -> None:
    done = result(status="succeeded", answer="42")
    assert isinstance(done, BaseResult)
    assert done.ok and done.duration_s == 2.0 and done.failed_steps == []
    assert done.raise_for_status() is done


def test_a_budget_stop_raises_budget_exceeded_error() -> None:
    stopped = result(status="budget_exceeded", budget="max_llm_calls", error="the run reached its budget of 1 LLM calls")
    with pytest.raises(BudgetExceededError) as info:
        stopped.raise_for_status(allow_failed_steps=True)
    assert info.value.budget == "max_llm_calls"
    assert str(info.value) == "the run reached its budget of 1 LLM calls"


def test_a_partial_run_names_its_failed_steps_and_raises_unless_allowed() -> None:
    partial = result(
        status="partial",
        answer="done around it",
        error="step `f` failed: refused",
        steps={
            "f": StepResult(id="f", tool="http_get", status="failed", error="refused"),
            "g": StepResult(id="g", tool="calculator", status="succeeded", output=4),
        },
    )
    assert not partial.ok and partial.failed_steps == ["f"]
    assert json.loads(partial.model_dump_json())["failed_steps"] == ["f"]
    with pytest.raises(RunFailedError) as info:
        partial.raise_for_status()
    assert info.value.result is partial
    assert "run `r1` partial: step `f` failed: refused" == str(info.value)
    assert partial.raise_for_status(allow_failed_steps=True) is partial


def test_a_failed_run_raises_run_failed_error() -> None:
    with pytest.raises(RunFailedError, match="run `r1` failed: the plan is empty"):
        result(status="failed", error="the plan is empty").raise_for_status(allow_failed_steps=True)
