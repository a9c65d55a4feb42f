"""Sub-workflows: a step runs another workflow (a file or a `Workflow`) as a child run, checked
with its parent, recorded and traced as a child, and not run again when its parent resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from planweave.executor import PlanError, Step, Workflow, load_workflow
from planweave.executor.store import open_store
from planweave.executor.subworkflow import ChildRunStarted, ChildWorkflowError
from planweave.tools import tool
from planweave.tools.builtin import builtin_tools

CALLS: list[str] = []


@tool
def note(text: str) -> str:
    """Remember a text (counts calls)."""
    CALLS.append(text)
    return text


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CHILD = """name: pricing
inputs: {nights: 1}
steps:
  - {id: rooms, tool: calculator, args: {expression: "${inputs.nights} * 100"}}
  - {id: said, tool: note, args: {text: "rooms cost ${rooms}"}}
"""

PARENT = """name: trip
inputs: {nights: 3}
steps:
  - id: price
    workflow: parts/pricing.yaml
    args: {nights: "${inputs.nights}"}
  - {id: total, tool: calculator, args: {expression: "${price.rooms} + 50"}}
"""


async def test_a_workflow_file_runs_as_a_recorded_child(tmp_path: Path) -> None:
    write(tmp_path, "parts/pricing.yaml", CHILD)
    parent = load_workflow(write(tmp_path, "trip.yaml", PARENT))  # the child's path is relative to this file
    store = open_store()
    events: list[Any] = []
    result = await parent.run(
        [*builtin_tools(workspace=tmp_path), note],
        subscribers=[store.recorder(kind="workflow", name="trip", meta={"file": "trip.yaml"}), events.append],
    )
    assert result.status == "succeeded", result.error
    assert result.output("price") == {"rooms": 300, "said": "rooms cost 300"}
    assert result.output("total") == 350
    [started] = [e for e in events if isinstance(e, ChildRunStarted)]
    assert (started.step_id, started.workflow) == ("price", "pricing")
    child = store.get_run(started.child_run_id)
    assert child.summary.name == "pricing" and child.summary.status == "succeeded"
    assert store.get_run(result.run_id).summary.status == "succeeded"
    meta = child.summary.meta
    assert meta["parent_run_id"] == result.run_id and meta["parent_step"] == "price" and "file" not in meta
    store.close()
    from typer.testing import CliRunner

    from planweave.planner.cli.app import app

    shown = CliRunner().invoke(app, ["show", result.run_id]).stdout
    assert f"child run {started.child_run_id} (pricing): planweave show {started.child_run_id}" in shown


async def test_a_workflow_object_is_a_step_of_the_builder() -> None:
    child = Workflow("shout", inputs={"text": ""}).add_step("said", tool="note", args={"text": "${inputs.text}!"})
    parent = Workflow("outer").add_step("inner", workflow=child, args={"text": "hi"}).add_step(
        "again", tool="note", args={"text": "${inner.said}"}
    )
    result = await parent.execute(tools=[note])
    assert result.status == "succeeded", result.error
    assert CALLS == ["hi!", "hi!"]


async def test_the_child_is_checked_with_its_parent(tmp_path: Path) -> None:
    write(tmp_path, "parts/pricing.yaml", CHILD)
    write(tmp_path, "broken.yaml", "steps:\n  - {id: a, tool: no_such_tool}\n")
    write(tmp_path, "loop.yaml", "steps:\n  - {id: again, workflow: loop.yaml}\n")
    parent = load_workflow(write(tmp_path, "p.yaml", """steps:
  - {id: missing, workflow: nowhere.yaml}
  - {id: bad_input, workflow: parts/pricing.yaml, args: {night: 2}}
  - {id: broken, workflow: broken.yaml}
  - {id: loop, workflow: loop.yaml}
"""))
    with pytest.raises(PlanError) as info:
        await parent.run([*builtin_tools(workspace=tmp_path), note])
    problems = {p.step_id: p.message for p in info.value.problems}
    assert problems["missing"].startswith(f"step `missing` runs workflow `{tmp_path}/nowhere.yaml`, which cannot be loaded")
    assert "`night` is not an argument" in problems["bad_input"]
    assert problems["broken"].startswith(f"step `broken` runs workflow `{tmp_path}/broken.yaml`, which is not valid")
    assert "unknown tool `no_such_tool`" in problems["broken"]
    assert "which runs itself (directly or through others); remove the loop." in problems["loop"]
    assert CALLS == []


async def test_a_failed_child_fails_its_step_and_names_the_child_run(tmp_path: Path) -> None:
    child = Workflow("divide").add_step("q", tool="calculator", args={"expression": "1 / 0"})
    result = await Workflow("outer").add_step("inner", workflow=child).execute()
    assert result.status == "failed"
    step = result.steps["inner"]
    assert step.error_type == ChildWorkflowError.__name__
    assert step.error is not None and step.error.startswith("step `inner`: workflow `divide` (child run `")
    assert "; see `planweave show " in step.error


async def test_resuming_the_parent_does_not_run_a_succeeded_child_again(tmp_path: Path) -> None:
    write(tmp_path, "parts/pricing.yaml", CHILD)
    flaky = {"fail": True}

    @tool(name="book")
    def book(total: float) -> str:
        """Book, failing the first time."""
        if flaky["fail"]:
            raise ConnectionError("the booking site is down")
        return f"booked for {total}"

    parent = load_workflow(write(tmp_path, "trip.yaml", PARENT + "  - {id: booked, tool: book, args: {total: '${total}'}}\n"))
    tools = [*builtin_tools(workspace=tmp_path), note, book]
    store = open_store()
    first = await parent.run(tools, subscribers=[store.recorder(kind="workflow", name="trip", meta={})])
    assert first.status == "failed" and CALLS == ["rooms cost 300"]
    flaky["fail"] = False
    resume = store.get_run(first.run_id).resume_state()
    assert "price" in resume.completed
    again = await parent.run(tools, run_id=first.run_id, completed=resume.completed)
    assert again.status == "succeeded", again.error
    assert again.steps["price"].restored and again.output("booked") == "booked for 350.0"
    assert CALLS == ["rooms cost 300"]  # the child did not run again
    store.close()


async def test_the_child_is_traced_under_its_step() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from planweave.planner.testing.otlp import decode_export_request, span_tree
    from planweave.planner.tracing.subscriber import create_tracer

    exporter = InMemorySpanExporter()
    tracer = create_tracer(span_exporter=exporter, planner=False, name="outer")
    assert tracer is not None
    child = Workflow("shout", inputs={"text": ""}).add_step("said", tool="note", args={"text": "${inputs.text}!"})
    result = await Workflow("outer").add_step("inner", workflow=child, args={"text": "hi"}).execute(
        tools=[note], subscribers=[tracer]
    )
    assert result.status == "succeeded"
    assert tracer.flush() is True
    [root] = span_tree(decode_export_request(encode_spans(exporter.get_finished_spans()).SerializeToString()))
    assert root["name"] == "outer"
    [inner] = root["children"]
    assert inner["name"] == "inner"
    [child_root] = inner["children"]
    assert child_root["name"] == "shout"
    assert [(c["type"], c["name"]) for c in child_root["children"]] == [("tool", "said")]
    tracer.close()
