"""`--mcp` and `--mcp-config` on the command line, against the SDK-written demo server."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "tests" / "tools" / "mcp_demo_server.py"
DEMO_CMD = shlex.join([sys.executable, str(DEMO)])


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planweave", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_tools_lists_an_mcp_servers_tools_with_their_schemas() -> None:
    res = cli("tools", "--mcp", DEMO_CMD, "--json")
    assert res.returncode == 0, res.stderr
    tools = {t["name"]: t for t in json.loads(res.stdout)}
    assert {"calculator", "llm", "add", "shout", "count_to"} <= set(tools)
    assert tools["add"]["description"] == "Add two numbers."
    assert tools["add"]["parameters"]["required"] == ["a", "b"]


def test_exec_runs_a_workflow_with_an_mcp_config_file(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"demo": {"command": sys.executable, "args": [str(DEMO)]}}}))
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: sums\nsteps:\n  - {id: sum, tool: add, args: {a: 1, b: 2}}\n"
                    "  - {id: loud, tool: shout, args: {text: 'sum ${sum.total}'}}\n")
    res = cli("exec", str(flow), "--mcp-config", str(config), "--json", "--no-record")
    assert res.returncode == 0, res.stderr
    outputs = {sid: s["output"] for sid, s in json.loads(res.stdout)["steps"].items()}
    assert outputs == {"sum": {"total": 3.0}, "loud": "SUM 3.0"}


def test_exec_checks_arguments_against_the_servers_schema(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: bad\nsteps:\n  - {id: sum, tool: add, args: {a: one, b: 2}}\n")
    res = cli("exec", str(flow), "--mcp", DEMO_CMD, "--no-record")
    assert res.returncode == 2
    assert "step `sum` arguments do not match tool `add`: `a`: 'one' is not of type 'number'" in res.stderr


def test_a_bad_config_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {"demo": {"cmd": "python"}}}')
    res = cli("tools", "--mcp-config", str(config))
    assert res.returncode == 2
    assert f"`{config}`: server `demo` has unknown key `cmd`" in res.stderr


def test_a_server_that_does_not_start_or_answer_exits_2() -> None:
    res = cli("tools", "--mcp", "planweave-no-such-server --stdio")
    assert res.returncode == 2
    assert "MCP server `planweave-no-such-server` (`planweave-no-such-server --stdio`) did not start" in res.stderr
    assert "check `planweave-no-such-server` is installed and on PATH" in res.stderr
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    res = cli("tools", "--mcp", f"http://127.0.0.1:{port}/mcp")
    assert res.returncode == 2
    assert f"at `http://127.0.0.1:{port}/mcp` cannot be reached" in res.stderr


def test_run_plans_with_an_mcp_servers_tools_beside_the_built_in_ones(tmp_path: Path) -> None:
    res = cli("run", "what is 6 * 7?", "--mcp", DEMO_CMD, "--json", "--no-record", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "42" in json.loads(res.stdout)["answer"]


def test_validate_lists_a_workflows_own_mcp_servers_before_checking(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        f"name: x\nmcp:\n  demo: {{command: {json.dumps(sys.executable)}, args: [{json.dumps(str(DEMO))}]}}\n"
        "steps:\n  - {id: sum, tool: add, args: {a: 1, b: 2}}\n"
    )
    res = cli("validate", str(flow))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{flow}: valid (1 step)"
