"""`planweave serve` end to end: the real server (uvicorn on 127.0.0.1, in a thread), the real
`openai` client, and the planner behind it talking to the fake model server through litellm."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.planner import Budget, Planner
from planweave.planner.errors import ConfigError
from planweave.planner.serve.app import ServerConfig, create_app, serve
from planweave.planner.testing import ChildProcesses, FakeModelServer, RecordedRequest, Reply, wait_until
from planweave.tools import tool


def plan(*steps: dict[str, Any], rationale: str = "r", answer: str | None = None) -> Reply:
    return Reply.json_obj({"rationale": rationale, "steps": list(steps), "answer": answer})


def finish(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


NAPPING: dict[str, str] = {}


@tool
async def nap(seconds: float) -> str:
    """Sleep."""
    NAPPING["state"] = "running"
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        NAPPING["state"] = "cancelled"
        raise
    return "slept"


ARRIVED: list[str] = []


@tool
async def rendezvous(name: str) -> str:
    """Wait until three runs are here at once: proves the server runs conversations concurrently."""
    ARRIVED.append(name)
    deadline = time.monotonic() + 10
    while len(ARRIVED) < 3:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {ARRIVED} arrived: the conversations did not run at once")
        await asyncio.sleep(0.01)
    return f"met {name}"


@dataclass
class Live:
    url: str
    """The API base, `http://127.0.0.1:PORT/v1`."""
    model: FakeModelServer
    store: SQLiteRunStore
    clients: list[openai.OpenAI]

    def client(self, key: str = "sk-none", **kw: Any) -> openai.OpenAI:
        self.clients.append(openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, **kw))
        return self.clients[-1]

    def aclient(self, key: str = "sk-none") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url, api_key=key, max_retries=0)  # close it in the test

    def wait_status(self, run_id: str, status: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.store.summary(run_id).status) != status:
            assert time.monotonic() < deadline, f"run `{run_id}` is {got}, not {status}"
            time.sleep(0.02)


@contextmanager
def running(app: Any) -> Iterator[str]:
    """uvicorn serving `app` on a free 127.0.0.1 port, in a thread; yields its root URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


StartServer = Callable[..., Live]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartServer]:
    """Start a server: `start(replies..., handler=..., budget=..., **ServerConfig fields)`."""
    NAPPING.clear()
    ARRIVED.clear()
    with FakeModelServer() as model:
        stack: list[Any] = []

        def _start(*replies: Reply, handler: Any = None, budget: Budget | None = None, **config: Any) -> Live:
            model.enqueue(*replies)
            model.handler = handler
            store = SQLiteRunStore(tmp_path / "runs.db")
            planner = Planner(
                model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", tools=[add, nap, rendezvous],
                retry_delay_s=0.01, store=store, budget=budget, name="chat",
            )
            cm = running(create_app(planner, ServerConfig(**config)))
            root = cm.__enter__()
            stack.append(cm)
            live = Live(url=root + "/v1", model=model, store=store, clients=[])
            stack.append(live)
            return live

        try:
            yield _start
        finally:
            for item in reversed(stack):
                if isinstance(item, Live):
                    for client in item.clients:
                        client.close()
                else:
                    item.__exit__(None, None, None)


THREE_STEPS = (
    plan(
        {"id": "x", "tool": "add", "args": {"a": 1, "b": 2}},
        {"id": "y", "tool": "add", "args": {"a": 10, "b": 20}},
        {"id": "z", "tool": "add", "args": {"a": "${x}", "b": "${y}"}},
        rationale="Add the pairs, then the sums.",
    ),
    finish("The total is 33."),
)


def ask(text: str = "add 1+2 and 10+20, then the sums") -> list[Any]:
    return [{"role": "user", "content": text}]


# --- chat completions ---------------------------------------------------------------------------


def test_models_list_names_planweave_and_its_model(start: StartServer) -> None:
    live = start()
    models = live.client().models.list()
    assert [m.id for m in models.data] == ["planweave"]
    assert models.data[0].model_extra == {"planner_model": "openai/fake-model"}
    assert live.client().models.retrieve("planweave").id == "planweave"
    with pytest.raises(openai.NotFoundError):
        live.client().models.retrieve("gpt-4o")


def test_chat_reply_shows_plan_and_steps_as_reasoning_then_the_answer(start: StartServer) -> None:
    live = start(*THREE_STEPS)
    reply = live.client().chat.completions.create(model="planweave", messages=ask())
    content = reply.choices[0].message.content or ""
    thinking, _, answer = content.partition("</think>\n\n")
    assert thinking.startswith("<think>\nPlanning…\n")
    assert '- planned `x`: `add` `{"a": 1, "b": 2}`' in thinking
    assert "Round 1 planned, 3 steps: Add the pairs, then the sums.\n" in thinking
    assert "- `z` done in" in thinking and ": `33.0`\n" in thinking
    assert answer == "The total is 33."
    assert reply.choices[0].finish_reason == "stop"
    run_id = reply.id.removeprefix("chatcmpl-")
    summary = live.store.summary(run_id)
    assert summary.status == "succeeded" and summary.answer == "The total is 33." and summary.name == "chat"
    # usage: the tokens of the run's two LLM calls (plan and join), as the run store counts them
    assert reply.usage is not None and summary.llm_calls == 2
    assert reply.usage.prompt_tokens == summary.input_tokens > 0
    assert reply.usage.completion_tokens == summary.output_tokens > 0
    assert reply.usage.total_tokens == summary.total_tokens
    assert reply.model_extra and reply.model_extra["planweave"]["status"] == "succeeded"


def test_streamed_reply_ends_with_usage_and_done(start: StartServer) -> None:
    live = start(*THREE_STEPS)
    with httpx.stream(
        "POST", live.url + "/chat/completions",
        json={"model": "planweave", "messages": ask(), "stream": True, "stream_options": {"include_usage": True}},
        timeout=60,  # (httpx's default 5 s is too short for a first chunk on a loaded 2-core machine)
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        run_id = response.headers["x-planweave-run-id"]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == f"chatcmpl-{run_id}" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == live.store.summary(run_id).total_tokens
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.startswith("<think>\nPlanning…\n- planned `x`") and text.endswith("</think>\n\nThe total is 33.")
    # the answer streams in several pieces, as the model writes it
    answer_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content", "").strip()]
    assert len(answer_chunks) > 5


async def test_async_client_streams_with_reasoning_content_field(start: StartServer) -> None:
    live = start(*THREE_STEPS)
    async with live.aclient() as client:
        stream = await client.chat.completions.create(
            model="planweave", messages=ask(), stream=True, extra_body={"reasoning_format": "field"}
        )
        content, reasoning, usage = "", "", None
        async for chunk in stream:
            if chunk.choices:
                content += chunk.choices[0].delta.content or ""
                reasoning += (chunk.choices[0].delta.model_extra or {}).get("reasoning_content", "")
            usage = chunk.usage or usage
    assert content == "The total is 33."
    assert reasoning.startswith("Planning…\n") and "- `y` done in" in reasoning
    assert usage is not None and usage.total_tokens > 0


def test_reasoning_off_and_field_when_not_streamed(start: StartServer) -> None:
    live = start(*THREE_STEPS, *THREE_STEPS, reasoning="off")
    off = live.client().chat.completions.create(model="planweave", messages=ask())
    assert off.choices[0].message.content == "The total is 33."
    field = live.client().chat.completions.create(
        model="planweave", messages=ask(), extra_body={"reasoning_format": "field"}
    )
    message = field.choices[0].message
    assert message.content == "The total is 33."
    assert (message.model_extra or {})["reasoning_content"].startswith("Planning…\n- planned `x`")


def test_the_latest_message_is_the_goal_and_earlier_turns_a_conversation_of_their_own(start: StartServer) -> None:
    live = start(plan(answer="Paris, still.", rationale="Known."))
    reply = live.client().chat.completions.create(
        model="planweave",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "<think>\nPlanning…\n</think>\n\nParis."},
            {"role": "user", "content": [{"type": "text", "text": "And is it still?"}]},
        ],
    )
    content = reply.choices[0].message.content or ""
    assert content.startswith("<think>\nPlanning…\nNo tools needed: Known.\n</think>\n\nParis, still.")
    prompt = live.model.chat_requests[0].last_user_text  # the goal comes last in the user message
    goal = prompt.split("## Goal\n", 1)[1].strip()
    assert goal == "And is it still?"
    conversation = prompt.split("## Conversation so far\n", 1)[1].split("\n## ", 1)[0]
    assert [line for line in conversation.splitlines() if line.startswith("- ")] == [
        "- system: Answer briefly.",
        "- user: What is the capital of France?",
        "- assistant: Paris.",
    ]


def test_run_failure_and_budget_stop_are_normal_replies(start: StartServer) -> None:
    bad = plan({"id": "a", "tool": "nope", "args": {}})
    live = start(bad, bad, bad)
    failed = live.client().chat.completions.create(model="planweave", messages=ask("do it"))
    text = failed.choices[0].message.content or ""
    assert text.partition("</think>\n\n")[2].startswith(
        "The run failed: the model's plan stayed invalid after 2 re-asks: step `a` uses unknown tool `nope`"
    )
    assert "The model's reply was invalid; asking again (re-ask 1):\n  - step `a` uses unknown tool" in text
    assert (failed.model_extra or {})["planweave"]["status"] == "failed"

    live = start(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), budget=Budget(max_llm_calls=1))
    stopped = live.client().chat.completions.create(model="planweave", messages=ask("add"))
    text = stopped.choices[0].message.content or ""
    assert "Stopped: the run reached its budget" in text
    assert text.endswith("Results so far: `x`: 3.0")
    assert (stopped.model_extra or {})["planweave"]["status"] == "budget_exceeded"


def test_a_reset_answer_is_marked_discarded_and_the_final_answer_follows(start: StartServer) -> None:
    live = start(
        plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}),
        Reply.json_obj({"action": "finish", "answer": "The sum is three, I think", "reason": ""}, drop_after_chunks=20),
        finish("The sum is 3."),
    )
    stream = live.client().chat.completions.create(model="planweave", messages=ask("add"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    shown, _, rest = text.partition("\n\n*(The answer above is discarded: the model's reply was invalid; asking again.)*")
    assert "The sum is three," in shown and rest.endswith("</think>\n\nThe sum is 3.")
    run_id = live.store.list_runs(limit=1)[0].id
    assert live.store.summary(run_id).answer == "The sum is 3."


# --- many conversations, disconnects ------------------------------------------------------------


async def test_three_conversations_run_at_once(start: StartServer) -> None:
    def by_goal(request: RecordedRequest) -> Reply:
        prompt = request.last_user_text
        name = next(n for n in ("alpha", "beta", "gamma") if f"meet {n}" in prompt)
        if not request.tools:  # plans are written as lines, with no tool schema; the join has one
            return plan({"id": "meet", "tool": "rendezvous", "args": {"name": name}})
        return finish(f"{name} met the others.")

    live = start(handler=by_goal)
    async with live.aclient() as client:

        async def converse(name: str) -> str:
            stream = await client.chat.completions.create(
                model="planweave", messages=ask(f"meet {name}"), stream=True, extra_body={"reasoning_format": "off"}
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        answers = await asyncio.gather(converse("alpha"), converse("beta"), converse("gamma"))
    assert list(answers) == ["alpha met the others.", "beta met the others.", "gamma met the others."]
    assert sorted(ARRIVED) == ["alpha", "beta", "gamma"]
    assert [r.status for r in live.store.list_runs()] == ["succeeded"] * 3


def test_a_client_that_disconnects_cancels_its_run(start: StartServer) -> None:
    live = start(plan({"id": "sleep", "tool": "nap", "args": {"seconds": 30}}))
    stream = live.client().chat.completions.create(model="planweave", messages=ask("nap"), stream=True)
    seen = ""
    for chunk in stream:
        seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
        if "planned `sleep`" in seen:
            break
    wait_until(lambda: NAPPING.get("state") == "running", "the `nap` step started")
    run_id = stream.response.headers["x-planweave-run-id"]
    stream.close()
    live.wait_status(run_id, "cancelled")
    assert NAPPING["state"] == "cancelled"
    steps = live.store.get_run(run_id).steps()
    assert steps["sleep"]["status"] == "cancelled"


def test_a_client_that_gives_up_on_a_plain_request_cancels_its_run(start: StartServer) -> None:
    live = start(plan({"id": "sleep", "tool": "nap", "args": {"seconds": 30}}))
    # The model libraries are imported first (seconds, when this test runs alone; the server's
    # first request loads them): a client that gave up before its run could start would cancel nothing.
    import instructor  # noqa: F401

    from planweave.planner.llm import import_litellm

    import_litellm()
    with pytest.raises(openai.APITimeoutError):
        live.client(timeout=1.0).chat.completions.create(model="planweave", messages=ask("nap"))
    run_id = live.store.list_runs(limit=1)[0].id
    live.wait_status(run_id, "cancelled")
    # The status is recorded as the run cancels its steps; the step's task unwinds right after.
    wait_until(lambda: NAPPING["state"] == "cancelled", "the `nap` step saw its cancellation", timeout_s=20)


def test_too_many_runs_at_once_get_429(start: StartServer) -> None:
    live = start(plan({"id": "sleep", "tool": "nap", "args": {"seconds": 30}}), max_concurrent_runs=1)
    first = live.client().chat.completions.create(model="planweave", messages=ask("nap"), stream=True)
    next(iter(first))
    with pytest.raises(openai.RateLimitError) as caught:
        live.client().chat.completions.create(model="planweave", messages=ask("again"))
    assert caught.value.code == "rate_limit_exceeded"
    first.close()


# --- authentication, validation, limits ---------------------------------------------------------


def test_api_key_is_required_when_configured(start: StartServer) -> None:
    live = start(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError) as caught:
        live.client("wrong").models.list()
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert message(caught.value).startswith("the API key is not valid for this server")
    missing = httpx.post(live.url + "/chat/completions", content=b"{not json")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["message"].startswith("no API key: send `Authorization: Bearer <key>`")
    assert httpx.get(live.url + "/runs").status_code == 401
    health = httpx.get(live.url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["models"] in ("loading", "ready")
    assert [m.id for m in live.client("s3cret").models.list().data] == ["planweave"]


def test_serve_refuses_a_public_address_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANWEAVE_API_KEY", raising=False)
    planner = Planner(model="openai/fake-model", store=False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "my-host.example"):
        with pytest.raises(ConfigError) as caught:
            serve(planner, host=host)
        assert str(caught.value) == (
            f"refusing to listen on `{host}` without an API key: anyone who can reach it could run tools and "
            "spend your model budget. Set `PLANWEAVE_API_KEY` (or pass `--api-key`), or listen on 127.0.0.1."
        )
    monkeypatch.setenv("PLANWEAVE_API_KEY", "from-env")
    assert ServerConfig().api_key == "from-env"


def message(exc: openai.APIStatusError) -> str:
    assert isinstance(exc.body, dict)
    return str(exc.body["message"])


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def test_malformed_requests_get_openai_errors(start: StartServer) -> None:
    live = start()
    url = live.url + "/chat/completions"
    bad_json = httpx.post(url, content=b'{"model": "planweave", "messages": [', headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "the request body is not valid JSON" in error(bad_json)["message"]

    no_messages = httpx.post(url, json={"model": "planweave"})
    assert no_messages.status_code == 422
    assert error(no_messages)["param"] == "messages" and "`messages`: Field required" in error(no_messages)["message"]

    bad_role = httpx.post(url, json={"model": "planweave", "messages": [{"role": "robot", "content": "hi"}]})
    assert bad_role.status_code == 422 and error(bad_role)["param"] == "messages.0.role"

    with pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(
            model="planweave", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
        )
    assert message(caught.value).startswith("the last message is from the `assistant`; planweave answers")

    with pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(
            model="planweave",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
        )
    assert message(caught.value).startswith("message 0 has a `image_url` part; planweave plans from text only")

    with pytest.raises(openai.NotFoundError) as not_found:
        live.client().chat.completions.create(model="gpt-4o", messages=ask())
    assert not_found.value.code == "model_not_found"

    no_type = httpx.post(url, content=b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}')
    assert no_type.status_code == 415 and error(no_type)["code"] == "unsupported_media_type"  # JSON must say so

    unknown = httpx.get(live.url + "/nothing-here")
    assert unknown.status_code == 404 and error(unknown)["message"].startswith("Invalid URL (GET /v1/nothing-here)")
    assert live.model.chat_requests == []  # nothing ran


def test_limits_on_body_size_and_conversation_length(start: StartServer) -> None:
    live = start(max_body_bytes=10_000, max_messages=3, max_chars=500)
    with pytest.raises(openai.APIStatusError) as caught:
        live.client().chat.completions.create(model="planweave", messages=ask("x" * 20_000))
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"

    chunked = httpx.post(
        live.url + "/chat/completions", content=iter([b"[" + b" " * 6000, b" " * 6000 + b"]"]),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413

    with pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(model="planweave", messages=ask("x") * 4)
    assert caught.value.code == "context_length_exceeded"
    assert message(caught.value).startswith("the conversation has 4 messages; this server takes at most 3")

    with pytest.raises(openai.BadRequestError) as caught:
        live.client().chat.completions.create(model="planweave", messages=ask("x" * 501))
    assert message(caught.value).startswith("the conversation has 501 characters; this server takes at most 500")
    assert live.model.chat_requests == []


# --- raw events and the run store ---------------------------------------------------------------


def test_runs_endpoint_streams_the_typed_events(start: StartServer) -> None:
    live = start(*THREE_STEPS)
    with httpx.stream("POST", live.url + "/runs", json={"goal": "add things", "inputs": {"n": 1}}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        run_id = response.headers["x-planweave-run-id"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "planner_finished"
    for kind in ("step_added", "step_started", "step_succeeded", "llm_called", "plan_updated", "answer_delta"):
        assert kind in kinds
    assert events[0]["goal"] == "add things" and events[0]["inputs"] == {"n": 1}
    assert all(e["run_id"] == run_id for e in events)
    assert "".join(e["text"] for e in events if e["kind"] == "answer_delta") == "The total is 33."
    assert live.store.summary(run_id).status == "succeeded"

    bad = httpx.post(live.url + "/runs", json={"goal": ""})
    assert bad.status_code == 422 and error(bad)["param"] == "goal"


def test_run_store_list_and_show(start: StartServer) -> None:
    live = start(*THREE_STEPS)
    reply = live.client().chat.completions.create(model="planweave", messages=ask())
    run_id = reply.id.removeprefix("chatcmpl-")
    listed = httpx.get(live.url + "/runs", params={"status": "succeeded"}).json()
    assert listed["object"] == "list" and [r["id"] for r in listed["data"]] == [run_id]
    assert listed["data"][0]["total_tokens"] == reply.usage.total_tokens  # type: ignore[union-attr]
    assert httpx.get(live.url + "/runs", params={"status": "failed"}).json()["data"] == []

    shown = httpx.get(f"{live.url}/runs/{run_id[:6]}").json()
    assert shown["run"]["id"] == run_id and shown["run"]["answer"] == "The total is 33."
    assert {s["id"]: s["status"] for s in shown["steps"]} == {"x": "succeeded", "y": "succeeded", "z": "succeeded"}
    assert shown["events"][0]["kind"] == "run_started"

    missing = httpx.get(live.url + "/runs/nope")
    assert missing.status_code == 404 and error(missing)["code"] == "run_not_found"
    assert "no run `nope`" in error(missing)["message"]
    assert httpx.get(live.url + "/runs", params={"limit": 0}).status_code == 422


def test_cors_lets_configured_browser_origins_in(start: StartServer) -> None:
    live = start(api_key="k", cors_origins=["http://ui.example"])
    preflight = httpx.options(
        live.url + "/runs",
        headers={"origin": "http://ui.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"},
    )
    assert preflight.status_code == 200  # answered before the key check: browsers send no key here
    assert preflight.headers["access-control-allow-origin"] == "http://ui.example"
    listed = httpx.get(live.url + "/runs", headers={"origin": "http://ui.example", "authorization": "Bearer k"})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "http://ui.example"
    other = httpx.get(live.url + "/runs", headers={"origin": "http://evil.example", "authorization": "Bearer k"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


def test_serve_runs_uvicorn_until_interrupted(tmp_path: Path, children: ChildProcesses) -> None:
    """`serve` itself, in a subprocess: the offline planner (no model server needed), then Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "from planweave.planner import Planner\nfrom planweave.planner.serve.app import serve\n"
        f"serve(Planner(workspace={str(tmp_path)!r}), port={port}, log_level='warning')\n"
    )
    env = {**os.environ, "PLANWEAVE_API_KEY": "k"}
    proc = children.spawn([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as client:
            reply = client.chat.completions.create(model="planweave", messages=ask("compute 2 ** 8"))
        assert "- `p1` done in" in (reply.choices[0].message.content or "")
        assert "256" in (reply.choices[0].message.content or "").partition("</think>")[2]
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr


class BrokenPlanner(Planner):
    async def run(self, goal: str, **kw: Any) -> Any:
        raise RuntimeError("a bug")


def test_a_bug_is_a_500_or_a_stream_error_in_openai_shape(tmp_path: Path) -> None:
    planner = BrokenPlanner(model="openai/fake-model", store=SQLiteRunStore(tmp_path / "runs.db"))
    with running(create_app(planner)) as root, openai.OpenAI(base_url=root + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.InternalServerError) as caught:
            c.chat.completions.create(model="planweave", messages=ask())
        assert message(caught.value) == "planweave failed: RuntimeError: a bug"
        with pytest.raises(openai.APIError, match="planweave failed: RuntimeError: a bug"):
            list(c.chat.completions.create(model="planweave", messages=ask(), stream=True))
        with httpx.stream("POST", root + "/v1/runs", json={"goal": "g"}) as response:
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        assert events == [{"kind": "error", "run_id": response.headers["x-planweave-run-id"],
                           "message": "RuntimeError: a bug"}]


# --- `planweave serve` through the CLI: start-up and a busy port ----------------------------------

_GATE = """
import os, sys, time


class _Hold:
    \"\"\"Holds every import of each module `PLANWEAVE_TEST_HOLD` names (comma-separated) until the file
    `PLANWEAVE_TEST_GATE`/<module> exists.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name in os.environ["PLANWEAVE_TEST_HOLD"].split(","):
            while not os.path.exists(os.path.join(os.environ["PLANWEAVE_TEST_GATE"], name)):
                time.sleep(0.01)
        return None


sys.meta_path.insert(0, _Hold())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PLANWEAVE_MODEL", "PLANWEAVE_API_KEY")}
    return {**env, "PLANWEAVE_HOME": str(tmp_path / "home"), **extra}


@pytest.mark.timeout(180)  # a server start and three held imports: past 60 s on a loaded 2-core machine
def test_cli_serve_answers_health_while_the_app_and_model_libraries_load(tmp_path: Path) -> None:
    """The app, the planner and the model libraries are built on worker threads: while they load
    (here held at their imports by a sitecustomize gate, then let go one by one: the app, the
    planner, the model libraries) `/health` answers "loading", so the port is served before they
    are imported and the event loop is free; a chat request made meanwhile waits for all of them,
    listing the model waits for the app and the planner only; then `/health` says "ready"."""
    import signal
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_GATE)
    gates = tmp_path / "gates"
    gates.mkdir()
    held = ["fastapi", "planweave.planner.core", "instructor"]  # the app; the planner (the executor, networkx, the tools); the model libraries
    port = free_port()
    env = cli_env(tmp_path, PYTHONPATH=str(site), PLANWEAVE_TEST_GATE=str(gates), PLANWEAVE_TEST_HOLD=",".join(held))
    log = (tmp_path / "stderr.txt").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--workspace", str(tmp_path), "--no-record"],
        env=env, stderr=log, stdout=subprocess.DEVNULL, text=True,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        def health() -> httpx.Response | None:
            assert proc.poll() is None, "the server exited"
            try:
                return httpx.get(root + "/health")
            except httpx.TransportError:
                return None

        first = wait_until(health, "the server answers /health", timeout_s=120)
        assert first.status_code == 200 and first.json() == {"status": "ok", "models": "loading"}

        replies: list[httpx.Response] = []
        models: list[httpx.Response] = []
        body = {"model": "planweave", "messages": ask("compute 2 ** 8")}
        chat = threading.Thread(
            target=lambda: replies.append(httpx.post(root + "/v1/chat/completions", json=body, timeout=120))
        )
        chat.start()
        listing = threading.Thread(target=lambda: models.append(httpx.get(root + "/v1/models", timeout=120)))
        listing.start()
        # Everything is held, so the requests wait; the loop answers all the same.
        assert httpx.get(root + "/health").json() == {"status": "ok", "models": "loading"}
        (gates / "fastapi").touch()  # the app builds, up to the planner
        assert httpx.get(root + "/health").json() == {"status": "ok", "models": "loading"}
        assert chat.is_alive() and not replies
        (gates / "planweave.planner.core").touch()  # the app is built: listing the model needs no more
        listing.join(120)
        assert models and models[0].json()["data"][0]["planner_model"] == "planweave/offline"
        assert chat.is_alive() and not replies  # the chat needs the model libraries, still held
        assert httpx.get(root + "/health").json() == {"status": "ok", "models": "loading"}

        (gates / "instructor").touch()
        chat.join(120)
        assert replies and replies[0].status_code == 200, replies and replies[0].text
        content = replies[0].json()["choices"][0]["message"]["content"]
        assert "256" in content.partition("</think>")[2]
        assert httpx.get(root + "/health").json() == {"status": "ok", "models": "ready"}
    finally:
        for name in held:
            (gates / name).touch()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        log.seek(0)
        stderr = log.read()
        log.close()
    assert proc.returncode == 0, stderr
    assert stderr.splitlines()[0] == (
        f"planweave: serving model `planweave` (planning with `planweave/offline`) at http://127.0.0.1:{port}/v1"
    ), stderr


_BROKEN = """
import sys


class _NoInstructor:
    \"\"\"Makes `import instructor` fail, as a broken install would.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "instructor":
            raise ImportError("instructor is broken in this test")
        return None


sys.meta_path.insert(0, _NoInstructor())
"""


def test_cli_serve_says_when_the_model_libraries_failed_to_load(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BROKEN)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--workspace", str(tmp_path), "--no-record"],
        env=cli_env(tmp_path, PYTHONPATH=str(site)), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                reply = httpx.post(root + "/v1/chat/completions", json={"model": "planweave", "messages": ask()}, timeout=120)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == (
            "planweave could not run this request: the model libraries failed to load (ImportError: instructor is "
            "broken in this test); reinstall planweave (`pip install -c constraints.txt -e .`) and restart the server."
        )
        assert httpx.get(root + "/health").json() == {"status": "ok", "models": "failed"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_cli_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--workspace", str(tmp_path)],
            env=cli_env(tmp_path), capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"planweave: error: port {port} on `127.0.0.1` is already in use (another server is listening there); "
        "stop that server or pick another port with `--port`.\n"
    )
    assert proc.stdout == ""


def test_cli_serve_that_cannot_build_its_app_stops_with_the_reason(tmp_path: Path) -> None:
    """The planner is built after the port answers: a bad `--tools` still ends the command with the
    one-line reason and exit 2, and the start-up line named the model (from `PLANWEAVE_MODEL`,
    resolved without building the planner)."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--workspace", str(tmp_path),
         "--tools", "nosuchtool", "--log-level", "warning"],
        env=cli_env(tmp_path, PLANWEAVE_MODEL="openai/from-env"), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        f"planweave: serving model `planweave` (planning with `openai/from-env`) at http://127.0.0.1:{port}/v1"
    )
    assert lines[-1].startswith("planweave: error: unknown tool `nosuchtool`; built-in tools are `ask_user`, `calculator`")
    assert proc.stdout == ""
