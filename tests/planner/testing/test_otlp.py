"""The local OTLP receiver: real HTTP, protobuf (gzip or not) and JSON bodies, decoded spans,
trees, and the simulated failures (HTTP 500, slow answers, down)."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from planweave.planner.testing.otlp import OTLPReceiver, decode_export_request, render_tree, span_tree


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


def make_spans() -> list[ReadableSpan]:
    """A small Langfuse-shaped trace made with the plain OpenTelemetry SDK: root, child, grandchild."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("langfuse-sdk", attributes={"public_key": "pk"})
    t0 = 1_700_000_000_000_000_000
    root = tracer.start_span(
        "run",
        start_time=t0,
        attributes={
            "langfuse.observation.type": "agent",
            "langfuse.observation.input": "the goal",
            "langfuse.trace.name": "planweave",
            "user.id": "ana",
            "session.id": "s1",
            "langfuse.trace.tags": ["a", "b"],
            "langfuse.trace.metadata.run_id": '"r1"',
        },
    )
    gen = tracer.start_span(
        "plan",
        context=set_span_in_context(root),
        start_time=t0 + 100_000_000,
        attributes={
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "m",
            "langfuse.observation.usage_details": '{"input": 10, "output": 5, "total": 15}',
            "langfuse.observation.cost_details": '{"total": 0.001}',
            "langfuse.observation.metadata.purpose": '"plan"',
            "langfuse.observation.prompt.name": "plan",
            "langfuse.observation.prompt.version": 3,
            "langfuse.observation.output": '{"steps": []}',
        },
    )
    gen.end(end_time=t0 + 600_000_000)
    tool = tracer.start_span(
        "fetch",
        context=set_span_in_context(root),
        start_time=t0 + 700_000_000,
        attributes={"langfuse.observation.type": "tool", "langfuse.observation.level": "ERROR",
                    "langfuse.observation.status_message": "boom"},
    )  # fmt: skip
    tool.set_status(Status(StatusCode.ERROR, "boom"))
    tool.add_event("retry", {"attempt": 1}, timestamp=t0 + 800_000_000)
    tool.end(end_time=t0 + 900_000_000)
    root.end(end_time=t0 + 1_000_000_000)
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_otel_exporter_round_trip_with_gzip(receiver: OTLPReceiver) -> None:
    exporter = OTLPSpanExporter(
        endpoint=receiver.traces_url, headers={"Authorization": "Basic cGs6c2s="}, compression=Compression.Gzip
    )
    assert exporter.export(make_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()
    [request] = receiver.requests
    assert request.status == 200 and request.path == "/api/public/otel/v1/traces"
    assert request.headers["content-encoding"] == "gzip" and request.basic_auth == ("pk", "sk")
    spans = receiver.wait_for_spans(3)
    by_name = {s["name"]: s for s in spans}
    root, gen, tool = by_name["run"], by_name["plan"], by_name["fetch"]
    assert root["parent_span_id"] is None and gen["parent_span_id"] == root["span_id"] == tool["parent_span_id"]
    assert len(root["trace_id"]) == 32 and len(root["span_id"]) == 16
    assert root["type"] == "agent" and root["input"] == "the goal" and root["scope"] == "langfuse-sdk"
    assert root["scope_attributes"] == {"public_key": "pk"}
    assert root["trace"] == {"name": "planweave", "user_id": "ana", "session_id": "s1", "tags": ["a", "b"],
                             "metadata": {"run_id": "r1"}}  # fmt: skip
    assert gen["type"] == "generation" and gen["model"] == "m" and gen["output"] == {"steps": []}
    assert gen["usage"] == {"input": 10, "output": 5, "total": 15} and gen["cost"] == {"total": 0.001}
    assert gen["metadata"] == {"purpose": "plan"} and gen["prompt"] == {"name": "plan", "version": 3}
    assert gen["duration_s"] == pytest.approx(0.5) and gen["start_time"] == pytest.approx(1_700_000_000.1)
    assert tool["level"] == "ERROR" and tool["status"] == {"code": "ERROR", "message": "boom"}
    assert tool["events"][0]["name"] == "retry" and tool["events"][0]["attributes"] == {"attempt": 1}


def test_plain_and_json_bodies_and_the_standard_path(receiver: OTLPReceiver) -> None:
    message = encode_spans(make_spans())
    plain = httpx.post(receiver.url + "/v1/traces", content=message.SerializeToString(),
                       headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    as_json = httpx.post(receiver.traces_url, content=json_format.MessageToJson(message),
                         headers={"Content-Type": "application/json"})  # fmt: skip
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/x-protobuf"
    assert as_json.status_code == 200 and as_json.json() == {}
    assert len(receiver.spans) == 6


def test_bad_requests_are_answered_and_recorded(receiver: OTLPReceiver) -> None:
    assert httpx.post(receiver.url + "/elsewhere", content=b"x").status_code == 404
    assert httpx.get(receiver.traces_url).status_code == 405
    garbage = httpx.post(receiver.traces_url, content=b"\xff\xff not protobuf", headers={"Content-Encoding": "gzip"})
    assert garbage.status_code == 400
    assert [r.status for r in receiver.requests] == [404, 405, 400]
    assert receiver.requests[2].error is not None and receiver.spans == []


def test_simulated_http_500_keeps_the_request_but_not_its_spans(receiver: OTLPReceiver) -> None:
    receiver.respond(status=500)
    exporter = OTLPSpanExporter(endpoint=receiver.traces_url)
    assert exporter.export(make_spans()) == SpanExportResult.FAILURE
    exporter.shutdown()
    [request] = receiver.requests
    assert request.status == 500 and len(request.spans) == 3
    assert receiver.spans == []
    receiver.respond()
    body = gzip.compress(encode_spans(make_spans()).SerializeToString())
    assert httpx.post(receiver.traces_url, content=body, headers={"Content-Encoding": "gzip"}).status_code == 200
    assert len(receiver.spans) == 3


def test_simulated_slow_answer(receiver: OTLPReceiver) -> None:
    receiver.respond(delay_s=0.5)
    body = encode_spans(make_spans()).SerializeToString()
    with pytest.raises(httpx.ReadTimeout):  # the client gives up before the answer comes
        httpx.post(receiver.traces_url, content=body, timeout=0.1)
    [request] = receiver.wait_for_requests(1)
    assert request.status == 200  # it did answer, after the client had given up
    start = time.perf_counter()
    assert httpx.post(receiver.traces_url, content=body, timeout=2).status_code == 200
    assert time.perf_counter() - start >= 0.5


def test_stop_while_slow_drops_the_connection_and_records_no_answer() -> None:
    receiver = OTLPReceiver(delay_s=30).start()
    try:
        with httpx.Client(timeout=5) as client:
            errors: list[BaseException] = []

            def send() -> None:
                try:
                    client.post(receiver.traces_url, content=b"")
                except httpx.HTTPError as exc:
                    errors.append(exc)

            thread = threading.Thread(target=send)
            thread.start()
            receiver.wait_for_arrivals(1)
            receiver.stop()
            thread.join(5)
            # The client was answered by a dropped connection, not by its own 5 s timeout.
            assert not thread.is_alive() and errors, errors
            assert not isinstance(errors[0], httpx.TimeoutException), errors
    finally:
        receiver.stop()
    assert [r.status for r in receiver.requests] == [0]


def test_down_refuses_connections_on_the_same_url_and_can_come_back() -> None:
    receiver = OTLPReceiver().start()
    url = receiver.traces_url
    receiver.stop()
    assert not receiver.running
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, content=b"")
    receiver.start()
    try:
        assert receiver.traces_url == url
        assert httpx.post(url, content=b"").status_code == 200  # an empty request is a valid, empty export
    finally:
        receiver.stop()


def test_waiting_for_what_never_comes_says_what_came(receiver: OTLPReceiver) -> None:
    with pytest.raises(TimeoutError, match="accepted 0 spans, not 1, in 0.1s"):
        receiver.wait_for_spans(1, timeout_s=0.1)
    with pytest.raises(TimeoutError, match="got 0 requests, not 2, in 0.1s"):
        receiver.wait_for_requests(2, timeout_s=0.1)


def test_trees_and_rendering() -> None:
    spans = decode_export_request(encode_spans(make_spans()).SerializeToString())
    [root] = span_tree(spans)
    assert [c["name"] for c in root["children"]] == ["plan", "fetch"]
    assert "children" not in spans[0]
    assert render_tree(spans).splitlines() == [
        "agent      run  1.000s",
        "  generation plan  0.500s  model=m  tokens=10/5  cost=$0.001000",
        "  tool       fetch  0.200s  ERROR  'boom'",
    ]


def test_trace_selection(receiver: OTLPReceiver) -> None:
    for _ in range(2):
        httpx.post(receiver.traces_url, content=encode_spans(make_spans()).SerializeToString())
    ids = sorted({s["trace_id"] for s in receiver.spans})
    assert len(ids) == 2
    with pytest.raises(ValueError, match="holds 2 traces"):
        receiver.trace()
    assert {s["trace_id"] for s in receiver.trace(ids[0])} == {ids[0]}
    assert receiver.render_tree(ids[1]).startswith("agent      run")
    receiver.reset()
    assert receiver.requests == [] and receiver.spans == []
