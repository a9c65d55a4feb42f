"""The exit codes and what is said about failed steps, through the real CLI (`python -m planweave`
in a subprocess): `partial` exits 1 unless `--allow-failed-steps`, and the failed steps are named
once, in the stderr line `planweave: STATUS: REASON` (piped, terminal and `--quiet` alike), and in
`--json`'s `failed_steps` and `error`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planweave.executor.store import open_store
from planweave.planner.testing import FakeModelServer, Reply

ROOT = Path(__file__).resolve().parents[3]

CONTINUE_YAML = (
    "name: continue\nsteps:\n"
    "  - {id: div, tool: calculator, args: {expression: '1/0'}, on_failure: continue}\n"
    "  - {id: ok, tool: calculator, args: {expression: '2 + 2'}}\n"
)


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planweave", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PLANWEAVE_HOME": str(tmp_path / "home"), "PLANWEAVE_MODEL": "", **env},
    )


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "continue.yaml"
    path.write_text(CONTINUE_YAML)
    return path


def test_exec_of_a_workflow_with_a_failed_continue_step_exits_1_and_names_it(tmp_path: Path, workflow: Path) -> None:
    piped = cli(tmp_path, "exec", str(workflow))
    assert piped.returncode == 1, piped.stderr
    closing = piped.stdout.strip().splitlines()[-1]
    assert closing.startswith("partial in ")
    assert piped.stderr == "planweave: partial: step `div` failed: division by zero in `1/0`.\n"  # said once

    quiet = cli(tmp_path, "exec", str(workflow), "--quiet")
    assert quiet.returncode == 1 and quiet.stdout == ""
    assert quiet.stderr == "planweave: partial: step `div` failed: division by zero in `1/0`.\n"

    as_json = cli(tmp_path, "exec", str(workflow), "--json")
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["status"] == "partial" and data["failed_steps"] == ["div"] and data["steps"]["ok"]["output"] == 4

    allowed = cli(tmp_path, "exec", str(workflow), "--allow-failed-steps", "--quiet")
    assert allowed.returncode == 0 and "step `div` failed" in allowed.stderr


def test_exec_of_a_workflow_without_failures_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "fine.yaml"
    path.write_text("name: fine\nsteps:\n  - {id: ok, tool: calculator, args: {expression: '2 + 2'}}\n")
    proc = cli(tmp_path, "exec", str(path), "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""


def test_a_failed_workflow_exits_1_even_with_allow_failed_steps(tmp_path: Path) -> None:
    path = tmp_path / "fails.yaml"
    path.write_text("name: fails\nsteps:\n  - {id: div, tool: calculator, args: {expression: '1/0'}}\n")
    proc = cli(tmp_path, "exec", str(path), "--allow-failed-steps", "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["status"] == "failed" and data["failed_steps"] == ["div"]


def test_resume_takes_allow_failed_steps(tmp_path: Path, workflow: Path) -> None:
    first = cli(tmp_path, "exec", str(workflow), "--quiet")
    store = open_store(tmp_path / "home")
    [run] = store.list_runs()
    store.set_status(run.id, "interrupted", error="killed")  # as if the process had died
    store.close()
    resumed = cli(tmp_path, "resume", run.id, "--json")
    assert first.returncode == resumed.returncode == 1
    assert json.loads(resumed.stdout)["failed_steps"] == ["div"]
    store = open_store(tmp_path / "home")
    store.set_status(run.id, "interrupted", error="killed")
    store.close()
    allowed = cli(tmp_path, "resume", run.id, "--allow-failed-steps", "--quiet")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr == "planweave: partial: step `div` failed: division by zero in `1/0`.\n"


# One test per mode (each a `planweave run` process): run side by side on the test workers.
@pytest.mark.parametrize("mode", ["piped", "quiet", "json"])
def test_run_offline_goal_whose_only_step_failed_is_partial_in_every_mode(tmp_path: Path, mode: str) -> None:
    if mode == "piped":
        piped = cli(tmp_path, "run", "what is 1/0", "--workspace", str(tmp_path))
        assert piped.returncode == 1, piped.stderr
        closing = piped.stdout.strip().splitlines()[-1]
        assert closing.startswith("partial in ")
        said = [line for line in (piped.stdout + piped.stderr).splitlines() if "division by zero" in line]
        assert said[-1] == "planweave: partial: step `p1` failed: division by zero in `1/0`."
        assert "planweave: partial:" not in piped.stdout
    elif mode == "quiet":
        quiet = cli(tmp_path, "run", "what is 1/0", "--quiet", "--allow-failed-steps")
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr.strip().splitlines()[-1] == "planweave: partial: step `p1` failed: division by zero in `1/0`."
    else:
        as_json = cli(tmp_path, "run", "read missing.txt", "--workspace", str(tmp_path), "--json")
        assert as_json.returncode == 1
        data = json.loads(as_json.stdout)
        assert data["status"] == "partial" and data["failed_steps"] == ["p1"]
        assert "`missing.txt` does not exist" in data["error"]


def test_run_with_an_empty_plan_is_re_asked_then_fails(tmp_path: Path) -> None:
    empty = Reply.json_obj({"rationale": "nothing", "steps": [], "answer": None})
    with FakeModelServer() as server:
        server.enqueue(empty, empty, empty)
        proc = cli(
            tmp_path, "run", "do something", "--model", "openai/fake", "--api-base", server.base_url,
            "--tools", "calculator", "--json", OPENAI_API_KEY="sk-fake",
        )
        requests = len(server.chat_requests)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "failed" and data["answer"] is None
    assert "the plan is empty: it has no steps and no `answer`" in data["error"]
    assert requests == 3  # the first plan and two re-asks
