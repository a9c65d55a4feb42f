"""The `llm` tool in hand-written workflows: the model from the tool, the workflow or the
environment; every call's tokens and cost recorded on its step and in the run's totals; JSON
answers of a given shape through instructor. Against the fake model server over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Step, Workflow
from planweave.executor.store import open_store
from planweave.planner.events import LLMCalled
from planweave.planner.llm_tool import llm_tool, schema_model
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools.errors import ToolArgumentsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


def two_llm_steps(model: str | None = None) -> Workflow:
    return Workflow(
        name="two_llm_steps",
        model=model,
        steps=[
            Step(id="draft", tool="llm", args={"prompt": "Write one line about ${inputs.topic}."}),
            Step(id="shorter", tool="llm", args={"prompt": "Make it shorter.", "context": "${draft}"}),
        ],
        inputs={"topic": "graphs"},
    )


async def test_llm_steps_record_tokens_and_cost_on_the_step_and_in_the_run(server: FakeModelServer) -> None:
    server.enqueue(Reply.text("Graphs connect things."), Reply.text("Graphs connect."))
    store = open_store()
    workflow = two_llm_steps(model="openai/gpt-4o-mini")
    recorder = store.recorder(kind="workflow", name=workflow.name, meta={})
    tool = llm_tool(api_base=server.base_url, api_key="sk-fake", retry_delay_s=0.01)
    result = await workflow.run([tool], subscribers=[recorder])
    assert result.status == "succeeded", result.error
    assert result.output("shorter") == "Graphs connect."
    # The workflow's model was called, with the draft as the second step's context.
    assert [r.json["model"] for r in server.chat_requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert "Graphs connect things." in server.chat_requests[1].last_user_text  # context is data, in the user message
    calls = [e for e in store.get_run(result.run_id).events if e["kind"] == "llm_called"]
    assert [c["step_id"] for c in calls] == ["draft", "shorter"]
    assert all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls)
    summary = store.summary(result.run_id)
    assert summary.llm_calls == 2
    assert summary.input_tokens == sum(c["input_tokens"] for c in calls)
    assert summary.output_tokens == sum(c["output_tokens"] for c in calls)
    assert summary.cost_usd is not None and summary.cost_usd > 0  # gpt-4o-mini has a price
    store.close()


async def test_the_tools_model_overrides_the_workflows(server: FakeModelServer) -> None:
    server.enqueue(Reply.text("a"), Reply.text("b"))
    tool = llm_tool("openai/fake-model", api_base=server.base_url, api_key="sk-fake")
    result = await two_llm_steps(model="openai/gpt-4o-mini").run([tool])
    assert result.status == "succeeded", result.error
    assert {r.json["model"] for r in server.chat_requests} == {"fake-model"}


async def test_without_any_model_the_offline_model_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANWEAVE_MODEL", raising=False)
    events: list[Any] = []
    result = await two_llm_steps().run([llm_tool()], subscribers=[events.append])
    assert result.status == "succeeded", result.error
    calls = [e for e in events if isinstance(e, LLMCalled)]
    assert [c.model for c in calls] == ["planweave/offline", "planweave/offline"]
    assert all(c.cost_usd == 0.0 for c in calls)


async def test_output_schema_gives_a_json_object_of_that_shape(server: FakeModelServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "score": {"type": "number", "description": "from -1 to 1"},
            "topics": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["sentiment", "score"],
    }
    server.enqueue(
        Reply.json_obj({"sentiment": "great", "score": 0.9}),  # not in the enum: instructor re-asks
        Reply.json_obj({"sentiment": "positive", "score": 0.9, "topics": ["graphs"]}),
    )
    workflow = Workflow(
        name="structured",
        model="openai/fake-model",
        steps=[Step(id="judge", tool="llm", args={"prompt": "Judge: I love it.", "output_schema": schema})],
    )
    events: list[Any] = []
    tool = llm_tool(api_base=server.base_url, api_key="sk-fake")
    result = await workflow.run([tool], subscribers=[events.append])
    assert result.status == "succeeded", result.error
    assert result.output("judge") == {"sentiment": "positive", "score": 0.9, "topics": ["graphs"]}
    calls = [e for e in events if isinstance(e, LLMCalled)]
    assert len(calls) == 2 and calls[0].error is not None and calls[1].error is None


def test_a_bad_output_schema_names_the_part_at_fault() -> None:
    with pytest.raises(ToolArgumentsError) as info:
        schema_model({"type": "object", "properties": {"when": {"type": "date"}}})
    assert str(info.value) == (
        "`output_schema.properties.when`: unknown type `date`; use one of object, array, string, integer, "
        "number, boolean, null."
    )
    with pytest.raises(ToolArgumentsError, match="must be a JSON schema of an object with `properties`"):
        schema_model({"type": "string"})


def test_exec_records_a_workflows_llm_usage(server: FakeModelServer, tmp_path: Path) -> None:
    """`planweave exec` with `--model`: the stored run's totals count the `llm` step."""
    server.enqueue(Reply.text("Graphs connect things."), Reply.text("Graphs connect."))
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: llm_usage\nsteps:\n"
        "  - {id: draft, tool: llm, args: {prompt: 'Write a line.'}}\n"
        "  - {id: shorter, tool: llm, args: {prompt: 'Shorter.', context: '${draft}'}}\n"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-fake"}
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "exec", str(wf), "--model", "openai/gpt-4o-mini",
         "--api-base", server.base_url, "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    store = open_store()
    summary = store.summary(run_id)
    assert summary.llm_calls == 2 and summary.total_tokens > 0
    assert summary.cost_usd is not None and summary.cost_usd > 0
    store.close()


async def test_each_llm_call_is_a_generation_under_its_step(server: FakeModelServer) -> None:
    """Two `llm` steps running side by side: each generation sits under the step that made it."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from planweave.planner.testing.otlp import decode_export_request, span_tree
    from planweave.planner.tracing.subscriber import create_tracer

    server.enqueue(Reply.text("one"), Reply.text("two"))
    exporter = InMemorySpanExporter()
    tracer = create_tracer(span_exporter=exporter, planner=False, name="wf")
    assert tracer is not None
    workflow = Workflow(
        name="side_by_side",
        model="openai/gpt-4o-mini",
        steps=[
            Step(id="a", tool="llm", args={"prompt": "first"}),
            Step(id="b", tool="llm", args={"prompt": "second"}),
        ],
    )
    result = await workflow.run([llm_tool(api_base=server.base_url, api_key="sk-fake")], subscribers=[tracer])
    assert result.status == "succeeded", result.error
    assert tracer.flush() is True
    [root] = span_tree(decode_export_request(encode_spans(exporter.get_finished_spans()).SerializeToString()))
    for step in root["children"]:
        [generation] = step["children"]
        assert generation["type"] == "generation" and generation["name"] == "llm"
        assert step["output"] in json.dumps(generation["output"])
        assert generation["usage"]["input"] > 0 and generation["cost"]["total"] > 0
    tracer.close()


async def test_a_cached_llm_step_answered_from_the_cache_costs_nothing(server: FakeModelServer) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from planweave.planner.testing.otlp import decode_export_request, span_tree
    from planweave.planner.tracing.subscriber import create_tracer

    server.enqueue(Reply.text("Graphs connect things."))
    store = open_store()
    workflow = Workflow(
        name="cached_llm",
        model="openai/gpt-4o-mini",
        steps=[Step(id="draft", tool="llm", args={"prompt": "Write one line."}, cache=True)],
    )
    tool = llm_tool(api_base=server.base_url, api_key="sk-fake")
    first = await workflow.run([tool], subscribers=[store.recorder(kind="workflow", name="cached_llm", meta={})])
    exporter = InMemorySpanExporter()
    tracer = create_tracer(span_exporter=exporter, planner=False, name="cached_llm")
    assert tracer is not None
    second = await workflow.run([tool], subscribers=[store.recorder(kind="workflow", name="cached_llm", meta={}), tracer])
    assert len(server.chat_requests) == 1
    assert first.output("draft") == second.output("draft") == "Graphs connect things."
    assert store.summary(first.run_id).llm_calls == 1
    repeat = store.summary(second.run_id)
    assert (repeat.llm_calls, repeat.total_tokens, repeat.cost_usd) == (0, 0, 0.0)
    assert [e["kind"] for e in store.get_run(second.run_id).events].count("step_cache_hit") == 1
    assert tracer.flush() is True
    [root] = span_tree(decode_export_request(encode_spans(exporter.get_finished_spans()).SerializeToString()))
    [step] = root["children"]
    assert [(c["type"], c["name"]) for c in step["children"]] == [("event", "cache hit")]
    tracer.close()
    # Another model is another question: not answered from the cache.
    server.enqueue(Reply.text("Graphs link things."))
    other = await workflow.model_copy(update={"model": "openai/gpt-4o"}).run([tool])
    assert other.output("draft") == "Graphs link things." and len(server.chat_requests) == 2
    store.close()


def test_exec_refuses_llm_steps_without_a_key_before_running_anything(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: keyless\nmodel: openai/gpt-4o-mini\nsteps:\n"
        "  - {id: note, tool: write_file, args: {path: note.txt, content: started}}\n"
        "  - {id: draft, tool: llm, args: {prompt: 'Write a line.'}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "exec", str(wf), "--workspace", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "OPENAI_API_KEY" in proc.stderr
    assert not (tmp_path / "note.txt").exists()  # nothing ran
