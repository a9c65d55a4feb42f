"""One planner run (`PlannerRun`): the plan -> execute -> join loop behind `Planner.run`.

Each round, the model writes the next steps as JSON; every step is validated and handed to
the running executor the moment its closing brace arrives, and held back until the steps it
needs are in. When the round's steps are final, the join decision finishes or replans.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from planweave.executor import Executor, Plan, PlanError, Run, RunEvent, Step
from planweave.executor.events import RunFinished, StepCancelled, StepFailed, StepRestored, StepSkipped, StepSucceeded
from planweave.executor.result import describe_failed_steps
from planweave.executor.store import ResumeState
from planweave.executor.refs import RESERVED_ROOTS, RefSyntaxError, find_refs
from planweave.planner.budget import check_replans, check_steps, check_usage
from planweave.planner.errors import BudgetExceededError, LLMError, ModelStreamError, PlanningError
from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
from planweave.planner.llm import LLMCall, LLMClient
from planweave.planner.models import JoinDecision, PlannedStep, PlanUpdate
from planweave.planner.prompts import PromptLibrary
from planweave.planner.result import PlannerResult, PlannerStatus
from planweave.planner.streaming import FieldStream, StepStream
from planweave.planner.tracing.subscriber import LangfuseTracer, TracingConfig, create_tracer
from planweave.tools.base import Tool, format_validation_error, tool

if TYPE_CHECKING:
    from planweave.planner.core import Planner

__all__ = ["PlannerRun", "make_llm_tool"]

_STEP_FINAL = (StepSucceeded, StepFailed, StepSkipped, StepCancelled, StepRestored)


class _RoundTracker:
    """Knows when every step of the current round is final."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.done = asyncio.Event()
        self.done.set()

    def track(self, step_id: str) -> None:
        self.pending.add(step_id)
        self.done.clear()

    def untrack(self, step_id: str) -> None:
        self.pending.discard(step_id)
        if not self.pending:
            self.done.set()

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, _STEP_FINAL):
            self.pending.discard(event.step_id)
            if not self.pending:
                self.done.set()
        elif isinstance(event, RunFinished):
            self.pending.clear()
            self.done.set()


def _describe(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > limit:
        return text[:limit] + f" ... [truncated: {len(text) - limit} more characters; the full value is in the context]"
    return text


def make_llm_tool(client: LLMClient, prompts: PromptLibrary) -> Tool:
    """The `llm` tool: reasoning over earlier outputs, through the run's own client and accounting."""
    template = prompts.get("llm_tool")

    @tool(name="llm")
    async def llm(prompt: str, context: Any = None) -> str:
        """Ask a language model to summarise, compare, extract or compute in words; pass earlier outputs as `context`."""
        text = template.render(prompt=prompt, context=None if context is None else _describe(context, 20_000))
        return await client.text([{"role": "user", "content": text}], prompt=template.ref, purpose="llm_tool")

    return llm


class PlannerRun:
    """The state of one `Planner.run` (or `Planner.plan`, which records and runs nothing)."""

    def __init__(
        self,
        planner: Planner,
        goal: str,
        inputs: dict[str, Any],
        run_id: str | None,
        subscribers: list[Callable[[RunEvent], object]],
        resume: ResumeState | None = None,
        record: bool = True,
        trace: Mapping[str, Any] | None = None,
    ) -> None:
        self.p = planner
        # First: a missing key or an unknown model fails here, before anything is recorded or traced.
        self.client = LLMClient(planner.config, on_call=self._on_call, budget=planner.budget)
        self.resumed = resume
        store = planner.store if record else None
        if store is not None:
            meta = {"model": planner.model, "api_base": planner.config.api_base, "tools": planner.tools.names(),
                    **planner.meta}
            recorder = store.recorder(kind="planner", name=planner.name, meta=meta)
            subscribers = [recorder, *subscribers]  # first: recorded before anyone acts on it
        # One Langfuse trace per run (None when tracing is off or not configured); `trace` is
        # None for `Planner.plan`, which runs nothing.
        self.tracer: LangfuseTracer | None = None
        if trace is not None and planner.tracing is not False:
            self.tracer = create_tracer(
                model=planner.model,
                session_id=trace.get("session_id"),
                user_id=trace.get("user_id"),
                tags=trace.get("tags", ()),
                metadata={"planner": planner.name} if planner.name else None,
                masker=planner.masker,
                config=planner.tracing if isinstance(planner.tracing, TracingConfig) else None,
            )
            if self.tracer is not None:
                subscribers = [*subscribers, self.tracer]
        self.goal = goal
        self.inputs = inputs
        self.subscribers = subscribers
        self.tracker = _RoundTracker()
        self.budget = planner.budget
        self.round = 0
        self.replans = 0
        self.budget_hit: BudgetExceededError | None = None
        registry = planner.tools.merged([make_llm_tool(self.client, planner.prompts)])
        self.executor = Executor(
            registry, max_concurrency=planner.max_concurrency, tool_limits=planner.tool_limits, backend=planner.backend
        )
        self.run: Run = self.executor.start(
            goal=goal,
            inputs=inputs,
            completed=resume.completed if resume else None,
            run_id=run_id,
            subscribers=[self.tracker, *subscribers],
            replans_handled=True,
        )
        self.prompt_refs: dict[str, dict[str, str]] = {}

    def emit(self, event: RunEvent) -> None:
        """Send a planner event through the run's bus: every subscriber and `run.events()` see it
        in order with the executor's, and a failing subscriber is logged and counted, never fatal."""
        self.run.emit(event)

    def _on_call(self, call: LLMCall) -> None:
        self.emit(
            LLMCalled(
                run_id=self.run.id,
                purpose=call.purpose,
                model=call.model,
                prompt=call.prompt,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=call.cost_usd,
                latency_s=call.latency_s,
                attempts=call.attempts,
                reasks=call.reasks,
                error=call.error,
                started_at=call.started_at,
                messages=call.messages,
                output=call.output.model_dump(mode="json") if isinstance(call.output, BaseModel) else call.output,
            )
        )
        try:
            self._check_usage()
        except BudgetExceededError as stop:
            # A tool's own LLM call went over: stop now, not at the end of the round.
            if self.budget_hit is None:
                self.budget_hit = stop
                self.run.cancel(str(stop))

    def _check_usage(self, *, before_call: bool = False) -> None:
        check_usage(self.budget, self.client.usage, before_call=before_call)

    def _prompt(self, name: str) -> Any:
        prompt = self.p.prompts.get(name)
        self.prompt_refs[name] = prompt.ref
        return prompt

    def _inputs(self) -> list[dict[str, str]]:
        """The run's inputs as the prompts show them (long values truncated, kept whole in the context)."""
        return [{"name": k, "text": _describe(v, self.p.output_chars)} for k, v in self.inputs.items()]

    def _history(self) -> list[dict[str, str]]:
        out = []
        for sid in self.run.graph.steps:
            status = self.run.step_status(sid)
            node_out = self.run.outputs.get(sid)
            if status == "succeeded":
                text = _describe(node_out, self.p.output_chars)
            else:
                text = self.run.step_error(sid) or status
            out.append({"id": sid, "tool": self.run.graph.steps[sid].tool.name, "status": status, "text": text})
        return out

    def _catalogue(self) -> list[dict[str, Any]]:
        return self.run.graph.tools.catalogue()

    # --- the loop ------------------------------------------------------------------------------

    async def go(self) -> PlannerResult:
        try:
            result = await self._go()
        except BaseException:
            if self.tracer is not None:
                self.tracer.close(timeout_s=0)  # end the trace; delivery goes on in the background
            raise
        await self.run.drain_subscribers()  # async subscribers see the planner's last events too
        if self.tracer is not None:
            await self.tracer.aclose()  # waits `flush_timeout_s` (2 s) at most
        return result

    async def _go(self) -> PlannerResult:
        started = time.time()
        status: PlannerStatus = "failed"
        answer: str | None = None
        error: str | None = None
        budget_name: str | None = None
        try:
            async with self.run:
                try:
                    async with asyncio.timeout(self.budget.max_seconds):
                        answer = await self._loop()
                    status = "succeeded"
                except BudgetExceededError as stop:
                    status, budget_name, error = "budget_exceeded", stop.budget, str(stop)
                except TimeoutError:
                    status, budget_name = "budget_exceeded", "max_seconds"
                    error = f"the run passed its time budget of {self.budget.max_seconds:g}s"
                except (PlanningError, LLMError) as exc:
                    status, error = "failed", str(exc)
                if self.budget_hit is not None and status != "budget_exceeded":
                    status, budget_name, error = "budget_exceeded", self.budget_hit.budget, str(self.budget_hit)
                if status == "budget_exceeded":
                    self.emit(Decision(run_id=self.run.id, action="budget_stop", round=self.round, reason=error or ""))
                    self.run.cancel(error or "budget")
                    answer = self._best_effort(error or "")
                elif status == "failed":
                    self.run.cancel(error or "failed")
                self.run.close()
        except asyncio.CancelledError:
            self.emit(Decision(run_id=self.run.id, action="cancel", round=self.round, reason="cancelled"))
            raise
        steps = self.run.result.steps
        if status == "succeeded":
            # Answered, but a step failed on the way (the model planned around it): say so.
            error = describe_failed_steps(steps)
            status = "succeeded" if error is None else "partial"
        result = PlannerResult(
            run_id=self.run.id,
            goal=self.goal,
            status=status,
            answer=answer,
            error=error,
            budget=budget_name,
            steps=steps,
            rounds=self.round,
            replans=self.replans,
            usage=self.client.usage.model_copy(),
            llm_calls=[
                {k: v for k, v in vars(c).items() if k not in ("messages",)} for c in self.client.calls
            ],
            prompts=self.prompt_refs,
            started_at=started,
            finished_at=time.time(),
            trace_id=self.tracer.trace_id if self.tracer is not None else None,
            trace_url=self.tracer.trace_url if self.tracer is not None else None,
        )
        self.emit(
            PlannerFinished(run_id=self.run.id, status=status, answer=answer, usage=result.usage.model_dump())
        )
        return result

    async def plan_only(self) -> tuple[Plan, PlannerResult]:
        started = time.time()
        self.round = 1
        update, ids = await self._plan_round(None)
        steps = [self.run.graph.steps[sid].step for sid in ids]
        result = PlannerResult(
            run_id=self.run.id,
            goal=self.goal,
            status="succeeded",
            answer=update.answer if not ids else None,
            rounds=1,
            usage=self.client.usage.model_copy(),
            prompts=self.prompt_refs,
            started_at=started,
            finished_at=time.time(),
        )
        return Plan(steps=steps), result

    def _best_effort(self, reason: str) -> str:
        done = [f"`{h['id']}`: {h['text']}" for h in self._history() if h["status"] == "succeeded"]
        if not done:
            return f"Stopped before any result: {reason}."
        return f"Stopped early ({reason}). Results so far: " + "; ".join(done)

    def _restore(self) -> bool:
        """Re-add a resumed run's recorded steps; True when there were any (then the join comes next)."""
        state = self.resumed
        if state is None:
            return False
        self.round, self.replans = state.rounds, state.replans
        reused = sum(1 for s in state.steps if s.id in state.completed)
        self.emit(
            Decision(
                run_id=self.run.id,
                action="resume",
                round=self.round,
                reason=f"resumed: {reused} of {len(state.steps)} recorded steps reused, the rest run again",
            )
        )
        if not state.steps:
            return False
        for step in state.steps:
            self.tracker.track(step.id)
        self.run.add_steps(state.steps)
        self.round = max(self.round, 1)
        return True

    async def _loop(self) -> str:
        reason: str | None = None
        restored = self._restore()
        while True:
            if not restored:
                self.round += 1
                update, ids = await self._plan_round(reason)
                if not ids:
                    answer = update.answer or ""  # `_plan_round` re-asks an empty plan with no answer
                    self.emit(
                        Decision(run_id=self.run.id, action="finish", round=self.round, reason="no steps needed")
                    )
                    self.emit(AnswerDelta(run_id=self.run.id, text=answer))
                    return answer
            restored = False
            await self.tracker.done.wait()
            if self.budget_hit is not None:
                raise self.budget_hit
            decision = await self._join()
            if decision.action == "finish":
                answer = decision.answer or ""
                self.emit(Decision(run_id=self.run.id, action="finish", round=self.round, reason=decision.reason))
                return answer
            self.replans += 1
            self.emit(Decision(run_id=self.run.id, action="replan", round=self.round, reason=decision.reason))
            check_replans(self.budget, self.replans)
            reason = decision.reason or "the results do not answer the goal yet"

    async def _join(self) -> JoinDecision:
        """The join decision, streamed: a `finish` answer reaches subscribers as it is written.

        An invalid decision is re-asked through instructor, which validates and re-asks again."""
        prompt = self._prompt("join")
        replans_left = None if self.budget.max_replans is None else self.budget.max_replans - self.replans
        text = prompt.render(
            goal=self.goal, inputs=self._inputs(), history=self._history(), replans_left=replans_left
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": text},
            {"role": "user", "content": "Decide: finish or replan."},
        ]
        self._check_usage(before_call=True)
        answer = FieldStream("answer")
        streamed = False
        problem = ""
        try:
            async for piece in self.client.stream_json(
                messages, JoinDecision, prompt=prompt.ref, purpose="join", tool_name="decide"
            ):
                delta = answer.feed(piece)
                if delta:
                    streamed = True
                    self.emit(AnswerDelta(run_id=self.run.id, text=delta))
        except ModelStreamError as exc:
            problem = str(exc)
        self._check_usage()
        full = answer.text
        decision: JoinDecision | None = None
        if not problem:
            try:
                decision = JoinDecision.model_validate_json(full[full.find("{") : full.rfind("}") + 1] or full)
            except ValidationError as exc:
                problem = format_validation_error(exc)
        if decision is None:
            # Invalid or broken: say so, then let instructor re-ask until the decision validates.
            if streamed:
                self.emit(AnswerDelta(run_id=self.run.id, text="", reset=True))
            self.emit(PlanRejected(run_id=self.run.id, round=self.round, reask=1, errors=[problem]))
            if self.p.max_reasks < 1:
                raise PlanningError(f"the model's join decision was invalid and re-asks are off: {problem}", [problem])
            repair = self._prompt("repair").render(
                errors=f"- the decision is not valid: {problem}", accepted=[], what="decision"
            )
            self._check_usage(before_call=True)
            try:
                decision = await self.client.structured(
                    [*messages, {"role": "assistant", "content": full}, {"role": "user", "content": repair}],
                    JoinDecision,
                    prompt=prompt.ref,
                    purpose="join",
                    max_reasks=self.p.max_reasks - 1,
                )
            except LLMError as exc:
                raise PlanningError(
                    f"the model's join decision stayed invalid after {self.p.max_reasks} re-asks: {exc}", [str(exc)]
                ) from exc
            self._check_usage()
            streamed = False
        if decision.action == "finish" and not decision.answer:
            decision = decision.model_copy(update={"answer": self._best_effort("the model gave no answer text")})
        if not streamed and decision.action == "finish":
            self.emit(AnswerDelta(run_id=self.run.id, text=decision.answer or ""))
        return decision

    async def _plan_round(self, reason: str | None) -> tuple[PlanUpdate, list[str]]:
        prompt = self._prompt("plan")
        system = prompt.render(
            goal=self.goal,
            inputs=self._inputs(),
            tools=self._catalogue(),
            history=self._history(),
            replan_reason=reason,
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": "Write the plan."},
        ]
        accepted: list[str] = []
        errors: list[str] = []
        for reask in range(self.p.max_reasks + 1):
            self._check_usage(before_call=True)
            buffered: list[Step] = []
            problems: list[str] = []
            stream = StepStream()
            try:
                async for piece in self.client.stream_json(messages, PlanUpdate, prompt=prompt.ref, purpose="plan"):
                    if self.p.stream_plans:
                        for item in stream.feed(piece):
                            problems += self._offer(item, accepted, buffered)
                    else:
                        stream.text += piece
            except ModelStreamError as exc:
                problems.append(str(exc))
            self._check_usage()
            full = stream.text
            update: PlanUpdate | None = None
            try:
                # Tolerate prose or code fences around the object.
                update = PlanUpdate.model_validate_json(full[full.find("{") : full.rfind("}") + 1] or full)
            except ValidationError as exc:
                problems.append(f"the reply is not a valid plan object: {format_validation_error(exc)}")
            if update is not None and not self.p.stream_plans:
                for planned in update.planned():
                    problems += self._offer(planned.model_dump(exclude_defaults=True), accepted, buffered)
            if update is not None and self.p.stream_plans:
                # Items the scanner could not see (e.g. malformed framing) are caught here.
                seen = set(accepted) | {s.id for s in buffered}
                for planned in update.planned():
                    if planned.id not in seen and not any(planned.id in p for p in problems):
                        problems += self._offer(planned.model_dump(exclude_defaults=True), accepted, buffered)
            if update is not None and not accepted and not buffered and not problems and not (update.answer or "").strip():
                problems.append(
                    "the plan is empty: it has no steps and no `answer`; write the steps that reach the goal, "
                    "or give the final answer in `answer`"
                )
            if buffered:
                problems += [str(p) for p in self.run.check_steps(buffered)] or [
                    f"step `{s.id}` could not be placed in the plan" for s in buffered
                ]
            if update is not None and not problems:
                self.emit(
                    PlanUpdated(run_id=self.run.id, round=self.round, rationale=update.rationale, step_ids=list(accepted))
                )
                return update, accepted
            errors = problems
            self.emit(PlanRejected(run_id=self.run.id, round=self.round, reask=reask + 1, errors=problems))
            repair = self._prompt("repair").render(errors="\n".join(f"- {e}" for e in problems), accepted=accepted)
            messages = [*messages, {"role": "assistant", "content": full}, {"role": "user", "content": repair}]
        raise PlanningError(
            f"the model's plan stayed invalid after {self.p.max_reasks} re-asks: " + "; ".join(errors), errors
        )

    def _offer(self, item: dict[str, Any] | list[Any], accepted: list[str], buffered: list[Step]) -> list[str]:
        """Validate one streamed step and submit it, or hold it until the steps it needs arrive."""
        try:
            planned = PlannedStep.model_validate(item)
            retry = planned.retry_policy(self.p.step_retry)
            step = Step(on_failure="replan", retry=retry, **planned.model_dump(exclude={"retry"}))
        except ValidationError as exc:
            sid = item.get("id", "?") if isinstance(item, dict) else (item[0] if item else "?")
            return [f"step `{sid}` is malformed: {format_validation_error(exc)}"]
        if self._missing(step):
            buffered.append(step)
            return []
        problems = self._submit(step, accepted)
        progress = True
        while progress:
            progress = False
            for held in list(buffered):
                if not self._missing(held):
                    buffered.remove(held)
                    problems += self._submit(held, accepted)
                    progress = True
        return problems

    def _missing(self, step: Step) -> set[str]:
        """Steps `step` needs that are not in the run yet (they may still come in the stream)."""
        needs = set(step.depends_on)
        try:
            needs |= {r.root for r in find_refs([step.args, step.when, step.for_each])}
        except RefSyntaxError:
            return set()  # let validation report it
        return {n for n in needs if n not in self.run.graph and n not in RESERVED_ROOTS and n != step.id}

    def _submit(self, step: Step, accepted: list[str]) -> list[str]:
        check_steps(self.budget, len(self.run.graph))
        self.tracker.track(step.id)  # before adding: a step can end (skipped) during `add_steps`
        try:
            self.run.add_steps([step])
        except PlanError as exc:
            self.tracker.untrack(step.id)
            return [p.message for p in exc.problems]
        accepted.append(step.id)
        return []
