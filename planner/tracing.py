"""Langfuse tracing of runs, built from the run's events and nothing else.

    tracer = create_tracer(model=planner.model, session_id="chat-42", user_id="ana", tags=["prod"])
    result = await planner.run(goal, subscribers=[tracer] if tracer else [])
    await tracer.aclose()                       # ends the trace; waits `flush_timeout_s` at most
    print(tracer.trace_id, tracer.trace_url)

`create_tracer` returns None unless `LANGFUSE_PUBLIC_KEY` and `LANGFUSE_SECRET_KEY` are set
(the host is `LANGFUSE_BASE_URL`, else `LANGFUSE_HOST`, else Langfuse Cloud): without keys
nothing is imported, sent or logged. A `LangfuseTracer` is an event subscriber, one per run.
It turns the events into one trace that reads like the run:

    agent       planweave              the run: goal in, answer out, status, usage, prompts
      chain     round 1                one planning round (planner runs only)
        generation plan                each LLM call: model, prompt, messages, output, tokens, cost
        event   plan emitted           the steps the round added
        tool    fetch                  each step: resolved args, output, attempts, status
          event retry 1                each retry: its error and delay
          generation llm               an `llm` tool call, under its step
        event   report skipped         a step skipped by its condition (or cancelled, restored)
        generation join
        event   replan                 each decision: finish, replan, budget_stop, cancel
      chain     round 2 ...

Observations carry the events' own times, so durations are the real ones. Every value is
masked (`executor.masking.Masker`) and long strings are cut before it is recorded.

Tracing never slows down or breaks a run: the subscriber only queues the event (about 15
microseconds a step, where building the spans in place costs about 300); one worker thread
builds the spans and the SDK's batch processor exports them in the background; nothing
raises into the run; `flush`/`aclose` wait a bounded time. If Langfuse is unreachable, slow
or failing, the trace is lost with one warning naming the trace, and the run goes on.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executor.events import RunEvent
from executor.masking import Masker

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = [
    "DEFAULT_BASE_URL",
    "LangfuseExporter",
    "LangfuseTracer",
    "TracingConfig",
    "create_tracer",
    "langfuse_client",
    "shutdown",
]

log = logging.getLogger("planweave.tracing")

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
OTLP_PATH = "/api/public/otel/v1/traces"
_ROOT_LEVEL = {"failed": "ERROR", "budget_exceeded": "WARNING", "cancelled": "WARNING"}


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
class _Client:
    """A Langfuse client and, when we made them, its tracer provider and exporter."""

    client: Langfuse
    provider: TracerProvider | None = None
    owned: bool = False
    """Made for one tracer (an injected exporter): shut down when that tracer closes."""


_CLIENTS: dict[tuple[str, str], _Client] = {}
_CLIENTS_LOCK = threading.Lock()


def langfuse_client(config: TracingConfig, *, span_exporter: SpanExporter | None = None) -> Langfuse:
    """A Langfuse client sending to `config` through a `LangfuseExporter` (or `span_exporter`).

    One client per public key and host is kept for the process (the SDK keeps one per
    public key anyway). It has its own OpenTelemetry tracer provider, so it neither
    replaces nor joins a global one. If the application already made a Langfuse client for
    the same public key, the SDK hands back that one's pipeline and its own exporter is used.
    """
    return _client_for(config, span_exporter).client


def _client_for(config: TracingConfig, span_exporter: SpanExporter | None) -> _Client:
    key = (config.public_key, config.base_url)
    if span_exporter is None:
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = _build_client(config, LangfuseExporter(config), owned=False)
            return _CLIENTS[key]
    return _build_client(config, span_exporter, owned=True)


def _build_client(config: TracingConfig, exporter: Any, *, owned: bool) -> _Client:
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
    return _Client(client, provider, owned)


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
                c.client.shutdown()
                if c.provider is not None:
                    c.provider.shutdown()
        except Exception:
            log.debug("Langfuse client shutdown failed", exc_info=True)
        finally:
            done.set()

    threading.Thread(target=work, name="planweave-trace-shutdown", daemon=True).start()
    return done.wait(timeout_s)


class _Worker:
    """One daemon thread builds the spans of every tracer, in the order the events came.

    Building a span runs the SDK's serialisation and media scan (a few hundred microseconds);
    done in the subscriber, that would hold up the event loop of the run being traced.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        self._queue.put((fn, args))
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="planweave-tracing", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                fn(*args)
            except Exception:  # handlers catch their own errors; this is the last resort
                log.debug("tracing worker task failed", exc_info=True)
            if self._queue.empty():
                continue
            time.sleep(0)  # let the event loop's thread have the GIL between spans


_WORKER = _Worker()


# --- the tracer ----------------------------------------------------------------------------------


@dataclass
class _StepState:
    step_id: str
    tool: str
    parent: Any
    added_at: float
    deps: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    span: Any = None
    started_at: float | None = None
    args: dict[str, Any] = field(default_factory=dict)
    ended: bool = False


class LangfuseTracer:
    """Builds one Langfuse trace from one run's events. Call it with every event, in order.

    Args:
        client: the Langfuse client to send through (see `langfuse_client`, `create_tracer`).
        name: the trace's name (the same for every run, so Langfuse can compare them).
        planner: a planner run: steps nest under planning rounds, and the trace ends with
            `PlannerFinished`. For a plain executor run (False) it ends with `RunFinished`.
        model, session_id, user_id, tags, metadata: recorded on the trace.
        masker: masks every recorded value (default: `Masker.from_env()`).
        base_url, project_id: for `trace_url` (default: the client's host; "" for none).
        flush_timeout_s: how long `close`/`aclose` wait for delivery.
        max_chars: longer strings are cut (after masking).

    The tracer never raises from `__call__`; a bug in it is logged once and the run goes on.
    """

    def __init__(
        self,
        client: Langfuse,
        *,
        name: str = "planweave",
        planner: bool = True,
        model: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        masker: Masker | None = None,
        base_url: str | None = None,
        project_id: str | None = None,
        flush_timeout_s: float = 2.0,
        max_chars: int = 50_000,
        _owned: _Client | None = None,
    ) -> None:
        from langfuse import (
            LangfuseAgent,
            LangfuseChain,
            LangfuseEvent,
            LangfuseGeneration,
            LangfuseOtelSpanAttributes,
            LangfuseSpan,
            LangfuseTool,
        )

        self._attr = LangfuseOtelSpanAttributes
        self._classes: dict[str, Any] = {
            "agent": LangfuseAgent,
            "chain": LangfuseChain,
            "event": LangfuseEvent,
            "generation": LangfuseGeneration,
            "span": LangfuseSpan,
            "tool": LangfuseTool,
        }
        self.client = client
        self.planner = planner
        self.masker = masker if masker is not None else Masker.from_env()
        self.flush_timeout_s = flush_timeout_s
        self.max_chars = max_chars
        self._owned = _owned
        # The SDK's public `start_observation` cannot take a start time; events arrive with
        # their own times (an LLM call is reported when it ends), so spans are started on the
        # client's tracer and wrapped in the SDK's public observation classes, as the SDK's
        # own `create_event` does.
        self._tracer: Any = getattr(client, "_otel_tracer", None)
        if self._tracer is None:
            raise TypeError("this Langfuse SDK has no `_otel_tracer`; planweave tracing needs langfuse>=3")

        trace_meta = {"model": model, **dict(metadata or {})}
        self._trace_attrs: dict[str, Any] = {self._attr.TRACE_NAME: name}
        if session_id:
            self._trace_attrs[self._attr.TRACE_SESSION_ID] = str(session_id)
        if user_id:
            self._trace_attrs[self._attr.TRACE_USER_ID] = str(user_id)
        tag_list = [str(t) for t in tags]
        if tag_list:
            self._trace_attrs[self._attr.TRACE_TAGS] = tag_list
        self._trace_attrs.update(self._trace_meta_attrs(trace_meta))

        self._steps: dict[str, _StepState] = {}
        self._rounds: dict[int, Any] = {}
        self._round = 0
        self._prompts: dict[str, dict[str, str]] = {}
        self._answer: list[str] = []
        self._status: str | None = None
        self._error: str | None = None
        self._run_id: str | None = None
        self._ended = False
        self._ended_requested = False
        self._closed = False
        self._broken = False

        self._root = self._start(None, "agent", name, time.time(), metadata={"model": model} if model else None)
        self.trace_id: str = self._root.trace_id
        host = (getattr(client, "_base_url", None) if base_url is None else base_url) or ""
        host = host.rstrip("/")
        self.trace_url: str | None = None
        if host:
            self.trace_url = (
                f"{host}/project/{project_id}/traces/{self.trace_id}" if project_id else f"{host}/trace/{self.trace_id}"
            )

    # --- the subscriber ---------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        """Take one event. Costs a queue append: the spans are built on the tracing worker thread."""
        handler = _HANDLERS.get(event.kind)
        if handler is not None and not self._ended_requested:
            _WORKER.submit(self._handle, handler, event)

    def _handle(self, handler: Callable[[LangfuseTracer, Any], None], event: Any) -> None:
        try:
            handler(self, event)
        except Exception:  # tracing must never break a run
            if not self._broken:
                self._broken = True
                log.warning("Langfuse tracing failed on a `%s` event; the trace may be incomplete.", event.kind, exc_info=True)

    # --- ending -----------------------------------------------------------------------------

    def end(self, status: str | None = None, at: float | None = None) -> None:
        """End the trace (what the run's final event does). Idempotent; later events are ignored."""
        if self._ended_requested:
            return
        self._ended_requested = True
        _WORKER.submit(self._end, status, time.time() if at is None else at)

    def _end(self, status: str | None = None, at: float | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        at = time.time() if at is None else at
        status = status or self._status or "cancelled"
        for state in self._steps.values():
            if state.span is not None and not state.ended:
                state.ended = True
                state.span.update(level="WARNING", status_message="the run ended before the step did")
                state.span.end(end_time=_ns(at))
        for number in sorted(self._rounds):
            self._end_round(number, at)
        answer = "".join(self._answer) or None
        self._root.update(
            output=self._clean(answer),
            level=_ROOT_LEVEL.get(status),
            status_message=self._clean(self._error) if self._error else None,
            metadata=self._clean({"status": status, "run_id": self._run_id, "prompts": self._prompts or None}),
        )
        final = {"status": status}
        if self._prompts:
            final["prompts"] = ", ".join(f"{n}@{p.get('version', '?')}" for n, p in sorted(self._prompts.items()))
        self._root._otel_span.set_attributes(self._trace_meta_attrs(final))
        self._root.end(end_time=_ns(at))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send what is buffered; wait `timeout_s` at most (default `flush_timeout_s`; 0: do not
        wait). True when the trace was delivered. Blocks the calling thread: in async code use `aflush`."""
        done = self._flush_in_background()
        return self._flushed(done.wait(self._timeout(timeout_s)), timeout_s)

    async def aflush(self, timeout_s: float | None = None) -> bool:
        """`flush` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        waiter = asyncio.Event()
        done = self._flush_in_background(lambda: loop.call_soon_threadsafe(waiter.set))
        try:
            async with asyncio.timeout(self._timeout(timeout_s)):
                await waiter.wait()
        except TimeoutError:
            pass
        return self._flushed(done.is_set(), timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """End the trace (if the run's final event did not) and flush it; see `flush`."""
        self.end()
        if self._closed:
            return LOST.reason(self.trace_id) is None
        self._closed = True
        ok = self.flush(timeout_s)
        self._release()
        return ok

    async def aclose(self, timeout_s: float | None = None) -> bool:
        """`close` without blocking the event loop."""
        self.end()
        if self._closed:
            return LOST.reason(self.trace_id) is None
        self._closed = True
        ok = await self.aflush(timeout_s)
        self._release()
        return ok

    def _timeout(self, timeout_s: float | None) -> float:
        return max(0.0, self.flush_timeout_s if timeout_s is None else timeout_s)

    def _flush_in_background(self, then: Callable[[], object] | None = None) -> threading.Event:
        # A daemon thread, not the loop's executor: `asyncio.run` waits for executor threads
        # at exit, so a slow Langfuse would hold up the program.
        done = threading.Event()
        drained = threading.Event()
        _WORKER.submit(drained.set)  # runs after every event this tracer was given so far

        def work() -> None:
            try:
                drained.wait()
                self.client.flush()
            except Exception:
                log.debug("Langfuse flush failed", exc_info=True)
            finally:
                done.set()
                if then is not None:
                    try:
                        then()
                    except RuntimeError:  # the loop closed meanwhile
                        pass

        threading.Thread(target=work, name=f"planweave-trace-flush-{self.trace_id[:8]}", daemon=True).start()
        return done

    def _flushed(self, finished: bool, timeout_s: float | None) -> bool:
        if not finished and self._timeout(timeout_s) == 0:
            return False  # "do not wait": delivery goes on in the background, failures are still reported
        if not finished:
            LOST.report(
                [self.trace_id], f"Langfuse did not confirm delivery within {self._timeout(timeout_s):g}s", certain=False
            )
            return False
        return LOST.reason(self.trace_id) is None

    def _release(self) -> None:
        owned = self._owned
        if owned is None or not owned.owned:
            return
        self._owned = None

        def shutdown() -> None:
            try:
                owned.client.shutdown()
                if owned.provider is not None:
                    owned.provider.shutdown()
            except Exception:
                log.debug("Langfuse client shutdown failed", exc_info=True)

        threading.Thread(target=shutdown, name="planweave-trace-shutdown", daemon=True).start()

    # --- building observations ----------------------------------------------------------------

    def _start(self, parent: Any, as_type: str, name: str, at: float, **fields: Any) -> Any:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        ctx = otel_context.Context() if parent is None else otel_trace.set_span_in_context(parent._otel_span)
        span = self._tracer.start_span(name, context=ctx, start_time=_ns(at), attributes=self._trace_attrs)
        fields = {k: v for k, v in fields.items() if v is not None}
        return self._classes[as_type](otel_span=span, langfuse_client=self.client, **fields)

    def _event(self, parent: Any, name: str, at: float, **fields: Any) -> None:
        self._start(parent, "event", name, at, **fields).end(end_time=_ns(at))

    def _clean(self, value: Any) -> Any:
        return _clip(self.masker.mask(value), self.max_chars)

    def _trace_meta_attrs(self, values: Mapping[str, Any]) -> dict[str, str]:
        prefix = self._attr.TRACE_METADATA
        out = {}
        for key, value in values.items():
            if value is not None:
                # Langfuse keeps trace metadata values short (200 characters).
                out[f"{prefix}.{key}"] = json.dumps(_clip(self.masker.mask(value), 190), ensure_ascii=False, default=str)
        return out

    def _parent(self) -> Any:
        if self.planner and self._round:
            return self._rounds.get(self._round, self._root)
        return self._root

    def _open_round(self, number: int, at: float) -> None:
        self._round = number
        if number not in self._rounds:
            self._rounds[number] = self._start(self._root, "chain", f"round {number}", at)

    def _end_round(self, number: int, at: float) -> None:
        span = self._rounds.pop(number, None)
        if span is not None:
            span.end(end_time=_ns(at))

    # --- executor events ----------------------------------------------------------------------

    def _on_run_started(self, e: Any) -> None:
        self._run_id = e.run_id
        self._trace_attrs.update(self._trace_meta_attrs({"run_id": e.run_id}))
        self._root._otel_span.set_attributes(self._trace_meta_attrs({"run_id": e.run_id}))
        self._root.update(input=self._clean({"goal": e.goal, "inputs": e.inputs} if e.inputs else e.goal))
        if self.planner:
            self._open_round(1, e.at)

    def _on_step_added(self, e: Any) -> None:
        step = e.step if isinstance(e.step, dict) else e.step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
        details = {k: step[k] for k in ("description", "when", "for_each", "on_failure", "retry", "timeout_s") if k in step}
        self._steps[e.step_id] = _StepState(e.step_id, e.tool, self._parent(), e.at, list(e.deps), details)

    def _state(self, step_id: str, tool: str = "?") -> _StepState:
        state = self._steps.get(step_id)
        if state is None:  # subscribed after the step was added
            state = self._steps[step_id] = _StepState(step_id, tool, self._parent(), time.time())
        return state

    def _on_step_started(self, e: Any) -> None:
        state = self._state(e.step_id, e.tool)
        previous, state.args = state.args, e.args
        if state.span is None:
            state.started_at = e.at
            metadata = {"tool": e.tool, "deps": state.deps or None, **state.details}
            metadata["queued_s"] = round(max(0.0, e.at - state.added_at), 6)
            state.span = self._start(
                state.parent, "tool", e.step_id, e.at, input=self._clean(e.args), metadata=self._clean(metadata)
            )
        elif e.args != previous:  # a later attempt resolved its arguments differently
            state.span.update(input=self._clean(e.args))

    def _on_step_retrying(self, e: Any) -> None:
        state = self._state(e.step_id)
        self._event(
            state.span or state.parent,
            f"retry {e.attempt}",
            e.at,
            level="WARNING",
            status_message=self._clean(f"{e.error_type}: {e.error}"),
            metadata=self._clean({"attempt": e.attempt, "error": e.error, "error_type": e.error_type, "delay_s": e.delay_s}),
        )

    def _finish_step(self, e: Any, **fields: Any) -> bool:
        state = self._state(e.step_id)
        if state.span is None or state.ended:
            return False
        state.ended = True
        state.span.update(**fields)
        state.span.end(end_time=_ns(e.at))
        return True

    def _on_step_succeeded(self, e: Any) -> None:
        self._finish_step(
            e,
            output=self._clean(e.output),
            metadata={"status": "succeeded", "attempts": e.attempts, "duration_s": e.duration_s},
        )

    def _on_step_failed(self, e: Any) -> None:
        metadata = {
            "status": "failed",
            "attempts": e.attempts,
            "error_type": e.error_type,
            "on_failure": e.on_failure,
            "duration_s": e.duration_s,
        }
        message = self._clean(f"{e.error_type}: {e.error}")
        if not self._finish_step(e, level="ERROR", status_message=message, metadata=metadata):
            state = self._state(e.step_id)
            self._event(state.parent, f"{e.step_id} failed", e.at, level="ERROR", status_message=message, metadata=metadata)

    def _on_step_skipped(self, e: Any) -> None:
        state = self._state(e.step_id)
        self._event(
            state.parent,
            f"{e.step_id} skipped",
            e.at,
            status_message=self._clean(e.reason),
            metadata={"status": "skipped", "tool": state.tool, "reason": self._clean(e.reason)},
        )

    def _on_step_cancelled(self, e: Any) -> None:
        reason = self._clean(e.reason) or "cancelled"
        metadata = {"status": "cancelled", "reason": reason}
        if not self._finish_step(e, level="WARNING", status_message=reason, metadata=metadata):
            state = self._state(e.step_id)
            self._event(state.parent, f"{e.step_id} cancelled", e.at, level="WARNING", status_message=reason, metadata=metadata)

    def _on_step_restored(self, e: Any) -> None:
        state = self._state(e.step_id)
        self._event(state.parent, f"{e.step_id} restored", e.at, output=self._clean(e.output), metadata={"status": "restored"})

    def _on_run_finished(self, e: Any) -> None:
        self._status = self._status or e.status
        if e.error:
            self._error = self._error or e.error
        self._root.update(metadata={"executor_status": e.status, "executor_duration_s": e.duration_s})
        if not self.planner:
            self._end(e.status, e.at)

    # --- planner events -----------------------------------------------------------------------

    def _on_plan_updated(self, e: Any) -> None:
        self._open_round(e.round, e.at)
        self._event(
            self._parent(),
            "plan emitted",
            e.at,
            output=self._clean({"rationale": e.rationale, "steps": e.step_ids}),
            metadata={"round": e.round, "steps": len(e.step_ids)},
        )

    def _on_plan_rejected(self, e: Any) -> None:
        self._open_round(e.round, e.at)
        self._event(
            self._parent(),
            "plan rejected",
            e.at,
            level="WARNING",
            status_message=self._clean(e.errors[0] if e.errors else "invalid plan"),
            output=self._clean(e.errors),
            metadata={"round": e.round, "reask": e.reask},
        )

    def _on_llm_called(self, e: Any) -> None:
        parent = self._parent()
        if e.purpose == "llm_tool":
            step = self._step_of_llm_call(e)
            if step is not None:
                parent = step.span
        start = e.started_at or (e.at - e.latency_s)
        end = start + e.latency_s if e.started_at else e.at
        usage = {"input": e.input_tokens, "output": e.output_tokens, "total": e.input_tokens + e.output_tokens}
        prompt = dict(e.prompt or {})
        if prompt.get("name"):
            self._prompts[prompt["name"]] = prompt
        generation = self._start(
            parent,
            "generation",
            "llm" if e.purpose == "llm_tool" else e.purpose,
            start,
            model=e.model or None,
            input=self._clean(e.messages),
            output=self._clean(e.output),
            usage_details=usage,
            cost_details=None if e.cost_usd is None else {"total": float(e.cost_usd)},
            level="ERROR" if e.error else None,
            status_message=self._clean(e.error) if e.error else None,
            metadata=self._clean(
                {
                    "purpose": e.purpose,
                    "prompt": prompt or None,
                    "attempts": e.attempts,
                    "reasks": e.reasks,
                    "latency_s": e.latency_s,
                    "cost": "unknown" if e.cost_usd is None else None,
                }
            ),
        )
        version = str(prompt.get("version", ""))
        if prompt.get("name") and version.isdigit():
            # Links the generation to a Langfuse-managed prompt of that name and version, if one exists.
            generation._otel_span.set_attributes(
                {self._attr.OBSERVATION_PROMPT_NAME: prompt["name"], self._attr.OBSERVATION_PROMPT_VERSION: int(version)}
            )
        generation.end(end_time=_ns(end))

    def _step_of_llm_call(self, e: Any) -> _StepState | None:
        """The running step that made this `llm` tool call, when that is unambiguous."""
        started = e.started_at or e.at
        running = [
            s for s in self._steps.values()
            if s.span is not None and not s.ended and (s.started_at or 0) <= started + 1e-3
        ]  # fmt: skip
        if len(running) > 1:
            running = [s for s in running if s.tool == "llm"] or running
        if len(running) > 1:
            text = "\n".join(str(m.get("content", "")) for m in e.messages if isinstance(m, dict))
            running = [s for s in running if isinstance(s.args.get("prompt"), str) and s.args["prompt"] in text]
        return running[0] if len(running) == 1 else None

    def _on_decision(self, e: Any) -> None:
        # A budget stop right after a replan decision belongs to the round that was about to start.
        number = e.round if e.round in self._rounds else self._round
        parent = self._rounds.get(number, self._root)
        level = "WARNING" if e.action in ("budget_stop", "cancel") else None
        self._event(
            parent,
            e.action,
            e.at,
            level=level,
            status_message=self._clean(e.reason) if level else None,
            input=self._clean(e.reason) or None,
            metadata={"round": number},
        )
        self._end_round(number, e.at)
        if e.action == "replan":
            self._open_round(number + 1, e.at)
        elif e.action == "budget_stop":
            self._status = "budget_exceeded"
            self._error = e.reason or self._error
        elif e.action == "cancel":
            self._status = "cancelled"

    def _on_answer_delta(self, e: Any) -> None:
        if getattr(e, "reset", False):  # the answer is being written again (a re-ask)
            self._answer.clear()
        self._answer.append(e.text)

    def _on_planner_finished(self, e: Any) -> None:
        if e.answer is not None:
            self._answer = [e.answer]
        self._status = e.status
        self._root.update(metadata=self._clean({"usage": e.usage}))
        self._end(e.status, e.at)


_HANDLERS: dict[str, Callable[[LangfuseTracer, Any], None]] = {
    "run_started": LangfuseTracer._on_run_started,
    "step_added": LangfuseTracer._on_step_added,
    "step_started": LangfuseTracer._on_step_started,
    "step_retrying": LangfuseTracer._on_step_retrying,
    "step_succeeded": LangfuseTracer._on_step_succeeded,
    "step_failed": LangfuseTracer._on_step_failed,
    "step_skipped": LangfuseTracer._on_step_skipped,
    "step_cancelled": LangfuseTracer._on_step_cancelled,
    "step_restored": LangfuseTracer._on_step_restored,
    "run_finished": LangfuseTracer._on_run_finished,
    "plan_updated": LangfuseTracer._on_plan_updated,
    "plan_rejected": LangfuseTracer._on_plan_rejected,
    "llm_called": LangfuseTracer._on_llm_called,
    "decision": LangfuseTracer._on_decision,
    "answer_delta": LangfuseTracer._on_answer_delta,
    "planner_finished": LangfuseTracer._on_planner_finished,
}


def create_tracer(
    *,
    name: str = "planweave",
    planner: bool = True,
    model: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    tags: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    masker: Masker | None = None,
    config: TracingConfig | None = None,
    client: Langfuse | None = None,
    span_exporter: SpanExporter | None = None,
    flush_timeout_s: float | None = None,
) -> LangfuseTracer | None:
    """A tracer for one run, or None when tracing is not configured (no keys: nothing is
    imported, sent or logged).

    Configuration comes from `config`, else the environment (`TracingConfig.from_env`).
    For tests, pass `span_exporter` (e.g. OpenTelemetry's `InMemorySpanExporter`; a
    private client is made for it and shut down when the tracer closes) or a ready `client`.
    The masker also masks the configured Langfuse secret key.
    """
    owned: _Client | None = None
    if client is None:
        if config is None:
            config = TracingConfig.from_env()
        if config is None and span_exporter is None:
            return None
        if config is None:
            config = TracingConfig(public_key="pk-lf-local", secret_key="sk-lf-local", base_url="")
        owned = _client_for(config, span_exporter)
        client = owned.client
    base = masker if masker is not None else Masker.from_env()
    if config is not None:
        base = base.with_values(config.secret_key)
    return LangfuseTracer(
        client,
        name=name,
        planner=planner,
        model=model,
        session_id=session_id,
        user_id=user_id,
        tags=tags,
        metadata=metadata,
        masker=base,
        base_url=config.base_url if config is not None else None,
        project_id=config.project_id if config is not None else None,
        flush_timeout_s=flush_timeout_s if flush_timeout_s is not None else (config.flush_timeout_s if config else 2.0),
        _owned=owned,
    )


# --- helpers -------------------------------------------------------------------------------------


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _clip(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"... [cut: {len(value) - limit} more characters]"
    if isinstance(value, dict):
        return {k: _clip(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip(v, limit) for v in value]
    return value


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message)
