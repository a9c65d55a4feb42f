"""Getting traces to Langfuse: where they go, how they are sent, and which were lost.

    config = TracingConfig.from_env()     # None without LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY
    client = langfuse_client(config)      # one per public key and host, for the whole process
    ...                                   # `planweave.planner.tracing.subscriber` builds the spans on it
    shutdown(timeout_s=2.0)               # flush and close those clients, waiting a bounded time

planweave owns the OpenTelemetry pipeline: a `TracerProvider` of its own (it neither replaces nor
joins a global one), whose tracer (`TracePipeline.tracer`, scope `planweave`) starts the spans, and
OpenTelemetry's OTLP/HTTP exporter (`LangfuseExporter`, a thin subclass) sending them to Langfuse's
OTLP endpoint, `{base_url}/api/public/otel/v1/traces` (protobuf, gzip, Basic auth with the public
and secret keys). The Langfuse client on that provider holds the batch processor and gives the
observation classes their client. A batch that fails is dropped, and each trace in it is reported
once (`LOST`), with one warning naming it and saying why. langfuse, OpenTelemetry and requests are
imported only when a client or an exporter is made.

The public names here are re-exported by `planweave.planner.tracing.subscriber`; import them from there.
"""

from __future__ import annotations

import atexit
import base64
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from planweave.planner.tracing._exporter import LangfuseExporter as LangfuseExporter

__all__ = [
    "DEFAULT_BASE_URL", "LangfuseExporter", "TracePipeline", "TracingConfig", "langfuse_client", "pipeline_for",
    "shutdown",
]

log = logging.getLogger("planweave.tracing")

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
OTLP_PATH = "/api/public/otel/v1/traces"
EXIT_TIMEOUT_S = 0.5
"""How long the interpreter's exit waits for traces still being delivered (the run itself already
waited `flush_timeout_s` for its trace): a Langfuse that hangs never holds up the exit longer."""
TRACER_SCOPE = "planweave"
"""The instrumentation scope of planweave's spans (Langfuse's processor exports them by this name)."""


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


class TracePipeline:
    """planweave's OpenTelemetry pipeline to one Langfuse project: a `TracerProvider` it owns, the
    `tracer` that starts planweave's spans, a batch processor exporting them, and the Langfuse
    client made on the same provider (its observation classes need a client).

    Only spans of planweave's scope go through planweave's processor; the client's own processor
    exports the SDK's spans. So every span is sent once, even when the SDK hands back the pipeline
    of a Langfuse client the application made for the same public key.
    """

    def __init__(self, config: TracingConfig, exporter: SpanExporter, *, owned: bool) -> None:
        from langfuse import Langfuse
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from planweave import __version__
        from planweave.planner.tracing._exporter import ScopeFilter, SharedExporter

        self.owned = owned
        """Made for one tracer (an injected exporter): shut down when that tracer closes."""
        # Not `shutdown_on_exit`: OpenTelemetry's exit hook waits for a hung export without a
        # bound; planweave's own (`_at_exit`) waits `EXIT_TIMEOUT_S` at most.
        self.provider = TracerProvider(resource=Resource.create({"service.name": "planweave"}), shutdown_on_exit=False)
        if owned:  # one injected exporter for both processors (below)
            exporter = SharedExporter(exporter, users=2)
        self.provider.add_span_processor(ScopeFilter(TRACER_SCOPE, BatchSpanProcessor(exporter, schedule_delay_millis=1000)))
        self.tracer: Tracer = self.provider.get_tracer(TRACER_SCOPE, __version__)
        # The SDK keeps one pipeline per public key for the whole process: a client made for one
        # tracer gets a key of its own, or it would share (and on close, shut down) another's.
        public_key = f"{config.public_key}~{os.urandom(6).hex()}" if owned else config.public_key
        self.client: Langfuse = Langfuse(
            public_key=public_key,
            secret_key=config.secret_key,
            base_url=config.base_url,
            timeout=max(1, math.ceil(config.timeout_s)),
            tracer_provider=self.provider,
            # An exporter of its own: the two processors each shut theirs down.
            span_exporter=exporter if owned else _new_exporter(config),
        )
        if not owned:
            _exit_hook_after(self.client)

    def flush(self) -> None:
        """Export everything started so far (blocks: callers bound the wait)."""
        self.provider.force_flush()
        self.client.flush()

    def shutdown(self) -> None:
        """Flush and shut down the client, then the provider (blocks; may raise)."""
        self.client.shutdown()
        self.provider.shutdown()

    def release(self) -> None:
        """What the tracer it was made for does on closing: shut an owned pipeline down in the
        background; a shared one stays for the next tracer."""
        if not self.owned:
            return

        def work() -> None:
            try:
                self.shutdown()
            except Exception:
                log.debug("Langfuse client shutdown failed", exc_info=True)

        threading.Thread(target=work, name="planweave-trace-shutdown", daemon=True).start()


def _new_exporter(config: TracingConfig) -> SpanExporter:
    from planweave.planner.tracing._exporter import LangfuseExporter

    return LangfuseExporter(config)


_PIPELINES: dict[tuple[str, str], TracePipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def langfuse_client(config: TracingConfig, *, span_exporter: SpanExporter | None = None) -> Langfuse:
    """A Langfuse client sending to `config` through a `LangfuseExporter` (or `span_exporter`),
    on planweave's pipeline for `config` (see `pipeline_for`)."""
    return pipeline_for(config, span_exporter).client


def pipeline_for(config: TracingConfig, span_exporter: SpanExporter | None = None) -> TracePipeline:
    """The process-wide pipeline for `config` (one per public key and host), or (with
    `span_exporter`) a new one owned by one tracer."""
    key = (config.public_key, config.base_url)
    if span_exporter is None:
        with _PIPELINES_LOCK:
            if key not in _PIPELINES:
                _PIPELINES[key] = TracePipeline(config, _new_exporter(config), owned=False)
            return _PIPELINES[key]
    return TracePipeline(config, span_exporter, owned=True)


def shutdown(timeout_s: float = 2.0) -> bool:
    """Flush and shut down the clients `create_tracer` made, waiting `timeout_s` at most
    (the SDK also does this at exit, without a bound: shutting a client down cancels that).
    True when everything finished in time; otherwise delivery goes on in daemon threads,
    which do not hold up the interpreter's exit. Tracing with the same public key is then
    over for this process: the SDK keeps one pipeline per key, and it stays shut down."""
    with _PIPELINES_LOCK:
        pipelines = list(_PIPELINES.values())
        _PIPELINES.clear()
    deadline = time.monotonic() + max(0.0, timeout_s)
    finished = []
    for pipeline in pipelines:  # one thread each: a hung one does not keep the others waiting
        done = threading.Event()
        finished.append(done)

        def work(pipeline: TracePipeline = pipeline, done: threading.Event = done) -> None:
            try:
                pipeline.shutdown()
            except Exception:
                log.debug("Langfuse client shutdown failed", exc_info=True)
            finally:
                done.set()

        threading.Thread(target=work, name="planweave-trace-shutdown", daemon=True).start()
    return all(done.wait(max(0.0, deadline - time.monotonic())) for done in finished)


def _at_exit() -> None:
    """At the interpreter's exit: deliver what is left, for `EXIT_TIMEOUT_S` at most.

    Runs before the Langfuse SDK's own exit hook (`_exit_hook_after`), whose unbounded flush
    it replaces: shutting the client down (in `shutdown`'s thread) unregisters that hook."""
    if not shutdown(EXIT_TIMEOUT_S):
        log.debug("Langfuse tracing: delivery still pending at exit after %gs; not waiting longer", EXIT_TIMEOUT_S)


def _exit_hook_after(client: Langfuse) -> None:
    """(Re-)register `_at_exit` after `client` registered its own hook: exit hooks run last
    registered first."""
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)


def __getattr__(name: str) -> Any:
    # `LangfuseExporter` imports OpenTelemetry and requests: only when it is asked for.
    if name == "LangfuseExporter":
        from planweave.planner.tracing._exporter import LangfuseExporter

        return LangfuseExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
