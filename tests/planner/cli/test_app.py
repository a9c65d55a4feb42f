"""The CLI through typer's runner and as a real subprocess: exit codes, --json, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planweave.planner.cli.app import app
from planweave.planner.testing import ChildProcesses, wait_until

ROOT = Path(__file__).resolve().parents[3]
WF = ROOT / "examples" / "workflows"
runner = CliRunner()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planweave", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_exec_json_output_is_only_json(tmp_path: Path) -> None:
    res = runner.invoke(app, ["exec", str(WF / "trip_budget.yaml"), "--workspace", str(tmp_path), "--json", "-i", "nights=1"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["steps"]["hotel"]["output"] == 120


def test_exec_failed_workflow_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "fails.yaml"
    bad.write_text("name: f\nsteps:\n  - {id: div, tool: calculator, args: {expression: '1/0'}}\n")
    proc = cli("exec", str(bad), "--workspace", str(tmp_path))
    assert proc.returncode == 1
    assert "division by zero" in proc.stdout


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - {id: a, tool: calculatr, args: {expression: '1'}}\n  - {id: b, tool: calculator, args: {expression: '${zz}'}}\n")
    proc = cli("exec", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "step `a` uses unknown tool `calculatr`; did you mean `calculator`?" in proc.stderr
    assert "there is no step `zz`" in proc.stderr
    missing = cli("exec", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    usage = cli("exec", str(WF / "trip_budget.yaml"), "--input", "novalue")
    assert usage.returncode == 2 and "is not KEY=VALUE" in usage.stderr


def test_piped_output_has_no_colour_codes(tmp_path: Path) -> None:
    proc = cli("exec", str(WF / "document_analysis.py"))
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stdout and "succeeded" in proc.stdout


def test_validate_and_tools() -> None:
    res = runner.invoke(app, ["validate", str(WF / "trip_budget.yaml")])
    assert res.exit_code == 0 and "valid (6 steps)" in res.stdout
    res = runner.invoke(app, ["tools", "--json"])
    names = [t["name"] for t in json.loads(res.stdout)]
    assert {"calculator", "http_get", "read_file", "write_file", "list_files", "web_search"} <= set(names)


def test_help_does_not_import_heavy_modules() -> None:
    code = "import sys; sys.argv=['planweave','--help']\nfrom planweave.planner.cli import app\ntry:\n    app.main()\nexcept SystemExit:\n    pass\nprint([m for m in ('litellm', 'instructor', 'planweave.executor', 'httpx', 'planweave.tools.builtin') if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip().endswith("[]"), proc.stdout + proc.stderr


def test_a_quiet_run_draws_nothing_so_imports_no_graph_library(tmp_path: Path) -> None:
    code = (
        "import gc, sys; sys.argv=['planweave','run','what is 6 * 7','--quiet']\n"
        "from planweave.planner.cli import app\ntry:\n    app.main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('exit', code, 'networkx' in sys.modules)\n"
        "print('collector enabled', gc.isenabled(), 'start-up heap frozen', gc.get_freeze_count() > 100_000)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**__import__("os").environ, "PLANWEAVE_MODEL": "", "PLANWEAVE_HOME": str(tmp_path)},
    )
    assert proc.stdout.splitlines() == [
        "6 * 7 = 42", "exit 0 False", "collector enabled True start-up heap frozen True"
    ], proc.stdout + proc.stderr


def test_an_embedded_app_leaves_the_garbage_collector_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    monkeypatch.setenv("PLANWEAVE_HOME", str(tmp_path))
    monkeypatch.setenv("PLANWEAVE_MODEL", "")
    frozen = gc.get_freeze_count()
    res = runner.invoke(app, ["run", "what is 6 * 7", "--quiet"])
    assert res.exit_code == 0 and res.stdout.strip() == "6 * 7 = 42", res.output
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_run_offline_goal_in_a_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "run", "what is 6 * 7", "--workspace", str(tmp_path), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**__import__("os").environ, "PLANWEAVE_MODEL": ""},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "succeeded" and data["steps"]["p1"]["output"] == 42
    assert data["answer"] == "6 * 7 = 42"  # no step ids; the real-model hint is not part of the answer
    empty = cli("run", "   ")
    assert empty.returncode == 2 and "the goal is empty" in empty.stderr


def _fake_env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "OPENAI_API_KEY": "sk-fake", "PLANWEAVE_HOME": str(tmp_path / "home")}


def test_run_json_against_a_model_server_is_only_json(tmp_path: Path) -> None:
    from planweave.planner.testing import FakeModelServer, Reply

    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj({"rationale": "r", "steps": [{"id": "a", "tool": "calculator", "args": {"expression": "6 * 7"}}]}),
            Reply.json_obj({"action": "finish", "answer": "It is 42.", "reason": ""}),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "planweave", "run", "six times seven", "--model", "openai/fake",
             "--api-base", server.base_url, "--tools", "calculator", "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=120, env=_fake_env(tmp_path),
        )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # nothing else on stdout
    assert data["answer"] == "It is 42." and data["steps"]["a"]["output"] == 42


def test_run_piped_prints_plain_progress_answer_and_summary(tmp_path: Path) -> None:
    from planweave.planner.testing import FakeModelServer, Reply

    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj({"rationale": "r", "steps": [{"id": "a", "tool": "calculator", "args": {"expression": "6 * 7"}}]}),
            Reply.json_obj({"action": "finish", "answer": "It is 42.", "reason": ""}),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "planweave", "run", "six times seven", "--model", "openai/fake",
             "--api-base", server.base_url, "--tools", "calculator"],
            capture_output=True, text=True, cwd=ROOT, timeout=120, env=_fake_env(tmp_path),
        )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out
    assert "It is 42." in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("succeeded in ") and "2 LLM calls" in summary and "cost unknown" in summary
    assert "| run " in summary


def test_ctrl_c_exits_130_and_the_run_is_resumable(tmp_path: Path, children: ChildProcesses) -> None:
    import signal

    from planweave.executor.store import open_store
    from planweave.planner.testing import FakeModelServer, Reply

    tools_py = tmp_path / "slow_tools.py"
    tools_py.write_text(
        "import time\nfrom planweave.tools import tool\n@tool\nasync def nap(s: float) -> str:\n"
        "    'Sleep.'\n    import asyncio\n    await asyncio.sleep(s)\n    return 'rested'\n"
    )
    with FakeModelServer() as server:
        server.enqueue(Reply.json_obj({"rationale": "r", "steps": [{"id": "a", "tool": "nap", "args": {"s": 30}}]}))
        proc = children.spawn(
            [sys.executable, "-m", "planweave", "run", "nap", "--model", "openai/fake", "--api-base",
             server.base_url, "--tools", str(tools_py)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_fake_env(tmp_path),
        )
        wait_until(lambda: "started" in _peek_store(tmp_path), "the child recorded that step `a` started", timeout_s=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "resume with `planweave resume" in err and "Traceback" not in err
    [run] = open_store(tmp_path / "home").list_runs()
    assert run.status == "interrupted"


def _peek_store(tmp_path: Path) -> str:
    from planweave.executor.store import open_store

    if not (tmp_path / "home" / "runs.db").exists():
        return ""
    store = open_store(tmp_path / "home")
    try:
        runs = store.list_runs()
        return " ".join(e["kind"] for r in runs for e in store.events(r.id)).replace("step_started", "started")
    finally:
        store.close()


def test_serve_refuses_public_host_without_key() -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PLANWEAVE_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "planweave", "serve", "--host", "0.0.0.0"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "key" in proc.stderr.lower()


# --- a newcomer's first hour (issue 9): version, completion, plan -> exec, failures said once ---------


def test_version_and_shell_completion() -> None:
    from planweave import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"planweave {__version__}\n"
    helped = runner.invoke(app, ["--help"])
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout
    # typer's own switch for tests: name the shell instead of detecting the one this test runs under.
    script = subprocess.run(
        [sys.executable, "-m", "planweave", "--show-completion", "bash"], capture_output=True, text=True, cwd=ROOT,
        timeout=60, env={**__import__("os").environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )
    assert script.returncode == 0 and "complete -o default -F" in script.stdout and "planweave" in script.stdout


def test_plan_then_exec_round_trip_with_the_llm_tool(tmp_path: Path) -> None:
    """The offline planner's plans end in an `llm` step; `exec` runs them as they were written."""
    env = {**__import__("os").environ, "PLANWEAVE_HOME": str(tmp_path / "home")}
    plan_file = tmp_path / "p.yaml"
    planned = subprocess.run(
        [sys.executable, "-m", "planweave", "plan", "what is 2 + 3 and what is 4 * 5", "-o", str(plan_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
    )
    assert planned.returncode == 0, planned.stderr
    assert f"wrote {plan_file} (3 steps)" in planned.stderr
    assert "tool: llm" in plan_file.read_text()
    ran = subprocess.run(
        [sys.executable, "-m", "planweave", "exec", str(plan_file), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
    )
    assert ran.returncode == 0, ran.stderr
    steps = json.loads(ran.stdout)["steps"]
    assert {sid: s["status"] for sid, s in steps.items()} == {"p1": "succeeded", "p2": "succeeded", "combine": "succeeded"}
    assert "5" in steps["combine"]["output"] and "20" in steps["combine"]["output"]
    # `--tools` limits what a workflow may use, as for `run`.
    limited = subprocess.run(
        [sys.executable, "-m", "planweave", "exec", str(plan_file), "--tools", "calculator"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
    )
    assert limited.returncode == 2 and "unknown tool `llm`" in limited.stderr
    catalogue = {t["name"] for t in json.loads(runner.invoke(app, ["tools", "--json"]).stdout)}
    assert {"llm", "calculator", "http_get"} <= catalogue


def test_plurals_for_one_step(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("steps:\n  - {id: a, tool: calculator, args: {expression: '1+1'}}\n")
    res = runner.invoke(app, ["validate", str(one)])
    assert res.exit_code == 0 and res.stdout == f"{one}: valid (1 step)\n"


def _count(text: str, needle: str) -> int:
    return text.count(needle)


def test_a_failed_workflow_says_why_once_in_every_mode(tmp_path: Path) -> None:
    bad = tmp_path / "fails.yaml"
    bad.write_text("name: f\nsteps:\n  - {id: div, tool: calculator, args: {expression: '1/0'}}\n")
    for mode in ([], ["--quiet"]):
        proc = cli("exec", str(bad), *mode)
        assert proc.returncode == 1
        assert _count(proc.stdout + proc.stderr, "planweave: failed: step `div` failed:") == 1, (mode, proc)
        assert "division by zero" in proc.stderr.splitlines()[-1]
    quiet = cli("exec", str(bad), "--quiet")
    assert quiet.stdout == "" and len(quiet.stderr.splitlines()) == 1
    as_json = cli("exec", str(bad), "--json")
    assert as_json.returncode == 1 and as_json.stderr == ""
    assert "division by zero" in json.loads(as_json.stdout)["steps"]["div"]["error"]


# One test per mode (each a `planweave run` process): run side by side on the test workers.
@pytest.mark.parametrize("mode", [[], ["--quiet"], ["--json"]], ids=["piped", "quiet", "json"])
def test_a_failed_planner_run_says_why_once_in_every_mode(tmp_path: Path, mode: list[str]) -> None:
    from planweave.planner.testing import FakeModelServer, Reply
    from planweave.planner.testing.replies import HttpError

    with FakeModelServer() as server:
        server.enqueue(Reply(error=HttpError(status=401, message="Incorrect API key provided")))
        proc = subprocess.run(
            [sys.executable, "-m", "planweave", "run", "six times seven", "--model", "openai/fake",
             "--api-base", server.base_url, *mode],
            capture_output=True, text=True, cwd=ROOT, timeout=300, env=_fake_env(tmp_path),
        )
    assert proc.returncode == 1, proc.stderr
    if mode == ["--json"]:
        assert json.loads(proc.stdout)["error"] and "planweave: failed:" not in proc.stderr
        return
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "planweave: failed:" in line]
    assert len(said) == 1, (mode, proc.stdout, proc.stderr)
    assert "API key" in said[0] or "401" in said[0]


def test_http_hints_name_the_cli_flags(tmp_path: Path) -> None:
    wf = tmp_path / "local.yaml"
    wf.write_text("steps:\n  - {id: get, tool: http_get, args: {url: 'http://127.0.0.1:9/x'}}\n")
    proc = cli("exec", str(wf), "--quiet")
    assert proc.returncode == 1
    assert "run again with `--allow-private-hosts`" in proc.stderr and "make_http_get" not in proc.stderr
    assert {"--http-timeout", "--allow-private-hosts"} <= _options("exec")


def _options(command: str) -> set[str]:
    import typer.main

    click_app = typer.main.get_command(app)
    params = click_app.commands[command].params  # type: ignore[attr-defined]
    return {opt for p in params for opt in p.opts if opt.startswith("--")}


def test_resume_takes_the_flags_of_run() -> None:
    only_for_a_new_run = {"--name", "--session-id", "--user-id", "--tag", "--record", "--no-record"}
    missing = _options("run") - only_for_a_new_run - _options("resume")
    assert not missing, f"resume lacks {sorted(missing)}"
    assert {"--tools", "--http-timeout", "--allow-private-hosts", "--max-cost"} <= _options("resume")
    assert {"--tools", "--http-timeout", "--model"} <= _options("exec")


def test_run_accepts_llm_among_its_tools(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "run", "what is 2 + 3", "--tools", "calculator,llm", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**__import__("os").environ, "PLANWEAVE_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "5" in json.loads(proc.stdout)["answer"]
