"""Getting traces to Langfuse: where they go, how they are sent, and which were lost.

    config = TracingConfig.from_env()     # None without LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY
    client = langfuse_client(config)      # one per public key and host, for the whole process
    ...                                   # `planweave.planner.tracing.subscriber` builds the spans on it
    shutdown(timeout_s=2.0)               # flush and close those clients, waiting a bounded time

The spans go out through `LangfuseExporter` (OTLP over HTTP: protobuf, gzip, Basic auth),
which never retries: a batch that fails is dropped, and each trace in it is reported once
(`LOST`), with one warning naming it. langfuse, OpenTelemetry and httpx are imported only
when a client or an exporter is made.

The public names here are re-exported by `planweave.planner.tracing.subscriber`; import them from there.
"""

from __future__ import annotations

import base64
import gzip
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["DEFAULT_BASE_URL", "LangfuseExporter", "TracingConfig", "langfuse_client", "shutdown"]

log = logging.getLogger("planweave.tracing")

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
OTLP_PATH = "/api/public/otel/v1/traces"


@dataclass(frozen=True)
class TracingConfig:
    """Where traces go. `from_env` reads the standard Langfuse variables."""

    public_key: str
    secret_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    project_id: str | None = None
    """Makes `trace_url` point straight at the project; without it the URL goes through
    Langfuse's `/trace/ID` redirect."""
    timeout_s: float = 5.0
    """How long one export request may take before its spans are given up."""
    flush_timeout_s: float = 2.0
    """How long the end of a run waits for its trace to be delivered."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TracingConfig | None:
        """The configuration in `LANGFUSE_PUBLIC_KEY`, `LANGFUSE_SECRET_KEY` and
        `LANGFUSE_BASE_URL` (or `LANGFUSE_HOST`); None when a key is missing or
        `LANGFUSE_TRACING_ENABLED=false`."""
        env = os.environ if environ is None else environ
        public, secret = env.get("LANGFUSE_PUBLIC_KEY", "").strip(), env.get("LANGFUSE_SECRET_KEY", "").strip()
        if env.get("LANGFUSE_TRACING_ENABLED", "true").strip().lower() == "false" or not (public or secret):
            return None
        if not (public and secret):
            missing = "LANGFUSE_SECRET_KEY" if public else "LANGFUSE_PUBLIC_KEY"
            _warn_once(f"config:{missing}", f"Langfuse tracing is off: `{missing}` is not set; set both keys to trace runs.")
            return None
        base_url = (env.get("LANGFUSE_BASE_URL") or env.get("LANGFUSE_HOST") or DEFAULT_BASE_URL).strip().rstrip("/")
        timeout = env.get("LANGFUSE_TIMEOUT", "").strip()
        return cls(
            public_key=public,
            secret_key=secret,
            base_url=base_url,
            project_id=env.get("LANGFUSE_PROJECT_ID", "").strip() or None,
            timeout_s=float(timeout) if timeout.replace(".", "", 1).isdigit() and float(timeout) > 0 else 5.0,
        )


# --- delivery ------------------------------------------------------------------------------------


class _LostTraces:
    """Which traces failed to reach Langfuse, so that each is reported once, whoever notices."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def report(self, trace_ids: Iterable[str], reason: str, *, certain: bool = True) -> None:
        with self._lock:
            new = [t for t in dict.fromkeys(trace_ids) if t not in self._reasons]
            for t in new:
                self._reasons[t] = reason
            while len(self._reasons) > self._limit:
                self._reasons.popitem(last=False)
        if new:
            which = f"trace {new[0]}" if len(new) == 1 else f"{len(new)} traces ({', '.join(new)})"
            fate = "is lost" if certain else "may be lost"
            log.warning("Langfuse tracing: %s; the %s %s (the run itself is not affected).", reason, which, fate)

    def reason(self, trace_id: str) -> str | None:
        with self._lock:
            return self._reasons.get(trace_id)


LOST = _LostTraces()


class LangfuseExporter:
    """Sends spans to Langfuse's OTLP endpoint: protobuf, gzip, Basic auth. It implements
    OpenTelemetry's `SpanExporter` interface (by duck typing, so that importing this module
    does not import OpenTelemetry).

    Unlike the stock OTLP exporter it never retries and never logs per batch: a batch
    that fails is dropped, and each trace in it is reported once (one warning). Each
    request is bounded by `timeout_s`.
    """

    def __init__(self, config: TracingConfig) -> None:
        import httpx

        from langfuse import __version__ as sdk_version

        self.endpoint = config.base_url.rstrip("/") + OTLP_PATH
        self.base_url = config.base_url
        self.timeout_s = config.timeout_s
        auth = base64.b64encode(f"{config.public_key}:{config.secret_key}".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {auth}",
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
            "x-langfuse-sdk-name": "python",
            "x-langfuse-sdk-version": sdk_version,
            "x-langfuse-public-key": config.public_key,
            "x-langfuse-ingestion-version": "4",
        }
        # `retries` only repeats failed connects (a stale pooled connection), never a sent request.
        self._client = httpx.Client(timeout=config.timeout_s, transport=httpx.HTTPTransport(retries=1))
        self._lock = threading.Lock()
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        import httpx
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult
        from opentelemetry.trace import format_trace_id

        if self._closed or not spans:
            return SpanExportResult.FAILURE if self._closed else SpanExportResult.SUCCESS
        trace_ids = [format_trace_id(s.context.trace_id) for s in spans if s.context is not None]
        where = f"Langfuse at `{self.base_url}`"
        try:
            body = gzip.compress(encode_spans(spans).SerializeToString(), compresslevel=6)
            with self._lock:
                response = self._client.post(self.endpoint, content=body, headers=self._headers)
        except httpx.TimeoutException:
            LOST.report(trace_ids, f"{where} did not answer within {self.timeout_s:g}s")
            return SpanExportResult.FAILURE
        except httpx.HTTPError as exc:
            LOST.report(trace_ids, f"{where} is unreachable ({type(exc).__name__}: {exc})")
            return SpanExportResult.FAILURE
        except Exception as exc:  # encoding or anything else: still never the run's problem
            LOST.report(trace_ids, f"the spans could not be sent to {where} ({type(exc).__name__}: {exc})")
            return SpanExportResult.FAILURE
        if response.status_code >= 300:
            hint = " (check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY)" if response.status_code in (401, 403) else ""
            LOST.report(trace_ids, f"{where} answered HTTP {response.status_code}{hint}")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._closed = True
        self._client.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@dataclass
class ManagedClient:
    """A Langfuse client and, when we made them, its tracer provider and exporter."""

    client: Langfuse
    provider: TracerProvider | None = None
    owned: bool = False
    """Made for one tracer (an injected exporter): shut down when that tracer closes."""

    def shutdown(self) -> None:
        """Flush and shut down the client, then its provider (blocks; may raise)."""
        self.client.shutdown()
        if self.provider is not None:
            self.provider.shutdown()

    def release(self) -> None:
        """What the tracer it was made for does on closing: shut an owned client down in the
        background; a shared one stays for the next tracer."""
        if not self.owned:
            return

        def work() -> None:
            try:
                self.shutdown()
            except Exception:
                log.debug("Langfuse client shutdown failed", exc_info=True)

        threading.Thread(target=work, name="planweave-trace-shutdown", daemon=True).start()


_CLIENTS: dict[tuple[str, str], ManagedClient] = {}
_CLIENTS_LOCK = threading.Lock()


def langfuse_client(config: TracingConfig, *, span_exporter: SpanExporter | None = None) -> Langfuse:
    """A Langfuse client sending to `config` through a `LangfuseExporter` (or `span_exporter`).

    One client per public key and host is kept for the process (the SDK keeps one per
    public key anyway). It has its own OpenTelemetry tracer provider, so it neither
    replaces nor joins a global one. If the application already made a Langfuse client for
    the same public key, the SDK hands back that one's pipeline and its own exporter is used.
    """
    return client_for(config, span_exporter).client


def client_for(config: TracingConfig, span_exporter: SpanExporter | None) -> ManagedClient:
    """The process-wide client for `config`, or (with `span_exporter`) a new one owned by one tracer."""
    key = (config.public_key, config.base_url)
    if span_exporter is None:
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = _build_client(config, LangfuseExporter(config), owned=False)
            return _CLIENTS[key]
    return _build_client(config, span_exporter, owned=True)


def _build_client(config: TracingConfig, exporter: Any, *, owned: bool) -> ManagedClient:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    # The SDK keeps one pipeline per public key for the whole process: a client made for one
    # tracer gets a key of its own, or it would share (and on close, shut down) another's.
    public_key = f"{config.public_key}~{os.urandom(6).hex()}" if owned else config.public_key
    client = Langfuse(
        public_key=public_key,
        secret_key=config.secret_key,
        base_url=config.base_url,
        timeout=max(1, math.ceil(config.timeout_s)),
        tracer_provider=provider,
        span_exporter=exporter,
    )
    return ManagedClient(client, provider, owned)


def shutdown(timeout_s: float = 2.0) -> bool:
    """Flush and shut down the clients `create_tracer` made, waiting `timeout_s` at most
    (the SDK also does this at exit, without a bound). True when everything finished in time.
    Tracing with the same public key is then over for this process: the SDK keeps one
    pipeline per key, and it stays shut down."""
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    done = threading.Event()

    def work() -> None:
        try:
            for c in clients:
                c.shutdown()
        except Exception:
            log.debug("Langfuse client shutdown failed", exc_info=True)
        finally:
            done.set()

    threading.Thread(target=work, name="planweave-trace-shutdown", daemon=True).start()
    return done.wait(timeout_s)


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)
