"""Progress from any tool (`ToolContext.progress`/`partial`): `step_progress` events, and what the
live view, the chat stream and the trace make of them."""

from __future__ import annotations

import io
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

from planweave.executor import Executor, RunEvent, Step, event_from_dict
from planweave.executor.events import StepProgressed
from planweave.planner.cli.live import LiveView
from planweave.planner.serve.chat import Narration
from planweave.planner.testing.otlp import decode_export_request, span_tree
from planweave.planner.tracing.subscriber import create_tracer
from planweave.tools import ToolContext, tool


@tool
def download(pages: int, ctx: ToolContext) -> str:
    """A sync tool (run in a worker thread) reporting each page and the text so far."""
    text = ""
    for page in range(1, pages + 1):
        text += f"page {page}. "
        ctx.progress(page, pages, f"page {page}")
        ctx.partial(text)
    return text.strip()


@tool
async def think(ctx: ToolContext) -> str:
    """An async tool reporting progress without a total."""
    ctx.progress(1, message="warming up")
    return "ok"


def _progress(events: list[RunEvent]) -> list[tuple[Any, ...]]:
    return [
        (e.step_id, e.progress_kind, e.done, e.total, e.message, e.partial)
        for e in events
        if isinstance(e, StepProgressed)
    ]


async def test_sync_and_async_tools_report_progress_and_partial_output_as_events() -> None:
    events: list[RunEvent] = []
    result = await Executor([download, think]).run(
        [Step(id="dl", tool="download", args={"pages": 2}), Step(id="t", tool="think", depends_on=["dl"])],
        subscribers=[events.append],
    )
    assert result.status == "succeeded"
    assert _progress(events) == [
        ("dl", "progress", 1, 2, "page 1", None),
        ("dl", "partial", None, None, None, "page 1. "),
        ("dl", "progress", 2, 2, "page 2", None),
        ("dl", "partial", None, None, None, "page 1. page 2. "),
        ("t", "progress", 1, None, "warming up", None),
    ]
    # Progress comes between the step's start and its end, and survives the run store's JSON form.
    kinds = [e.kind for e in events if getattr(e, "step_id", None) == "dl"]
    assert kinds.index("step_started") < kinds.index("step_progress") < kinds.index("step_succeeded")
    first = next(e for e in events if isinstance(e, StepProgressed))
    assert event_from_dict(first.to_dict()).to_dict() == first.to_dict()


async def test_a_context_outside_a_run_ignores_reports() -> None:
    ToolContext().progress(1, 2, "nobody listens")
    ToolContext().partial("nor here")


async def test_the_live_view_shows_the_latest_report_and_plain_lines_say_progress() -> None:
    out = io.StringIO()
    view = LiveView(Console(file=out, width=120, color_system=None))  # not a terminal: plain lines
    await Executor([download]).run([Step(id="dl", tool="download", args={"pages": 2})], subscribers=[view])
    lines = out.getvalue().splitlines()
    assert "step dl: 1/2 page 1" in lines and "step dl: 2/2 page 2" in lines
    assert not any("partial" in line for line in lines)  # partial outputs would flood a log
    assert view.model.steps["dl"].reported == "partial: page 1. page 2."


async def test_the_chat_stream_narrates_progress_and_notices() -> None:
    narrator = Narration()
    events: list[RunEvent] = []
    await Executor([download]).run([Step(id="dl", tool="download", args={"pages": 1})], subscribers=[events.append])
    pieces = [piece for e in events for piece in narrator.feed(e)]
    assert ("reasoning", "- `dl` 1/1 page 1\n") in pieces
    notice = StepProgressed(run_id="r", step_id="dl", progress_kind="notice", message="server restarted")
    assert list(narrator.feed(notice)) == [("reasoning", "- `dl` server restarted\n")]


async def test_the_trace_has_an_event_per_report_under_the_step() -> None:
    exporter = InMemorySpanExporter()
    tracer = create_tracer(span_exporter=exporter, planner=False, name="progress")
    assert tracer is not None
    await Executor([download]).run([Step(id="dl", tool="download", args={"pages": 1})], subscribers=[tracer])
    assert tracer.flush() is True
    [root] = span_tree(decode_export_request(encode_spans(exporter.get_finished_spans()).SerializeToString()))
    [dl] = [c for c in root["children"] if c["name"] == "dl"]
    assert [(c["type"], c["name"]) for c in dl["children"]] == [("event", "progress"), ("event", "partial")]
    progress, partial = dl["children"]
    assert progress["metadata"] == {"done": 1, "total": 1, "message": "page 1"}
    assert partial["output"] == "page 1. "
    tracer.close()
