"""A local OTLP/HTTP trace receiver for tests: what Langfuse would have received, decoded.

:class:`OTLPReceiver` listens on ``127.0.0.1`` (a free port) and accepts what the Langfuse
SDK and planweave's tracer send: ``POST /api/public/otel/v1/traces`` (or ``/v1/traces``)
carrying a protobuf ``ExportTraceServiceRequest``, gzip-compressed or not (OTLP/JSON is
accepted too). Each span is decoded into a plain dict, with the Langfuse attributes
(observation type, input, output, metadata, model, usage, cost, trace name, ...) unpacked::

    from planweave.planner.testing.otlp import OTLPReceiver

    with OTLPReceiver() as receiver:
        tracer = create_tracer(public_key="pk-lf-test", secret_key="sk-lf-test", base_url=receiver.url)
        ...                                   # run something with the tracer, then close it
        receiver.wait_for_spans(5)
        print(receiver.render_tree())         # the trace tree, one observation a line

It can misbehave on purpose: ``receiver.respond(status=500)`` fails every later export,
``receiver.respond(delay_s=3)`` answers slowly, ``receiver.hold()`` keeps every export
unanswered until ``receiver.release()`` (a Langfuse that hangs; ``receiver.held`` counts those
waiting), and ``receiver.stop()`` takes it down
(``receiver.url`` then refuses connections). Failed exports are kept in
:attr:`OTLPReceiver.requests` but their spans are not in :attr:`OTLPReceiver.spans`, as
with a real server. Only the standard library and ``opentelemetry-proto`` are used.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from planweave.planner.testing._http import HTTPServer, RequestHandler

__all__ = ["TRACES_PATHS", "ExportRequest", "OTLPReceiver", "decode_export_request", "render_tree", "span_tree"]

TRACES_PATHS = ("/api/public/otel/v1/traces", "/v1/traces")
"""Where spans are accepted: Langfuse's OTLP endpoint and the standard OTLP one."""

_STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_LF = "langfuse.observation."
_LF_TRACE_META = "langfuse.trace.metadata."


@dataclass
class ExportRequest:
    """One request the receiver got, whatever it answered."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body_size: int
    """Bytes on the wire (compressed, when it was)."""
    status: int
    """What the receiver answered (0: nothing, it was stopped while waiting to answer)."""
    spans: list[dict[str, Any]] = field(default_factory=list)
    """Decoded spans, also for requests it refused."""
    error: str | None = None
    """Why the body could not be decoded, if it could not."""
    received_at: float = field(default_factory=time.time)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """The (public key, secret key) pair of a `Basic` `Authorization` header."""
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class OTLPReceiver:
    """An OTLP/HTTP trace endpoint on 127.0.0.1, in a background thread.

    Args:
        status: HTTP status for every export (change it later with :meth:`respond`).
        delay_s: seconds to wait before answering.
        host, port: bind address; ``port=0`` picks a free port.
        verbose: log every request to stderr.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self, *, status: int = 200, delay_s: float = 0.0, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
    ) -> None:
        self.verbose = verbose
        self._host = host
        self._port = port
        self._status = status
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[ExportRequest] = []
        self._arrived = 0
        self._stopping = threading.Event()
        self._open = threading.Event()
        self._open.set()
        self._held = 0
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Bind and serve in a daemon thread. After :meth:`stop` it binds the same port again."""
        if self._httpd is not None:
            raise RuntimeError("the OTLP receiver is already running")
        self._stopping.clear()
        self._httpd = HTTPServer((self._host, self._port), self)
        self._port = int(self._httpd.server_address[1])
        self._thread = self._httpd.serve_in_thread(f"otlp-receiver-{self._port}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every connection (a slow answer in progress is dropped).
        :attr:`url` keeps its port, so clients now get "connection refused". Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.stop(thread, timeout)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the OTLP receiver has not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The base URL to use as `LANGFUSE_BASE_URL`, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self._host}:{self.port}"

    @property
    def traces_url(self) -> str:
        """The full OTLP endpoint, for a plain OTLP exporter."""
        return self.url + TRACES_PATHS[0]

    # --- behaviour ----------------------------------------------------------------------------

    def respond(self, status: int = 200, delay_s: float = 0.0) -> None:
        """Answer later exports with `status`, after `delay_s` seconds."""
        with self._lock:
            self._status, self._delay_s = status, delay_s

    def hold(self) -> None:
        """Keep later exports unanswered until :meth:`release` (or :meth:`stop`, which drops them)."""
        self._open.clear()

    def release(self) -> None:
        """Answer the held exports (and the later ones) as :meth:`respond` says."""
        self._open.set()

    @property
    def held(self) -> int:
        """How many exports are waiting for :meth:`release` now."""
        with self._lock:
            return self._held

    def wait_for_held(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until `count` exports are being held; `TimeoutError` saying how many are."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._held < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the OTLP receiver holds {self._held} exports, not {count}, after {timeout_s:g}s")
                self._changed.wait(left)

    # --- what was received --------------------------------------------------------------------

    @property
    def requests(self) -> list[ExportRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def spans(self) -> list[dict[str, Any]]:
        """Every span of every export that was accepted (2xx), in arrival order."""
        with self._lock:
            return [s for r in self._requests if 200 <= r.status < 300 for s in r.spans]

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int = 1, timeout_s: float = 5.0) -> list[ExportRequest]:
        """Wait until `count` requests have been answered; `TimeoutError` saying how many came."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the OTLP receiver got {len(self._requests)} requests, not {count}, in {timeout_s:g}s")
                self._changed.wait(left)
            return list(self._requests)

    def wait_for_arrivals(self, count: int = 1, timeout_s: float = 5.0) -> int:
        """Wait until `count` requests have been read, answered or not (a slow answer may still
        be pending); returns how many have. `TimeoutError` saying how many came."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._arrived < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the OTLP receiver read {self._arrived} requests, not {count}, in {timeout_s:g}s")
                self._changed.wait(left)
            return self._arrived

    def wait_for_spans(self, count: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least `count` spans have been accepted; returns them all."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans
            if len(spans) >= count:
                return spans
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the OTLP receiver accepted {len(spans)} spans, not {count}, in {timeout_s:g}s")
            with self._changed:
                self._changed.wait(min(left, 0.05))

    def trace(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The accepted spans of one trace (default: the only one; `ValueError` if there are several)."""
        spans = self.spans
        ids = sorted({s["trace_id"] for s in spans})
        if trace_id is None:
            if len(ids) > 1:
                raise ValueError(f"the receiver holds {len(ids)} traces ({', '.join(ids)}); pass `trace_id`")
            return spans
        return [s for s in spans if s["trace_id"] == trace_id]

    def tree(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The spans of a trace nested under `children` (see :func:`span_tree`)."""
        return span_tree(self.trace(trace_id))

    def render_tree(self, trace_id: str | None = None) -> str:
        """The trace as indented text (see :func:`render_tree`)."""
        return render_tree(self.trace(trace_id))

    # --- HTTP ---------------------------------------------------------------------------------

    def _dispatch(self, handler: RequestHandler) -> None:
        with self._lock:
            status, delay_s = self._status, self._delay_s
        path = handler.path.split("?", 1)[0].rstrip("/")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = ExportRequest(method=handler.command, path=path, headers=headers, body_size=len(body), status=status)
        if handler.command != "POST" or path not in TRACES_PATHS:
            record.status = 404 if path not in TRACES_PATHS else 405
        else:
            try:
                record.spans = decode_export_request(
                    body, headers.get("content-encoding", ""), headers.get("content-type", "")
                )
            except Exception as exc:  # noqa: BLE001 - a bad body is answered, not raised
                record.status, record.error = 400, f"{type(exc).__name__}: {exc}"
        with self._changed:
            self._arrived += 1
            self._changed.notify_all()
        stopped = False
        if not self._open.is_set():
            with self._changed:
                self._held += 1
                self._changed.notify_all()
            while not self._open.wait(0.01) and not self._stopping.is_set():
                pass
            with self._changed:
                self._held -= 1
            stopped = self._stopping.is_set()
        if stopped or (delay_s > 0 and self._stopping.wait(delay_s)):
            record.status = 0  # stopped while "slow": the connection is dropped without an answer
            with self._changed:
                self._requests.append(record)
                self._changed.notify_all()
            handler.close_connection = True
            return
        json_body = "json" in headers.get("content-type", "")
        if 200 <= record.status < 300:
            payload = b"{}" if json_body else ExportTraceServiceResponse().SerializeToString()
            content_type = "application/json" if json_body else "application/x-protobuf"
        else:
            payload = json.dumps({"error": record.error or f"simulated HTTP {record.status}"}).encode()
            content_type = "application/json"
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        try:
            handler.send_response(record.status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:  # the client gave up waiting
            handler.close_connection = True


# --- decoding -----------------------------------------------------------------------------------


def decode_export_request(body: bytes, content_encoding: str = "", content_type: str = "") -> list[dict[str, Any]]:
    """The spans of an OTLP ``ExportTraceServiceRequest`` body as plain dicts.

    Each dict has the OpenTelemetry fields (``trace_id``, ``span_id``, ``parent_span_id``
    as hex, ``name``, ``start_time``/``end_time`` in seconds, ``duration_s``,
    ``attributes``, ``status`` {code, message}, ``events``, ``scope``, ``resource``) and the
    Langfuse view: ``type`` (observation type), ``input``, ``output``, ``metadata``,
    ``level``, ``status_message``, ``model``, ``usage``, ``cost``, ``prompt``,
    ``completion_start_time`` and ``trace`` (trace-level name, user_id, session_id, tags,
    metadata); JSON-encoded attribute values are decoded.
    """
    encoding = content_encoding.strip().lower()
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    elif encoding not in ("", "identity"):
        raise ValueError(f"unsupported Content-Encoding `{content_encoding}`")
    request = ExportTraceServiceRequest()
    if "json" in content_type:
        json_format.Parse(body.decode(), request)
    else:
        request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                attributes = _attributes(span.attributes)
                start, end = span.start_time_unix_nano / 1e9, span.end_time_unix_nano / 1e9
                spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "name": span.name,
                        "start_time": start,
                        "end_time": end,
                        "duration_s": end - start,
                        "attributes": attributes,
                        "status": {"code": _STATUS_CODES.get(span.status.code, "UNSET"), "message": span.status.message},
                        "events": [
                            {"name": e.name, "time": e.time_unix_nano / 1e9, "attributes": _attributes(e.attributes)}
                            for e in span.events
                        ],
                        "scope": scope.name,
                        "scope_attributes": _attributes(scope.attributes),
                        "resource": resource,
                        **_langfuse_view(attributes),
                    }
                )
    return spans


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values if isinstance(kv, KeyValue)}
    return getattr(value, kind)


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # Langfuse sends plain strings unencoded


def _langfuse_view(attrs: dict[str, Any]) -> dict[str, Any]:
    metadata = {k[len(_LF + "metadata.") :]: _json(v) for k, v in attrs.items() if k.startswith(_LF + "metadata.")}
    if _LF + "metadata" in attrs:
        metadata = {**_as_dict(_json(attrs[_LF + "metadata"])), **metadata}
    trace: dict[str, Any] = {}
    for key, name in (("langfuse.trace.name", "name"), ("user.id", "user_id"), ("session.id", "session_id")):
        if key in attrs:
            trace[name] = attrs[key]
    if "langfuse.trace.tags" in attrs:
        trace["tags"] = list(attrs["langfuse.trace.tags"])
    trace_meta = {k[len(_LF_TRACE_META) :]: _json(v) for k, v in attrs.items() if k.startswith(_LF_TRACE_META)}
    if trace_meta:
        trace["metadata"] = trace_meta
    prompt = {
        k: attrs[_LF + "prompt." + k] for k in ("name", "version") if _LF + "prompt." + k in attrs
    }
    return {
        "type": attrs.get(_LF + "type", "span"),
        "input": _json(attrs.get(_LF + "input")),
        "output": _json(attrs.get(_LF + "output")),
        "metadata": metadata,
        "level": attrs.get(_LF + "level", "DEFAULT"),
        "status_message": attrs.get(_LF + "status_message"),
        "model": attrs.get(_LF + "model.name"),
        "usage": _json(attrs.get(_LF + "usage_details")),
        "cost": _json(attrs.get(_LF + "cost_details")),
        "prompt": prompt or None,
        "completion_start_time": _json(attrs.get(_LF + "completion_start_time")),
        "trace": trace,
    }


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


# --- trees --------------------------------------------------------------------------------------


def span_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest spans under their parents (a ``children`` list on each, by start time).
    Returns the roots: spans whose parent is not among `spans`. The input is not changed."""
    nodes = {s["span_id"]: {**s, "children": []} for s in spans}
    roots: list[dict[str, Any]] = []
    for node in sorted(nodes.values(), key=lambda n: (n["start_time"], n["end_time"])):
        parent = nodes.get(node["parent_span_id"] or "")
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def render_tree(spans: list[dict[str, Any]]) -> str:
    """One line per observation, indented by depth: type, name, then what matters for it
    (duration, model, tokens, cost, level, status message)."""
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        lines.append("  " * depth + _describe(node))
        for child in node["children"]:
            walk(child, depth + 1)

    for root in span_tree(spans):
        walk(root, 0)
    return "\n".join(lines)


def _describe(span: dict[str, Any]) -> str:
    parts = [f"{span['type']:<10} {span['name']}"]
    if span["type"] != "event":
        parts.append(f"{span['duration_s']:.3f}s")
    if span["model"]:
        parts.append(f"model={span['model']}")
    usage = span["usage"]
    if isinstance(usage, dict) and usage:
        parts.append(f"tokens={usage.get('input', 0)}/{usage.get('output', 0)}")
    cost = span["cost"]
    if isinstance(cost, dict) and "total" in cost:
        parts.append(f"cost=${cost['total']:.6f}")
    if span["level"] != "DEFAULT":
        parts.append(span["level"])
    if span["status_message"]:
        message = str(span["status_message"])
        parts.append(repr(message if len(message) <= 60 else message[:57] + "..."))
    return "  ".join(parts)
