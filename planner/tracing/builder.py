"""How a run's events become the observations of one Langfuse trace (drawn in `planweave.planner.tracing.subscriber`).

`TraceBuilder` folds the events into the run's state (`planweave.planner.state.PlannerState`,
the one fold every consumer shares) and keeps the observations still open (the run, its
planning rounds, its steps); `HANDLERS` names the method that records each event class. Observations carry the
events' own times, so durations are the real ones; every value is masked and long strings
are cut before it is recorded. It only starts and ends spans: getting them to Langfuse is
the client's (`planweave.planner.tracing.export`), and keeping the run's event loop free is
`LangfuseTracer`'s, which calls the builder from one worker thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from planweave.executor.events import (
    RunEvent,
    RunFinished,
    RunStarted,
    StepAdded,
    StepCacheHit,
    StepCancelled,
    StepFailed,
    StepProgressed,
    StepRestored,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from planweave.executor.plan import Step
from planweave.executor.requests import InputAnswered, InputRequested
from planweave.executor.state import StepProgress
from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
from planweave.planner.state import PlannerState

if TYPE_CHECKING:
    from langfuse import Langfuse
    from opentelemetry.trace import Span, Tracer

    from planweave.executor.masking import Masker

__all__ = ["HANDLERS", "TraceBuilder"]

_ROOT_LEVEL = {"failed": "ERROR", "partial": "WARNING", "budget_exceeded": "WARNING", "cancelled": "WARNING"}


@dataclass
class _StepSpan:
    """A step's observation; the step itself (tool, deps, times, arguments) is in the fold."""

    progress: StepProgress
    parent: Any
    span: Any = None
    input: dict[str, Any] | None = None
    """The arguments the span shows (a later attempt may resolve them differently)."""
    ended: bool = False


class TraceBuilder:
    """The observations of one run's trace, built from its events (the tree in `planweave.planner.tracing.subscriber`).

    Args:
        client: the Langfuse client the observations belong to.
        tracer: the OpenTelemetry tracer that starts the spans (planweave's own provider's).
        name, planner, model, session_id, user_id, tags, metadata, masker, max_chars: as
            for `LangfuseTracer`, which makes one of these per run.

    Call `apply` with each event, in order, then `end`. Not thread-safe:
    `LangfuseTracer` calls it from its one worker thread. A bug raises; the tracer catches it.
    """

    def __init__(
        self,
        client: Langfuse,
        *,
        tracer: Tracer,
        name: str = "planweave",
        planner: bool = True,
        model: str | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        masker: Masker,
        max_chars: int = 50_000,
        parent_span: Span | None = None,
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
        self._outer = parent_span
        """A child run's builder (`child`): its run nests under this span of the parent's trace."""
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
        self.masker = masker
        self.max_chars = max_chars
        # The SDK's public `start_observation` cannot take a start time; events arrive with
        # their own times (an LLM call is reported when it ends), so spans are started on
        # planweave's own tracer and wrapped in the SDK's public observation classes.
        self._tracer = tracer
        self._otel: dict[int, Span] = {}  # id(observation) -> its span, for parents and raw attributes

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
        if parent_span is not None:
            self._trace_attrs = {}  # the trace is the parent's: its name and metadata stay the parent's

        self.state = PlannerState()
        """Everything the events have said (the answer, the steps); the spans are kept here."""
        self._steps: dict[str, _StepSpan] = {}
        self._rounds: dict[int, Any] = {}
        self._round = 0
        self._prompts: dict[str, dict[str, str]] = {}
        self._status: str | None = None
        self._error: str | None = None
        self._run_id: str | None = None
        self._ended = False

        self._root = self._start(None, "agent", name, time.time(), metadata={"model": model} if model else None)
        self.trace_id: str = self._root.trace_id

    def apply(self, event: RunEvent) -> None:
        """Record one event: fold it into `state`, then start or end what it says (`HANDLERS`)."""
        self.state.apply(event)
        handler = HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def end(self, status: str | None = None, at: float | None = None) -> None:
        """End the trace: steps still open end with a warning, then the rounds, then the run. Idempotent."""
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
        answer = self.state.answer or None
        self._root.update(
            output=self._clean(answer),
            level=_ROOT_LEVEL.get(status),
            status_message=self._clean(self._error) if self._error else None,
            metadata=self._clean({"status": status, "run_id": self._run_id, "prompts": self._prompts or None}),
        )
        final = {"status": status}
        if self._prompts:
            final["prompts"] = ", ".join(f"{n}@{p.get('version', '?')}" for n, p in sorted(self._prompts.items()))
        if self._outer is None:
            self._otel[id(self._root)].set_attributes(self._trace_meta_attrs(final))
        self._root.end(end_time=_ns(at))

    def child(self, step_id: str, name: str) -> TraceBuilder:
        """The builder of a sub-workflow's child run, nested under step `step_id`'s observation."""
        state = self._steps.get(step_id)
        parent = state.span if state is not None and state.span is not None else self._root
        return TraceBuilder(
            self.client, tracer=self._tracer, name=name, planner=False, masker=self.masker,
            max_chars=self.max_chars, parent_span=self._otel[id(parent)],
        )  # fmt: skip

    # --- building observations ----------------------------------------------------------------

    def _start(self, parent: Any, as_type: str, name: str, at: float, **fields: Any) -> Any:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        if parent is not None:
            ctx = otel_trace.set_span_in_context(self._otel[id(parent)])
        elif self._outer is not None:
            ctx = otel_trace.set_span_in_context(self._outer)
        else:
            ctx = otel_context.Context()
        span = self._tracer.start_span(name, context=ctx, start_time=_ns(at), attributes=self._trace_attrs)
        fields = {k: v for k, v in fields.items() if v is not None}
        observation = self._classes[as_type](otel_span=span, langfuse_client=self.client, **fields)
        self._otel[id(observation)] = span
        return observation

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

    def _on_run_started(self, e: RunStarted) -> None:
        self._run_id = e.run_id
        if self._outer is None:
            self._trace_attrs.update(self._trace_meta_attrs({"run_id": e.run_id}))
            self._otel[id(self._root)].set_attributes(self._trace_meta_attrs({"run_id": e.run_id}))
        self._root.update(input=self._clean({"goal": e.goal, "inputs": e.inputs} if e.inputs else e.goal))
        if self.planner:
            self._open_round(1, e.at)

    def _on_step_added(self, e: StepAdded) -> None:
        self._steps[e.step_id] = _StepSpan(self.state.steps[e.step_id], self._parent())

    def _state(self, step_id: str) -> _StepSpan:
        state = self._steps.get(step_id)
        if state is None:  # subscribed after the step was added
            state = self._steps[step_id] = _StepSpan(self.state.steps[step_id], self._parent())
        return state

    def _on_step_started(self, e: StepStarted) -> None:
        state = self._state(e.step_id)
        previous, state.input = state.input, e.args
        if state.span is None:
            step = state.progress.step
            if isinstance(step, Step):
                step = step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
            details = {k: step[k] for k in _DETAILS if k in step} if step else {}
            metadata = {"tool": e.tool, "deps": state.progress.deps or None, **details}
            added_at = state.progress.added_at if state.progress.added_at is not None else e.at
            metadata["queued_s"] = round(max(0.0, e.at - added_at), 6)
            state.span = self._start(
                state.parent, "tool", e.step_id, e.at, input=self._clean(e.args), metadata=self._clean(metadata)
            )
        elif e.args != previous:  # a later attempt resolved its arguments differently
            state.span.update(input=self._clean(e.args))

    def _on_step_retrying(self, e: StepRetrying) -> None:
        state = self._state(e.step_id)
        self._event(
            state.span or state.parent,
            f"retry {e.attempt}",
            e.at,
            level="WARNING",
            status_message=self._clean(f"{e.error_type}: {e.error}"),
            metadata=self._clean({"attempt": e.attempt, "error": e.error, "error_type": e.error_type, "delay_s": e.delay_s}),
        )

    def _on_step_progressed(self, e: StepProgressed) -> None:
        state = self._state(e.step_id)
        fields: dict[str, Any] = {
            "metadata": self._clean({"done": e.done, "total": e.total, "message": e.message}),
        }
        if e.progress_kind == "partial":
            fields["output"] = self._clean(e.partial)
        if e.progress_kind == "notice":
            fields.update(level="WARNING", status_message=self._clean(e.message or ""))
        self._event(state.span or state.parent, e.progress_kind, e.at, **fields)

    def _finish_step(self, e: StepSucceeded | StepFailed | StepCancelled, **fields: Any) -> bool:
        state = self._state(e.step_id)
        if state.span is None or state.ended:
            return False
        state.ended = True
        state.span.update(**fields)
        state.span.end(end_time=_ns(e.at))
        return True

    def _on_step_succeeded(self, e: StepSucceeded) -> None:
        self._finish_step(
            e,
            output=self._clean(e.output),
            metadata={"status": "succeeded", "attempts": e.attempts, "duration_s": e.duration_s},
        )

    def _on_step_failed(self, e: StepFailed) -> None:
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

    def _on_step_skipped(self, e: StepSkipped) -> None:
        state = self._state(e.step_id)
        self._event(
            state.parent,
            f"{e.step_id} skipped",
            e.at,
            status_message=self._clean(e.reason),
            metadata={"status": "skipped", "tool": state.progress.tool or "?", "reason": self._clean(e.reason)},
        )

    def _on_step_cancelled(self, e: StepCancelled) -> None:
        reason = self._clean(e.reason) or "cancelled"
        metadata = {"status": "cancelled", "reason": reason}
        if not self._finish_step(e, level="WARNING", status_message=reason, metadata=metadata):
            state = self._state(e.step_id)
            self._event(state.parent, f"{e.step_id} cancelled", e.at, level="WARNING", status_message=reason, metadata=metadata)

    def _on_step_restored(self, e: StepRestored) -> None:
        state = self._state(e.step_id)
        self._event(state.parent, f"{e.step_id} restored", e.at, output=self._clean(e.output), metadata={"status": "restored"})

    def _on_step_cache_hit(self, e: StepCacheHit) -> None:
        state = self._state(e.step_id)
        self._event(
            state.span or state.parent,
            "cache hit" if e.item is None else f"cache hit (item {e.item})",
            e.at,
            metadata={"tool": e.tool, "key": e.key[:16], "age_s": round(e.age_s, 3), "item": e.item},
        )

    def _on_run_finished(self, e: RunFinished) -> None:
        self._status = self._status or e.status
        if e.error:
            self._error = self._error or e.error
        self._root.update(metadata={"executor_status": e.status, "executor_duration_s": e.duration_s})
        if not self.planner:
            self.end(e.status, e.at)

    # --- planner events -----------------------------------------------------------------------

    def _on_plan_updated(self, e: PlanUpdated) -> None:
        self._open_round(e.round, e.at)
        self._event(
            self._parent(),
            "plan emitted",
            e.at,
            output=self._clean({"rationale": e.rationale, "steps": e.step_ids}),
            metadata={"round": e.round, "steps": len(e.step_ids)},
        )

    def _on_plan_rejected(self, e: PlanRejected) -> None:
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

    def _on_llm_called(self, e: LLMCalled) -> None:
        parent = self._parent()
        if e.purpose == "llm_tool":
            step = self._steps.get(e.step_id) if e.step_id else None
            step = step if step is not None and step.span is not None else self._step_of_llm_call(e)
            if step is not None:
                parent = step.span
        start = e.started_at or (e.at - e.latency_s)
        end = start + e.latency_s if e.started_at else e.at
        usage = {"input": e.input_tokens, "output": e.output_tokens, "total": e.input_tokens + e.output_tokens}
        if e.cached_input_tokens:  # Anthropic's names, which Langfuse takes as usage types
            usage["cache_read_input_tokens"] = e.cached_input_tokens
        if e.cache_write_tokens:
            usage["cache_creation_input_tokens"] = e.cache_write_tokens
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
            self._otel[id(generation)].set_attributes(
                {self._attr.OBSERVATION_PROMPT_NAME: prompt["name"], self._attr.OBSERVATION_PROMPT_VERSION: int(version)}
            )
        generation.end(end_time=_ns(end))

    def _step_of_llm_call(self, e: LLMCalled) -> _StepSpan | None:
        """The running step that made this `llm` tool call, when that is unambiguous."""
        started = e.started_at or e.at
        running = [
            s for s in self._steps.values()
            if s.span is not None and not s.ended and (s.progress.started_at or 0) <= started + 1e-3
        ]  # fmt: skip
        if len(running) > 1:
            running = [s for s in running if s.progress.tool == "llm"] or running
        if len(running) > 1:
            text = "\n".join(str(m.get("content", "")) for m in e.messages if isinstance(m, dict))
            running = [s for s in running if isinstance((s.input or {}).get("prompt"), str) and (s.input or {})["prompt"] in text]
        return running[0] if len(running) == 1 else None

    def _on_decision(self, e: Decision) -> None:
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

    def _on_input_requested(self, e: InputRequested) -> None:
        state = self._state(e.step_id)
        what = "question" if e.request.get("kind") == "question" else "approval"
        self._event(state.parent, f"{e.step_id} waits for {what}", e.at, input=self._clean(e.request),
                    metadata={"step": e.step_id, "kind": what})

    def _on_input_answered(self, e: InputAnswered) -> None:
        state = self._state(e.step_id)
        action = str(e.answer.get("action", ""))
        self._event(state.parent, f"{e.step_id} {action}", e.at, output=self._clean(e.answer),
                    level="WARNING" if action == "deny" else None, metadata={"step": e.step_id, "by": e.answer.get("by")})

    def _on_planner_finished(self, e: PlannerFinished) -> None:
        self._status = e.status
        self._root.update(metadata=self._clean({"usage": e.usage}))
        self.end(e.status, e.at)


def _ignore(builder: TraceBuilder, e: RunEvent) -> None:
    """Nothing to draw: the fold (`TraceBuilder.state`) keeps what the event says."""


HANDLERS: dict[type[RunEvent], Callable[[TraceBuilder, Any], None]] = {
    RunStarted: TraceBuilder._on_run_started,
    StepAdded: TraceBuilder._on_step_added,
    StepStarted: TraceBuilder._on_step_started,
    StepRetrying: TraceBuilder._on_step_retrying,
    StepProgressed: TraceBuilder._on_step_progressed,
    StepSucceeded: TraceBuilder._on_step_succeeded,
    StepFailed: TraceBuilder._on_step_failed,
    StepSkipped: TraceBuilder._on_step_skipped,
    StepCancelled: TraceBuilder._on_step_cancelled,
    StepRestored: TraceBuilder._on_step_restored,
    StepCacheHit: TraceBuilder._on_step_cache_hit,
    RunFinished: TraceBuilder._on_run_finished,
    PlanUpdated: TraceBuilder._on_plan_updated,
    PlanRejected: TraceBuilder._on_plan_rejected,
    LLMCalled: TraceBuilder._on_llm_called,
    Decision: TraceBuilder._on_decision,
    AnswerDelta: _ignore,
    PlannerFinished: TraceBuilder._on_planner_finished,
    InputRequested: TraceBuilder._on_input_requested,
    InputAnswered: TraceBuilder._on_input_answered,
}
"""What the trace records for each event class; an event of another class is only folded."""

_DETAILS = ("description", "when", "for_each", "on_failure", "retry", "timeout_s")


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
