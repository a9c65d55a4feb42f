"""Resume for real: a `planweave` process is killed with SIGKILL mid-run, then resumed by id.

Every tool invocation is appended to a log file (flushed and fsynced), so the test proves
that no step that had succeeded ran twice and that no result was lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from planweave.executor.store import open_store
from planweave.planner import Planner
from planweave.planner.testing import ChildProcesses, FakeModelServer, Reply, wait_until

ROOT = Path(__file__).resolve().parents[2]

TOOLS = textwrap.dedent(
    '''
    import os, time
    from planweave.tools import tool

    LOG = os.environ["PW_TEST_LOG"]

    def note(text: str) -> None:
        with open(LOG, "a") as f:
            f.write(text + "\\n")
            f.flush()
            os.fsync(f.fileno())

    @tool
    def fetch(name: str) -> str:
        """Fetch a named value."""
        note(f"fetch:{name}")
        return name.upper()

    @tool
    def hang(name: str) -> str:
        """Slow the first time round (the process gets killed while it waits)."""
        note(f"hang:{name}")
        if not os.environ.get("PW_TEST_FAST"):
            time.sleep(60)
        return f"{name} done"

    @tool
    def combine(parts: list) -> str:
        """Join the parts."""
        note("combine")
        return " + ".join(str(p) for p in parts)
    '''
)


def plan_reply() -> Reply:
    return Reply.json_obj(
        {
            "rationale": "fetch in parallel, then combine",
            "steps": [
                {"id": "a", "tool": "fetch", "args": {"name": "alpha"}},
                {"id": "b", "tool": "fetch", "args": {"name": "beta"}},
                {"id": "c", "tool": "hang", "args": {"name": "gamma"}},
                {"id": "d", "tool": "combine", "args": {"parts": ["${a}", "${b}", "${c}"]}},
            ],
            "answer": None,
        }
    )


def finish_reply(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


def calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def recorded_kinds(home: Path) -> list[str]:
    """The kinds of the events the (only) run in `home` has recorded so far."""
    import planweave.planner.events  # noqa: F401  (registers the planner's event kinds)

    store = open_store(home)
    try:
        runs = store.list_runs()
        return [e["kind"] for e in store.events(runs[0].id)] if runs else []
    finally:
        store.close()


def recorded_successes(home: Path) -> set[str]:
    """The steps the (only) run in `home` has recorded as succeeded so far."""
    store = open_store(home)
    try:
        runs = store.list_runs()
        return set(store.get_run(runs[0].id).resume_state().completed) if runs else set()
    finally:
        store.close()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    tools_py = tmp_path / "counting_tools.py"
    tools_py.write_text(TOOLS)
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PW_TEST_LOG": str(log),
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "sk-fake",
        "PLANWEAVE_HOME": str(tmp_path / "home"),
    }
    return tools_py, log, env


def test_planner_run_killed_with_sigkill_resumes_without_rerunning_steps(
    setup: tuple[Path, Path, dict[str, str]], children: ChildProcesses
) -> None:
    tools_py, log, env = setup
    with FakeModelServer() as server:
        server.enqueue(plan_reply(), finish_reply("ALPHA + BETA + gamma done"))
        cmd = [sys.executable, "-m", "planweave", "run", "combine alpha, beta and gamma",
               "--model", "openai/fake", "--api-base", server.base_url, "--tools", str(tools_py), "--json"]
        proc = children.spawn(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: calls(log)["fetch:alpha"] and calls(log)["fetch:beta"] and calls(log)["hang:gamma"],
                       "the child called `fetch` twice and `hang` once", timeout_s=60)
            wait_until(lambda: recorded_successes(Path(env["PLANWEAVE_HOME"])) == {"a", "b"},
                       "the store recorded `a` and `b` as succeeded", timeout_s=60)
            # The plan round finished (else the resumed run finishes planning first: tested below).
            wait_until(lambda: "plan_updated" in recorded_kinds(Path(env["PLANWEAVE_HOME"])),
                       "the store recorded the finished plan round", timeout_s=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        store = open_store(Path(env["PLANWEAVE_HOME"]))
        [summary] = store.list_runs()
        assert summary.status == "interrupted"
        before = store.get_run(summary.id).resume_state()
        assert before.completed == {"a": "ALPHA", "b": "BETA"}

        resumed = subprocess.run(
            [sys.executable, "-m", "planweave", "resume", summary.id[:8], "--json"],
            env={**env, "PW_TEST_FAST": "1"}, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert resumed.returncode == 0, resumed.stderr
        result = json.loads(resumed.stdout)

    assert result["status"] == "succeeded" and result["run_id"] == summary.id
    assert result["answer"] == "ALPHA + BETA + gamma done"
    assert result["steps"]["d"]["output"] == "ALPHA + BETA + gamma done"
    assert result["steps"]["a"]["restored"] and result["steps"]["b"]["restored"]
    n = calls(log)
    # Succeeded steps ran once; the step that was running when killed ran again; nothing was lost.
    assert (n["fetch:alpha"], n["fetch:beta"], n["hang:gamma"], n["combine"]) == (1, 1, 2, 1)
    # The resumed process made only the join call: the plan came from the store.
    assert len(server.chat_requests) == 2
    final = store.summary(summary.id)
    assert final.status == "succeeded" and final.answer == result["answer"]
    kinds = [e["kind"] for e in store.events(summary.id)]
    assert kinds.count("step_restored") == 2 and "planner_finished" in kinds
    print("\nresume test:", json.dumps({"calls": dict(n), "status": final.status, "run": summary.id}))


def test_workflow_killed_with_sigkill_resumes(
    setup: tuple[Path, Path, dict[str, str]], tmp_path: Path, children: ChildProcesses
) -> None:
    tools_py, log, env = setup
    wf = tmp_path / "wf.py"
    wf.write_text(
        textwrap.dedent(
            f'''
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            from counting_tools import fetch, hang, combine
            from planweave.executor import Step, Workflow

            workflow = Workflow(name="resumable", steps=[
                Step(id="a", handler=fetch.fn, args={{"name": "alpha"}}),
                Step(id="c", handler=hang.fn, args={{"name": "gamma"}}),
                Step(id="d", handler=combine.fn, args={{"parts": ["${{a}}", "${{c}}"]}}),
            ])
            '''
        )
    )
    proc = children.spawn([sys.executable, "-m", "planweave", "exec", str(wf), "--json"], env=env, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: calls(log)["fetch:alpha"] and calls(log)["hang:gamma"],
                   "the child called `fetch` and `hang`", timeout_s=60)
        wait_until(lambda: recorded_successes(Path(env["PLANWEAVE_HOME"])) == {"a"},
                   "the store recorded `a` as succeeded", timeout_s=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    store = open_store(Path(env["PLANWEAVE_HOME"]))
    [summary] = store.list_runs()
    assert summary.status == "interrupted" and summary.kind == "workflow"
    resumed = subprocess.run([sys.executable, "-m", "planweave", "resume", summary.id, "--json"],
                             env={**env, "PW_TEST_FAST": "1"}, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["steps"]["d"]["output"] == "ALPHA + gamma done"
    assert calls(log) == Counter({"fetch:alpha": 1, "hang:gamma": 2, "combine": 1})
    assert store.summary(summary.id).status == "succeeded"
    again = subprocess.run([sys.executable, "-m", "planweave", "resume", summary.id], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already ended (succeeded)" in again.stderr


async def test_resume_refuses_finished_and_unknown_runs(tmp_path: Path) -> None:
    from planweave.executor.store import StoreError
    from planweave.planner import ConfigError

    with FakeModelServer() as server:
        server.enqueue(Reply.json_obj({"rationale": "none", "steps": [], "answer": "42"}))
        p = Planner(model="openai/fake", api_base=server.base_url, api_key="x", tools=[], store=tmp_path / "s.db")
        result = await p.run("the answer")
    with pytest.raises(ConfigError, match="already ended"):
        await p.resume(result.run_id)
    with pytest.raises(StoreError, match="no run `zzz`"):
        await p.resume("zzz")


ELEVEN = [f"s{i}" for i in range(1, 11)]


def long_plan() -> dict[str, object]:
    """Ten fetches and a combine of all of them: eleven steps."""
    steps: list[list[object]] = [[sid, "fetch", {"name": sid}] for sid in ELEVEN]
    steps.append(["all", "combine", {"parts": [f"${{{sid}}}" for sid in ELEVEN]}])
    return {"steps": steps, "rationale": "fetch ten, then combine"}


def test_a_plan_cut_off_mid_stream_is_finished_by_the_planner_not_joined(
    setup: tuple[Path, Path, dict[str, str]], children: ChildProcesses
) -> None:
    """Killed after 3 of 11 steps streamed: the resumed run asks the model to finish the plan
    (showing the 3 steps and their results), runs the rest, and only then joins."""
    tools_py, log, env = setup
    home = Path(env["PLANWEAVE_HOME"])
    plan = long_plan()
    expected = " + ".join(sid.upper() for sid in ELEVEN)
    with FakeModelServer() as server:
        server.enqueue(Reply.json_obj(plan).with_pause_after_json(("steps", 2), 120))
        cmd = [sys.executable, "-m", "planweave", "run", "fetch ten things and combine them", "--max-llm-calls", "3",
               "--allow-failed-steps",
               "--model", "openai/fake", "--api-base", server.base_url, "--tools", str(tools_py), "--json"]
        proc = children.spawn(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: recorded_successes(home) == {"s1", "s2", "s3"},
                       "the store recorded the first three streamed steps as succeeded", timeout_s=60)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        kinds = recorded_kinds(home)
        assert "plan_updated" not in kinds and kinds.count("llm_call_started") == 1
        killed = open_store(home)
        assert killed.summary(recorded_run_id(home)).llm_calls == 1  # the cut-off plan call, counted at its start
        killed.close()

        def finish_planning(request: Any) -> Reply:
            if request.tools:  # the join decision is the one call with a tool schema (plans come as lines)
                return finish_reply(f"combined: {expected}")
            rest = [s for s in plan["steps"] if f"`{s[0]}`" not in request.last_user_text]  # type: ignore[attr-defined]
            return Reply.json_obj({"steps": rest, "rationale": "the rest"})

        server.handler = finish_planning
        resumed = subprocess.run(
            [sys.executable, "-m", "planweave", "resume", "--json", recorded_run_id(home)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert resumed.returncode == 0, resumed.stderr
        result = json.loads(resumed.stdout)
        finish_request = server.chat_requests[1]

    assert result["status"] == "succeeded", result
    assert result["answer"] == f"combined: {expected}"
    assert set(result["steps"]) == {*ELEVEN, "all"} and result["steps"]["all"]["output"] == expected
    # The finishing call showed the planned steps, with the results of those that had finished.
    ask = finish_request.last_user_text
    assert all(f"`{sid}`" in ask for sid in ("s1", "s2", "s3")) and "`s4`" not in ask
    assert "S1" in json.dumps(finish_request.messages)
    n = calls(log)
    assert all(n[f"fetch:{sid}"] == 1 for sid in ELEVEN) and n["combine"] == 1
    store = open_store(home)
    summary = store.summary(result["run_id"])
    # 3 calls: the plan call cut off by the kill (recorded at its start), the finishing one, the join.
    assert summary.status == "succeeded" and summary.llm_calls == 3
    events = store.events(summary.id)
    cut = [e for e in events if e["kind"] == "llm_called" and (e.get("error") or "").startswith("cut off")]
    assert len(cut) == 1 and cut[0]["purpose"] == "plan"
    assert [e["round"] for e in events if e["kind"] == "plan_updated"] == [1]
    assert result["usage"]["llm_calls"] == 3
    # Resume restored the run's budget and flags (the resumed process records what it used).
    assert summary.meta["budget"]["max_llm_calls"] == 3 and summary.meta["allow_failed_steps"] is True


def recorded_run_id(home: Path) -> str:
    store = open_store(home)
    try:
        [summary] = store.list_runs()
        return summary.id
    finally:
        store.close()


async def test_python_resume_restores_the_recorded_model_and_budget_and_needs_the_run_tools(tmp_path: Path) -> None:
    import asyncio

    from planweave.executor.store import open_store as open_
    from planweave.planner import Budget, ConfigError
    from planweave.planner.testing import await_until
    from planweave.tools import tool

    started = asyncio.Event()

    @tool(name="wait")
    async def wait_forever(name: str) -> str:
        """Never ends (the run is stopped while it waits)."""
        started.set()
        await asyncio.Event().wait()
        return name

    @tool(name="wait")
    async def wait_not(name: str) -> str:
        """Ends at once."""
        return name.upper()

    store = open_(tmp_path / "runs.db")
    with FakeModelServer() as server:
        server.enqueue(Reply.json_obj({"steps": [["w", "wait", {"name": "x"}]], "rationale": "wait"}))
        first = Planner(model="openai/fake", api_base=server.base_url, api_key="sk-fake", tools=[wait_forever],
                        store=store, budget=Budget(max_llm_calls=2))  # fmt: skip
        planned = asyncio.Event()
        task = asyncio.create_task(
            first.run("wait for x", run_id="r1", subscribers=[lambda e: e.kind == "plan_updated" and planned.set()])
        )
        await await_until(lambda: started.is_set() and planned.is_set(), "the round is planned and its step started",
                          timeout_s=30)  # fmt: skip
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.set_status("r1", "interrupted", error="stopped by the test")  # as Ctrl-C on the command line does

        with pytest.raises(ConfigError, match="used the tools `wait`, which this planner does not have"):
            await Planner(tools=[], store=store).resume("r1")

        # No model, API base or budget given: the run's own (the join goes to the fake server).
        server.enqueue(finish_reply("X"))
        result = await Planner(tools=[wait_not], store=store, api_key="sk-fake").resume("r1")
        assert result.status == "succeeded", result.error
        assert result.answer == "X" and len(server.chat_requests) == 2
        assert result.usage.llm_calls == 2  # the first run's plan call counts

        # Its budget of 2 LLM calls holds across the resume: a second resume has none left.
        store.set_status("r1", "interrupted", error="again, for the test")
        again = await Planner(tools=[wait_not], store=store, api_key="sk-fake").resume("r1")
        assert again.status == "budget_exceeded" and again.budget == "max_llm_calls"
        assert len(server.chat_requests) == 2
