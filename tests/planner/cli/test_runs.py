"""The run-store commands (runs, show, stats, prune, delete, graph) and `plan`, through typer's runner
and as subprocesses: exit codes, --json, no colour when piped, no litellm import for `runs`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planweave.executor.store import open_store
from planweave.planner.cli.app import app
from planweave.planner.testing import FakeModelServer, Reply

ROOT = Path(__file__).resolve().parents[3]
WF = ROOT / "examples" / "workflows"
runner = CliRunner()


@pytest.fixture
def recorded(tmp_path: Path) -> list[str]:
    """Two workflow runs and one failed run in the store of this test's PLANWEAVE_HOME."""
    ok = runner.invoke(app, ["exec", str(WF / "trip_budget.yaml"), "--workspace", str(tmp_path), "--json", "-i", "nights=2"])
    assert ok.exit_code == 0, ok.stdout
    bad = tmp_path / "fails.yaml"
    bad.write_text("name: fails\nsteps:\n  - {id: div, tool: calculator, args: {expression: '1/0'}}\n")
    failed = runner.invoke(app, ["exec", str(bad), "--json"])
    assert failed.exit_code == 1
    return [json.loads(ok.stdout)["run_id"], json.loads(failed.stdout)["run_id"]]


def test_runs_lists_newest_first(recorded: list[str]) -> None:
    res = runner.invoke(app, ["runs", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [r["id"] for r in rows] == recorded[::-1]
    assert [r["status"] for r in rows] == ["failed", "succeeded"]
    failed = json.loads(runner.invoke(app, ["runs", "--json", "--status", "failed"]).stdout)
    assert [r["id"] for r in failed] == [recorded[1]]
    table = runner.invoke(app, ["runs"])
    assert recorded[0] in table.stdout and "trip_budget" in table.stdout


def test_show_tree_and_json_export(recorded: list[str]) -> None:
    res = runner.invoke(app, ["show", recorded[0][:8]])
    assert res.exit_code == 0
    assert "hotel" in res.stdout and "succeeded" in res.stdout
    doc = json.loads(runner.invoke(app, ["show", recorded[0], "--json"]).stdout)
    assert doc["run"]["id"] == recorded[0]
    assert {s["id"] for s in doc["steps"]} >= {"hotel"}
    missing = subprocess.run([sys.executable, "-m", "planweave", "show", "nope"], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
    assert missing.returncode == 2 and "no run `nope`" in missing.stderr and "Traceback" not in missing.stderr


def test_stats_report(recorded: list[str]) -> None:
    res = runner.invoke(app, ["stats", "--json"])
    assert res.exit_code == 0
    groups = {g["name"]: g for g in json.loads(res.stdout)}
    assert groups["trip_budget"]["success_rate"] == 1.0 and groups["fails"]["success_rate"] == 0.0
    assert groups["trip_budget"]["slowest_steps"]
    assert "trip_budget" in runner.invoke(app, ["stats"]).stdout


def test_prune_and_delete(recorded: list[str]) -> None:
    assert "deleted 0 runs" in runner.invoke(app, ["prune", "--older-than", "1d", "--yes"]).stdout
    res = runner.invoke(app, ["delete", recorded[1], "--yes"])
    assert res.exit_code == 0
    assert [r.id for r in open_store().list_runs()] == [recorded[0]]
    assert runner.invoke(app, ["prune", "--older-than", "soon", "--yes"]).exit_code == 2


def test_prune_and_delete_refuse_without_a_terminal_or_yes(recorded: list[str]) -> None:
    for args in (["delete", recorded[1]], ["prune", "--older-than", "0s"]):
        res = runner.invoke(app, args)  # the runner's stdin is not a terminal
        assert res.exit_code == 2
        assert "stdin is not a terminal to confirm; pass `--yes`" in res.stderr
    assert [r.id for r in open_store().list_runs()] == recorded[::-1]  # nothing deleted


def _in_a_terminal(args: list[str], answer: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a pseudo-terminal as stdin, typing `answer`."""
    import pty

    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "planweave", *args], stdin=child, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT,
        )
        os.write(main, answer.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(main)
        os.close(child)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_delete_asks_on_a_terminal(recorded: list[str]) -> None:
    no = _in_a_terminal(["delete", recorded[1]], "n\n")
    assert no.returncode == 0, no.stderr
    assert f"delete run {recorded[1]} (failed: fails)?" in no.stderr and "nothing deleted" in no.stderr
    assert len(open_store().list_runs()) == 2
    yes = _in_a_terminal(["delete", recorded[1]], "y\n")
    assert yes.returncode == 0 and f"deleted run {recorded[1]}" in yes.stdout
    assert [r.id for r in open_store().list_runs()] == [recorded[0]]


def test_runs_table_cuts_nothing_at_80_columns(recorded: list[str], tmp_path: Path) -> None:
    name = "a_workflow_whose_name_is_long_enough_to_need_more_than_one_line_at_eighty_columns"
    wf = tmp_path / "long.yaml"
    wf.write_text(f"name: {name}\nsteps:\n  - {{id: a, tool: calculator, args: {{expression: '1+1'}}}}\n")
    assert runner.invoke(app, ["exec", str(wf), "--json"]).exit_code == 0
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "runs"], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in proc.stdout and "..." not in proc.stdout
    for text in (*recorded, "succeeded", "failed", "trip_budget", "fails", "started", "took", "cost"):
        assert text in proc.stdout
    # The long name folds onto more lines of its column, every character kept.
    header = next(line for line in lines if "goal / workflow" in line)
    column = header.index("goal / workflow")
    folded = "".join(line[column:].strip() for line in lines[lines.index(header) + 2 :])
    assert name in folded


def test_graph_of_file_and_run(recorded: list[str], tmp_path: Path) -> None:
    res = runner.invoke(app, ["graph", str(WF / "trip_budget.yaml"), "--format", "mermaid"])
    assert res.exit_code == 0 and res.stdout.startswith("flowchart")
    dot = runner.invoke(app, ["graph", recorded[1], "--format", "dot"])
    assert dot.exit_code == 0 and "digraph" in dot.stdout
    png = tmp_path / "g.png"
    res = runner.invoke(app, ["graph", recorded[0], "--format", "png", "--output", str(png)])
    assert res.exit_code == 0, res.stdout
    assert png.read_bytes().startswith(b"\x89PNG")


def test_plan_prints_a_runnable_plan(tmp_path: Path) -> None:
    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj(
                {
                    "rationale": "two sums",
                    "steps": [
                        {"id": "a", "tool": "calculator", "args": {"expression": "2 + 2"}},
                        {"id": "b", "tool": "calculator", "args": {"expression": "${a} * 10"}},
                    ],
                }
            )
        )
        out = tmp_path / "plan.yaml"
        res = runner.invoke(
            app,
            ["plan", "sums", "--model", "openai/fake", "--api-base", server.base_url, "-f", "yaml", "-o", str(out)],
            env={"OPENAI_API_KEY": "x"},
        )
    assert res.exit_code == 0, res.stdout
    executed = runner.invoke(app, ["exec", str(out), "--json"])
    assert executed.exit_code == 0
    assert json.loads(executed.stdout)["steps"]["b"]["output"] == 40
    assert open_store().list_runs()[0].kind == "workflow"  # planning alone records nothing


def test_runs_does_not_import_litellm_and_is_plain_when_piped(recorded: list[str]) -> None:
    code = (
        "import sys; sys.argv=['planweave','runs']\nfrom planweave.planner.cli import app\ntry:\n    app.main()\n"
        "except SystemExit:\n    pass\nprint('litellm' in sys.modules, 'instructor' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=os.environ.copy())
    assert proc.stdout.strip().endswith("False False"), proc.stdout + proc.stderr
    assert recorded[0] in proc.stdout and "\x1b[" not in proc.stdout


def test_corrupted_store_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    home = tmp_path / "badhome"
    home.mkdir()
    (home / "runs.db").write_bytes(b"garbage" * 200)
    proc = subprocess.run([sys.executable, "-m", "planweave", "runs"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={**os.environ, "PLANWEAVE_HOME": str(home)})
    assert proc.returncode == 2
    assert f"`{home / 'runs.db'}` is corrupted" in proc.stderr and "Traceback" not in proc.stderr


def _read_only_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`planweave ARGS` with `home` on a read-only file system (root ignores file modes, not that)."""
    env = {**os.environ, "PLANWEAVE_HOME": str(home), "H": str(home)}
    command = [sys.executable, "-m", "planweave", *args]
    if os.geteuid() == 0:
        mount = 'mount --bind "$H" "$H" && mount -o remount,bind,ro "$H" "$H" && exec "$@"'
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh", *command]
    else:
        for p in (home, *home.iterdir()):
            p.chmod(0o555 if p.is_dir() else 0o444)
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)


def test_a_read_only_store_still_lists_shows_and_exports(recorded: list[str], tmp_path: Path) -> None:
    home = Path(os.environ["PLANWEAVE_HOME"])
    ok_id = recorded[0]
    listed = _read_only_cli(home, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"] for r in json.loads(listed.stdout)} == set(recorded)
    shown = _read_only_cli(home, "show", ok_id)
    assert shown.returncode == 0 and "hotel" in shown.stdout, shown.stderr
    exported = _read_only_cli(home, "show", ok_id, "--json")
    assert exported.returncode == 0 and json.loads(exported.stdout)["run"]["id"] == ok_id
    assert _read_only_cli(home, "stats").returncode == 0

    ws = tmp_path / "ws"
    ws.mkdir()
    refused = _read_only_cli(home, "exec", str(WF / "trip_budget.yaml"), "--workspace", str(ws), "-i", "nights=2")
    assert refused.returncode == 2
    assert f"the run store `{home / 'runs.db'}` is read-only" in refused.stderr and "--no-record" in refused.stderr
    assert list(ws.iterdir()) == []  # no step ran unrecorded (the workflow writes a report)
    unrecorded = _read_only_cli(home, "exec", str(WF / "trip_budget.yaml"), "--workspace", str(ws),
                                "-i", "nights=2", "--no-record", "--json")
    assert unrecorded.returncode == 0, unrecorded.stderr
    assert list(ws.iterdir())


def test_a_full_store_says_so_and_delete_and_prune_make_room(tmp_path: Path) -> None:
    import secrets

    home = tmp_path / "home"
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(6):
        (ws / f"big{i}.txt").write_text(secrets.token_hex(60_000))  # 120 kB each, incompressible
    def workflow(name: str, files: range) -> Path:
        steps = "".join(
            f"  - {{id: r{i}, tool: read_file, args: {{path: big{i}.txt}}"
            + (f", depends_on: [r{i - 1}]" if i != files[0] else "") + "}\n"
            for i in files
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\nsteps:\n{steps}")
        return path

    env = {**os.environ, "PLANWEAVE_HOME": str(home), "PLANWEAVE_STORE_MAX_MB": "0.6"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "planweave", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=120, env=env)

    first = cli("exec", str(workflow("first", range(0, 3))), "--workspace", str(ws), "--json")
    assert first.returncode == 0, first.stderr
    first_id = json.loads(first.stdout)["run_id"]
    second = cli("exec", str(workflow("second", range(3, 6))), "--workspace", str(ws), "--json")
    assert second.returncode == 1, second.stderr
    assert f"the run store `{home / 'runs.db'}` is full" in second.stderr
    assert "free space with `planweave prune --older-than 7d` or `planweave delete RUN_ID`" in second.stderr
    second_id = next(r.id for r in open_store(home).list_runs() if r.name == "second")
    assert f"`planweave resume {second_id}`" in second.stderr and "Traceback" not in second.stderr
    assert open_store(home).summary(second_id).status == "interrupted"

    assert cli("delete", first_id, "--yes").returncode == 0
    resumed = cli("resume", second_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert open_store(home).summary(second_id).status == "succeeded"
    pruned = cli("prune", "--older-than", "0s", "--yes")
    assert pruned.returncode == 0 and "deleted 1 run" in pruned.stdout, pruned.stderr
    with sqlite3.connect(home / "runs.db") as db:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] < 10  # the pages went back to the disk
