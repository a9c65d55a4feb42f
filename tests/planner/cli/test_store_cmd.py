"""`planweave --store postgresql://...` and `planweave store migrate|export|import`, through real
processes: a workflow SIGKILLed and resumed on PostgreSQL re-runs no recorded success, two
resumes of one run execute it once, runs round-trip SQLite -> PostgreSQL -> SQLite, and a
bad URL is a clear error (exit 2, password masked)."""

from __future__ import annotations

import json
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
def server() -> Iterator[GatedServer]:
    """`/fast` answers at once; `/slow` waits until `release` is set."""
    with GatedServer(hold=("/slow",)) as gated:
        yield gated


def planweave(children: ChildProcesses, home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PLANWEAVE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("PLANWEAVE_STORE_URL", None)
    return children.spawn(
        [sys.executable, "-m", "planweave", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def killed_run(children: ChildProcesses, home: Path, tmp_path: Path, server: GatedServer, url: str) -> str:
    """`planweave --store URL exec` of fast -> slow, SIGKILLed while `slow` waits for the server."""
    wf = tmp_path / "two.yaml"
    wf.write_text(
        "name: two\nsteps:\n"
        f"  - {{id: fast, tool: http_get, args: {{url: '{server.base}/fast'}}}}\n"
        f"  - {{id: slow, tool: http_get, depends_on: [fast], args: {{url: '{server.base}/slow'}}}}\n"
    )
    first = planweave(children, home, "--store", url, "exec", str(wf), "--tools", "http_get",
                      "--allow-private-hosts", "--http-timeout", "120", "--json")
    wait_until(lambda: "/slow" in server.requests, "the slow step reached the server", timeout_s=90)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    runs = open_store(url).list_runs()
    assert [r.status for r in runs] == ["interrupted"]  # its process is gone (same host: seen at once)
    return runs[0].id


def test_exec_killed_and_resumed_on_postgres_reruns_no_recorded_success(
    tmp_path: Path, children: ChildProcesses, server: GatedServer, pg_fresh_url: str
) -> None:
    home = tmp_path / "home"
    run_id = killed_run(children, home, tmp_path, server, pg_fresh_url)
    assert server.requests == ["/fast", "/slow"]
    server.release.set()
    code, out, err = finished(planweave(children, home, "--store", pg_fresh_url, "resume", run_id, "--json"))
    assert code == 0, err
    assert server.requests == ["/fast", "/slow", "/slow"]  # `fast` succeeded and was recorded: never again
    summary = open_store(pg_fresh_url).summary(run_id)
    assert summary.status == "succeeded" and summary.steps == 2
    assert not (home / "runs.db").exists()  # nothing went to the default SQLite store


def test_two_resumes_of_one_run_on_postgres_execute_it_once(
    tmp_path: Path, children: ChildProcesses, server: GatedServer, pg_fresh_url: str
) -> None:
    home = tmp_path / "home"
    run_id = killed_run(children, home, tmp_path, server, pg_fresh_url)
    resumes = [planweave(children, home, "--store", pg_fresh_url, "resume", run_id, "--json") for _ in range(2)]
    loser = wait_until(lambda: next((p for p in resumes if p.poll() is not None), None), "one resume gave up",
                       timeout_s=90)
    winner = next(p for p in resumes if p is not loser)
    code, _, err = finished(loser)
    assert code == 2, err
    assert f"run `{run_id}` is owned by the live process" in err and "Traceback" not in err
    wait_until(lambda: server.requests.count("/slow") == 2, "the winner's step reached the server", timeout_s=60)
    server.release.set()
    code, _, err = finished(winner)
    assert code == 0, err
    assert server.requests.count("/slow") == 2 and server.requests.count("/fast") == 1
    assert open_store(pg_fresh_url).summary(run_id).status == "succeeded"


def test_runs_round_trip_sqlite_postgres_sqlite(
    tmp_path: Path, children: ChildProcesses, server: GatedServer, pg_fresh_url: str
) -> None:
    home, back = tmp_path / "home", tmp_path / "back"
    wf = tmp_path / "wf.yaml"
    long = "/fast" + "x" * 2000  # a large output: stored as a blob, resolved in the export
    wf.write_text(f"name: wf\nsteps:\n  - {{id: a, tool: http_get, args: {{url: '{server.base}{long}'}}}}\n"
                  "  - {id: b, tool: calculator, depends_on: [a], args: {expression: '6 * 7'}}\n")
    for _ in range(2):
        code, _, err = finished(planweave(children, home, "exec", str(wf), "--tools", "http_get,calculator",
                                          "--allow-private-hosts", "--json"))
        assert code == 0, err
    first, from_pg = tmp_path / "sqlite.jsonl", tmp_path / "pg.jsonl"
    assert finished(planweave(children, home, "store", "export", str(first)))[0] == 0
    code, _, err = finished(planweave(children, home, "--store", pg_fresh_url, "store", "import", str(first)))
    assert code == 0 and "imported 2 runs into" in err, err
    code, _, err = finished(planweave(children, home, "store", "export", "--store", pg_fresh_url, str(from_pg)))
    assert code == 0, err
    assert first.read_text() == from_pg.read_text()  # every run, summary and events, as it was

    code, _, err = finished(planweave(children, home, "--store", pg_fresh_url, "store", "import", str(first)))
    assert code == 2 and "already has run(s)" in err and "--replace" in err  # nothing overwritten
    code, _, err = finished(planweave(children, back, "store", "import", str(from_pg)))
    assert code == 0, err
    code, out, err = finished(planweave(children, back, "store", "export", "-"))
    assert code == 0 and out == first.read_text()
    runs = [json.loads(line) for line in out.splitlines()]
    assert [r["run"]["status"] for r in runs] == ["succeeded", "succeeded"]
    assert long in json.dumps(open_store(back).get_run(runs[0]["run"]["id"]).steps()["a"]["output"])


def test_store_migrate_prints_the_versions(tmp_path: Path, children: ChildProcesses, pg_fresh_url: str) -> None:
    code, out, err = finished(planweave(children, tmp_path, "--store", pg_fresh_url, "store", "migrate"))
    assert code == 0 and out.strip() == f"{pg_fresh_url}: migrated schema 0 -> 1", err
    code, out, err = finished(planweave(children, tmp_path, "store", "migrate", "--store", pg_fresh_url))
    assert code == 0 and out.strip() == f"{pg_fresh_url}: schema 1, up to date", err
    code, out, err = finished(planweave(children, tmp_path, "store", "migrate"))
    assert code == 0 and out.strip() == f"{tmp_path / 'runs.db'}: migrated schema 0 -> 2", err


def test_a_bad_store_url_is_a_clear_error(tmp_path: Path, children: ChildProcesses) -> None:
    code, _, err = finished(planweave(children, tmp_path, "--store", "postgresql://app:s3cret@127.0.0.1:1/runs", "runs"))
    assert code == 2
    assert "cannot reach the run store `postgresql://app:***@127.0.0.1:1/runs`" in err
    assert "s3cret" not in err and "Traceback" not in err
    code, _, err = finished(planweave(children, tmp_path, "store", "import", str(tmp_path / "missing.jsonl")))
    assert code == 2 and "cannot read" in err
