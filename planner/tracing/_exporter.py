"""`LangfuseExporter`: OpenTelemetry's OTLP/HTTP span exporter, aimed at Langfuse, reporting lost traces.

Imported only when tracing is configured (`planweave.planner.tracing.export` loads it lazily):
it imports OpenTelemetry and requests.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_trace_id

from planweave.planner.tracing.export import LOST, OTLP_PATH

if TYPE_CHECKING:
    from planweave.planner.tracing.export import TracingConfig

__all__ = ["LangfuseExporter", "ScopeFilter", "SharedExporter"]


class _Outcome(threading.local):
    error: BaseException | None = None
    status: int | None = None


class _RecordingSession(requests.Session):
    """Remembers, per thread, how the last request ended, so that a lost batch can say why (the
    exporter only returns FAILURE). The session is a documented parameter of the exporter."""

    def __init__(self) -> None:
        super().__init__()
        self.outcome = _Outcome()

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(*args, **kwargs)
        except BaseException as exc:
            self.outcome.error, self.outcome.status = exc, None
            raise
        self.outcome.error, self.outcome.status = None, response.status_code
        return response


class _Quiet(logging.Filter, threading.local):
    """Drops what OpenTelemetry's exporter logs while it exports for planweave (on that thread
    only): planweave reports a failed batch once, as a lost trace, and other exporters in the
    process still log as usual. Checked against opentelemetry-exporter-otlp-proto-http 1.45.2."""

    active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active


_QUIET = _Quiet()
for _name in (OTLPSpanExporter.__module__, "opentelemetry.exporter.otlp.common.http"):
    logging.getLogger(_name).addFilter(_QUIET)


class LangfuseExporter(OTLPSpanExporter):
    """Sends spans to Langfuse's OTLP endpoint, `{base_url}/api/public/otel/v1/traces`: OpenTelemetry's
    OTLP/HTTP exporter (protobuf, gzip, Basic auth with the public and secret keys), each batch
    bounded by `timeout_s`, its retries included. A batch that fails is dropped, and each trace
    in it is reported once (`LOST`: one warning naming it and saying why).
    """

    def __init__(self, config: TracingConfig) -> None:
        from langfuse import __version__ as sdk_version

        self.base_url = config.base_url
        self.timeout_s = config.timeout_s
        self.session = _RecordingSession()
        auth = base64.b64encode(f"{config.public_key}:{config.secret_key}".encode()).decode("ascii")
        super().__init__(
            endpoint=config.base_url.rstrip("/") + OTLP_PATH,
            headers={
                "Authorization": f"Basic {auth}",
                "x-langfuse-sdk-name": "python",
                "x-langfuse-sdk-version": sdk_version,
                "x-langfuse-public-key": config.public_key,
                "x-langfuse-ingestion-version": "4",
            },
            timeout=config.timeout_s,
            compression=Compression.Gzip,
            session=self.session,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        outcome = self.session.outcome
        outcome.error, outcome.status = None, None
        _QUIET.active = True
        try:
            result = super().export(spans)
        except Exception as exc:  # never the run's problem
            outcome.error, result = exc, SpanExportResult.FAILURE
        finally:
            _QUIET.active = False
        if result is not SpanExportResult.SUCCESS:
            trace_ids = [format_trace_id(s.context.trace_id) for s in spans if s.context is not None]
            LOST.report(trace_ids, self._reason(outcome.error, outcome.status))
        return result

    def _reason(self, error: BaseException | None, status: int | None) -> str:
        where = f"Langfuse at `{self.base_url}`"
        if isinstance(error, requests.Timeout):
            return f"{where} did not answer within {self.timeout_s:g}s"
        if isinstance(error, requests.ConnectionError):
            return f"{where} is unreachable ({_root_cause(error)})"
        if status is not None and status >= 300:
            hint = " (check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY)" if status in (401, 403) else ""
            return f"{where} answered HTTP {status}{hint}"
        detail = f" ({type(error).__name__}: {error})" if error is not None else ""
        return f"the spans could not be sent to {where}{detail}"


def _root_cause(error: BaseException) -> str:
    """The innermost cause of a connection error, in words ("Connection refused")."""
    seen: set[int] = set()
    cause: BaseException | None = error
    found = "the connection failed"
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            found = cause.strerror
        cause = cause.__cause__ or cause.__context__
    return found


class ScopeFilter(SpanProcessor):
    """Passes on to `inner` only the spans of one tracer's scope (planweave's provider also carries
    the Langfuse client's processor, which exports the SDK's own spans)."""

    def __init__(self, scope: str, inner: SpanProcessor) -> None:
        self.scope = scope
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.instrumentation_scope is not None and span.instrumentation_scope.name == self.scope:
            self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class SharedExporter(SpanExporter):
    """One exporter behind several processors: shut down when the last of them shuts down (an
    exporter shut down twice logs a warning; shut down early, it would drop the last batches)."""

    def __init__(self, inner: SpanExporter, users: int) -> None:
        self.inner = inner
        self._users = users
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export(spans)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.inner.shutdown()
