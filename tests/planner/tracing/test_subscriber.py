"""Langfuse tracing from run events.

Fine-grained checks export to OpenTelemetry's in-memory exporter and decode the spans the
way the OTLP receiver does; the end-to-end checks send real HTTP to the local receiver
(`planweave.planner.testing.otlp`), healthy, failing with 500, slow and down. Models are the fake
model server (real HTTP through litellm); nothing in litellm or langfuse is patched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import planweave.planner.tracing.subscriber as tracing
from planweave.executor import Executor, RunEvent, Step, StepSucceeded
from planweave.planner import Budget, Planner
from planweave.planner.testing import FakeModelServer, Reply, await_until, wait_until
from planweave.planner.testing.otlp import OTLPReceiver, decode_export_request, span_tree
from planweave.planner.tracing.builder import HANDLERS, TraceBuilder
from planweave.planner.tracing.subscriber import LangfuseExporter, LangfuseTracer, TracingConfig, create_tracer
from planweave.tools import tool

GOAL_SECRET = "sk-proj-abcdefghijklmnop1234"
API_KEY = "tok-1234567890abcdef"
URL_TOKEN = "qq7788zz"
LANGFUSE_SECRET = "sk-lf-test-secret-value"


def plan(*steps: dict[str, Any], rationale: str = "r") -> Reply:
    return Reply.json_obj({"rationale": rationale, "steps": list(steps), "answer": None})


def finish(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


def replan(reason: str) -> Reply:
    return Reply.json_obj({"action": "replan", "answer": None, "reason": reason})


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@tool
async def fetch(url: str, api_key: str) -> str:
    """Fetch a URL with a key."""
    return f"fetched {url} using Bearer {api_key}"


@tool
async def slow(seconds: float) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return "slept"


class Events:
    """A subscriber keeping every event, to compare the trace with."""

    def __init__(self) -> None:
        self.all: list[RunEvent] = []

    def __call__(self, event: RunEvent) -> None:
        self.all.append(event)

    def of(self, kind: str, **match: Any) -> list[Any]:
        return [e for e in self.all if e.kind == kind and all(getattr(e, k) == v for k, v in match.items())]


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


def make_planner(server: FakeModelServer, **kw: Any) -> Planner:
    kw.setdefault("tools", [add, fetch, slow])
    kw.setdefault("retry_delay_s", 0.01)
    kw.setdefault("prices", {"fake-model": (1.0, 2.0)})
    return Planner(model="openai/fake-model", api_base=server.base_url, api_key="sk-fake", **kw)


def memory_tracer(**kw: Any) -> tuple[LangfuseTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer = create_tracer(span_exporter=exporter, **kw)
    assert tracer is not None
    return tracer, exporter


def background_shutdowns() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "planweave-trace-shutdown"]


def wait_for_background_shutdowns() -> None:
    wait_until(lambda: not background_shutdowns(), "the tracers' background shutdowns finished")


def decoded(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    """The spans as the receiver would decode them (same protobuf encoding as on the wire)."""
    return decode_export_request(encode_spans(exporter.get_finished_spans()).SerializeToString())


def children(node: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["type"], c["name"]) for c in node["children"]]


def ns(seconds: float) -> float:
    return int(seconds * 1e9) / 1e9


def unique_config(receiver: OTLPReceiver, **kw: Any) -> TracingConfig:
    return TracingConfig(
        public_key=f"pk-lf-{os.urandom(4).hex()}", secret_key=LANGFUSE_SECRET, base_url=receiver.url, **kw
    )


# --- configuration -------------------------------------------------------------------------------


def test_without_keys_nothing_is_imported_sent_or_logged() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")}
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "from planweave.planner.tracing.subscriber import create_tracer\n"
        "assert create_tracer() is None\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('langfuse', 'opentelemetry')]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stderr == ""


def test_trace_urls() -> None:
    tracer, _ = memory_tracer()
    assert tracer.trace_url is None and len(tracer.trace_id) == 32
    tracer.close()
    with OTLPReceiver() as receiver:
        config = unique_config(receiver)
        plain = create_tracer(config=config, span_exporter=LangfuseExporter(config))
        assert plain is not None and plain.trace_url == f"{receiver.url}/trace/{plain.trace_id}"
        plain.close(0)
        config = unique_config(receiver, project_id="proj1")
        direct = create_tracer(config=config, span_exporter=LangfuseExporter(config))
        assert direct is not None and direct.trace_url == f"{receiver.url}/project/proj1/traces/{direct.trace_id}"
        direct.close(0)
        # close(0) sends in the background: let that finish while the receiver still listens, or its
        # "unreachable" warning lands in whichever test runs next.
        wait_for_background_shutdowns()


# --- the trace of a planner run (in memory) ------------------------------------------------------


async def test_planner_run_reads_like_the_run(server: FakeModelServer) -> None:
    server.enqueue(
        plan(
            {"id": "a", "tool": "add", "args": {"a": 1, "b": 2}},
            {"id": "get", "tool": "fetch", "args": {"url": f"https://x.example/?token={URL_TOKEN}", "api_key": API_KEY}},
            {"id": "think1", "tool": "llm", "args": {"prompt": "summarise one"}},
            {"id": "think2", "tool": "llm", "args": {"prompt": "summarise two"}},
            {"id": "never", "tool": "add", "args": {"a": "${a}", "b": 1}, "when": "${a} > 100"},
        ),
        Reply.text("summary"),
        Reply.text("summary"),
        replan("need one more number"),
        plan({"id": "b", "tool": "add", "args": {"a": "${a}", "b": 10}}),
        finish("the answer is 13"),
    )
    events = Events()
    tracer, exporter = memory_tracer(
        model="openai/fake-model", session_id="chat-1", user_id="ana", tags=["test", "planner"], metadata={"team": "x"}
    )
    result = await make_planner(server).run(f"fetch with key {GOAL_SECRET} and think", subscribers=[events, tracer])
    assert result.ok and result.answer == "the answer is 13"
    assert await tracer.aclose() is True

    spans = decoded(exporter)
    raw = encode_spans(exporter.get_finished_spans()).SerializeToString()
    for secret in (GOAL_SECRET, API_KEY, URL_TOKEN):
        assert secret.encode() not in raw, secret
    assert {s["trace_id"] for s in spans} == {tracer.trace_id}
    assert all(s["trace"]["name"] == "planweave" and s["trace"]["session_id"] == "chat-1" for s in spans)
    assert all(s["trace"]["user_id"] == "ana" and s["trace"]["tags"] == ["test", "planner"] for s in spans)

    [root] = span_tree(spans)
    assert (root["type"], root["name"], root["level"]) == ("agent", "planweave", "DEFAULT")
    assert root["input"] == "fetch with key [REDACTED] and think" and root["output"] == "the answer is 13"
    assert root["metadata"]["status"] == "succeeded" and root["metadata"]["run_id"] == result.run_id
    assert root["metadata"]["usage"]["llm_calls"] == result.usage.llm_calls == 6
    assert root["trace"]["metadata"] == {
        "model": "openai/fake-model",
        "team": "x",
        "run_id": result.run_id,
        "status": "succeeded",
        "prompts": "join@4, llm_tool@2, plan@6",
    }
    assert children(root) == [("chain", "round 1"), ("chain", "round 2")]

    round1, round2 = root["children"]
    kinds1 = children(round1)
    assert kinds1[0] == ("generation", "plan")
    assert kinds1[-3:] == [("event", "plan emitted"), ("generation", "join"), ("event", "replan")]
    assert {("tool", s) for s in ("a", "get", "think1", "think2")} | {("event", "never skipped")} <= set(kinds1)
    assert children(round2) == [
        ("generation", "plan"), ("tool", "b"), ("event", "plan emitted"), ("generation", "join"), ("event", "finish")
    ]  # fmt: skip

    by_id = {s["span_id"]: s for s in spans}
    plan1 = next(c for c in round1["children"] if c["name"] == "plan")
    call = events.of("llm_called", purpose="plan")[0]
    assert plan1["model"] == "openai/fake-model"
    assert plan1["usage"] == {"input": call.input_tokens, "output": call.output_tokens,
                              "total": call.input_tokens + call.output_tokens}  # fmt: skip
    assert plan1["cost"] == {"total": pytest.approx(call.cost_usd)} and call.cost_usd > 0
    assert plan1["prompt"] == {"name": "plan", "version": 6}
    assert plan1["metadata"]["prompt"]["name"] == "plan" and plan1["metadata"]["attempts"] == 1
    assert plan1["metadata"]["reasks"] == 0 and plan1["metadata"]["purpose"] == "plan"
    assert plan1["start_time"] == pytest.approx(ns(call.started_at), abs=1e-6)
    assert plan1["end_time"] == pytest.approx(ns(call.started_at + call.latency_s), abs=1e-6)
    assert "[REDACTED]" in json.dumps(plan1["input"]) and GOAL_SECRET not in json.dumps(plan1["input"])
    assert [s["id"] for s in plan1["output"]["steps"]] == ["a", "get", "think1", "think2", "never"]

    get = next(c for c in round1["children"] if c["name"] == "get")
    assert get["input"] == {"url": "https://x.example/?token=[REDACTED]", "api_key": "[REDACTED]"}
    assert get["output"] == "fetched https://x.example/?token=[REDACTED] using Bearer [REDACTED]"
    assert get["metadata"]["tool"] == "fetch" and get["metadata"]["status"] == "succeeded"
    assert get["metadata"]["attempts"] == 1
    started = events.of("step_started", step_id="get")[0]
    done = events.of("step_succeeded", step_id="get")[0]
    assert get["start_time"] == pytest.approx(ns(started.at), abs=1e-6)
    assert get["end_time"] == pytest.approx(ns(done.at), abs=1e-6)

    for sid, prompt in (("think1", "summarise one"), ("think2", "summarise two")):
        step = next(c for c in round1["children"] if c["name"] == sid)
        [gen] = step["children"]
        assert (gen["type"], gen["name"], gen["output"]) == ("generation", "llm", "summary")
        assert prompt in json.dumps(gen["input"]) and gen["metadata"]["purpose"] == "llm_tool"

    skipped = next(c for c in round1["children"] if c["name"] == "never skipped")
    assert skipped["metadata"]["status"] == "skipped" and "condition" in skipped["status_message"]
    replan_event = round1["children"][-1]
    assert replan_event["input"] == "need one more number"
    assert by_id[replan_event["parent_span_id"]]["name"] == "round 1"
    assert round1["end_time"] == pytest.approx(ns(events.of("decision", action="replan")[0].at), abs=1e-6)


async def test_a_rejected_plan_and_its_reask_are_in_the_round(server: FakeModelServer) -> None:
    server.enqueue(
        plan({"id": "x", "tool": "nope", "args": {}}),
        plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}),
        finish("3"),
    )
    tracer, exporter = memory_tracer()
    assert (await make_planner(server).run("add", subscribers=[tracer])).ok
    tracer.close()
    [root] = span_tree(decoded(exporter))
    [round1] = root["children"]
    assert children(round1)[:3] == [("generation", "plan"), ("event", "plan rejected"), ("generation", "plan")]
    rejected = round1["children"][1]
    assert rejected["level"] == "WARNING" and "unknown tool `nope`" in rejected["status_message"]
    assert rejected["metadata"] == {"round": 1, "reask": 1}


async def test_budget_stop_is_a_warning_decision(server: FakeModelServer) -> None:
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}))
    tracer, exporter = memory_tracer()
    result = await make_planner(server, budget=Budget(max_llm_calls=1)).run("add", subscribers=[tracer])
    assert result.status == "budget_exceeded"
    tracer.close()
    [root] = span_tree(decoded(exporter))
    assert root["level"] == "WARNING" and root["metadata"]["status"] == "budget_exceeded"
    assert root["trace"]["metadata"]["status"] == "budget_exceeded"
    assert "budget of 1 LLM calls" in root["status_message"]
    [round1] = root["children"]
    stop = round1["children"][-1]
    assert (stop["type"], stop["name"], stop["level"]) == ("event", "budget_stop", "WARNING")


async def test_cancelling_the_run_ends_the_trace_as_cancelled(server: FakeModelServer) -> None:
    server.enqueue(plan({"id": "nap", "tool": "slow", "args": {"seconds": 30}}))
    tracer, exporter = memory_tracer()
    events = Events()
    task = asyncio.create_task(make_planner(server).run("sleep", subscribers=[tracer, events]))
    await await_until(lambda: events.of("step_started"), "the step started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    tracer.close()
    [root] = span_tree(decoded(exporter))
    assert root["level"] == "WARNING" and root["metadata"]["status"] == "cancelled"
    [round1] = root["children"]
    nap = next(c for c in round1["children"] if c["name"] == "nap")
    assert nap["level"] == "WARNING" and nap["metadata"]["status"] == "cancelled"
    assert ("event", "cancel") in children(round1)


# --- an executor run -----------------------------------------------------------------------------


async def test_executor_run_with_retries_failures_and_skips() -> None:
    attempts = {"n": 0}

    @tool
    async def flaky(x: int) -> int:
        """Fails twice."""
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError(f"try {attempts['n']} failed, password=hunter2")
        return x

    @tool
    async def boom() -> int:
        """Always fails."""
        raise ValueError("broken")

    steps = [
        Step(id="f", tool="flaky", args={"x": 1}, retry={"max_attempts": 3, "initial_delay_s": 0.01, "jitter": 0}),
        Step(id="b", tool="boom", on_failure="continue"),
        Step(id="after", tool="flaky", args={"x": "${b}"}),
    ]
    events = Events()
    tracer, exporter = memory_tracer(planner=False, name="planweave exec")
    result = await Executor([flaky, boom]).run(steps, goal="g", subscribers=[events, tracer])
    assert result.status == "partial"  # `b` failed with `on_failure: continue`
    assert tracer.flush() is True  # the trace ended with `RunFinished`: no close needed to see it
    [root] = span_tree(decoded(exporter))
    assert root["name"] == "planweave exec" and root["trace"]["name"] == "planweave exec"
    assert root["level"] == "WARNING" and root["status_message"] == "step `b` failed: broken"
    assert root["end_time"] == pytest.approx(ns(events.of("run_finished")[0].at), abs=1e-6)
    assert set(children(root)) == {("tool", "f"), ("tool", "b"), ("event", "after skipped")}
    f = next(c for c in root["children"] if c["name"] == "f")
    assert f["metadata"]["attempts"] == 3 and f["output"] == 1
    assert children(f) == [("event", "retry 1"), ("event", "retry 2")]
    retry = f["children"][0]
    assert retry["level"] == "WARNING" and retry["metadata"]["error_type"] == "ConnectionError"
    assert retry["metadata"]["delay_s"] == pytest.approx(0.01)
    assert retry["metadata"]["error"] == "try 1 failed, password=[REDACTED]"
    b = next(c for c in root["children"] if c["name"] == "b")
    assert b["level"] == "ERROR" and b["status_message"] == "ValueError: broken"
    assert b["metadata"]["on_failure"] == "continue" and b["metadata"]["status"] == "failed"
    after = next(c for c in root["children"] if c["name"] == "after skipped")
    assert "`b`" in after["status_message"]
    tracer.close()


async def test_executor_cancel_marks_running_steps() -> None:
    tracer, exporter = memory_tracer(planner=False)
    async with Executor([slow]).start([Step(id="nap", tool="slow", args={"seconds": 30})], subscribers=[tracer]) as run:
        await await_until(lambda: run.step_status("nap") == "running", "`nap` was running")
        run.cancel("stop now")
    tracer.close()
    [root] = span_tree(decoded(exporter))
    assert root["level"] == "WARNING" and root["metadata"]["status"] == "cancelled"
    [nap] = root["children"]
    assert nap["level"] == "WARNING" and nap["metadata"]["status"] == "cancelled" and nap["status_message"]
    assert "stop now" in root["status_message"]


def test_the_subscriber_never_raises_and_warns_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: TraceBuilder, event: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setitem(HANDLERS, StepSucceeded, broken)
    tracer, _ = memory_tracer(planner=False)
    with caplog.at_level(logging.WARNING, logger="planweave.tracing"):
        for i in range(3):
            tracer(StepSucceeded(run_id="r", step_id=f"s{i}", output=1, attempts=1, duration_s=0.0))
        tracer.flush()  # the spans are built on the tracing worker thread
    assert caplog.messages == ["Langfuse tracing failed on a `step_succeeded` event; the trace may be incomplete."]
    monkeypatch.undo()
    tracer(StepSucceeded(run_id="r", step_id="unknown", output=1, attempts=1, duration_s=0.0))  # never started: ignored
    tracer.close()


async def test_spans_are_built_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps tracing cheap for a run (the overhead itself is a number for `bench/`)."""

    @tool
    def noop(i: int) -> int:
        """Return i."""
        return i

    built_on: set[threading.Thread] = set()
    original = HANDLERS[StepSucceeded]

    def recording(self: TraceBuilder, event: Any) -> None:
        built_on.add(threading.current_thread())
        original(self, event)

    monkeypatch.setitem(HANDLERS, StepSucceeded, recording)
    steps = [Step(id=f"s{i}", tool="noop", args={"i": i}) for i in range(300)]
    tracer, exporter = memory_tracer(planner=False)
    await Executor([noop]).run(steps, subscribers=[tracer])
    tracer.close()
    assert len(exporter.get_finished_spans()) == 301
    assert built_on and threading.current_thread() not in built_on


# --- real HTTP to the local OTLP receiver ------------------------------------------------------


async def test_http_round_trip_to_the_receiver(server: FakeModelServer) -> None:
    server.enqueue(
        plan({"id": "get", "tool": "fetch", "args": {"url": "https://x.example", "api_key": API_KEY}}),
        finish(f"done, and the langfuse key is {LANGFUSE_SECRET}"),
    )
    with OTLPReceiver() as receiver:
        config = unique_config(receiver)
        tracer = create_tracer(config=config, model="openai/fake-model", session_id="s", user_id="u", tags=["http"])
        assert tracer is not None
        result = await make_planner(server).run(f"fetch {GOAL_SECRET}", subscribers=[tracer])
        assert result.ok
        assert await tracer.aclose() is True  # delivered and confirmed
        spans = receiver.wait_for_spans(7)
        assert len({s["span_id"] for s in spans}) == len(spans)  # each span sent once
        request = receiver.requests[0]
        assert request.basic_auth == (config.public_key, LANGFUSE_SECRET)
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["x-langfuse-ingestion-version"] == "4"
        assert request.path == "/api/public/otel/v1/traces"
        assert receiver.render_tree(tracer.trace_id).splitlines()[:1] == [
            next(line for line in receiver.render_tree().splitlines() if line.startswith("agent"))
        ]
        [root] = receiver.tree(tracer.trace_id)
        assert root["output"] == "done, and the langfuse key is [REDACTED]"
        [round1] = root["children"]
        assert children(round1) == [
            ("generation", "plan"), ("tool", "get"), ("event", "plan emitted"), ("generation", "join"), ("event", "finish")
        ]  # fmt: skip
        join = round1["children"][3]
        assert join["usage"]["total"] > 0 and join["cost"]["total"] > 0 and join["model"] == "openai/fake-model"
        assert root["trace"]["session_id"] == "s" and root["trace"]["tags"] == ["http"]
        dumped = json.dumps(spans)
        for secret in (GOAL_SECRET, API_KEY, LANGFUSE_SECRET):
            assert secret not in dumped
        # A second run reuses the process-wide client for the same configuration.
        again = create_tracer(config=config)
        assert again is not None and again.client is tracer.client
        again.close(0)
        assert tracing.shutdown(5.0)


def test_planweave_tracer_spans_keep_their_own_times_and_go_to_langfuse_once() -> None:
    """Spans with an explicit start time (what the Langfuse SDK's public API cannot start) are
    started on the tracer of planweave's own provider and exported once, by planweave's processor."""
    with OTLPReceiver() as receiver:
        config = unique_config(receiver)
        tracer = create_tracer(config=config, span_exporter=LangfuseExporter(config))
        assert tracer is not None and tracer.otel_tracer is not None
        earlier = time.time() - 60
        span = tracer.otel_tracer.start_span("explicit start", start_time=int(earlier * 1e9))
        span.end(end_time=int((earlier + 1.5) * 1e9))
        assert tracer.close() is True
        spans = receiver.wait_for_spans(2)
        mine = [s for s in spans if s["name"] == "explicit start"]
        assert len(mine) == 1 and mine[0]["scope"] == "planweave"
        assert mine[0]["start_time"] == pytest.approx(earlier, abs=1e-3) and mine[0]["duration_s"] == pytest.approx(1.5)
        assert len({s["span_id"] for s in spans}) == len(spans)


@pytest.mark.parametrize("mode", ["http_500", "http_401", "slow", "timeout", "down"])
async def test_an_unhealthy_langfuse_loses_the_trace_with_one_warning(
    server: FakeModelServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The run succeeds; `aclose` returns False within its bound (for a Langfuse that hangs:
    while the export is still held unanswered, whichever bound, the flush's or the export's,
    runs out first); one warning names the trace and says why, and
    OpenTelemetry's exporter adds no log of its own (checked against its 1.45.2)."""
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), finish("3"))
    receiver = OTLPReceiver().start()
    try:
        config = unique_config(receiver, timeout_s=0.5, flush_timeout_s=30.0 if mode == "timeout" else 0.3)
        if mode.startswith("http_"):
            receiver.respond(status=int(mode[5:]))
        elif mode in ("slow", "timeout"):
            receiver.hold()
        else:
            receiver.stop()
        tracer = create_tracer(config=config, span_exporter=LangfuseExporter(config))
        assert tracer is not None
        with caplog.at_level(logging.WARNING):
            result = await make_planner(server).run("add", subscribers=[tracer])
            assert result.ok and result.answer == "3"
            assert await tracer.aclose() is False
            if mode in ("slow", "timeout"):
                assert receiver.held == 1 and receiver.requests == []  # aclose did not wait for it
                receiver.stop()  # drops the held export
                receiver.wait_for_requests(1)
            # The export itself fails in the background meanwhile: no second warning.
            await await_until(lambda: not background_shutdowns(), "the tracer's background shutdown finished")
        warnings = [r.getMessage() for r in caplog.records if r.name == "planweave.tracing"]
        assert len(warnings) == 1 and tracer.trace_id in warnings[0], warnings
        expected = {
            "http_500": "answered HTTP 500",
            "http_401": "answered HTTP 401 (check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY)",
            "slow": "did not confirm delivery within 0.3s",
            "timeout": "did not answer within 0.5s",  # the export gave up before the flush did
            "down": "is unreachable (Connection refused)",
        }[mode]
        assert expected in warnings[0] and "the run itself is not affected" in warnings[0]
        assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []
        assert receiver.spans == []
    finally:
        receiver.stop()
