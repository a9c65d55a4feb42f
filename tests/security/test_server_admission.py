"""`max_concurrent_runs` holds for every endpoint, streamed or not (issue 12, item 4).

A run's slot is reserved before its response starts and released when the response is over:
finished, or the client gone. The fake model holds every reply until the test lets go, so the
admitted runs stay running while the others knock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.planner import Planner
from planweave.planner.serve.app import ServerConfig, create_app
from planweave.planner.testing import FakeModelServer, RecordedRequest, Reply, await_until, wait_until

ASK = {"model": "planweave", "messages": [{"role": "user", "content": "say done"}]}


class HeldModel:
    """Replies with a one-round plan that answers `done`, once `release` is called."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, request: RecordedRequest) -> Reply:
        self.gate.wait(60)
        return Reply.json_obj({"rationale": "r", "steps": [], "answer": "done"})


@contextmanager
def serving(tmp_path: Path, limit: int) -> Iterator[tuple[str, FakeModelServer, HeldModel, SQLiteRunStore]]:
    held = HeldModel()
    with FakeModelServer(handler=held) as model:
        store = SQLiteRunStore(tmp_path / "runs.db")
        planner = Planner(model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", store=store, tools=[])
        app = create_app(planner, ServerConfig(max_concurrent_runs=limit))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        wait_until(lambda: server.started or not thread.is_alive(), "the server to start")
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", model, held, store
        finally:
            held.gate.set()
            server.should_exit = True
            thread.join(10)
            sock.close()


async def knock(client: httpx.AsyncClient, kind: str) -> tuple[str, int, httpx.Headers, str]:
    """One request of `kind`; a streamed one is read to its end."""
    if kind == "runs":
        request = client.build_request("POST", "/runs", json={"goal": "say done"})
    else:
        request = client.build_request("POST", "/chat/completions", json={**ASK, "stream": kind == "chat-stream"})
    response = await client.send(request, stream=True)
    try:
        body = (await response.aread()).decode()
    finally:
        await response.aclose()
    return kind, response.status_code, response.headers, body


async def test_streamed_and_plain_requests_share_the_limit(tmp_path: Path) -> None:
    kinds = ["runs", "chat-stream", "chat"] * 4  # 12 requests, limit 2
    with serving(tmp_path, limit=2) as (url, model, held, store):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = [asyncio.create_task(knock(client, kind)) for kind in kinds]
            # The refused answer at once; the admitted wait on the held model.
            await await_until(lambda: sum(t.done() for t in tasks) == len(kinds) - 2, "ten requests to be refused")
            await await_until(lambda: len(model.chat_requests) == 2, "the two admitted runs to reach the model")
            refused = [t.result() for t in tasks if t.done()]
            assert all(status == 429 for _, status, _, _ in refused)
            assert all(headers["retry-after"] == "1" for _, _, headers, _ in refused)
            assert all('"code":"rate_limit_exceeded"' in body.replace(" ", "") for *_, body in refused)
            held.gate.set()
            results = await asyncio.gather(*tasks)
        admitted = [r for r in results if r[1] == 200]
        assert len(admitted) == 2 and all("done" in body for *_, body in admitted)
        assert len(store.list_runs()) == 2 and len(model.chat_requests) == 2


async def admitted(client: httpx.AsyncClient, kind: str) -> str:
    """Knock until let in (429 meanwhile: the previous run's response is still ending); the body."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        _, status, _, body = await knock(client, kind)
        if status == 200:
            return body
        assert status == 429 and asyncio.get_running_loop().time() < deadline, (kind, status, body)
        await asyncio.sleep(0.01)


async def test_a_slot_is_freed_when_the_stream_ends_or_its_client_leaves(tmp_path: Path) -> None:
    with serving(tmp_path, limit=1) as (url, model, held, store):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            # A client that goes away while its run waits on the model.
            gone = await client.send(client.build_request("POST", "/runs", json={"goal": "say done"}), stream=True)
            assert gone.status_code == 200
            await await_until(lambda: len(model.chat_requests) == 1, "the run to reach the model")
            assert (await client.post("/chat/completions", json=ASK)).status_code == 429
            await gone.aclose()
            held.gate.set()  # from now on the model answers, so every admitted run finishes
            # With a limit of 1, each of these is let in only once the one before has freed its slot.
            for kind in ("chat", "runs", "chat-stream", "chat", "runs"):
                assert "done" in await admitted(client, kind)
        statuses = sorted(r.status for r in store.list_runs())
        assert statuses == ["cancelled"] + ["succeeded"] * 5
