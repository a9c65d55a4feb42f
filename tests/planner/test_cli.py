"""The CLI through typer's runner and as a real subprocess: exit codes, --json, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from planner.cli import app

ROOT = Path(__file__).resolve().parents[2]
WF = ROOT / "examples" / "workflows"
runner = CliRunner()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planner.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
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
    code = "import sys; sys.argv=['planweave','--help']\nfrom planner import cli\ntry:\n    cli.main()\nexcept SystemExit:\n    pass\nprint('litellm' in sys.modules, 'instructor' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip().endswith("False False"), proc.stdout + proc.stderr


def test_run_offline_goal_in_a_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "planner.cli", "run", "what is 6 * 7", "--workspace", str(tmp_path), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**__import__("os").environ, "PLANWEAVE_MODEL": ""},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "succeeded" and data["steps"]["p1"]["output"] == 42
    assert "offline" in data["answer"]
    empty = cli("run", "   ")
    assert empty.returncode == 2 and "the goal is empty" in empty.stderr
