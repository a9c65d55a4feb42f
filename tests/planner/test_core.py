"""The planner end to end, through the real litellm and instructor, against a fake model server
speaking real HTTP on 127.0.0.1. Nothing in litellm or instructor is patched."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from planweave.executor import RunEvent
from planweave.planner import Budget, Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools import tool


def plan(*steps: dict[str, Any], rationale: str = "r", answer: str | None = None) -> Reply:
    return Reply.json_obj({"rationale": rationale, "steps": list(steps), "answer": answer})


def finish(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


def replan(reason: str) -> Reply:
    return Reply.json_obj({"action": "replan", "answer": None, "reason": reason})


CALLS: Counter[str] = Counter()


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    CALLS["add"] += 1
    return a + b


@tool
async def slow(seconds: float) -> str:
    """Sleep."""
    await asyncio.sleep(seconds)
    return "slept"


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    CALLS.clear()
    with FakeModelServer() as s:
        yield s


def planner(server: FakeModelServer, **kw: Any) -> Planner:
    kw.setdefault("tools", [add, slow])
    kw.setdefault("retry_delay_s", 0.01)
    return Planner(model="openai/fake-model", api_base=server.base_url, api_key="sk-fake", **kw)


async def test_plan_runs_end_to_end(server: FakeModelServer) -> None:
    server.enqueue(
        plan(
            {"id": "x", "tool": "add", "args": {"a": 1, "b": 2}},
            {"id": "y", "tool": "add", "args": {"a": 10, "b": 20}},
            {"id": "z", "tool": "add", "args": {"a": "${x}", "b": "${y}"}},
        ),
        finish("The total is 33."),
    )
    result = await planner(server).run("add things")
    assert result.status == "succeeded", result.error
    assert result.answer == "The total is 33."
    assert result.steps["z"].output == 33
    assert result.rounds == 1 and result.usage.llm_calls == 2
    # Usage is what the server reported, summed; an unknown model's cost is unknown, not 0.
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.usage.cost_usd is None and result.usage.unpriced_calls == 2
    plan_request = server.chat_requests[0].json
    assert plan_request["stream"] is True
    assert "tools" not in plan_request  # a plan is written as lines (or a JSON object), not a tool call
    assert "`add`: Add two numbers." in plan_request["messages"][0]["content"]
    assert {c["prompt"]["name"] for c in result.llm_calls} == {"plan", "join"}
    versions = {c["prompt"]["name"]: c["prompt"]["version"] for c in result.llm_calls}
    assert versions == {"plan": "6", "join": "4"}
    assert all(len(c["prompt"]["hash"]) == 12 for c in result.llm_calls)


async def test_registered_prices_give_a_cost(server: FakeModelServer) -> None:
    server.enqueue(plan(answer="nothing to do"))
    result = await planner(server, prices={"fake-model": (1.0, 2.0)}).run("nothing")
    u = result.usage
    assert u.cost_usd == pytest.approx((u.input_tokens * 1.0 + u.output_tokens * 2.0) / 1e6)
    assert result.answer == "nothing to do" and result.usage.llm_calls == 1, result.error


async def test_known_model_cost_from_litellm_price_map(server: FakeModelServer) -> None:
    server.enqueue(plan(answer="ok"))
    result = await Planner(
        model="openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-fake", tools=[add]
    ).run("nothing")
    assert result.usage.cost_usd is not None and result.usage.cost_usd > 0


async def test_first_step_starts_before_the_plan_stream_ends(server: FakeModelServer) -> None:
    started: dict[str, float] = {}
    stream_open: dict[str, bool] = {}

    @tool
    async def mark(name: str) -> str:
        started[name] = time.monotonic()
        stream_open[name] = not server.chat_requests[0].completed
        return name

    reply = plan({"id": "a", "tool": "mark", "args": {"name": "a"}}, {"id": "b", "tool": "mark", "args": {"name": "b"}})
    server.enqueue(reply.with_pause_after('"name": "a"}}', 0.6), finish("done"))
    result = await planner(server, tools=[mark]).run("mark both")
    assert result.ok, result.error
    stream_end = server.chat_requests[0].last_byte_monotonic
    assert stream_end is not None
    assert stream_open["a"]  # `a` ran while the model was still writing step b
    assert started["a"] < stream_end
    assert started["b"] >= stream_end - 0.05


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (plan({"id": "a", "tool": "ad", "args": {"a": 1, "b": 2}}), "step `a` uses unknown tool `ad`; did you mean `add`?"),
        (Reply.json_obj({"steps": "nope"}), "the reply is not a valid plan object"),
        (
            plan({"id": "a", "tool": "add", "args": {"a": "${b}", "b": 1}}, {"id": "b", "tool": "add", "args": {"a": "${a}", "b": 1}}),
            "dependency cycle",
        ),
        (plan({"id": "a", "tool": "add", "args": {"a": 1}}), "step `a` arguments do not match tool `add`: `b` is required."),
        (plan({"id": "a", "tool": "add", "args": {"a": "${ghost}", "b": 1}}), "there is no step `ghost`"),
    ],
    ids=["unknown-tool", "bad-shape", "cycle", "schema", "missing-ref"],
)
async def test_bad_output_is_repaired_on_reask(server: FakeModelServer, bad: Reply, expected: str) -> None:
    server.enqueue(bad, plan({"id": "ok", "tool": "add", "args": {"a": 2, "b": 2}}), finish("4"))
    events: list[RunEvent] = []
    result = await planner(server).run("two plus two", subscribers=[events.append])
    assert result.status == "succeeded", result.error
    assert result.steps["ok"].output == 4 and CALLS["add"] == 1
    repair = server.chat_requests[1].json["messages"][-1]["content"]
    assert expected in repair
    assert [e.kind for e in events].count("plan_rejected") == 1


async def test_invalid_json_is_repaired(server: FakeModelServer) -> None:
    server.enqueue(Reply.text("this is not json at all"), plan({"id": "ok", "tool": "add", "args": {"a": 1, "b": 1}}), finish("2"))
    result = await planner(server).run("one plus one")
    assert result.ok and result.usage.llm_calls == 3


async def test_reasks_run_out(server: FakeModelServer) -> None:
    bad = plan({"id": "a", "tool": "nope", "args": {}})
    server.enqueue(bad, bad, bad)
    result = await planner(server, max_reasks=2).run("anything")
    assert result.status == "failed"
    assert "stayed invalid after 2 re-asks" in (result.error or "")
    assert "unknown tool `nope`" in (result.error or "")
    assert len(server.chat_requests) == 3 and not result.steps


async def test_replan_after_a_failed_step(server: FakeModelServer) -> None:
    @tool
    async def fetch(url: str) -> str:
        """Fetch."""
        if "bad" in url:
            raise ConnectionError(f"cannot reach {url}")
        return "content"

    server.enqueue(
        plan({"id": "f1", "tool": "fetch", "args": {"url": "http://bad"}}),
        replan("f1 failed; try the mirror"),
        plan({"id": "f2", "tool": "fetch", "args": {"url": "http://mirror"}}),
        finish("got content from the mirror"),
    )
    result = await planner(server, tools=[fetch]).run("fetch it")
    # Answered around a failed step: `partial`, not `succeeded`, naming the step.
    assert result.status == "partial" and result.rounds == 2 and result.replans == 1
    assert result.failed_steps == ["f1"] and not result.ok
    assert result.error == "step `f1` failed: cannot reach http://bad"
    assert result.steps["f1"].status == "failed" and result.steps["f2"].output == "content"
    assert result.steps["f1"].attempts == 3  # a ConnectionError is transient: the default retry policy
    second_plan = server.chat_requests[2].last_user_text  # step results are data in the user message
    assert "`f1` (fetch, failed): cannot reach http://bad" in second_plan
    assert "f1 failed; try the mirror" in second_plan


async def test_budget_llm_calls(server: FakeModelServer) -> None:
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}))
    result = await planner(server, budget=Budget(max_llm_calls=1)).run("add")
    assert result.status == "budget_exceeded" and result.budget == "max_llm_calls"
    assert result.answer is not None and "`x`: 3" in result.answer
    assert len(server.chat_requests) == 1


async def test_budget_steps(server: FakeModelServer) -> None:
    server.enqueue(plan(*[{"id": f"s{i}", "tool": "add", "args": {"a": i, "b": 0}} for i in range(3)]))
    result = await planner(server, budget=Budget(max_steps=2)).run("add")
    assert result.status == "budget_exceeded" and result.budget == "max_steps"
    assert set(result.steps) == {"s0", "s1"}
    assert all(s.status in ("succeeded", "cancelled") for s in result.steps.values())


async def test_budget_time_leaves_nothing_running(server: FakeModelServer) -> None:
    # The step would sleep for longer than the test's timeout: returning at all means it was cancelled.
    server.enqueue(plan({"id": "z", "tool": "slow", "args": {"seconds": 600}}))
    result = await planner(server, budget=Budget(max_seconds=0.5)).run("sleep")
    assert result.status == "budget_exceeded" and result.budget == "max_seconds"
    assert result.steps["z"].status == "cancelled"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("planweave-step")]


async def test_budget_tokens_and_cost_and_replans(server: FakeModelServer) -> None:
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}))
    result = await planner(server, budget=Budget(max_tokens=10)).run("add")
    assert result.status == "budget_exceeded" and result.budget == "max_tokens"

    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}))
    result = await planner(server, budget=Budget(max_cost_usd=1e-9), prices={"fake-model": (1.0, 1.0)}).run("add")
    assert result.status == "budget_exceeded" and result.budget == "max_cost_usd"

    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), replan("more"))
    result = await planner(server, budget=Budget(max_replans=0)).run("add")
    assert result.status == "budget_exceeded" and result.budget == "max_replans"


async def test_transient_errors_are_retried(server: FakeModelServer) -> None:
    server.enqueue(Reply.rate_limited(retry_after=0), Reply.http_error(503), plan(answer="fine"))
    result = await planner(server).run("x")
    assert result.ok and result.answer == "fine"
    assert result.usage.llm_calls == 3  # two failed attempts and the good one


async def test_fallback_model_after_a_permanent_error(server: FakeModelServer) -> None:
    server.enqueue(Reply.http_error(404, "model not found"), plan(answer="from the fallback"))
    result = await planner(server, fallbacks=["openai/other-model"]).run("x")
    assert result.ok and result.answer == "from the fallback"
    assert [r.json["model"] for r in server.chat_requests] == ["fake-model", "other-model"]


async def test_permanent_error_fails_with_what_to_set(server: FakeModelServer) -> None:
    server.enqueue(Reply.http_error(401, "bad key"))
    result = await planner(server).run("x")
    assert result.status == "failed"
    assert result.error == (
        f"the provider at `{server.base_url}` rejected the API key for model `openai/fake-model` (HTTP 401); "
        "check the key given as `api_key=`, or pick another model with `--model` or `PLANWEAVE_MODEL`."
    )
    assert len(server.chat_requests) == 1 == result.usage.llm_calls  # never retried, and counted


async def test_dropped_stream_is_reasked(server: FakeModelServer) -> None:
    server.enqueue(Reply.dropped(after_chunks=2), plan(answer="second try"))
    result = await planner(server).run("x")
    assert result.ok and result.answer == "second try"


async def test_llm_tool_is_accounted(server: FakeModelServer) -> None:
    server.enqueue(
        plan({"id": "think", "tool": "llm", "args": {"prompt": "summarise", "context": "abc"}}),
        Reply.text("a summary"),
        finish("done"),
    )
    result = await planner(server).run("summarise abc")
    assert result.steps["think"].output == "a summary"
    assert result.usage.llm_calls == 3
    by_start = sorted(result.llm_calls, key=lambda c: c["started_at"])
    assert [c["purpose"] for c in by_start] == ["plan", "llm_tool", "join"]


async def test_stream_yields_plan_step_and_answer_events(server: FakeModelServer) -> None:
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), finish("3"))
    kinds = [e.kind async for e in planner(server).stream("add")]
    for expected in ("run_started", "step_added", "step_succeeded", "llm_called", "plan_updated", "decision", "answer_delta", "planner_finished"):
        assert expected in kinds
    assert kinds[-1] == "planner_finished"


async def test_offline_model_needs_no_key_and_is_honest(tmp_path: Any) -> None:
    result = await Planner(workspace=tmp_path).run("what is 6 * 7 and compute 2 ** 10")
    assert result.ok and result.steps["p1"].output == 42 and result.steps["p2"].output == 1024
    # The answer reads as the user wrote the goal: no step ids, and the setup hint is the CLI's, not the answer's.
    assert result.answer == "6 * 7 = 42; 2 ** 10 = 1024"
    unknown = await Planner(workspace=tmp_path).run("write a sonnet about the sea")
    assert unknown.ok and not unknown.steps
    assert "cannot plan this goal offline" in (unknown.answer or "")


async def test_answer_streams_in_pieces(server: FakeModelServer) -> None:
    text = "The total is 33, which is " + "quite a lot of words to stream " * 4 + "in the end."
    server.enqueue(
        plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}),
        Reply.json_obj({"action": "finish", "answer": text, "reason": ""}, tokens_per_s=2000),
    )
    events: list[RunEvent] = []
    result = await planner(server).run("add", subscribers=[events.append])
    deltas = [e for e in events if e.kind == "answer_delta"]
    assert len(deltas) > 3  # streamed, not sent as one piece
    assert "".join(d.text for d in deltas) == text == result.answer
    finished = next(i for i, e in enumerate(events) if e.kind == "planner_finished")
    assert events.index(deltas[-1]) < finished


async def test_invalid_join_is_reasked_and_streamed_text_reset(server: FakeModelServer) -> None:
    server.enqueue(
        plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}),
        Reply.json_obj({"action": "finish", "answer": "half an answer", "reason": 7}),
        finish("The whole answer."),
    )
    events: list[RunEvent] = []
    result = await planner(server).run("add", subscribers=[events.append])
    assert result.status == "succeeded" and result.answer == "The whole answer."
    text = ""
    for e in events:
        if e.kind == "answer_delta":
            text = "" if e.reset else text + e.text
    assert text == "The whole answer."
    rejected = [e for e in events if e.kind == "plan_rejected"]
    assert len(rejected) == 1 and "reason" in rejected[0].errors[0]
    assert "decision could not be used" in server.chat_requests[2].json["messages"][-1]["content"]


async def test_tracing_from_environment_puts_the_trace_on_the_result(
    server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from planweave.planner.tracing import subscriber as tracing
    from planweave.planner.testing.otlp import OTLPReceiver

    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), finish("three"))
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", f"pk-lf-{os.urandom(4).hex()}")
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
        monkeypatch.setenv("LANGFUSE_BASE_URL", receiver.url)
        result = await planner(server).run("add", session_id="chat-1", tags=["t"])
        assert result.ok and result.trace_id
        assert result.trace_url == f"{receiver.url}/trace/{result.trace_id}"
        receiver.wait_for_spans(4)
        [root] = receiver.tree(result.trace_id)
        assert root["trace"]["session_id"] == "chat-1" and root["output"] == "three"
        assert tracing.shutdown(5.0)
    # Without keys: no tracer, no trace id.
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY")
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), finish("3"))
    assert (await planner(server).run("add")).trace_id is None


async def test_compact_steps_run_and_bad_ones_are_reasked(server: FakeModelServer) -> None:
    server.enqueue(
        Reply.json_obj({"steps": [["x", "add", {"a": 1, "b": 2}], ["y", "add"]], "rationale": "r"}),
        Reply.json_obj(
            {"steps": [["y", "add", {"a": "${x}", "b": 10}], ["z", "add", {"a": 1, "b": 1}, ["y"]]], "rationale": "fixed"}
        ),
        finish("13"),
    )
    events: list[RunEvent] = []
    result = await planner(server).run("add", subscribers=[events.append])
    assert result.status == "succeeded", result.error
    assert result.steps["y"].output == 13 and result.steps["z"].output == 2
    rejected = [e for e in events if e.kind == "plan_rejected"]
    assert len(rejected) == 1 and any("`y`" in e for e in rejected[0].errors)
    z_added = next(e for e in events if e.kind == "step_added" and e.step_id == "z")
    assert z_added.deps == ["y"]
    # `x` (accepted in the first reply) was not run again.
    assert CALLS["add"] == 3


async def test_join_reask_goes_through_instructor_and_can_run_out(server: FakeModelServer) -> None:
    bad = Reply.json_obj({"action": "maybe", "answer": None, "reason": ""})
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}), bad, bad, bad)
    result = await planner(server, max_reasks=1).run("add")
    assert result.status == "failed"
    assert "join decision stayed invalid after 1 re-asks" in (result.error or "")
    reask = server.chat_requests[2].json
    assert reask["tools"][0]["function"]["name"] == "JoinDecision"  # instructor's structured call
    assert "`action`" in reask["messages"][-1]["content"] or "action" in reask["messages"][-1]["content"]


async def test_the_model_sees_the_run_inputs(server: FakeModelServer) -> None:
    server.enqueue(plan({"id": "x", "tool": "add", "args": {"a": "${inputs.n}", "b": 1}}), finish("8"))
    result = await planner(server).run("add one to n", inputs={"n": 7, "long": "y" * 5000})
    assert result.steps["x"].output == 8
    user = server.chat_requests[0].last_user_text  # inputs are data: the user message, never the system one
    assert "- `n` (use it as `${inputs.n}`): 7" in user
    assert "[truncated: 3000 more characters" in user  # long inputs are cut in the prompt only
