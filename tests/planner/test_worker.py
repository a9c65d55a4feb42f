"""`planweave exec --detach` and `planweave worker`, through real processes on a real SQLite store.

Every tool call appends `pid run_id step phase` to a log file, so the log is the ground truth
of what ran and where: a queued run runs exactly once whatever the number of workers, a run
whose worker was SIGKILLed or SIGTERMed is finished by another without re-running a step
whose success was recorded, and the runs a worker must leave alone (interrupted in a
terminal, waiting for people) are left alone.
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

ASKS = textwrap.dedent(
    """
    name: asks
    steps:
      - {id: city, tool: ask_user, args: {question: "Which city?"}}
    """
)


class Place:
    """A directory with the tools, the workflows, a store and the effect log; runs `planweave` there."""

    def __init__(self, tmp_path: Path, children: ChildProcesses) -> None:
        self.dir = tmp_path / "work"
        self.dir.mkdir()
        self.children = children
        self.home = tmp_path / "home"
        self.log = tmp_path / "effects.log"
        self.gate = tmp_path / "gate"
        (self.dir / "fx_tools.py").write_text(TOOLS)
        for name, text in (("fast.yaml", FAST), ("gated.yaml", GATED), ("asks.yaml", ASKS)):
            (self.dir / name).write_text(text)
        self.env = {**os.environ, "PLANWEAVE_HOME": str(self.home), "FX_LOG": str(self.log), "FX_GATE": str(self.gate),
                    "PLANWEAVE_LEASE_S": "10", "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        for key in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "PLANWEAVE_MODEL", "PLANWEAVE_STORE_URL"):
            self.env.pop(key, None)

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

    def worker(self, *args: str) -> subprocess.Popen[str]:
        return self.spawn("worker", *args)

    def store(self) -> RunStore:
        return open_store(self.home)

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

    def outputs(self, run_id: str) -> dict[str, Any]:
        store = self.store()
        try:
            return {sid: step.get("output") for sid, step in store.get_run(run_id).steps().items()}
        finally:
            store.close()


@pytest.fixture
def place(tmp_path: Path, children: ChildProcesses) -> Place:
    return Place(tmp_path, children)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    return out, err


def test_exec_detach_queues_the_run_and_a_worker_runs_it(place: Place) -> None:
    run_id = place.detach("fast.yaml", "who=bob")
    store = place.store()
    summary = store.summary(run_id)
    assert summary.status == "queued"
    assert summary.meta["takeover"] is True
    assert summary.meta["file"] == str((place.dir / "fast.yaml").resolve())
    assert summary.meta["inputs"] == {"who": "bob"}
    assert summary.meta["tool_specs"] == [str((place.dir / "fx_tools.py").resolve())]
    assert [r.id for r in store.list_runs(status="queued")] == [run_id]
    assert store.prune(older_than_s=3600) == 0  # younger than the cutoff: kept
    store.close()
    assert place.effects() == []  # nothing ran

    worker = place.worker()  # in another directory: the run carries absolute paths
    wait_until(lambda: place.status(run_id) == "succeeded", "the worker ran the queued run", timeout_s=90)
    out, err = stop(worker)
    assert worker.returncode == 0, err
    assert place.outputs(run_id) == {"a": "BOB-A", "b": "BOB-A-B"}
    assert sorted((e[2], e[3]) for e in place.effects()) == [("a", "done"), ("b", "done")]
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


def test_two_workers_run_six_queued_runs_exactly_once(place: Place) -> None:
    place.env["FX_SLEEP"] = "0.1"  # long enough for both workers to be busy at once
    run_ids = [place.detach("fast.yaml", f"who=w{i}") for i in range(6)]
    workers = [place.worker("--concurrency", "2") for _ in range(2)]
    for run_id in run_ids:
        wait_until(lambda: place.status(run_id) == "succeeded", f"run {run_id} succeeded", timeout_s=120)
    outs = [stop(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outs]
    ran = Counter((e[1], e[2]) for e in place.effects())
    assert ran == Counter({(r, s): 1 for r in run_ids for s in ("a", "b")})  # each step of each run, once
    for i, run_id in enumerate(run_ids):
        assert place.outputs(run_id) == {"a": f"W{i}-A", "b": f"W{i}-A-B"}
    started = [line for out, _ in outs for line in out.splitlines() if "started run" in line]
    assert sorted(line.split("started run ")[1].split()[0] for line in started) == sorted(run_ids)


def test_a_worker_killed_mid_run_is_taken_over_without_rerunning_recorded_successes(place: Place) -> None:
    run_id = place.detach("gated.yaml", "who=kim")
    first = place.worker()
    wait_until(lambda: any(e[2] == "b" and e[3] == "start" for e in place.effects()), "step b started", timeout_s=90)
    second = place.worker()
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    wait_until(
        lambda: any(e[0] == str(second.pid) and e[2] == "b" and e[3] == "start" for e in place.effects()),
        "the second worker took the run over and started step b again", timeout_s=90,
    )
    place.gate.touch()
    wait_until(lambda: place.status(run_id) == "succeeded", "the second worker finished the run", timeout_s=90)
    out, err = stop(second)
    assert second.returncode == 0, err
    assert f"took over run {run_id} (gated): its owner stopped" in out
    effects = place.effects()
    assert [e for e in effects if e[2] == "a"] == [(str(first.pid), run_id, "a", "done")]  # recorded: never again
    assert [e for e in effects if e[2] == "b" and e[3] == "done"] == [(str(second.pid), run_id, "b", "done")]
    assert place.outputs(run_id) == {"a": "KIM-A", "b": "KIM-A-B"}


def test_sigterm_records_the_run_in_flight_interrupted_and_another_worker_finishes_it(place: Place) -> None:
    run_id = place.detach("gated.yaml", "who=ann")
    first = place.worker("--grace", "0.2")
    wait_until(lambda: any(e[2] == "b" and e[3] == "start" for e in place.effects()), "step b started", timeout_s=90)
    out, err = stop(first, signal.SIGTERM)
    assert first.returncode == 0, err
    assert place.status(run_id) == "interrupted"  # resumable, recorded before the worker exited
    assert f"interrupted run {run_id} (gated)" in out

    place.gate.touch()
    second = place.worker()
    wait_until(lambda: place.status(run_id) == "succeeded", "another worker finished the run", timeout_s=90)
    out, err = stop(second, signal.SIGINT)
    assert second.returncode == 0, err
    assert f"took over run {run_id} (gated)" in out
    effects = place.effects()
    assert [e[0] for e in effects if e[2] == "a"] == [str(first.pid)]
    assert [e[0] for e in effects if e[2] == "b" and e[3] == "done"] == [str(second.pid)]
    assert place.outputs(run_id) == {"a": "ANN-A", "b": "ANN-A-B"}


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

    asks = place.detach("asks.yaml", tools="fx_tools.py,ask_user")
    worker = place.worker()
    wait_until(lambda: place.status(asks) == "waiting", "the queued run asked its question", timeout_s=90)
    marker = place.detach("fast.yaml", "who=last")  # queued after: once it ran, the worker scanned again
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
    run_id = place.detach("fast.yaml")
    listed = place.cli("runs", "--status", "queued", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    assert json.loads(place.cli("runs", "--status", "succeeded", "--json").stdout) == []
