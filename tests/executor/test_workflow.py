"""Workflows: groups, success criteria, the one loader and its errors, the one validation entry point."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import (
    Executor,
    Parallel,
    PlanError,
    Step,
    Workflow,
    WorkflowFileError,
    load_workflow,
    validate_plan,
)
from planweave.tools import PlanweaveError, SetupError


def double(x: int) -> int:
    return 2 * x


def add(a: int, b: int) -> int:
    return a + b


def _workflow() -> Workflow:
    return Workflow(
        name="groups",
        inputs={"x": 5},
        steps=[
            Parallel(
                id="both",
                steps=[
                    Step(id="left", handler=double, args={"x": "${inputs.x}"}),
                    Step(id="right", handler=double, args={"x": 1}),
                ],
            ),
            Step(id="sum", handler=add, args={"a": "${both.left}", "b": "${both.right}"}),
        ],
        success=["${sum} == 12"],
    )


def test_executor_runs_a_workflow_with_a_parallel_group() -> None:
    result = Executor().run_sync(_workflow())
    assert result.status == "succeeded", result.error
    assert result.outputs["sum"] == 12
    assert result.outputs["both"] == {"left": 10, "right": 2}


def test_executor_run_checks_the_workflows_success_criteria() -> None:
    wf = _workflow().model_copy(update={"success": ["${sum} == 13"]})
    result = Executor().run_sync(wf)
    assert result.status == "failed"
    assert result.error == "success criterion `${sum} == 13` does not hold"


def test_workflow_run_sync() -> None:
    outputs: dict[str, Any] = _workflow().run_sync().outputs
    assert outputs["sum"] == 12


# --- the one loader and its errors ---------------------------------------------------------------

BAD = """\
name: trip
inputs: {city: Paris}
limit: {deadline_s: 5}
steps:
  - id: search
    tool: calculator
    args: {expression: "1 + 1"}
  - id: book
    tool: calculator
    args: {expression: "2 * 2"}
    approve: true
  - id: pay
    tool: calculator
    retry: {max_attemps: 3}
  - parallel:
      - {id: left, tool: calculator, timeout: 3}
      - {tool: calculator}
    id: both
  - {id: nothing}
"""

BAD_PROBLEMS = [
    "step `book` (steps[1]): unknown field `approve`; allowed: id, tool, handler, workflow, args, depends_on, description, "
    "when, for_each, retry, timeout_s, on_failure, cache, approval, answer_within_s. Did you mean `approval`?",
    "step `pay` (steps[2]): unknown field `retry.max_attemps`; allowed: max_attempts, initial_delay_s, "
    "backoff_factor, max_delay_s, jitter, retry_on. Did you mean `max_attempts`?",
    "step `left` (steps[3].parallel[0]): unknown field `timeout`; allowed: id, tool, handler, workflow, args, depends_on, "
    "description, when, for_each, retry, timeout_s, on_failure, cache, approval, answer_within_s. Did you mean `timeout_s`?",
    "unnamed step (steps[3].parallel[1]): missing required field `id`.",
    "step `nothing` (steps[4]): give a step exactly one of `tool` (a registered tool name) or `handler` "
    "(a Python function).",
    "workflow: unknown field `limit`; allowed: name, description, version, inputs, steps, success, limits, mcp, model. "
    "Did you mean `limits`?",
]


def test_a_bad_workflow_file_names_each_step_field_and_what_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(WorkflowFileError) as info:
        load_workflow(path)
    assert info.value.problems == BAD_PROBLEMS
    assert str(info.value) == f"`{path}` is not a valid workflow, 6 problems:\n" + "\n".join(
        f"- {p}" for p in BAD_PROBLEMS
    )
    assert info.value.path == str(path)
    assert isinstance(info.value, SetupError)
    # pydantic's internal names never reach the user.
    assert "function-after" not in str(info.value) and "Parallel.parallel" not in str(info.value)


def test_the_same_problems_in_json_and_python_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"steps": [{"id": "a", "tool": "calculator", "arg": {}}]}')
    with pytest.raises(WorkflowFileError) as info:
        load_workflow(path)
    assert str(info.value) == (
        f"`{path}` is not a valid workflow: step `a` (steps[0]): unknown field `arg`; allowed: id, tool, handler, workflow, "
        "args, depends_on, description, when, for_each, retry, timeout_s, on_failure, cache, approval, answer_within_s. Did you mean `args`?"
    )
    py = tmp_path / "bad_flow.py"
    py.write_text("from planweave import Step, Workflow\nworkflow = Workflow(steps=[Step(id='a', tool='x', arg={})])\n")
    with pytest.raises(WorkflowFileError, match=r"`Step`: unknown field `arg`; allowed: id, tool, .* `args`\?"):
        load_workflow(py)


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFileError, match="cannot read"):
        load_workflow(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [ {id: a, tool: x")
    with pytest.raises(WorkflowFileError, match="is not valid YAML"):
        load_workflow(bad)
    bad.write_text("")
    with pytest.raises(WorkflowFileError, match=r"is empty; a workflow file holds a mapping with `steps`"):
        load_workflow(bad)
    (tmp_path / "p.txt").write_text("{}")
    with pytest.raises(WorkflowFileError, match=r"unknown file type `.txt`; use .yaml, .yml, .json or .py"):
        load_workflow(tmp_path / "p.txt")


def test_validate_plan_is_the_one_entry_point_for_plans_and_workflows() -> None:
    validate_plan(_workflow())  # handlers need no registry; the group's join tool is built in
    broken = Workflow(
        steps=[
            Parallel(id="g", steps=[Step(id="a", tool="nope")]),
            Step(id="b", handler=add, args={"a": "${inputs.zz}", "b": 1}),
        ]
    )
    with pytest.raises(PlanError) as info:
        validate_plan(broken)
    assert [p.step_id for p in info.value.problems] == ["a", "b"]


def test_cli_validate_and_exec_give_one_clear_message_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    for command in ("validate", "exec"):
        proc = subprocess.run(
            [sys.executable, "-m", "planweave", command, str(path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PLANWEAVE_HOME": str(tmp_path / "home")},
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        for problem in BAD_PROBLEMS:
            assert problem in proc.stderr
        assert proc.stderr.count(str(path)) == 1


def test_every_error_class_belongs_to_the_tree() -> None:
    import planweave.executor.errors
    import planweave.executor.refs
    import planweave.executor.run
    import planweave.executor.store
    import planweave.planner.errors
    import planweave.planner.serve.chat
    import planweave.tools.errors
    import planweave.tools.safe_eval

    modules = [
        planweave.executor.errors, planweave.executor.refs, planweave.executor.run, planweave.executor.store,
        planweave.planner.errors, planweave.planner.serve.chat, planweave.tools.errors, planweave.tools.safe_eval,
    ]
    classes = [
        obj for m in modules for obj in vars(m).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == m.__name__
    ]
    assert len(classes) >= 20
    assert [c.__name__ for c in classes if not issubclass(c, PlanweaveError)] == []
    doc = planweave.tools.errors.__doc__ or ""
    assert [c.__name__ for c in classes if c.__name__ not in doc] == []
