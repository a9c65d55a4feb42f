"""Requests to people and their answers are in the run's Langfuse trace."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from planweave.executor import Executor, Step
from planweave.executor.requests import InputAnswer, InputRequest
from planweave.planner.testing.otlp import decode_export_request, span_tree
from planweave.planner.tracing.subscriber import create_tracer
from planweave.tools import tool


@tool(approval=True)
def send(to: str) -> str:
    """Send."""
    return f"sent to {to}"


def names(node: dict[str, Any]) -> list[str]:
    return [c["name"] for c in node["children"]]


async def test_requests_and_answers_are_events_in_the_trace() -> None:
    exporter = InMemorySpanExporter()
    tracer = create_tracer(span_exporter=exporter, planner=False, name="planweave exec")
    assert tracer is not None

    def deny(request: InputRequest) -> InputAnswer:
        return InputAnswer.deny("no", by="test")

    steps = [Step(id="s", tool="send", args={"to": "ann"}, on_failure="continue")]
    result = await Executor([send], responder=deny).run(steps, goal="g", subscribers=[tracer])
    assert result.status == "partial"
    tracer.close()
    [root] = span_tree(decode_export_request(encode_spans(exporter.get_finished_spans()).SerializeToString()))
    assert names(root)[:2] == ["s waits for approval", "s deny"]
    asked, answered = root["children"][:2]
    assert asked["input"]["args"] == {"to": "ann"} and asked["metadata"]["kind"] == "approval"
    assert answered["level"] == "WARNING" and answered["output"]["reason"] == "no"
