"""What a run returns: `partial` when a step failed and the run went on, `failed_steps` in every
form, and `raise_for_status` raising from planweave's error tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planweave.executor import Executor, Recovery, RunFailedError, Step, StepFailure
from planweave.executor.result import BaseResult, RunResult, StepResult, describe_failed_steps
from planweave.executor.store import open_store
from planweave.executor.workflow import load_workflow
from planweave.tools import tool
from planweave.tools.builtin import builtin_tools


@tool
async def echo(value: int) -> int:
    return value


@tool
async def crash(message: str) -> None:
    raise RuntimeError(message)


async def test_a_run_without_failures_succeeds() -> None:
    result = await Executor([echo]).run([Step(id="a", tool="echo", args={"value": 1})])
    assert result.status == "succeeded" and result.ok and result.failed_steps == [] and result.error is None
    assert result.raise_for_status() is result


async def test_a_step_failed_with_continue_makes_the_run_partial() -> None:
    result = await Executor([echo, crash]).run(
        [
            Step(id="boom", tool="crash", args={"message": "disk full"}, on_failure="continue"),
            Step(id="after", tool="echo", args={"value": "${boom}"}),
            Step(id="fine", tool="echo", args={"value": 2}),
        ]
    )
    assert result.status == "partial" and not result.ok
    assert result.failed_steps == ["boom"]  # the skipped dependent is not a failure of its own
    assert result.error == "step `boom` failed: disk full"
    assert result.outputs == {"fine": 2}
    data = json.loads(result.model_dump_json())
    assert data["status"] == "partial" and data["failed_steps"] == ["boom"]
    assert RunResult.model_validate(data).failed_steps == ["boom"]  # the JSON form reads back


async def test_raise_for_status_raises_run_failed_error_unless_failed_steps_are_allowed() -> None:
    result = await Executor([crash]).run(
        [Step(id="x", tool="crash", args={"message": "no"}, on_failure="continue")]
    )
    with pytest.raises(RunFailedError) as info:
        result.raise_for_status()
    assert info.value.result is result
    assert str(info.value) == f"run `{result.run_id}` partial: step `x` failed: no"
    assert result.raise_for_status(allow_failed_steps=True) is result


async def test_a_failed_run_raises_even_when_failed_steps_are_allowed() -> None:
    result = await Executor([crash]).run([Step(id="x", tool="crash", args={"message": "no"})])
    assert result.status == "failed" and result.failed_steps == ["x"]
    with pytest.raises(RunFailedError):
        result.raise_for_status(allow_failed_steps=True)


async def test_a_failure_handler_that_lets_a_step_go_makes_the_run_partial() -> None:
    def proceed(failure: StepFailure) -> Recovery:
        return Recovery.proceed()

    result = await Executor([crash, echo], failure_handler=proceed).run(
        [Step(id="x", tool="crash", args={"message": "no"}), Step(id="y", tool="echo", args={"value": 1})]
    )
    assert result.status == "partial" and result.failed_steps == ["x"]


def test_describe_failed_steps_names_every_failed_step() -> None:
    steps = {
        "a": StepResult(id="a", tool="t", status="failed", error="first reason"),
        "b": StepResult(id="b", tool="t", status="succeeded", output=1),
        "c": StepResult(id="c", tool="t", status="failed", error="second reason"),
    }
    assert describe_failed_steps(steps) == "2 steps failed (`a`, `c`); `a`: first reason"
    assert describe_failed_steps({"b": steps["b"]}) is None


def test_run_result_is_a_base_result() -> None:
    result = RunResult(run_id="r", status="succeeded", started_at=1.0, finished_at=3.5)
    assert isinstance(result, BaseResult) and result.duration_s == 2.5 and result.ok


async def test_a_yaml_workflow_with_a_failed_continue_step_ends_partial_and_is_recorded(tmp_path: Path) -> None:
    wf = tmp_path / "continue.yaml"
    wf.write_text(
        "name: continue\nsteps:\n"
        "  - {id: read, tool: read_file, args: {path: missing.txt}, on_failure: continue}\n"
        "  - {id: sum, tool: calculator, args: {expression: '2 + 2'}}\n"
    )
    store = open_store(tmp_path / "home")
    result = await load_workflow(wf).run(
        builtin_tools(workspace=tmp_path), subscribers=[store.recorder(kind="workflow", name="continue")]
    )
    assert result.status == "partial" and result.failed_steps == ["read"]
    assert result.output("sum") == 4
    assert "`missing.txt` does not exist" in (result.error or "")
    [summary] = store.list_runs()
    assert summary.status == "partial"  # a final status: `planweave resume` refuses it


async def test_a_success_criterion_still_fails_a_partial_run(tmp_path: Path) -> None:
    wf = tmp_path / "criteria.yaml"
    wf.write_text(
        "name: criteria\nsteps:\n"
        "  - {id: read, tool: read_file, args: {path: missing.txt}, on_failure: continue}\n"
        "success: ['${read} != None']\n"
    )
    workflow = load_workflow(wf)
    result = await workflow.run(builtin_tools(workspace=tmp_path))
    assert result.status == "failed", result.error
    assert result.failed_steps == ["read"]
