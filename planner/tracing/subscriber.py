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
masked (`planweave.executor.masking.Masker`) and long strings are cut before it is recorded.

Tracing never slows down or breaks a run: the subscriber only queues the event (about 15
microseconds a step, where building the spans in place costs about 300); one worker thread
builds the spans and the SDK's batch processor exports them in the background; nothing
raises into the run; `flush`/`aclose` wait a bounded time. If Langfuse is unreachable, slow
or failing, the trace is lost with one warning naming the trace, and the run goes on.

The parts: `planweave.planner.tracing.builder` turns the events into observations (`TraceBuilder`), and
`planweave.planner.tracing.export` holds the configuration, the exporter and the clients (its public
names are re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from planweave.executor.events import RunEvent, Subscriber
from planweave.executor.masking import Masker
from planweave.planner.tracing.export import (
    DEFAULT_BASE_URL,
    LOST,
    TracePipeline,
    TracingConfig,
    langfuse_client,
    pipeline_for,
    shutdown,
)
from planweave.planner.tracing.builder import HANDLERS, TraceBuilder

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from planweave.planner.tracing._exporter import LangfuseExporter as LangfuseExporter

__all__ = [
    "DEFAULT_BASE_URL",
    "LangfuseExporter",
    "LangfuseTracer",
    "TracePipeline",
    "TracingConfig",
    "create_tracer",
    "langfuse_client",
    "shutdown",
]

log = logging.getLogger("planweave.tracing")


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


class LangfuseTracer:
    """Builds one Langfuse trace from one run's events. Call it with every event, in order.

    Args:
        client: the Langfuse client to send through (see `langfuse_client`, `create_tracer`).
        name: the trace's name (the same for every run, so Langfuse can compare them).
        planner: a planner run: steps nest under planning rounds, and the trace ends with
            `PlannerFinished`. For a plain executor run (False) it ends with `RunFinished`.
        model, session_id, user_id, tags, metadata: recorded on the trace.
        masker: masks every recorded value (default: `Masker.from_env()`).
        base_url, project_id: for `trace_url` (None or "": no URL).
        flush_timeout_s: how long `close`/`aclose` wait for delivery.
        max_chars: longer strings are cut (after masking).
        pipeline: planweave's OpenTelemetry pipeline the client belongs to (`create_tracer` passes
            it): flushing flushes all of it, and `otel_tracer` is its tracer.

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
        pipeline: TracePipeline | None = None,
    ) -> None:
        self.client = client
        self.pipeline = pipeline
        self.otel_tracer: Tracer | None = pipeline.tracer if pipeline is not None else None
        """The OpenTelemetry tracer of planweave's own provider: spans that need what Langfuse's
        public API cannot do (an explicit start time) are started on it."""
        self.planner = planner
        self.masker = masker if masker is not None else Masker.from_env()
        self.flush_timeout_s = flush_timeout_s
        self.max_chars = max_chars
        if self.otel_tracer is None:  # a client made elsewhere: the application's global provider
            from opentelemetry import trace as otel_trace

            from planweave.planner.tracing.export import TRACER_SCOPE

            self.otel_tracer = otel_trace.get_tracer(TRACER_SCOPE)
        self._trace = TraceBuilder(
            client,
            tracer=self.otel_tracer,
            name=name,
            planner=planner,
            model=model,
            session_id=session_id,
            user_id=user_id,
            tags=tags,
            metadata=metadata,
            masker=self.masker,
            max_chars=max_chars,
        )
        self._ended_requested = False
        self._closed = False
        self._broken = False

        self.trace_id: str = self._trace.trace_id
        host = (base_url or "").rstrip("/")
        self.trace_url: str | None = None
        if host:
            self.trace_url = (
                f"{host}/project/{project_id}/traces/{self.trace_id}" if project_id else f"{host}/trace/{self.trace_id}"
            )

    # --- the subscriber ---------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        """Take one event. Costs a queue append: the spans are built on the tracing worker thread."""
        if type(event) in HANDLERS and not self._ended_requested:
            _WORKER.submit(self._handle, event)

    def child_subscriber(self, *, run_id: str, name: str, parent_run_id: str, parent_step_id: str) -> Subscriber:
        """The subscriber of a sub-workflow's child run (`planweave.executor.subworkflow`): its
        steps are drawn in this trace, nested under the parent's step `parent_step_id`."""
        builder: list[TraceBuilder] = []  # made on the worker thread, after the parent's step span

        def handle(event: RunEvent) -> None:
            try:
                if not builder:
                    builder.append(self._trace.child(parent_step_id, name))
                builder[0].apply(event)
            except Exception:  # tracing must never break a run
                if not self._broken:
                    self._broken = True
                    log.warning("Langfuse tracing of child run `%s` failed; the trace may be incomplete.", run_id,
                                exc_info=True)

        def subscriber(event: RunEvent) -> None:
            if type(event) in HANDLERS and not self._ended_requested:
                _WORKER.submit(handle, event)

        return subscriber

    def _handle(self, event: RunEvent) -> None:
        try:
            self._trace.apply(event)
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
        _WORKER.submit(self._trace.end, status, time.time() if at is None else at)

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
                if self.pipeline is not None:
                    self.pipeline.flush()
                else:
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
        if self.pipeline is not None:
            self.pipeline.release()


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
    pipeline: TracePipeline | None = None
    if client is None:
        if config is None:
            config = TracingConfig.from_env()
        if config is None and span_exporter is None:
            return None
        if config is None:
            config = TracingConfig(public_key="pk-lf-local", secret_key="sk-lf-local", base_url="")
        pipeline = pipeline_for(config, span_exporter)
        client = pipeline.client
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
        pipeline=pipeline,
    )


def __getattr__(name: str) -> Any:
    # `LangfuseExporter` imports OpenTelemetry and requests: only when it is asked for.
    if name == "LangfuseExporter":
        from planweave.planner.tracing._exporter import LangfuseExporter

        return LangfuseExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

