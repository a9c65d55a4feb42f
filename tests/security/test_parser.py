"""Malformed model output is bad input, never a crash (issue 12, item 3): a plan reply nested too
deeply, too large, with numbers out of range or broken escapes becomes a validation problem the
model is re-asked about; the run never ends `cancelled` with a traceback, and the server answers
cleanly. Streaming is linear: each character is scanned and decoded a bounded number of times."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.planner import Planner
from planweave.planner.serve.app import ServerConfig, create_app
from planweave.planner.streaming import MAX_DEPTH, MAX_STEPS, FieldStream, StepStream
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools.calculator import calculator

NESTED = "[" * 5000 + "]" * 5000
"""Deeper than Python's recursion limit: `json.loads` raised `RecursionError` on it."""

HOSTILE_STEPS = {
    "nested": '{"id": "a", "tool": "calculator", "args": {"expression": ' + NESTED + "}}",
    "nested_step": NESTED,
    "huge_number": '{"id": "a", "tool": "calculator", "args": {"expression": 1' + "0" * 5000 + "}}",
    "lone_surrogate": '{"id": "a", "tool": "calculator", "args": {"expression": "\\ud800"}}',
    "bad_escape": '{"id": "a", "tool": "calculator", "args": {"expression": "\\x41"}}',
    "truncated": '{"id": "a", "tool": "calculator", "args": {"expression": "1 +',
}


def plan_text(step: str) -> str:
    return '{"steps": [' + step + '], "rationale": "r", "answer": null}'


GOOD_PLAN = Reply.json_obj({"steps": [["a", "calculator", {"expression": "6 * 7"}]], "rationale": "r", "answer": None})
FINISH = Reply.json_obj({"action": "finish", "answer": "42", "reason": ""})


@pytest.mark.parametrize("name", sorted(HOSTILE_STEPS))
@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_hostile_steps_never_raise_and_never_come_out(name: str, size: int) -> None:
    text = plan_text(HOSTILE_STEPS[name])
    stream = StepStream()
    out = [item for i in range(0, len(text), size) for item in stream.feed(text[i : i + size])]
    assert out == []
    if name.startswith("nested"):
        assert stream.problems == [f"step 1 nests lists or objects more than {MAX_DEPTH} levels deep; use flat arguments"]


def test_plan_size_limits_are_explicit() -> None:
    many = plan_text(", ".join('["s%d", "calculator", {"expression": "1"}]' % i for i in range(MAX_STEPS + 5)))
    stream = StepStream()
    assert len(stream.feed(many)) == MAX_STEPS
    assert stream.problems == [f"the plan has more than {MAX_STEPS:,} steps; plan fewer steps"]
    long = StepStream()
    assert long.feed(plan_text('["a", "calculator", {"expression": "' + "1+" * 150_000 + '1"}]')) == []
    assert long.problems == ["step 1 is longer than 200,000 characters; keep arguments short"]
    huge = StepStream()
    for _ in range(3):
        huge.feed("x" * 1_000_000)
    assert huge.truncated and len(huge.text) <= 2_000_000
    assert huge.problems[0].startswith("the reply is longer than 2,000,000 characters")


def test_answer_streaming_is_linear_in_the_answer() -> None:
    # The old scanner re-decoded the whole reply on every chunk: about n**2 / 2 characters, so
    # ten times the answer cost a hundred times the work.
    work = {}
    for n in (10_000, 100_000):
        answer = "é\"\\\n😀x" * (n // 6)
        text = json.dumps({"action": "finish", "answer": answer, "reason": ""})
        stream = FieldStream()
        out = "".join(stream.feed(text[i : i + 3]) for i in range(0, len(text), 3))
        assert out == answer
        work[n] = stream.work
        assert stream.work <= 12 * len(text)  # a cut escape (at most 11 characters) is looked at again
    assert work[100_000] <= 11 * work[10_000]


def test_plan_streaming_is_linear_in_the_plan() -> None:
    steps = ", ".join(f'["s{i}", "calculator", {{"expression": "{i} + {i}"}}]' for i in range(MAX_STEPS))
    text = plan_text(steps)
    stream = StepStream()
    got = [item for i in range(0, len(text), 5) for item in stream.feed(text[i : i + 5])]
    assert len(got) == MAX_STEPS
    assert stream.work <= 3 * len(text)


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


def planner(model: FakeModelServer, **kw: Any) -> Planner:
    return Planner(
        model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", tools=[calculator],
        retry_delay_s=0.01, **kw,
    )


@pytest.mark.parametrize("stream_plans", [True, False])
async def test_a_deeply_nested_step_is_re_asked(model: FakeModelServer, stream_plans: bool) -> None:
    model.enqueue(Reply.text(plan_text(HOSTILE_STEPS["nested"])), GOOD_PLAN, FINISH)
    result = await planner(model, stream=stream_plans).run("6 * 7")
    assert result.status == "succeeded" and result.answer == "42"
    assert result.steps["a"].output == 42
    repair = model.chat_requests[1].json["messages"][-1]["content"]
    assert "levels deep" in repair or "recursion limit" in repair


async def test_hostile_plans_that_never_improve_fail_cleanly(model: FakeModelServer) -> None:
    model.enqueue(*(Reply.text(plan_text(HOSTILE_STEPS[name])) for name in ("nested", "huge_number", "lone_surrogate")))
    result = await planner(model, max_reasks=2).run("6 * 7")
    assert result.status == "failed"  # not `cancelled`: a planning failure, told plainly
    assert (result.error or "").startswith("the model's plan stayed invalid after 2 re-asks")


async def test_a_deeply_nested_decision_is_re_asked(model: FakeModelServer) -> None:
    nested = '{"action": "finish", "answer": "42", "reason": ' + NESTED + "}"
    model.enqueue(GOOD_PLAN, Reply.text(nested), FINISH)
    result = await planner(model).run("6 * 7")
    assert result.status == "succeeded" and result.answer == "42"


@contextmanager
def running(app: Any) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("stream", [False, True])
def test_the_server_answers_a_nested_plan_cleanly(model: FakeModelServer, tmp_path: Path, stream: bool) -> None:
    model.enqueue(Reply.text(plan_text(HOSTILE_STEPS["nested"])), GOOD_PLAN, FINISH)
    store = SQLiteRunStore(tmp_path / "runs.db")
    with running(create_app(planner(model, store=store), ServerConfig())) as root:
        body = {"model": "planweave", "messages": [{"role": "user", "content": "6 * 7"}], "stream": stream}
        with httpx.Client(timeout=60) as client:
            reply = client.post(root + "/v1/chat/completions", json=body)
    assert reply.status_code == 200
    assert "42" in reply.text
    (summary,) = store.list_runs()
    assert summary.status == "succeeded"
