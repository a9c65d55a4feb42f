"""The Ray backend on a real local Ray (2 CPUs, one per test session: the `ray_cluster` fixture).

Tools that ask for Ray run in Ray worker processes; the others here. Concurrency on the
workers is observed through a Ray actor that counts the calls inside a tool, and
cancellation through marker files the worker writes when its call is interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Executor, RayBackend, Step, Workflow
from planweave.executor.ray_backend import ToolShippingError
from planweave.executor.store import open_store
from planweave.planner.testing import ChildProcesses, wait_until
from planweave.tools import Tool, ToolContext, ToolDefinitionError, ToolError, tool

pytestmark = pytest.mark.timeout(240)  # the first test here waits for the session's Ray to start

ROOT = Path(__file__).resolve().parents[2]


# --- tools (module level: they travel to the workers by value, this file being a test) ----------


@tool(num_cpus=1)
def where(x: int) -> dict[str, int]:
    """Report the process the call ran in."""
    return {"x": x, "pid": os.getpid()}


@tool
def local_sum(parts: list[dict[str, int]]) -> dict[str, int]:
    """Sum the parts here, in the test's process."""
    return {"total": sum(p["x"] for p in parts), "pid": os.getpid()}


@tool(backend="ray")
async def async_double(x: int) -> int:
    """An async tool: on a worker it runs in that worker's own event loop."""
    await asyncio.sleep(0)
    asyncio.get_running_loop()  # raises when there is none
    return 2 * x


def _rendezvous(tag: str, wait_s: float) -> int:
    """Enter the gauge `tag`, wait up to `wait_s` for a second call to be inside too, leave.

    Returns how many calls were inside together at most (as seen by this call)."""
    import ray

    gauge = ray.get_actor("planweave-test-gauge")
    ray.get(gauge.enter.remote(tag))
    try:
        return int(ray.get(gauge.wait_for.remote(tag, 2, wait_s)))
    finally:
        ray.get(gauge.leave.remote(tag))


@tool(num_cpus=1)
def one_cpu(i: int) -> int:
    """Needs one CPU: two fit on the 2-CPU Ray at once."""
    return _rendezvous("one_cpu", 60.0)


@tool(num_cpus=2)
def two_cpus(i: int) -> int:
    """Needs both CPUs: calls must run one at a time."""
    return _rendezvous("two_cpus", 0.5)


@tool(backend="ray")
def flaky(ctx: ToolContext) -> str:
    """Fails on its first attempt."""
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    return f"ok on attempt {ctx.attempt}"


@tool(backend="ray")
def refuses() -> str:
    """Fails for good."""
    raise ToolError("no way", permanent=True)


@tool(backend="ray")
def hang(marker: str) -> str:
    """Write `marker.start`, then wait; write `marker.stop` with the exception that ends the wait."""
    import time

    Path(marker + ".start.tmp").write_text(str(os.getpid()))  # (whole or not at all, as `.stop`)
    os.replace(marker + ".start.tmp", marker + ".start")
    try:
        for _ in range(2400):  # (2 minutes: longer than the backend's cancel takes, forced or not)
            time.sleep(0.05)
    except BaseException as exc:
        # Whole or not at all (a test reads it as soon as it exists): written aside, then renamed.
        Path(marker + ".stop.tmp").write_text(type(exc).__name__)
        os.replace(marker + ".stop.tmp", marker + ".stop")
        raise
    return "never"


def ended_by_its_cancel(marker: str, *, may_not_start: bool = False) -> bool:
    """The `hang` task behind `marker` was ended by its cancellation: interrupted (it wrote
    `KeyboardInterrupt`), or, when that cancel never reached it, its worker process killed by the
    backend's forced cancel. A task left running has neither (its worker lives, no marker).
    `may_not_start`: a task cancelled before it started (a loaded machine starts workers
    slowly) ended too, once it has not started for `_NEVER_S` after the cancel."""
    stop = Path(marker + ".stop")
    if stop.exists():
        return stop.read_text() == "KeyboardInterrupt"
    start = Path(marker + ".start")
    if not start.exists():
        first = _unstarted.setdefault(marker, time.monotonic())
        return may_not_start and time.monotonic() - first >= _NEVER_S
    try:
        os.kill(int(start.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


_unstarted: dict[str, float] = {}
_NEVER_S = 20.0
"""A cancelled task not started this long after its cancel never will (its lease went back)."""


def _gauge_actor() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Gauge:
        def __init__(self) -> None:
            self.inside: Counter[str] = Counter()
            self.most: Counter[str] = Counter()

        async def enter(self, tag: str) -> None:
            self.inside[tag] += 1
            self.most[tag] = max(self.most[tag], self.inside[tag])

        async def leave(self, tag: str) -> None:
            self.inside[tag] -= 1

        async def wait_for(self, tag: str, n: int, wait_s: float) -> int:
            loop = asyncio.get_running_loop()
            end = loop.time() + wait_s
            while self.most[tag] < n and loop.time() < end:
                await asyncio.sleep(0.01)
            return self.most[tag]

        async def most_inside(self, tag: str) -> int:
            return self.most[tag]

    return Gauge.options(name="planweave-test-gauge", lifetime="detached").remote()


@pytest.fixture
def backend(ray_cluster: str) -> RayBackend:
    return RayBackend()  # joins the session's Ray, which it did not start: closing leaves it running


# --- tests ----------------------------------------------------------------------------------


def test_tool_declares_where_it_runs() -> None:
    assert (where.backend, dict(where.resources)) == ("ray", {"num_cpus": 1})
    assert (local_sum.backend, dict(local_sum.resources)) == ("local", {})
    big = tool(name="big", num_gpus=1, memory=2**30, resources={"accelerator": 1})(lambda: None)
    assert big.backend == "ray" and dict(big.resources) == {"accelerator": 1, "num_gpus": 1, "memory": 2**30}
    with pytest.raises(ToolDefinitionError, match="resource `num_cpus` must be a number of at least 0, not -1"):
        tool(name="neg", num_cpus=-1)(lambda: 1)
    with pytest.raises(ToolDefinitionError, match='resources \\(`num_cpus`\\) are for Ray workers, but `backend` is "local"'):
        tool(name="both", backend="local", num_cpus=1)(lambda: 1)


async def test_workflow_mixes_ray_steps_and_local_steps(backend: RayBackend) -> None:
    workflow = Workflow(
        name="mixed",
        steps=[
            Step(id="a", tool="where", args={"x": 1}),
            Step(id="b", tool="where", args={"x": 2}),
            Step(id="c", tool="async_double", args={"x": 21}),
            Step(id="total", tool="local_sum", args={"parts": ["${a}", "${b}"]}),
        ],
    )
    events: list[Any] = []
    result = await workflow.run([where, local_sum, async_double], backend=backend, subscribers=[events.append])
    assert result.status == "succeeded", result.error
    outputs = {sid: s.output for sid, s in result.steps.items()}
    assert outputs["total"] == {"total": 3, "pid": os.getpid()}  # the local step ran here
    assert outputs["a"]["pid"] != os.getpid() and outputs["b"]["pid"] != os.getpid()  # the Ray steps did not
    assert outputs["c"] == 42
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["StepStarted"] == 4 and kinds["StepSucceeded"] == 4


async def test_declared_cpus_limit_how_many_calls_run_at_once(backend: RayBackend) -> None:
    gauge = _gauge_actor()
    try:
        executor = Executor([one_cpu, two_cpus], backend=backend)
        # One CPU each: both calls fit the 2-CPU Ray and meet inside (each waits for the other).
        light = await executor.run([Step(id=f"l{i}", tool="one_cpu", args={"i": i}) for i in range(2)])
        assert light.status == "succeeded", light.error
        assert [s.output for s in light.steps.values()] == [2, 2]
        # Two CPUs each: Ray runs them one at a time, so no call ever sees another inside.
        heavy = await executor.run([Step(id=f"h{i}", tool="two_cpus", args={"i": i}) for i in range(3)])
        assert heavy.status == "succeeded", heavy.error
        assert [s.output for s in heavy.steps.values()] == [1, 1, 1]
    finally:
        import ray

        ray.kill(gauge)


async def test_errors_reach_planweave_retries_unchanged(backend: RayBackend) -> None:
    events: list[Any] = []
    executor = Executor([flaky, refuses], backend=backend)
    result = await executor.run(
        [Step(id="f", tool="flaky", retry={"max_attempts": 2, "initial_delay_s": 0}),
         Step(id="r", tool="refuses", retry={"max_attempts": 3, "initial_delay_s": 0}, on_failure="continue")],
        subscribers=[events.append],
    )
    assert result.steps["f"].output == "ok on attempt 2"
    [retry] = [e for e in events if type(e).__name__ == "StepRetrying"]
    assert (retry.step_id, retry.error_type) == ("f", "ValueError")  # the tool's own exception, not Ray's wrapper
    assert result.steps["r"].status == "failed" and result.steps["r"].attempts == 1  # permanent: not retried
    assert "no way" in (result.steps["r"].error or "")


async def test_a_tool_that_cannot_be_shipped_fails_its_step_clearly(backend: RayBackend) -> None:
    lock = threading.Lock()

    def guarded() -> int:
        with lock:
            return 1

    unshippable = Tool.from_function(guarded, backend="ray")
    result = await Executor([unshippable], backend=backend).run([Step(id="g", tool="guarded")])
    step = result.steps["g"]
    assert step.status == "failed" and step.attempts == 1
    assert (step.error or "").startswith("tool `guarded` cannot be sent to Ray workers: its function does not pickle")
    with pytest.raises(ToolShippingError):
        await backend.invoke(unshippable, {}, ToolContext())


async def test_a_step_timeout_interrupts_its_ray_task(backend: RayBackend, tmp_path: Path) -> None:
    marker = str(tmp_path / "t")
    result = await Executor([hang], backend=backend).run(
        [Step(id="h", tool="hang", args={"marker": marker}, timeout_s=1.0, retry={"max_attempts": 1})]
    )
    assert result.steps["h"].status == "failed" and "timed out after 1s" in (result.steps["h"].error or "")
    # The worker's call was interrupted, not left running (or, cancelled before it started, never ran).
    wait_until(lambda: ended_by_its_cancel(marker, may_not_start=True), "the Ray task ended by its cancellation",
               timeout_s=120)


async def test_a_cancelled_run_cancels_its_ray_tasks(backend: RayBackend, tmp_path: Path) -> None:
    markers = [str(tmp_path / f"m{i}") for i in range(2)]
    executor = Executor([hang], backend=backend)
    async with executor.start([Step(id=f"h{i}", tool="hang", args={"marker": m}) for i, m in enumerate(markers)]) as run:
        run.close()
        await asyncio.to_thread(
            wait_until, lambda: all(Path(m + ".start").exists() for m in markers), "both Ray tasks started", timeout_s=60
        )
        run.cancel("stop")
    assert run.result.status == "cancelled"
    for m in markers:
        await asyncio.to_thread(wait_until, lambda: ended_by_its_cancel(m), f"task `{m}` ended by its cancel", timeout_s=120)


# --- the command line ------------------------------------------------------------------------

TOOLS = textwrap.dedent(
    '''
    import os, time
    from pathlib import Path
    from planweave.tools import tool

    LOG = os.environ["PW_TEST_LOG"]

    def note(text: str) -> None:
        with open(LOG, "a") as f:
            f.write(text + "\\n")
            f.flush()
            os.fsync(f.fileno())

    @tool(num_cpus=1)
    def square(x: int) -> int:
        """Square a number on a Ray worker."""
        note(f"square:{x}")
        return x * x

    @tool(backend="ray")
    def slow(x: int) -> int:
        """Slow the first time round (the driver is killed while it waits)."""
        note(f"slow:{x}")
        # A file, not an environment variable: Ray workers do not see the driver's environment.
        if not os.path.exists(LOG + ".fast"):
            time.sleep(60)
        return x + 1000

    @tool
    def total(parts: list) -> int:
        """Add the parts up, in the driver's process."""
        note("total")
        return sum(parts)
    '''
)


def _calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _recorded_successes(home: Path) -> set[str]:
    store = open_store(home)
    try:
        runs = store.list_runs()
        return set(store.get_run(runs[0].id).resume_state().completed) if runs else set()
    finally:
        store.close()


def test_exec_on_ray_killed_and_resumed_reruns_no_recorded_success(
    ray_cluster: str, tmp_path: Path, children: ChildProcesses
) -> None:
    (tmp_path / "ray_tools.py").write_text(TOOLS)
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        textwrap.dedent(
            """
            name: on-ray
            steps:
              - {id: a, tool: square, args: {x: 3}}
              - {id: b, tool: square, args: {x: 4}}
              - {id: s, tool: slow, args: {x: 1}}
              - {id: t, tool: total, args: {parts: ["${a}", "${b}", "${s}"]}}
            """
        )
    )
    log = tmp_path / "calls.log"
    home = tmp_path / "home"
    env = {**os.environ, "PW_TEST_LOG": str(log), "PYTHONPATH": str(ROOT), "PLANWEAVE_HOME": str(home)}
    cmd = [sys.executable, "-m", "planweave", "exec", str(wf), "--tools", str(tmp_path / "ray_tools.py"),
           "--backend", f"ray:{ray_cluster}", "--json"]
    proc = children.spawn(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _calls(log)["slow:1"] or proc.poll() is not None, "the child's `slow` call started",
                   timeout_s=120)
        assert proc.poll() is None, proc.communicate()
        wait_until(lambda: _recorded_successes(home) == {"a", "b"}, "`a` and `b` recorded as succeeded", timeout_s=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = open_store(home)
    [summary] = store.list_runs()
    assert summary.status == "interrupted" and summary.meta["backend"] == f"ray:{ray_cluster}"

    Path(str(log) + ".fast").touch()
    resumed = subprocess.run([sys.executable, "-m", "planweave", "resume", summary.id, "--json"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["steps"]["t"]["output"] == 9 + 16 + 1001
    assert result["steps"]["a"]["restored"] and result["steps"]["b"]["restored"]
    # Recorded successes ran once; the step running when the driver died ran again on Ray.
    assert _calls(log) == Counter({"square:3": 1, "square:4": 1, "slow:1": 2, "total": 1})
    assert store.summary(summary.id).status == "succeeded"


def test_backend_flag_errors_are_bad_input(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text("name: w\nsteps:\n  - {id: a, tool: calculator, args: {expression: '1 + 1'}}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLANWEAVE_HOME": str(tmp_path / "home")}
    unknown = subprocess.run([sys.executable, "-m", "planweave", "exec", str(wf), "--backend", "dask"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2
    assert "--backend `dask` is not known; use `local`, `ray`, `ray:HOST:PORT` or `ray://HOST:PORT`." in unknown.stderr
    unreachable = subprocess.run([sys.executable, "-m", "planweave", "exec", str(wf), "--backend", "ray://127.0.0.1:1"],
                                 env=env, capture_output=True, text=True, timeout=120)
    assert unreachable.returncode == 2
    assert "cannot start or reach the Ray cluster at `ray://127.0.0.1:1`" in unreachable.stderr
    # Without Ray installed (hidden from this child), the flag says how to install it.
    code = "import sys; sys.modules['ray'] = None; from planweave.planner.cli.app import main; main()"
    missing = subprocess.run([sys.executable, "-c", code, "exec", str(wf), "--backend", "ray"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert ("the Ray backend needs Ray, which is not installed; install it with `pip install 'planweave[ray]'`."
            in missing.stderr)


async def test_planner_runs_its_plans_ray_steps_on_ray(backend: RayBackend) -> None:
    from planweave.planner import Planner
    from planweave.planner.testing import FakeModelServer, Reply

    plan = {
        "rationale": "one step on Ray, one here",
        "steps": [{"id": "a", "tool": "where", "args": {"x": 5}},
                  {"id": "b", "tool": "local_sum", "args": {"parts": ["${a}"]}}],
        "answer": None,
    }
    with FakeModelServer() as server:
        server.enqueue(Reply.json_obj(plan), Reply.json_obj({"action": "finish", "answer": "5", "reason": ""}))
        planner = Planner(model="openai/fake", api_base=server.base_url, api_key="x", tools=[where, local_sum],
                          store=False, tracing=False, backend=backend)
        result = await planner.run("where does it run")
    assert result.status == "succeeded", result.error
    assert result.steps["a"].output["pid"] != os.getpid()
    assert result.steps["b"].output == {"total": 5, "pid": os.getpid()}
