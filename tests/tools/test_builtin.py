import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from planweave.tools.base import ToolRegistry
from planweave.tools.builtin import builtin_tools
from planweave.tools.calculator import calculator
from planweave.tools.errors import ToolDefinitionError, ToolRefusedError
from planweave.tools.http import http_get
from planweave.tools.search import web_search

NAMES = ["calculator", "http_get", "read_file", "write_file", "list_files", "web_search", "fetch_page"]


class Hello(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_all_tools_in_order(tmp_path: Path) -> None:
    tools = builtin_tools(workspace=tmp_path)
    assert [t.name for t in tools] == NAMES
    assert tools[0] is calculator and tools[1] is http_get and tools[5] is web_search
    registry = ToolRegistry(tools)  # names are unique
    assert registry.names() == sorted(NAMES)


def test_every_tool_describes_itself(tmp_path: Path) -> None:
    for tool in builtin_tools(workspace=tmp_path):
        schema = tool.json_schema
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"`{tool.name}.{name}` has no description"
        assert tool.description and "Args:" not in tool.description
        assert tool.output_schema is not None


@pytest.mark.asyncio
async def test_file_tools_use_the_workspace(tmp_path: Path) -> None:
    tools = {t.name: t for t in builtin_tools(workspace=tmp_path)}
    await tools["write_file"].acall({"path": "a/b.txt", "content": "hi"})
    assert (tmp_path / "a" / "b.txt").read_text() == "hi"
    assert await tools["read_file"].acall({"path": "a/b.txt"}) == "hi"
    assert await tools["list_files"].acall({"recursive": True}) == ["a/", "a/b.txt"]


def test_workspace_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ToolDefinitionError, match="does not exist"):
        builtin_tools(workspace=tmp_path / "missing")


@pytest.mark.asyncio
async def test_private_hosts_are_refused_by_default(tmp_path: Path, local_url: str) -> None:
    fetch = builtin_tools(workspace=tmp_path)[1]
    with pytest.raises(ToolRefusedError, match="is a loopback address"):
        await fetch.acall({"url": local_url})


@pytest.mark.asyncio
async def test_allow_private_hosts(tmp_path: Path, local_url: str) -> None:
    fetch = builtin_tools(workspace=tmp_path, allow_private_hosts=True)[1]
    assert fetch.name == "http_get"
    result = await fetch.acall({"url": local_url})
    assert (result["status"], result["text"]) == (200, "hello")


def test_public_names() -> None:
    from planweave.tools import builtin

    assert sorted(builtin.__all__) == ['builtin_tools', 'select_tools']


def test_select_tools_by_name_module_and_file(tmp_path: Path) -> None:
    from planweave.tools.builtin import select_tools
    from planweave.tools.errors import ToolDefinitionError

    assert [t.name for t in select_tools(["calculator,http_get"], workspace=tmp_path)] == ["calculator", "http_get"]
    assert len(select_tools([], workspace=tmp_path)) == len(builtin_tools(workspace=tmp_path))
    mine = tmp_path / "mine.py"
    mine.write_text("from tools import tool\n@tool\ndef twice(x: int) -> int:\n    'Double.'\n    return 2 * x\n")
    assert [t.name for t in select_tools([str(mine), "calculator"], workspace=tmp_path)] == ["twice", "calculator"]
    assert [t.name for t in select_tools(["planweave.tools.calculator:calculator"], workspace=tmp_path)] == ["calculator"]
    with pytest.raises(ToolDefinitionError) as err:
        select_tools(["calculater"], workspace=tmp_path)
    assert str(err.value).startswith("unknown tool `calculater`; built-in tools are `calculator`, ")
    with pytest.raises(ToolDefinitionError, match="has no attribute `nope`"):
        select_tools(["planweave.tools.calculator:nope"], workspace=tmp_path)
    with pytest.raises(ToolDefinitionError, match="defines no tools"):
        select_tools(["planweave.tools.errors"], workspace=tmp_path)
