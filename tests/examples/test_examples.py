"""Every example the README shows is a file, and this runs it."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from planweave.executor import load_workflow
from planweave.tools.builtin import builtin_tools

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_quickstart_example_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    assert capsys.readouterr().out.strip() == "succeeded 4 WORDS: PLANS RUN IN PARALLEL"


async def test_trip_budget_workflow(tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "workflows" / "trip_budget.yaml")
    result = await wf.run(builtin_tools(workspace=tmp_path), inputs={"nights": 7})
    assert result.status == "succeeded", result.error
    assert result.output("total") == 7 * 120 + 8 * 45 + 2 * 190
    assert result.output("long_trip_discount") == pytest.approx(result.output("total") * 0.9)
    assert (tmp_path / "trip_budget.md").read_text().startswith("Trip of 7 nights")
    short = await wf.run(builtin_tools(workspace=tmp_path), inputs={"nights": 2})
    assert short.steps["long_trip_discount"].status == "skipped"


async def test_document_analysis_workflow() -> None:
    wf = load_workflow(EXAMPLES / "workflows" / "document_analysis.py")
    result = await wf.run()
    assert result.status == "succeeded", result.error
    assert result.output("analysis")["sentiment"]["label"] == "positive"
    assert result.output("entities") == ["Langfuse", "Planweave"]
    assert result.output("report").startswith("topics: planweave")
    # The sentiment and entity steps ran side by side, after nothing but the inputs.
    assert result.steps["sentiment"].started_at < result.steps["entities"].finished_at  # type: ignore[operator]


def test_exec_command_runs_a_workflow_in_a_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "planweave.planner.cli.app", "exec", str(EXAMPLES / "workflows" / "trip_budget.yaml"),
         "--workspace", str(tmp_path), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    data = json.loads(proc.stdout)
    assert data["status"] == "succeeded" and data["steps"]["total"]["output"] == 1085


def test_planner_api_example_runs_offline() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "planner_api.py")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "step p1 -> 391" in lines and "step p2 -> 256" in lines
    assert "17 * 23 = 391; 2 ** 8 = 256" in lines  # the offline answer: no step ids, no setup hint
    assert "status: succeeded, LLM calls: 3" in lines
    assert lines[-1].startswith("recorded ") and "events; `planweave show " in lines[-1]


@pytest.mark.timeout(240)  # may be the test that waits for the session's Ray to start
def test_ray_steps_example_runs_heavy_steps_on_ray(ray_cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "ray_steps.py"), run_name="__main__")
    status, _total, workers = capsys.readouterr().out.strip().split(" ", 2)
    assert status == "succeeded" and workers != "(0 Ray worker processes)"


@pytest.mark.parametrize("name", ["quickstart.py", "planner_api.py", "ray_steps.py"])
def test_readme_shows_the_example_files_verbatim(name: str) -> None:
    source = (EXAMPLES / name).read_text()
    code = source.split('"""', 2)[2].strip()  # without the module docstring
    assert code in (ROOT / "README.md").read_text(), f"README's copy of examples/{name} is out of date"


def test_mcp_client_example_uses_the_example_mcp_server() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "mcp_client.py")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "tools: count_words, to_celsius"
    assert [line for line in lines if line.startswith("progress:")] == [
        f"progress: {i} of 4 words" for i in range(1, 5)
    ]
    assert lines[-1] == "succeeded {'celsius': 38.5, 'kelvin': 311.65} 4 words"


def test_readme_shows_the_mcp_client_example_verbatim() -> None:
    source = (EXAMPLES / "mcp_client.py").read_text()
    code = source.split('"""', 2)[2].strip()
    assert code in (ROOT / "README.md").read_text(), "README's copy of examples/mcp_client.py is out of date"


def test_readme_mcp_client_snippets_configure_planweave_mcp(tmp_path: Path) -> None:
    import json
    import re

    from planweave.tools.mcp import load_mcp_config

    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", (ROOT / "README.md").read_text(), re.S)]
    desktop = next(b for b in blocks if "mcpServers" in b)
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps(desktop))
    [server] = load_mcp_config(config)  # the format `--mcp-config` reads is the one the README shows
    assert (server.name, server.command, server.args[0]) == ("planweave", "planweave", "mcp")
    editor = next(b for b in blocks if "servers" in b)["servers"]["planweave"]
    assert (editor["type"], editor["command"], editor["args"][0]) == ("stdio", "planweave", "mcp")
