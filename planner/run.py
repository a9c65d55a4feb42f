"""One planner run (`PlannerRun`): the plan -> execute -> join loop behind `Planner.run`.

Each round, the model writes the next steps as JSON; every step is validated and handed to
the running executor the moment its closing brace arrives, and held back until the steps it
needs are in. When the round's steps are final, the join decision finishes or replans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from planweave.executor import Executor, Plan, PlanError, Run, RunEvent, Step
from planweave.executor.masking import SecretInputs
from planweave.executor.events import RunFinished, StepCancelled, StepFailed, StepRestored, StepSkipped, StepSucceeded
from planweave.executor.result import describe_failed_steps
from planweave.executor.requests import InputAnswer
from planweave.executor.store import Recorder, ResumeState
from planweave.executor.waiting import until_done_or_stalled
from planweave.executor.refs import RESERVED_ROOTS, RefSyntaxError, find_refs
from planweave.planner.budget import check_replans, check_steps, check_usage
from planweave.planner.errors import BudgetExceededError, LLMError, ModelStreamError, PlanningError
from planweave.planner.events import (
    AnswerDelta,
    Decision,
    LLMCalled,
    LLMCallStarted,
    PlannerFinished,
    PlanRejected,
    PlanUpdated,
)
from planweave.planner.llm import LLMCall, LLMClient, Usage
from planweave.planner.models import JoinDecision, PlannedStep, PlanUpdate
from planweave.planner.prompts import PromptLibrary, as_data, new_data_tag, prompt_inputs
from planweave.planner.prompts import describe as _describe
from planweave.planner.result import PlannerResult, PlannerStatus
from planweave.planner.state import PlannerState
from planweave.planner.streaming import FieldStream
from planweave.planner.plan_syntax import PlanStream
from planweave.planner.streaming import FieldStream
from planweave.planner.tool_selection import select_tools
from planweave.planner.tracing.subscriber import LangfuseTracer, TracingConfig, create_tracer
from planweave.tools.ask import ask_user
from planweave.tools.base import Tool, format_validation_error, tool

if TYPE_CHECKING:
    from planweave.planner.core import Planner

__all__ = ["PlannerRun", "make_llm_tool", "run_settings"]

_STEP_FINAL = (StepSucceeded, StepFailed, StepSkipped, StepCancelled, StepRestored)


class _Parked(Exception):
    """Everything left in the round waits on people: the run stops `waiting` (not an error)."""


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


def make_llm_tool(client: LLMClient, prompts: PromptLibrary) -> Tool:
    """The `llm` tool: reasoning over earlier outputs, through the run's own client and accounting."""
    template = prompts.get("llm_tool")

    @tool(name="llm")
    async def llm(prompt: str, context: Any = None) -> str:
        """Ask a language model to summarise, compare, extract or compute in words; pass earlier outputs as `context`."""
        shown = None if context is None else as_data(_describe(context, 20_000), entry=False)
        messages = template.messages(prompt=prompt, context=shown, data_tag=new_data_tag())
        return await client.text(messages, prompt=template.ref, purpose="llm_tool")

    return llm


def run_settings(planner: Planner) -> dict[str, Any]:
    """What a run records of how it was set up: `resume` restores the budget (unless the resuming
    planner or command is given one); the other settings are there to be seen (`planweave show`)."""
    config = planner.config
    return {
        "budget": planner.budget.model_dump(),
        "settings": {
            "max_reasks": planner.max_reasks, "stream": planner.stream_plans, "timeout_s": config.timeout_s,
            "max_retries": config.max_retries, "fallbacks": list(config.fallbacks),
            "max_concurrency": planner.max_concurrency, "output_chars": planner.output_chars,
        },
    }  # fmt: skip


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
        history: PlannerState | None = None,
        answers: Mapping[str, InputAnswer] | None = None,
        conversation: list[dict[str, str]] | None = None,
    ) -> None:
        self.p = planner
        # Secret inputs are masked by value from here on (store, traces, every message to the model).
        self.secrets = SecretInputs(inputs, planner.masker)
        self.secrets.remember_in(planner.masker)
        # First: a missing key or an unknown model fails here, before anything is recorded or traced.
        self.client = LLMClient(
            planner.config, on_call=self._on_call, budget=planner.budget, redact=planner.masker.values_only().mask_text,
            on_start=self._on_start,
        )
        self.resumed = resume
        self.history = history
        """The resumed run's recorded events, folded (where its last round stopped, its usage)."""
        self._planned_before: set[str] = set()
        """While a cut-off round is finished: the steps it had already planned (not offered again)."""
        store = planner.store if record else None
        self.recorder: Recorder | None = None
        if store is not None:
            self.secrets.remember_in(getattr(store, "mask", None))  # a store given with its own masker
            meta = {"model": planner.model, "api_base": planner.config.api_base, "tools": planner.tools.names(),
                    **run_settings(planner), **planner.meta}
            if trace and trace.get("session_id"):
                meta["session_id"] = trace["session_id"]  # `planweave runs --session`
            if conversation:
                meta["conversation"] = conversation  # a resumed run shows the model the same turns
            # The planner's own last event ends the record (and releases the run's lease).
            recorder = store.recorder(kind="planner", name=planner.name, meta=meta, last_event="planner_finished")
            self.recorder = recorder
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
        self.conversation = conversation or []
        self.subscribers = subscribers
        self.tracker = _RoundTracker()
        self.budget = planner.budget
        self.round = 0
        self.replans = 0
        self.budget_hit: BudgetExceededError | None = None
        extra = [make_llm_tool(self.client, planner.prompts)]
        if "ask_user" not in planner.tools:
            extra.append(ask_user)
        registry = planner.tools.merged(extra)
        self.executor = Executor(
            registry, max_concurrency=planner.max_concurrency, tool_limits=planner.tool_limits,
            max_items_per_step=self.budget.max_items_per_step,
            approve=planner.approve, responder=planner.on_input, answer_within_s=planner.answer_within_s,
            backend=planner.backend,
        )
        self.run: Run = self.executor.start(
            goal=goal,
            inputs=inputs,
            completed=resume.completed if resume else None,
            answers={**(resume.answers if resume else {}), **(answers or {})},
            requests=resume.requests if resume else None,
            run_id=run_id,
            subscribers=[self.tracker, *subscribers],
            replans_handled=True,
            max_steps=self.budget.max_steps,  # `for_each` items count against it as they start
        )
        self.prompt_refs: dict[str, dict[str, str]] = {}

    def emit(self, event: RunEvent) -> None:
        """Send a planner event through the run's bus: every subscriber and `run.events()` see it
        in order with the executor's, and a failing subscriber is logged and counted, never fatal."""
        self.run.emit(event)

    def _on_start(self, call: LLMCall) -> None:
        self.emit(
            LLMCallStarted(
                run_id=self.run.id, call_id=call.call_id, purpose=call.purpose, model=call.model,
                attempt=call.attempt, reask=call.reask, prompt=call.prompt,
            )
        )

    def _on_call(self, call: LLMCall) -> None:
        self.emit(
            LLMCalled(
                run_id=self.run.id,
                call_id=call.call_id,
                attempt=call.attempt,
                purpose=call.purpose,
                model=call.model,
                prompt=call.prompt,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cached_input_tokens=call.cached_input_tokens,
                cache_write_tokens=call.cache_write_tokens,
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
        # A secret input is a placeholder naming its `${inputs.name}` (the tool gets the value).
        return prompt_inputs(self.secrets.for_prompt(), self.p.output_chars)

    def _data_conversation(self) -> list[dict[str, str]]:
        """A chat's earlier turns as the prompts show them: data (an earlier answer quotes tool output)."""
        return [{"role": t.get("role", "user"), "text": as_data(t.get("text", ""))} for t in self.conversation]

    def _data_history(self) -> list[dict[str, str]]:
        """`_history()` as the prompts show it: each output or error is untrusted data."""
        return [{**h, "text": as_data(h["text"])} for h in self._history()]

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
        catalogue = self.run.graph.tools.catalogue()
        if self.p.offer_tools is not None and len(catalogue) > self.p.offer_tools:
            catalogue = select_tools(catalogue, self.goal, self.p.offer_tools)
        return catalogue

    def _examples(self, catalogue: list[dict[str, Any]]) -> list[str]:
        """The few-shot examples of the offered tools (`prompts/examples/<tool>.j2`), each recorded."""
        texts = []
        for example in self.p.prompts.examples(t["name"] for t in catalogue):
            self.prompt_refs[example.name] = example.ref
            texts.append(example.render().strip())
        return texts

    # --- the loop ------------------------------------------------------------------------------

    async def go(self) -> PlannerResult:
        try:
            result = await self._go()
        except BaseException:
            if self.tracer is not None:
                self.tracer.close(timeout_s=0)  # end the trace; delivery goes on in the background
            raise
        await self.run.drain_subscribers()  # async subscribers see the planner's last events too
        if self.recorder is not None:
            # The result is returned once the run's record is complete (its final status written,
            # its lease released): whoever reads or continues the run next sees how it ended.
            await self.recorder.wait_durable()
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
                except _Parked:
                    status = "waiting"
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
        if status == "waiting":
            error = self.run.result.error
            self.emit(Decision(run_id=self.run.id, action="wait", round=self.round, reason=error or ""))
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
            requests=self.run.result.requests,
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

    def _restore(self) -> tuple[bool, str | None, list[str]]:
        """Re-add a resumed run's recorded steps and say where it goes on from:
        (join next, why it replans, the steps of a plan round that was cut off).

        A round whose plan finished (`PlanUpdated`) goes on to the join; a round cut off while its
        plan streamed is finished by the planner (never joined on part of a plan); after a
        recorded `replan`, the next round is planned with its reason."""
        state, history = self.resumed, self.history
        if state is None:
            return False, None, []
        self.round, self.replans = state.rounds, state.replans
        unplanned = history.unplanned_steps() if history is not None else []
        if history is not None:
            self._restore_usage(history)
        reused = sum(1 for s in state.steps if s.id in state.completed)
        cut = ""
        if unplanned:
            cut = f"; planning round {self.round + 1} was cut off after {len(unplanned)} steps, the planner finishes it"
        self.emit(
            Decision(
                run_id=self.run.id,
                action="resume",
                round=self.round,
                reason=f"resumed: {reused} of {len(state.steps)} recorded steps reused, the rest run again{cut}",
            )
        )
        if state.steps:
            for step in state.steps:
                self.tracker.track(step.id)
            self.run.add_steps(state.steps)
        last = history.last_decision if history is not None else None
        if last is not None and last.action == "replan" and last.round == self.round:
            return False, last.reason or "the results do not answer the goal yet", unplanned
        if unplanned or not state.steps:
            return False, None, unplanned
        self.round = max(self.round, 1)
        return True, None, []

    def _restore_usage(self, history: PlannerState) -> None:
        """Count what the run spent before it stopped against its budget; close the calls it cut off."""
        self.client.usage = Usage(
            input_tokens=history.input_tokens,
            output_tokens=history.output_tokens,
            llm_calls=history.llm_calls,
            cost_usd=history.cost_usd,
        )
        for started in history.open_calls.values():  # counted already, by their start
            self.emit(
                LLMCalled(
                    run_id=self.run.id, call_id=started.call_id, attempt=started.attempt, purpose=started.purpose,
                    model=started.model, prompt=dict(started.prompt), reasks=0, cost_usd=0.0,
                    started_at=started.at, latency_s=max(0.0, time.time() - started.at),
                    error="cut off: the process stopped before this call ended; its answer, if any, was lost",
                )
            )

    async def _loop(self) -> str:
        join_next, reason, planned = self._restore()
        while True:
            if not join_next:
                self.round += 1
                update, ids = await self._plan_round(reason, planned)
                planned = []
                if not ids:
                    answer = update.answer or ""  # `_plan_round` re-asks an empty plan with no answer
                    self.emit(
                        Decision(run_id=self.run.id, action="finish", round=self.round, reason="no steps needed")
                    )
                    self.emit(AnswerDelta(run_id=self.run.id, text=answer))
                    return answer
            join_next = False
            if await until_done_or_stalled(self.run, self.tracker.done):
                raise _Parked  # what is left waits on people: the run ends `waiting`
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
        messages = prompt.messages(
            goal=self.goal, inputs=self._inputs(), history=self._data_history(), replans_left=replans_left,
            conversation=self._data_conversation(), data_tag=new_data_tag(),
        )
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
        problem = problem or "; ".join(answer.problems)
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

    async def _plan_round(self, reason: str | None, planned: list[str] | None = None) -> tuple[PlanUpdate, list[str]]:
        """One planning round. `planned`: steps this round already planned before the process
        was cut off; the model is shown them (with their results so far) and asked for the rest."""
        prompt = self._prompt("plan")
        catalogue = self._catalogue()
        messages = prompt.messages(
            goal=self.goal,
            inputs=self._inputs(),
            tools=catalogue,
            examples=self._examples(catalogue),
            history=self._data_history(),
            replan_reason=reason,
            conversation=self._data_conversation(),
            data_tag=new_data_tag(),
        )
        if planned:  # finishing a round cut off mid-stream: the steps it had are shown, the rest asked for
            steps = [self.run.graph.steps[sid] for sid in planned]
            finish = self._prompt("plan_finish").render(
                steps=[{"id": s.step.id, "tool": s.tool.name, "args": as_data(_describe(s.step.args, 300))} for s in steps]
            )
            messages = [*messages, {"role": "user", "content": finish}]
        accepted: list[str] = list(planned or [])
        self._planned_before = set(accepted)
        try:
            return await self._ask_plan(prompt, messages, accepted)
        finally:
            self._planned_before = set()

    async def _ask_plan(
        self, prompt: Any, messages: list[dict[str, Any]], accepted: list[str]
    ) -> tuple[PlanUpdate, list[str]]:
        errors: list[str] = []
        for reask in range(self.p.max_reasks + 1):
            self._check_usage(before_call=True)
            buffered: list[Step] = []
            problems: list[str] = []
            stream = PlanStream()
            try:
                # The plan is written as lines (`planweave.planner.plan_syntax`), so no tool schema is sent.
                async for piece in self.client.stream_json(
                    messages, PlanUpdate, prompt=prompt.ref, purpose="plan", structured=False
                ):
                    items = stream.feed(piece)
                    if self.p.stream_plans:
                        for item in items:
                            problems += self._offer(item, accepted, buffered)
            except ModelStreamError as exc:
                problems.append(str(exc))
            self._check_usage()
            problems += stream.problems  # limits the reply broke (size, depth, steps)
            full = stream.text
            update, unreadable = stream.finish()
            problems += [p for p in unreadable if p not in problems]
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
        if self._planned_before:
            sid = item.get("id") if isinstance(item, dict) else (item[0] if item else None)
            if sid in self._planned_before:
                return []  # a finished round repeating a step planned before the cut: it is in already
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
        check_steps(self.budget, self.run.steps_used)
        self.tracker.track(step.id)  # before adding: a step can end (skipped) during `add_steps`
        try:
            self.run.add_steps([step])
        except PlanError as exc:
            self.tracker.untrack(step.id)
            return [p.message for p in exc.problems]
        accepted.append(step.id)
        return []
