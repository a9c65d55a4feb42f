"""The built-in `planweave/offline` model: answers that read like the goal (no step ids, no
setup hint), and the CLI's one hint line about configuring a real model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from planweave.planner import Planner
from planweave.planner.llm import OFFLINE_HINT

GOAL = "what is 17 * 23 and compute 2 ** 8"


async def test_answer_shows_no_step_ids_and_no_hint(tmp_path: Path) -> None:
    result = await Planner(workspace=tmp_path, store=False).run(GOAL)
    assert result.ok and result.answer == "17 * 23 = 391; 2 ** 8 = 256"
    single = await Planner(workspace=tmp_path, store=False).run("what is 17 * 23")
    assert single.answer == "17 * 23 = 391"


async def test_failed_step_and_files_read_plainly(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = await Planner(workspace=tmp_path, store=False).run("read notes.txt")
    assert result.answer == "notes.txt: hello"
    failed = await Planner(workspace=tmp_path, store=False).run("what is 1 / 0")
    assert (failed.answer or "").startswith("1 / 0: failed: ")


async def test_unplannable_goal_says_so_without_the_hint(tmp_path: Path) -> None:
    result = await Planner(workspace=tmp_path, store=False).run("write a sonnet about the sea")
    assert result.answer == (
        "I cannot plan this goal offline: 'write a sonnet about the sea'. The offline planner only handles "
        "arithmetic, URLs to fetch and workspace files; a real model can plan anything else."
    )


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PLANWEAVE_MODEL"}
    env.update(PLANWEAVE_HOME=str(tmp_path / "home"), LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.run([sys.executable, "-m", "planweave", "run", GOAL, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)


def test_cli_prints_the_hint_once_on_stderr(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "17 * 23 = 391; 2 ** 8 = 256" in proc.stdout
    assert proc.stderr.count(OFFLINE_HINT) == 1 and "PLANWEAVE_MODEL" not in proc.stdout
    assert OFFLINE_HINT == (
        "Answered by planweave's offline rule-based planner. To plan with a real model, set PLANWEAVE_MODEL "
        "or pass `--model` (for example `openai/gpt-4o-mini` with OPENAI_API_KEY, "
        "`anthropic/claude-3-5-haiku-latest` with ANTHROPIC_API_KEY, or `ollama/llama3.1` for a local Ollama)."
    )


def test_cli_quiet_prints_only_the_answer(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "17 * 23 = 391; 2 ** 8 = 256\n"
    assert OFFLINE_HINT not in proc.stderr


# --- chat: the latest message, symbols front ends produce, follow-ups, plain words about what failed -----------

from planweave.planner.offline import offline_reply  # noqa: E402


def _plan(goal: str, conversation: str = "") -> dict[str, object]:
    import json

    prompt = f"Plan the next steps.\n## Goal\n{goal}\n"
    if conversation:
        prompt += f"## Conversation so far\nThe goal is the user's latest message.\n{conversation}\n"
    prompt += "## Tools\n- `calculator`: c\n- `llm`: l\n"
    return json.loads(offline_reply([{"role": "system", "content": prompt}]))  # type: ignore[no-any-return]


def test_times_and_divide_signs_and_x_between_numbers_are_operators() -> None:
    steps = _plan("what is 17 × 23 and 100 ÷ 8 and 6x7")["steps"]
    assert [s["args"] for s in steps if s["tool"] == "calculator"] == [  # type: ignore[union-attr, index]
        {"expression": "17 * 23"}, {"expression": "100 / 8"}, {"expression": "6 * 7"},
    ]


def test_a_follow_up_uses_the_earlier_result_it_refers_to() -> None:
    conversation = "- user: what is 17 × 23\n- assistant: 17 * 23 = 391\n- user: now add 100 to it\n- assistant: 391 + 100 = 491"
    [last] = _plan("now add 1 to it", conversation)["steps"]  # type: ignore[misc]
    assert last["args"] == {"expression": "491 + 1"}
    [first] = _plan("multiply the first result by 2", conversation)["steps"]  # type: ignore[misc]
    assert first["args"] == {"expression": "391 * 2"}
    haiku = _plan("write a haiku", conversation)
    assert haiku["steps"] == [] and "write a haiku" in str(haiku["answer"])  # the conversation is not the goal


async def test_what_no_rule_could_do_is_said_in_the_answer(tmp_path: Path) -> None:
    result = await Planner(workspace=tmp_path, store=False).run("what is 2 + 2; write a haiku")
    assert result.answer == (
        "2 + 2 = 4. I could not do 'write a haiku': the offline planner has no rule for it (a real model can)."
    )
