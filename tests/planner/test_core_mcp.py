"""`Planner(mcp=[...])`: the model is shown an MCP server's tools and plans with them; the plan's
arguments are checked against the server's schemas. The model is the fake model server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planweave.planner import Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools.mcp import MCPServer

DEMO = Path(__file__).resolve().parents[1] / "tools" / "mcp_demo_server.py"


def plan(*steps: dict[str, Any]) -> Reply:
    return Reply.json_obj({"rationale": "r", "steps": list(steps), "answer": None})


def finish(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


async def test_the_planner_plans_with_an_mcp_servers_tools(model: FakeModelServer) -> None:
    model.enqueue(
        plan({"id": "sum", "tool": "add", "args": {"a": "x"}}),  # bad arguments: re-asked
        plan({"id": "sum", "tool": "add", "args": {"a": 40, "b": 2}}),
        finish("40 + 2 = 42"),
    )
    planner = Planner(
        model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", tools=[], store=False,
        tracing=False, retry_delay_s=0.01, mcp=[MCPServer.stdio(sys.executable, str(DEMO))],
    )
    async with planner:
        result = await planner.run("what is 40 + 2?")
    assert result.status == "succeeded", result.error
    assert result.steps["sum"].output == {"total": 42.0}
    first_prompt = str(model.chat_requests[0].messages)
    assert "count_to" in first_prompt and "Add two numbers." in first_prompt  # the catalogue has the server's tools
    reask = str(model.chat_requests[1].messages)
    assert "`a`: 'x' is not of type 'number'" in reask and "`b` is required" in reask
