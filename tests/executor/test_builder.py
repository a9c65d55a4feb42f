"""The builder API (the seeds' shape) over the same plan, and saved results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Parallel, Step, Workflow
from planweave.executor.saved import load_results, save_results
from planweave.tools import ConfigError, tool

ROOT = Path(__file__).resolve().parents[2]


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def words(text: str) -> list[str]:
    return text.split()


def count(items: list[str]) -> int:
    return len(items)


def test_add_step_chains_and_each_step_needs_the_one_before_unless_it_says_otherwise() -> None:
    workflow = (
        Workflow("content_research", description="Research and analyse content")
        .add_step("search", tool="calculator", args={"expression": "1 + 1"})
        .add_step("analyze", handler=words, args={"text": "a b"})
        .add_step(Step(id="report", handler=count, args={"items": "${analyze}"}))
        .add_step("independent", tool="calculator", args={"expression": "2"}, depends_on=[])
        .add_step(Parallel("both", steps=[Step(id="x", handler=count, args={"items": []})]))
    )
    assert workflow.name == "content_research" and workflow.description == "Research and analyse content"
    deps = {s.id: s.depends_on for s in workflow.plan.steps}
    assert deps == {"search": [], "analyze": ["search"], "report": ["analyze"], "independent": [], "x": ["independent"],
                    "both": []}
    # It is the same plan a declarative workflow would have.
    same = Workflow(name="content_research", description="Research and analyse content", steps=workflow.steps)
    assert same.plan == workflow.plan


def test_add_step_refuses_an_object_with_keyword_fields() -> None:
    with pytest.raises(ConfigError, match="give the step's fields either in the object or as keywords"):
        Workflow("w").add_step(Step(id="a", tool="calculator"), args={"expression": "1"})


async def test_execute_runs_with_builtin_tools_and_the_tools_given_to_add_step(tmp_path: Path) -> None:
    workflow = (
        Workflow("shouting")
        .add_step("total", tool="calculator", args={"expression": "${inputs.a} * 2"})
        .add_step("loud", tool=shout, args={"text": "total is ${total}"})
    )
    result = await workflow.execute({"a": 21}, save_results=tmp_path / "results")
    assert result.status == "succeeded", result.error
    assert result.output("loud") == "TOTAL IS 42"
    [saved] = (tmp_path / "results").iterdir()
    assert saved.name.startswith("shouting_") and saved.suffix == ".json"
    data = load_results(saved)
    assert data["workflow"] == "shouting" and data["run_id"] == result.run_id
    assert data["outputs"] == {"total": 42, "loud": "TOTAL IS 42"} and data["status"] == "succeeded"


async def test_saves_are_named_by_utc_time_and_never_replace_each_other(tmp_path: Path) -> None:
    result = await Workflow("w").add_step("a", tool="calculator", args={"expression": "1"}).execute()
    at = datetime(2026, 12, 2, 7, 15, 0, tzinfo=UTC)
    first = save_results(result, tmp_path, name="serp analysis", now=at)
    second = save_results(result, tmp_path, name="serp analysis", now=at)
    assert (first.name, second.name) == ("serp_analysis_20261202_071500.json", "serp_analysis_20261202_071500-2.json")
    assert {p.name for p in tmp_path.iterdir()} == {first.name, second.name}  # no temporary file left
    assert json.loads(first.read_text())["saved_at"] == "2026-12-02T07:15:00Z"


def test_exec_save_results(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: doubled\ninputs: {a: 4}\nsteps:\n  - {id: d, tool: calculator, args: {expression: '${inputs.a} * 2'}}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "exec", str(wf), "--save-results", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    [saved] = (tmp_path / "out").iterdir()
    assert f"planweave: saved the results to {saved}" in proc.stderr
    data: dict[str, Any] = json.loads(saved.read_text())
    assert data["workflow"] == "doubled" and data["outputs"] == {"d": 8}
