"""`planweave mcp` driven by the official SDK's client over stdio, as an editor or desktop
assistant would: listing, `run_goal` with the offline model, progress, cancellation."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from planweave.planner.llm import OFFLINE_MODEL


def _planweave_mcp(home: Path, *flags: str) -> StdioServerParameters:
    env = {"PLANWEAVE_HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": os.pathsep.join(sys.path)}
    return StdioServerParameters(command=sys.executable, args=["-m", "planweave.planner.cli.app", "mcp", *flags], env=env)


async def test_lists_its_tools_and_runs_a_goal_with_progress(tmp_path: Path) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(_planweave_mcp(tmp_path)) as client:
        listing = await client.list_tools()
        tools = {t.name: t for t in listing.tools}
        assert set(tools) == {"run_goal", "run_workflow", "get_run", "list_runs"}
        assert tools["run_goal"].input_schema["required"] == ["goal"]
        assert {"model", "tools", "max_steps", "max_cost_usd"} <= set(tools["run_goal"].input_schema["properties"])

        result = await client.call_tool(
            "run_goal", {"goal": "what is 17 * 23?", "model": OFFLINE_MODEL}, progress_callback=on_progress
        )
        assert not result.is_error, result.content
        report: dict[str, Any] = result.structured_content or {}
        assert report["status"] == "succeeded"
        assert "391" in report["answer"]
        assert [(s["tool"], s["status"], s["summary"]) for s in report["steps"]] == [("calculator", "succeeded", "391")]
        step_id = report["steps"][0]["id"]
        assert progress == [(1.0, 1.0, f"step `{step_id}` succeeded")]

        runs = await client.call_tool("list_runs", {})
        assert [(r["id"], r["status"]) for r in (runs.structured_content or {})["result"]] == [
            (report["run_id"], "succeeded")
        ]
        run = await client.call_tool("get_run", {"run_id": report["run_id"]})
        recorded = run.structured_content or {}
        assert recorded["summary"]["goal"] == "what is 17 * 23?"
        assert recorded["steps"][step_id]["status"] == "succeeded"

        missing = await client.call_tool("get_run", {"run_id": "no-such-run"})
        assert missing.is_error


@pytest.fixture
def hanging_url() -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server on 127.0.0.1 that never answers until the test ends; the event says a
    request arrived."""
    arrived, release = threading.Event(), threading.Event()

    class Hang(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            arrived.set()
            release.wait(60)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slow", arrived
    finally:
        release.set()
        server.shutdown()
        server.server_close()


async def test_a_cancelled_request_cancels_the_run(tmp_path: Path, hanging_url: tuple[str, threading.Event]) -> None:
    url, arrived = hanging_url
    flags = ("--allow-private-hosts", "--http-timeout", "120", "--tools", "http_get")
    async with Client(_planweave_mcp(tmp_path, *flags)) as client:
        call = asyncio.create_task(client.call_tool("run_goal", {"goal": f"fetch {url}", "model": OFFLINE_MODEL}))
        while not arrived.is_set():  # the run's http_get step is waiting on the server
            assert not call.done(), call.result()
            await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        async def status() -> list[tuple[str, str]]:
            runs = await client.call_tool("list_runs", {})
            return [(r["status"], r["goal"]) for r in (runs.structured_content or {})["result"]]

        while (await status())[0][0] == "running":
            await asyncio.sleep(0.05)
        assert await status() == [("cancelled", f"fetch {url}")]


async def test_streamable_http_needs_the_key(tmp_path: Path, children: Any) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    env = {**os.environ, "PLANWEAVE_HOME": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("PLANWEAVE_API_KEY", None)
    proc = children.spawn(
        [sys.executable, "-m", "planweave.planner.cli.app", "mcp", "--http", "--port", "0", "--api-key", "k-123"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    line = await asyncio.to_thread(proc.stderr.readline)
    assert line.startswith("planweave: serving MCP at http://127.0.0.1:"), line
    url = line.split(" at ", 1)[1].strip()
    assert url.endswith("/mcp")
    async with httpx2.AsyncClient() as http:
        refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401
    assert "no API key" in refused.json()["error"]
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer k-123"}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            listing = await client.list_tools()
    assert {t.name for t in listing.tools} == {"run_goal", "run_workflow", "get_run", "list_runs"}


async def test_run_workflow_with_an_mcp_server_of_its_own(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[1] / "tools" / "mcp_demo_server.py"
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: sums\ninputs: {a: 1}\nsteps:\n  - {id: sum, tool: add, args: {a: '${inputs.a}', b: 2}}\n"
                    "  - {id: twice, tool: calculator, args: {expression: '${sum.total} * 2'}}\n")
    mcp = f"{sys.executable} {demo}"
    progress: list[str | None] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async with Client(_planweave_mcp(tmp_path, "--mcp", mcp)) as client:
        result = await client.call_tool("run_workflow", {"file": str(flow), "inputs": {"a": 40}},
                                        progress_callback=on_progress)
        assert not result.is_error, result.content
        report: dict[str, Any] = result.structured_content or {}
        assert report["status"] == "succeeded"
        assert report["outputs"] == {"sum": {"total": 42.0}, "twice": 84.0}
        assert sorted(progress, key=str) == ["step `sum` succeeded", "step `twice` succeeded"]
        missing = await client.call_tool("run_workflow", {"file": str(tmp_path / "nope.yaml")})
        assert missing.is_error and "nope.yaml" in str(missing.content)
