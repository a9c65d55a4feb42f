"""`planweave resume` and the run's lease, through real processes: of two concurrent resumes of one
run exactly one executes, the other exits 2 saying who owns the run; `--force` takes a live run
over and the old owner stops at its next write (fail closed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from planweave.executor.store import open_store
from planweave.planner.testing import ChildProcesses, GatedServer, wait_until

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def slow() -> Iterator[GatedServer]:
    """Every answer waits until `release` is set."""
    with GatedServer() as server:
        yield server


def planweave(children: ChildProcesses, home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PLANWEAVE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return children.spawn(
        [sys.executable, "-m", "planweave", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def interrupted_run(children: ChildProcesses, home: Path, tmp_path: Path, slow: GatedServer) -> str:
    """A workflow run killed (SIGKILL) while its one step waits for the slow server."""
    wf = tmp_path / "slow.yaml"
    wf.write_text(f"name: slow\nsteps:\n  - {{id: fetch, tool: http_get, args: {{url: '{slow.url('/slow')}'}}}}\n")
    first = planweave(children, home, "exec", str(wf), "--tools", "http_get", "--allow-private-hosts",
                      "--http-timeout", "120", "--json")
    wait_until(lambda: len(slow.requests) == 1, "the first run's step reached the server", timeout_s=60)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    runs = open_store(home).list_runs()
    assert [r.status for r in runs] == ["interrupted"]  # its process is gone (same host: seen at once)
    return runs[0].id


def test_two_concurrent_resumes_run_the_steps_once(tmp_path: Path, children: ChildProcesses, slow: GatedServer) -> None:
    home = tmp_path / "home"
    run_id = interrupted_run(children, home, tmp_path, slow)

    resumes = [planweave(children, home, "resume", run_id, "--json") for _ in range(2)]
    loser = wait_until(lambda: next((p for p in resumes if p.poll() is not None), None), "one resume gave up", timeout_s=90)
    winner = next(p for p in resumes if p is not loser)
    _, err = loser.communicate(timeout=30)
    assert loser.returncode == 2, err
    assert f"run `{run_id}` is owned by the live process" in err and "`planweave resume --force`" in err
    assert "Traceback" not in err

    wait_until(lambda: len(slow.requests) == 2, "the winning resume's step reached the server", timeout_s=60)
    slow.release.set()
    out, err = winner.communicate(timeout=90)
    assert winner.returncode == 0, err
    assert '"status": "succeeded"' in out
    assert len(slow.requests) == 2  # the killed run, then the winner: never the loser
    assert open_store(home).summary(run_id).status == "succeeded"


def test_resume_force_takes_a_live_run_over_and_the_old_owner_stops(
    tmp_path: Path, children: ChildProcesses, slow: GatedServer
) -> None:
    home = tmp_path / "home"
    run_id = interrupted_run(children, home, tmp_path, slow)
    old = planweave(children, home, "resume", run_id, "--json")
    wait_until(lambda: len(slow.requests) == 2, "the first resume's step reached the server", timeout_s=60)
    owner = open_store(home)._db.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    assert owner.split(":")[1] == str(old.pid)

    new = planweave(children, home, "resume", run_id, "--force", "--json")
    wait_until(lambda: len(slow.requests) == 3, "the forced resume's step reached the server", timeout_s=60)
    slow.release.set()
    out, err = new.communicate(timeout=90)
    assert new.returncode == 0, err
    assert f"planweave: took run {run_id} over from `{owner}`, whose lease was live" in err
    _, old_err = old.communicate(timeout=90)
    assert old.returncode == 2, old_err  # its next write found the lease gone: it stopped, unrecorded
    assert f"run `{run_id}` was taken over by" in old_err and "Traceback" not in old_err
    assert open_store(home).summary(run_id).status == "succeeded"
