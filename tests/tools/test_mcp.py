"""MCP servers as tool sources, against a real server written with the SDK (mcp_demo_server.py):
over stdio as a subprocess, and over Streamable HTTP served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Executor, PlanError, RunEvent, Step, load_workflow
from planweave.executor.events import StepProgressed, StepRetrying, StepStarted
from planweave.planner.testing import wait_until
from planweave.tools import tool
from planweave.tools.errors import MCPConfigError, MCPStartError
from planweave.tools.mcp import MCPServer, connect_mcp, load_mcp_config

DEMO = Path(__file__).with_name("mcp_demo_server.py")
SERVER = MCPServer.stdio(sys.executable, str(DEMO))


def _demo_http(sock: socket.socket) -> tuple[Any, threading.Thread]:
    """Serve the demo server over Streamable HTTP with uvicorn on `sock`, in a thread."""
    import uvicorn

    sys.path.insert(0, str(DEMO.parent))
    try:
        import mcp_demo_server
    finally:
        sys.path.remove(str(DEMO.parent))
    server = uvicorn.Server(uvicorn.Config(mcp_demo_server.http_app(), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the MCP demo server listens")
    return server, thread


def _loopback_socket(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture
def http_url() -> Iterator[str]:
    """The demo server over Streamable HTTP, served by uvicorn in a thread on 127.0.0.1."""
    sock = _loopback_socket()
    server, thread = _demo_http(sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def _events(kind: type[RunEvent]) -> tuple[list[RunEvent], object]:
    seen: list[RunEvent] = []
    return seen, lambda e: seen.append(e) if isinstance(e, kind) else None


async def test_lists_the_servers_tools_with_their_schemas_and_prefixes_a_taken_name() -> None:
    async with connect_mcp([SERVER], taken=["pid"]) as connections:
        tools = {t.name: t for t in connections.tools}
    assert set(tools) == {"add", "shout", "reject", "count_to", "demo_pid", "crash_once", "wait_for"}
    assert tools["add"].description == "Add two numbers."
    assert tools["add"].json_schema["required"] == ["a", "b"]
    assert tools["add"].json_schema["properties"]["a"]["type"] == "number"
    assert tools["add"].output_schema is not None and "total" in tools["add"].output_schema["properties"]


async def test_plan_arguments_are_checked_against_the_servers_schema_before_anything_runs() -> None:
    async with Executor(mcp=[SERVER]) as executor:
        with pytest.raises(PlanError) as caught:
            executor.start([Step(id="sum", tool="add", args={"a": "three"})])
    message = str(caught.value)
    assert "step `sum` arguments do not match tool `add`" in message
    assert "`a`: 'three' is not of type 'number'" in message
    assert "`b` is required" in message


async def test_calls_give_structured_and_text_outputs_tool_errors_and_progress() -> None:
    """One server for three runs (each server start costs a Python start-up)."""
    seen, keep = _events(StepProgressed)
    async with Executor(mcp=[SERVER]) as executor:
        # structuredContent, else the text, is the step's output
        result = await executor.run(
            [
                Step(id="sum", tool="add", args={"a": 1, "b": 2}),
                Step(id="loud", tool="shout", args={"text": "total ${sum.total}"}),
            ]
        )
        assert result.status == "succeeded", result.error
        assert result.outputs == {"sum": {"total": 3.0}, "loud": "TOTAL 3.0"}

        # an `isError` result fails the step for good: not retried
        result = await executor.run(
            [Step(id="no", tool="reject", args={"reason": "not today"}, retry={"max_attempts": 3, "initial_delay_s": 0})]
        )
        step = result.steps["no"]
        assert (result.status, step.status, step.attempts, step.error_type) == ("failed", "failed", 1, "MCPToolError")
        assert step.error == (
            "MCP tool `reject` of server `demo` reported an error: Error executing tool reject: rejected: not today"
        )

        # progress notifications become step_progress events
        result = await executor.run([Step(id="count", tool="count_to", args={"n": 3})], subscribers=[keep])
        assert result.outputs["count"] == {"result": "counted to 3"}
    assert [(e.step_id, e.progress_kind, e.done, e.total, e.message) for e in seen if isinstance(e, StepProgressed)] == [
        ("count", "progress", 1.0, 3.0, "counted 1"),
        ("count", "progress", 2.0, 3.0, "counted 2"),
        ("count", "progress", 3.0, 3.0, "counted 3"),
    ]


async def test_a_server_that_crashes_mid_run_is_restarted_and_the_step_retried(tmp_path: Path) -> None:
    events: list[RunEvent] = []
    async with Executor(mcp=[SERVER]) as executor:
        result = await executor.run(
            [
                Step(id="before", tool="pid"),
                Step(id="crash", tool="crash_once", args={"marker": str(tmp_path / "crashed")},
                     depends_on=["before"], retry={"max_attempts": 2, "initial_delay_s": 0}),
                Step(id="after", tool="pid", depends_on=["crash"]),
            ],
            subscribers=[events.append],
        )
    assert result.status == "succeeded", result.error
    first, second = result.outputs["before"]["result"], result.outputs["after"]["result"]
    assert first == int((tmp_path / "crashed").read_text()) and second != first
    assert result.outputs["crash"] == {"result": f"survived in {second}"}
    notices = [e for e in events if isinstance(e, StepProgressed) and e.progress_kind == "notice"]
    assert [(e.step_id, e.message) for e in notices] == [
        ("crash", "MCP server `demo` exited during `crash_once` (it crashed); it was restarted.")
    ]
    retries = [e for e in events if isinstance(e, StepRetrying)]
    assert [(e.step_id, e.error_type) for e in retries] == [("crash", "MCPConnectionError")]


async def test_two_concurrent_runs_share_one_server_process(tmp_path: Path) -> None:
    release = tmp_path / "release"
    started: list[RunEvent] = []

    def plan(name: str) -> list[Step]:
        return [Step(id="me", tool="pid"), Step(id="hold", tool="wait_for", args={"path": str(release)})]

    async def let_go() -> None:
        while sum(1 for e in started if isinstance(e, StepStarted) and e.step_id == "hold") < 2:
            await asyncio.sleep(0.01)
        release.write_text("go")

    def watch(event: RunEvent) -> None:
        started.append(event)

    one, two, _ = await asyncio.gather(
        Executor(mcp=[SERVER]).run(plan("one"), subscribers=[watch]),
        Executor(mcp=[SERVER]).run(plan("two"), subscribers=[watch]),
        let_go(),
    )
    assert one.status == two.status == "succeeded"
    assert one.outputs["me"] == two.outputs["me"]  # the same process answered both runs
    assert one.outputs["hold"] == two.outputs["hold"] == {"result": "released"}


async def test_streamable_http_server_calls_and_progress(http_url: str) -> None:
    seen, keep = _events(StepProgressed)
    server = MCPServer.http(http_url, headers={"X-Test": "1"}, name="remote")

    @tool
    def add(a: int, b: int) -> int:
        """A local tool taking the name first."""
        return a + b

    result = await Executor([add], mcp=[server]).run(
        [
            Step(id="local", tool="add", args={"a": 1, "b": 1}),
            Step(id="remote", tool="remote_add", args={"a": 2, "b": 3}),
            Step(id="count", tool="count_to", args={"n": 2}),
        ],
        subscribers=[keep],
    )
    assert result.status == "succeeded", result.error
    assert result.outputs == {"local": 2, "remote": {"total": 5.0}, "count": {"result": "counted to 2"}}
    assert [e.done for e in seen if isinstance(e, StepProgressed)] == [1.0, 2.0]


async def test_a_url_server_that_goes_away_is_reconnected_once_it_is_back() -> None:
    sock = _loopback_socket()
    port = sock.getsockname()[1]
    server, thread = _demo_http(sock)
    async with Executor(mcp=[f"http://127.0.0.1:{port}/mcp"]) as executor:
        assert (await executor.run([Step(id="a", tool="pid")])).status == "succeeded"
        server.should_exit = True
        thread.join()
        sock.close()
        down = await executor.run([Step(id="a", tool="pid")])
        assert down.steps["a"].error_type == "MCPConnectionError"
        assert down.steps["a"].error.startswith(  # type: ignore[union-attr]
            "MCP server `demo` closed the connection during `pid` (it crashed); reconnecting failed too: "
            f"MCP server `127.0.0.1` at `http://127.0.0.1:{port}/mcp` cannot be reached ("
        )
        sock = _loopback_socket(port)
        server, thread = _demo_http(sock)
        try:
            back = await executor.run([Step(id="a", tool="pid")])
        finally:
            server.should_exit = True
            thread.join()
            sock.close()
    assert back.status == "succeeded", back.error


async def test_a_workflow_names_its_mcp_servers(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: sums\n"
        "mcp:\n"
        f"  demo: {{command: {json.dumps(sys.executable)}, args: [{json.dumps(str(DEMO))}]}}\n"
        "steps:\n"
        "  - {id: sum, tool: add, args: {a: 20, b: 22}}\n"
        "success: ['${sum.total} == 42']\n"
    )
    workflow = load_workflow(path)
    assert [s.name for s in workflow.mcp] == ["demo"]
    result = await workflow.run()
    assert result.status == "succeeded", result.error
    assert result.outputs["sum"] == {"total": 42.0}


async def test_a_command_that_does_not_start_is_a_clear_error() -> None:
    with pytest.raises(MCPStartError) as missing:
        async with connect_mcp([MCPServer.stdio("planweave-no-such-server")]):
            pass
    assert str(missing.value).startswith(
        "MCP server `planweave-no-such-server` (`planweave-no-such-server`) did not start (FileNotFoundError"
    )
    with pytest.raises(MCPStartError) as exits:
        async with connect_mcp([MCPServer.stdio(sys.executable, str(DEMO), "--fail-at-start", name="quitter")]):
            pass
    assert str(exits.value).startswith("MCP server `quitter`")
    assert "check the command runs on its own and speaks MCP over stdio" in str(exits.value)


async def test_an_unreachable_url_is_a_clear_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(MCPStartError) as caught:
        async with connect_mcp([f"http://127.0.0.1:{port}/mcp"]):
            pass
    assert str(caught.value).startswith(f"MCP server `127.0.0.1` at `http://127.0.0.1:{port}/mcp` cannot be reached (")


def test_mcp_servers_config_file(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "server-files", "/tmp"], "env": {"DEBUG": "1"}},
        "docs": {"url": "https://docs.example/mcp", "headers": {"Authorization": "Bearer k"}},
        "off": {"command": "x", "disabled": True},
    }}))
    files, docs = load_mcp_config(path)
    assert (files.name, files.command, files.args, dict(files.env)) == ("files", "npx", ("-y", "server-files", "/tmp"), {"DEBUG": "1"})
    assert (docs.name, docs.url, dict(docs.headers)) == ("docs", "https://docs.example/mcp", {"Authorization": "Bearer k"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2."),
        ('{"servers": {}}', "has no `mcpServers` key; write `{\"mcpServers\": {\"name\": {\"command\": \"...\", \"args\": [...]}}}`."),
        ('{"mcpServers": {"a": {"comand": "x"}}}', ": server `a` has unknown key `comand`; the keys are `command`, `args`, `env`, `cwd` (a stdio server) or `url`, `headers` (a Streamable HTTP server)."),
        ('{"mcpServers": {"a": {"args": ["x"]}}}', ": server `a` has neither `command` nor `url`; add `\"command\": \"...\"` or `\"url\": \"http://...\"`."),
        ('{"mcpServers": {"a": {"type": "sse", "url": "http://h/sse"}}}', ": server `a` uses the old SSE transport"),
        ('{"mcpServers": {"a": {"command": "x", "args": "y"}}}', ": server `a`: `args` must be a list, not 'y'."),
    ],
)
def test_a_bad_config_file_says_which_key_and_how_to_fix_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(text)
    with pytest.raises(MCPConfigError) as caught:
        load_mcp_config(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_parse_a_flag_value() -> None:
    assert MCPServer.parse("python 'my server.py' --fast") == MCPServer.stdio("python", "my server.py", "--fast")
    assert MCPServer.parse("http://127.0.0.1:9/mcp").url == "http://127.0.0.1:9/mcp"
    assert MCPServer.parse("python srv/notes.py").label == "notes"
    with pytest.raises(MCPConfigError, match="is not a valid command line"):
        MCPServer.parse("python 'unclosed")
