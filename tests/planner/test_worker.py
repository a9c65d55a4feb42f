"""`planweave exec --detach` and `planweave worker`, through real processes on a real SQLite store.

Every tool call appends `pid run_id step phase` to a log file, so the log is the ground truth
of what ran and where: a queued run runs exactly once whatever the number of workers, a run
whose worker was SIGKILLed or SIGTERMed is finished by another without re-running a step
whose success was recorded, and the runs a worker must leave alone (interrupted in a
terminal, waiting for people) are left alone.
"""

from __future__ import annotations

import asyncio
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

from planweave.executor.store import RunStore, open_store
from planweave.planner.testing import ChildProcesses, wait_until

ROOT = Path(__file__).resolve().parents[2]

TOOLS = textwrap.dedent(
    '''
    import asyncio, os
    from planweave.tools import ToolContext, tool

    def note(ctx: ToolContext, phase: str) -> None:
        with open(os.environ["FX_LOG"], "a") as f:
            f.write(f"{os.getpid()} {ctx.run_id} {ctx.step_id} {phase}\\n")
            f.flush()
            os.fsync(f.fileno())

    @tool
    async def fetch(ctx: ToolContext, name: str) -> str:
        """Fetch a named value (a logged side effect)."""
        await asyncio.sleep(float(os.environ.get("FX_SLEEP", "0")))
        note(ctx, "done")
        return name.upper()

    @tool
    async def doom(ctx: ToolContext, name: str) -> str:
        """Kill this process (a step that crashes whatever runs it) while `FX_DOOM` is set."""
        note(ctx, "start")
        if os.environ.get("FX_DOOM"):
            os.kill(os.getpid(), 9)
        note(ctx, "done")
        return name.upper()

    @tool
    async def gated(ctx: ToolContext, name: str) -> str:
        """Wait until the gate file exists, then return the value (logged when it starts and ends)."""
        note(ctx, "start")
        while not os.path.exists(os.environ["FX_GATE"]):
            await asyncio.sleep(0.05)
        note(ctx, "done")
        return name.upper()
    '''
)

FAST = textwrap.dedent(
    """
    name: fast
    inputs:
      who: nobody
    steps:
      - {id: a, tool: fetch, args: {name: "${inputs.who}-a"}}
      - {id: b, tool: fetch, args: {name: "${a}-b"}}
    """
)

GATED = textwrap.dedent(
    """
    name: gated
    inputs:
      who: nobody
    steps:
      - {id: a, tool: fetch, args: {name: "${inputs.who}-a"}}
      - {id: b, tool: gated, args: {name: "${a}-b"}}
    """
)

POISON = textwrap.dedent(
    """
    name: poison
    inputs:
      who: nobody
    steps:
      - {id: a, tool: fetch, args: {name: "${inputs.who}-a"}}
      - {id: b, tool: doom, args: {name: "${a}-b"}}
    """
)

ASKS = textwrap.dedent(
    """
    name: asks
    steps:
      - {id: city, tool: ask_user, args: {question: "Which city?"}}
    """
)


class Place:
    """A directory with the tools, the workflows, a store and the effect log; runs `planweave` there."""

    def __init__(self, tmp_path: Path, children: ChildProcesses, store_url: str | None = None) -> None:
        self.dir = tmp_path / "work"
        self.dir.mkdir()
        self.children = children
        self.home = tmp_path / "home"
        self.log = tmp_path / "effects.log"
        self.gate = tmp_path / "gate"
        (self.dir / "fx_tools.py").write_text(TOOLS)
        for name, text in (("fast.yaml", FAST), ("gated.yaml", GATED), ("asks.yaml", ASKS), ("poison.yaml", POISON)):
            (self.dir / name).write_text(text)
        self.env = {**os.environ, "PLANWEAVE_HOME": str(self.home), "FX_LOG": str(self.log), "FX_GATE": str(self.gate),
                    "PLANWEAVE_LEASE_S": "10", "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        for key in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "PLANWEAVE_MODEL", "PLANWEAVE_STORE_URL"):
            self.env.pop(key, None)
        self.store_url = store_url
        if store_url is not None:  # every process (exec --detach, the workers) on that database
            self.env["PLANWEAVE_STORE_URL"] = store_url

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "planweave", *args], cwd=self.dir, env=self.env, text=True,
                              capture_output=True, timeout=120)

    def spawn(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return self.children.spawn([sys.executable, "-m", "planweave", *args], cwd=cwd or ROOT, env=self.env,
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def detach(self, workflow: str, *inputs: str, tools: str = "fx_tools.py") -> str:
        done = self.cli("exec", "--detach", workflow, "--tools", tools, *(f"-i{i}" for i in inputs))
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip()
        assert f"`planweave show {run_id}`" in done.stderr and "`planweave worker`" in done.stderr
        return run_id

    def enqueue(self, workflow: str, *inputs: str, tools: str = "fx_tools.py") -> str:
        """Queue a run as `exec --detach` does, in this process (`enqueue_workflow`, which it calls):
        the command itself is tested once, in `test_exec_detach_queues_the_run_and_a_worker_runs_it`."""
        from planweave.planner.worker import enqueue_workflow

        specs = [str(self.dir / t) if t.endswith(".py") else t for t in tools.split(",")]
        store = self.store()
        try:
            return enqueue_workflow(store, self.dir / workflow, dict(i.split("=", 1) for i in inputs),
                                    meta={"tool_specs": specs, "workspace": str(self.dir)})
        finally:
            store.close()

    def worker(self, *args: str) -> subprocess.Popen[str]:
        return self.spawn("worker", *args)

    def store(self) -> RunStore:
        return open_store(self.store_url or self.home)

    def status(self, run_id: str) -> str:
        store = self.store()
        try:
            return store.summary(run_id).status
        finally:
            store.close()

    def effects(self) -> list[tuple[str, str, str, str]]:
        if not self.log.exists():
            return []
        return [tuple(line.split()) for line in self.log.read_text().splitlines() if line.strip()]  # type: ignore[misc]

    def kinds(self) -> list[str]:
        """The kinds of the events of the (only) run recorded so far."""
        import planweave.planner.events  # noqa: F401  (registers the planner's event kinds)

        store = self.store()
        try:
            runs = store.list_runs()
            return [e["kind"] for e in store.events(runs[0].id)] if runs else []
        finally:
            store.close()

    def outputs(self, run_id: str) -> dict[str, Any]:
        store = self.store()
        try:
            return {sid: step.get("output") for sid, step in store.get_run(run_id).steps().items()}
        finally:
            store.close()


@pytest.fixture
def place(tmp_path: Path, children: ChildProcesses) -> Place:
    return Place(tmp_path, children)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_place(request: pytest.FixtureRequest, tmp_path: Path, children: ChildProcesses) -> Place:
    """A place on the default SQLite store, then on a fresh PostgreSQL database."""
    url = request.getfixturevalue("pg_fresh_url") if request.param == "postgresql" else None
    return Place(tmp_path, children, store_url=url)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    return out, err


def test_exec_detach_queues_the_run_and_a_worker_runs_it(any_place: Place) -> None:
    run_id = any_place.detach("fast.yaml", "who=bob")
    store = any_place.store()
    summary = store.summary(run_id)
    assert summary.status == "queued"
    assert summary.meta["takeover"] is True
    assert summary.meta["file"] == str((any_place.dir / "fast.yaml").resolve())
    assert summary.meta["inputs"] == {"who": "bob"}
    assert summary.meta["tool_specs"] == [str((any_place.dir / "fx_tools.py").resolve())]
    assert [r.id for r in store.list_runs(status="queued")] == [run_id]
    assert store.prune(older_than_s=3600) == 0  # younger than the cutoff: kept
    store.close()
    assert any_place.effects() == []  # nothing ran
    assert (any_place.home / "runs.db").exists() == (any_place.store_url is None)  # on the store the test chose

    worker = any_place.worker()  # in another directory: the run carries absolute paths
    wait_until(lambda: any_place.status(run_id) == "succeeded", "the worker ran the queued run", timeout_s=90)
    out, err = stop(worker)
    assert worker.returncode == 0, err
    assert any_place.outputs(run_id) == {"a": "BOB-A", "b": "BOB-A-B"}
    assert sorted((e[2], e[3]) for e in any_place.effects()) == [("a", "done"), ("b", "done")]
    assert f"started run {run_id} (fast): queued" in out
    assert f"finished run {run_id} (fast): succeeded" in out
    assert "stopped: 1 started (0 taken over), 1 finished" in out
    assert "Traceback" not in err


def test_exec_detach_refuses_bad_input_and_records_nothing(place: Place) -> None:
    unknown = place.cli("exec", "--detach", "fast.yaml", "--tools", "fx_tools.py", "-i", "nope=1")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "planweave: error: unknown input `nope` for workflow `fast`; its inputs are `who`."
    )
    missing_tool = place.cli("exec", "--detach", "fast.yaml", "--tools", "calculator")
    assert missing_tool.returncode == 2 and "fetch" in missing_tool.stderr and "Traceback" not in missing_tool.stderr
    secret = place.cli("exec", "--detach", "fast.yaml", "--tools", "fx_tools.py", "-i", "who=sk-abcdefghijklmnop1234")
    assert secret.returncode == 2
    assert "looks secret" in secret.stderr and "without `--detach`" in secret.stderr
    assert "sk-abcdefghijklmnop1234" not in secret.stderr
    no_file = place.cli("exec", "--detach", "nothere.yaml")
    assert no_file.returncode == 2 and "Traceback" not in no_file.stderr
    assert place.cli("runs", "--json").stdout.strip() in ("", "[]")
    assert place.effects() == []


def test_two_workers_run_six_queued_runs_exactly_once(any_place: Place) -> None:
    any_place.env["FX_SLEEP"] = "0.1"  # long enough for both workers to be busy at once
    run_ids = [any_place.enqueue("fast.yaml", f"who=w{i}") for i in range(6)]
    workers = [any_place.worker("--concurrency", "2") for _ in range(2)]
    for run_id in run_ids:
        wait_until(lambda: any_place.status(run_id) == "succeeded", f"run {run_id} succeeded", timeout_s=120)
    outs = [stop(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outs]
    ran = Counter((e[1], e[2]) for e in any_place.effects())
    assert ran == Counter({(r, s): 1 for r in run_ids for s in ("a", "b")})  # each step of each run, once
    for i, run_id in enumerate(run_ids):
        assert any_place.outputs(run_id) == {"a": f"W{i}-A", "b": f"W{i}-A-B"}
    started = [line for out, _ in outs for line in out.splitlines() if "started run" in line]
    assert sorted(line.split("started run ")[1].split()[0] for line in started) == sorted(run_ids)


def test_a_worker_killed_mid_run_is_taken_over_without_rerunning_recorded_successes(any_place: Place) -> None:
    run_id = any_place.enqueue("gated.yaml", "who=kim")
    first = any_place.worker()
    wait_until(lambda: any(e[2] == "b" and e[3] == "start" for e in any_place.effects()), "step b started", timeout_s=90)
    second = any_place.worker()
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    wait_until(
        lambda: any(e[0] == str(second.pid) and e[2] == "b" and e[3] == "start" for e in any_place.effects()),
        "the second worker took the run over and started step b again", timeout_s=90,
    )
    any_place.gate.touch()
    wait_until(lambda: any_place.status(run_id) == "succeeded", "the second worker finished the run", timeout_s=90)
    out, err = stop(second)
    assert second.returncode == 0, err
    assert f"took over run {run_id} (gated): its owner stopped" in out
    effects = any_place.effects()
    assert [e for e in effects if e[2] == "a"] == [(str(first.pid), run_id, "a", "done")]  # recorded: never again
    assert [(e["takeover"], e["owner_died"]) for e in any_place.store().events(run_id)
            if e["kind"] == "run_taken_over"] == [(1, True)]  # counts toward the take-over cap
    assert [e for e in effects if e[2] == "b" and e[3] == "done"] == [(str(second.pid), run_id, "b", "done")]
    assert any_place.outputs(run_id) == {"a": "KIM-A", "b": "KIM-A-B"}


def test_sigterm_records_the_run_in_flight_interrupted_and_another_worker_finishes_it(any_place: Place) -> None:
    run_id = any_place.enqueue("gated.yaml", "who=ann")
    first = any_place.worker("--grace", "0.2")
    wait_until(lambda: any(e[2] == "b" and e[3] == "start" for e in any_place.effects()), "step b started", timeout_s=90)
    out, err = stop(first, signal.SIGTERM)
    assert first.returncode == 0, err
    assert any_place.status(run_id) == "interrupted"  # resumable, recorded before the worker exited
    assert f"interrupted run {run_id} (gated)" in out

    any_place.gate.touch()
    second = any_place.worker()
    wait_until(lambda: any_place.status(run_id) == "succeeded", "another worker finished the run", timeout_s=90)
    out, err = stop(second, signal.SIGINT)
    assert second.returncode == 0, err
    assert f"took over run {run_id} (gated)" in out
    taken = [e for e in any_place.store().events(run_id) if e["kind"] == "run_taken_over"]
    assert [(e["takeover"], e["owner_died"]) for e in taken] == [(1, False)]  # stopped on purpose: not a death
    effects = any_place.effects()
    assert [e[0] for e in effects if e[2] == "a"] == [str(first.pid)]
    assert [e[0] for e in effects if e[2] == "b" and e[3] == "done"] == [str(second.pid)]
    assert any_place.outputs(run_id) == {"a": "ANN-A", "b": "ANN-A-B"}


def test_a_run_that_kills_every_worker_taking_it_is_given_up_then_retried_by_hand(any_place: Place) -> None:
    any_place.env.update(FX_DOOM="1", PLANWEAVE_MAX_TAKEOVERS="1")  # (default 3: the same, with more processes)
    run_id = any_place.enqueue("poison.yaml", "who=pat")
    dead = []
    for _ in range(2):  # it runs queued, then is taken over once: both workers die in step `b`
        worker = any_place.worker()
        assert worker.wait(120) == -signal.SIGKILL
        dead.append(str(worker.pid))
    last = any_place.worker()
    wait_until(lambda: any_place.status(run_id) == "failed", "the third worker gave up on the run", timeout_s=90)
    out, err = stop(last)
    assert last.returncode == 0, err
    summary = any_place.store().summary(run_id)
    assert summary.error == (
        f"run `{run_id}` was not taken over again: its process stopped without finishing it 2 times (the worker or "
        "replica running it died each time, perhaps killed by one of its steps; at most 1 take-overs, "
        f"`PLANWEAVE_MAX_TAKEOVERS`). Find the cause in the run (`planweave show {run_id}`: the step that was "
        f"running), then retry it by hand with `planweave resume --force {run_id}`."
    )
    assert f"gave up run {run_id} (poison)" in out and "1 given up" in out
    assert [e[0] for e in any_place.effects() if e[2] == "b"] == dead  # the third worker ran nothing
    kinds = [e["kind"] for e in any_place.store().events(run_id)]
    assert kinds.count("run_taken_over") == 1 and kinds[-1] == "run_given_up"

    del any_place.env["FX_DOOM"]  # the cause is fixed: the retry the message names finishes it
    resumed = any_place.cli("resume", "--force", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert any_place.status(run_id) == "succeeded"
    assert any_place.outputs(run_id) == {"a": "PAT-A", "b": "PAT-A-B"}
    assert [e[0] for e in any_place.effects() if e[2] == "a"] == [dead[0]]  # recorded: never again


def test_the_take_over_cap_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from planweave.planner.errors import ConfigError
    from planweave.planner.worker import default_max_takeovers

    monkeypatch.delenv("PLANWEAVE_MAX_TAKEOVERS", raising=False)
    assert default_max_takeovers() == 3
    monkeypatch.setenv("PLANWEAVE_MAX_TAKEOVERS", "0")
    assert default_max_takeovers() == 0
    monkeypatch.setenv("PLANWEAVE_MAX_TAKEOVERS", "many")
    with pytest.raises(ConfigError) as caught:
        default_max_takeovers()
    assert str(caught.value) == (
        "PLANWEAVE_MAX_TAKEOVERS is `many`; set it to how many times a run whose process died may be taken over "
        "(a whole number, 0 or more; default 3), or unset it."
    )


def test_a_worker_leaves_terminal_runs_and_waiting_runs_alone(place: Place) -> None:
    # A run a person started in a terminal and that was killed: interrupted, but not the worker's.
    terminal = place.spawn("exec", "gated.yaml", "--tools", "fx_tools.py", "-i", "who=tom", cwd=place.dir)
    wait_until(lambda: any(e[2] == "b" and e[3] == "start" for e in place.effects()), "step b started", timeout_s=90)
    terminal.send_signal(signal.SIGKILL)
    terminal.wait(30)
    store = place.store()
    [interrupted] = store.list_runs()
    store.close()
    assert interrupted.status == "interrupted" and "takeover" not in interrupted.meta
    place.gate.touch()

    asks = place.enqueue("asks.yaml", tools="fx_tools.py,ask_user")
    worker = place.worker()
    wait_until(lambda: place.status(asks) == "waiting", "the queued run asked its question", timeout_s=90)
    marker = place.enqueue("fast.yaml", "who=last")  # queued after: once it ran, the worker scanned again
    wait_until(lambda: place.status(marker) == "succeeded", "the worker ran the later run", timeout_s=90)
    out, err = stop(worker)
    assert worker.returncode == 0, err
    assert place.status(interrupted.id) == "interrupted"
    assert place.status(asks) == "waiting"
    assert out.count(f"run {asks} ") == 2  # started once, finished (waiting) once: not taken again
    assert f"finished run {asks} (asks): waiting" in out
    assert interrupted.id not in out
    assert {e[0] for e in place.effects() if e[1] == interrupted.id} == {str(terminal.pid)}  # nothing ran again


def test_runs_lists_queued_runs(place: Place) -> None:
    run_id = place.enqueue("fast.yaml")
    listed = place.cli("runs", "--status", "queued", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    assert json.loads(place.cli("runs", "--status", "succeeded", "--json").stdout) == []
    as_json = place.cli("exec", "--detach", "fast.yaml", "--tools", "fx_tools.py", "--json")
    assert as_json.returncode == 0, as_json.stderr
    queued = json.loads(as_json.stdout)
    assert queued["status"] == "queued" and place.status(queued["run_id"]) == "queued"


async def test_take_over_once_starts_what_it_takes_and_counts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from planweave.executor.sqlite_store import SQLiteRunStore
    from planweave.planner.worker import Worker, WorkerEvent, enqueue_workflow

    monkeypatch.setenv("FX_LOG", str(tmp_path / "effects.log"))
    (tmp_path / "fx_tools.py").write_text(TOOLS)
    (tmp_path / "fast.yaml").write_text(FAST)
    (tmp_path / "doomed.yaml").write_text(FAST.replace("name: fast", "name: doomed"))
    store = SQLiteRunStore(tmp_path / "runs.db")
    meta = {"tool_specs": [str(tmp_path / "fx_tools.py")]}
    good = enqueue_workflow(store, tmp_path / "fast.yaml", {"who": "zoe"}, meta=meta)
    doomed = enqueue_workflow(store, tmp_path / "doomed.yaml", meta=meta)
    (tmp_path / "doomed.yaml").unlink()  # it cannot start any more
    events: list[WorkerEvent] = []
    worker = Worker(store, on_event=events.append)

    started = await worker.take_over_once()
    assert started == [good, doomed]  # oldest first
    await asyncio.gather(*worker.tasks.values())
    assert await worker.take_over_once() == []  # nothing left to take
    assert store.summary(good).status == "succeeded"
    failed = store.summary(doomed)
    assert failed.status == "failed" and "doomed.yaml" in (failed.error or "")
    assert (worker.stats.started, worker.stats.taken_over, worker.stats.finished, worker.stats.refused) == (2, 0, 1, 1)
    assert [(e.kind, e.run_id) for e in events[:2]] == [("started", good), ("started", doomed)]
    assert {(e.kind, e.run_id, e.status) for e in events[2:]} == {("finished", good, "succeeded"), ("refused", doomed, None)}
    store.close()


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
async def test_other_processes_events_do_not_make_a_worker_rescan_the_store(
    store_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    from planweave.executor.events import StepProgressed
    from planweave.planner.worker import Worker, enqueue_workflow

    monkeypatch.setenv("FX_LOG", str(tmp_path / "effects.log"))
    (tmp_path / "fx_tools.py").write_text(TOOLS)
    (tmp_path / "fast.yaml").write_text(FAST)
    location = request.getfixturevalue("pg_fresh_url") if store_kind == "postgresql" else tmp_path / "runs.db"
    store, busy = open_store(location), open_store(location)  # the worker's, and another process's stand-in
    worker = Worker(store, poll_s=300)  # no timed re-scan during the test: only what wakes it counts
    stop = asyncio.Event()
    loop = asyncio.ensure_future(worker.run(stop))
    try:
        await asyncio.to_thread(wait_until, lambda: worker.stats.scans == 1, "the first scan")
        busy.begin("busy", kind="workflow", name="busy", goal="", meta={})
        for n in range(60):  # a run elsewhere records its progress: one commit each
            await asyncio.to_thread(busy.append, StepProgressed(run_id="busy", step_id="s", message=f"{n}"))
        queued = enqueue_workflow(busy, tmp_path / "fast.yaml", {"who": "q"}, meta={"tool_specs": [str(tmp_path / "fx_tools.py")]})
        await asyncio.to_thread(wait_until, lambda: store.summary(queued).status == "succeeded", "the queued run ran")
        assert worker.stats.started == 1
        assert worker.stats.scans == 1  # the writes made it look for queued runs only, never re-scan everything
        assert 1 <= worker.stats.queued_scans <= 62  # at most one look a write (fewer: 0.2 s apart at least)
    finally:
        stop.set()
        await loop
        busy.close()
        store.close()


SERVICE_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from planweave.planner.resuming import build_planner

    # A planner run as a service starts it: recorded with its settings, and `takeover` set.
    planner = build_planner(model="openai/fake", api_base=sys.argv[1], tools=[sys.argv[2]], workspace=Path("."),
                            allow_private_hosts=False, budget=None)
    planner.meta["takeover"] = True
    asyncio.run(planner.run("combine alpha, beta and gamma"))
    """
)


def test_a_worker_takes_over_a_service_planner_run_whose_process_died(
    place: Place, tmp_path: Path, children: ChildProcesses
) -> None:
    from planweave.planner.testing import FakeModelServer, Reply

    plan = Reply.json_obj({"rationale": "fetch, then combine", "answer": None, "steps": [
        {"id": "a", "tool": "fetch", "args": {"name": "alpha"}},
        {"id": "c", "tool": "gated", "args": {"name": "gamma"}},
        {"id": "d", "tool": "fetch", "args": {"name": "${a}+${c}"}},
    ]})
    script = tmp_path / "service_run.py"
    script.write_text(SERVICE_RUN)
    place.env["OPENAI_API_KEY"] = "sk-fake"
    with FakeModelServer() as server:
        server.enqueue(plan, Reply.json_obj({"action": "finish", "answer": "ALPHA+GAMMA", "reason": ""}))
        service = children.spawn([sys.executable, str(script), server.base_url, str(place.dir / "fx_tools.py")],
                                 cwd=place.dir, env=place.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: any(e[2] == "c" and e[3] == "start" for e in place.effects()), "step c started", timeout_s=90)
        wait_until(lambda: "plan_updated" in place.kinds(), "the plan round was recorded whole", timeout_s=90)
        service.send_signal(signal.SIGKILL)
        service.communicate(timeout=30)
        store = place.store()
        [run] = store.list_runs()
        store.close()
        assert run.kind == "planner" and run.status == "interrupted" and run.meta["takeover"] is True

        place.gate.touch()
        worker = place.worker()
        wait_until(lambda: place.status(run.id) == "succeeded", "the worker finished the planner run", timeout_s=90)
        out, err = stop(worker)
    assert worker.returncode == 0, err
    assert f"took over run {run.id}" in out
    effects = place.effects()
    assert [e[0] for e in effects if e[2] == "a"] == [str(service.pid)]  # recorded success: not run again
    assert [e[0] for e in effects if e[2] == "d"] == [str(worker.pid)]
    assert len(server.chat_requests) == 2  # the plan (first process), then the join (the worker)
    store = place.store()
    assert store.summary(run.id).answer == "ALPHA+GAMMA"
    store.close()
