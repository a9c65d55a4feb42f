"""Prompt templates are versioned files: each renders with example inputs; overrides and errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from planweave.planner.errors import ConfigError
from planweave.planner.prompts import PACKAGE_DIR, PromptLibrary

TOOLS = [{"name": "calculator", "description": "Safe arithmetic.\nSecond line.", "parameters": {"type": "object"}}]
HISTORY = [{"id": "a", "tool": "calculator", "status": "succeeded", "text": "391"}]


def test_every_bundled_template_has_a_rendering_test() -> None:
    assert PromptLibrary().names() == ["join", "llm_tool", "plan", "plan_finish", "repair"]


def test_plan_template() -> None:
    p = PromptLibrary().get("plan")
    first = p.render(goal="what is 17 * 23", tools=TOOLS, history=[], replan_reason=None)
    assert "## Goal\nwhat is 17 * 23" in first
    assert '- `calculator`: Safe arithmetic. Second line.\n  arguments (JSON schema): {"type": "object"}' in first
    assert "`[id, tool, args]`" in first and "Write the steps first, then `rationale`" in first
    assert "Already done" not in first and "planning again" not in first
    again = p.render(goal="g", tools=TOOLS, history=HISTORY, replan_reason="`a` failed")
    assert "- `a` (calculator, succeeded): 391" in again and "## Why you are planning again\n`a` failed" in again
    assert p.version == "3"
    assert p.hash == hashlib.sha256((PACKAGE_DIR / "plan.j2").read_bytes()).hexdigest()[:12]


def test_plan_finish_template() -> None:
    p = PromptLibrary().get("plan_finish")
    text = p.render(steps=[{"id": "a", "tool": "calculator", "args": '{"expression": "17 * 23"}'}])
    assert '- `a` (calculator): {"expression": "17 * 23"}' in text
    assert "cut off" in text and "Write only the remaining steps" in text and "do not repeat these" in text
    assert p.version == "1"


def test_join_template() -> None:
    p = PromptLibrary().get("join")
    text = p.render(goal="g", history=HISTORY, replans_left=0)
    assert "- `a` (calculator, succeeded): 391" in text
    assert "You cannot replan any more" in text
    assert "cannot replan" not in p.render(goal="g", history=HISTORY, replans_left=2)


def test_repair_template_for_plans_and_decisions() -> None:
    p = PromptLibrary().get("repair")
    plan = p.render(errors="- step `x` uses unknown tool `y`", accepted=["a", "b"])
    assert plan.startswith("Your plan could not be used:\n- step `x` uses unknown tool `y`")
    assert "already running; do not send them again: a, b." in plan
    decision = p.render(errors="- bad", accepted=[], what="decision")
    assert decision.startswith("Your decision could not be used:") and decision.strip().endswith(
        "Send the corrected decision again."
    )


def test_llm_tool_template() -> None:
    p = PromptLibrary().get("llm_tool")
    assert p.render(prompt="Summarise", context=None) == "Summarise\n"
    assert p.render(prompt="Summarise", context="[1, 2]").endswith("## Context\n[1, 2]\n")


def test_user_directory_overrides_and_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "join.j2").write_text("{# version: 7-mine #}\nDecide about {{ goal }}.\n")
    lib = PromptLibrary(tmp_path)
    mine = lib.get("join")
    assert (mine.version, mine.render(goal="g")) == ("7-mine", "Decide about g.\n")
    assert mine.ref["name"] == "join" and len(mine.ref["hash"]) == 12
    assert lib.get("plan").path == PACKAGE_DIR / "plan.j2"  # not overridden: the bundled one


def test_bad_templates_say_what_to_fix(tmp_path: Path) -> None:
    (tmp_path / "plan.j2").write_text("no version line\n")
    with pytest.raises(ConfigError, match="has no version; start it with a line like"):
        PromptLibrary(tmp_path).get("plan")
    (tmp_path / "join.j2").write_text("{# version: 1 #}\n{% if %}\n")
    with pytest.raises(ConfigError, match="line 2"):
        PromptLibrary(tmp_path).get("join")
    with pytest.raises(ConfigError, match="no prompt named `nope`"):
        PromptLibrary(tmp_path).get("nope")
    with pytest.raises(ConfigError, match="needs a variable that was not given"):
        PromptLibrary().get("join").render(goal="g")


def test_plan_and_join_show_the_run_inputs() -> None:
    inputs = [{"name": "city", "text": "Oslo"}]
    plan = PromptLibrary().get("plan").render(goal="g", inputs=inputs, tools=TOOLS, history=[], replan_reason=None)
    assert "## Inputs\n- `city` (use it as `${inputs.city}`): Oslo\n" in plan
    join = PromptLibrary().get("join").render(goal="g", inputs=inputs, history=HISTORY, replans_left=1)
    assert "## Inputs\n- `city`: Oslo\n" in join
