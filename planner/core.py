"""The planner: goal -> streamed plan graph -> parallel execution -> finish or replan.

    planner = Planner(model="openai/gpt-4o-mini")
    result = await planner.run("What is 17 * 23, and fetch https://example.org")
    print(result.answer, result.usage.cost_usd)

Each round, the model writes the next steps as JSON; every step is validated and
handed to the running executor the moment its closing brace arrives, so the first
tools run while the model is still writing the rest (LLMCompiler's latency gain).
When the round's steps are final, a join decision finishes with the answer or
replans, seeing every earlier result. Budgets stop a run cleanly.

Here is the public `Planner` and nothing else: one run's loop is `planweave.planner.run`, its
limits `planweave.planner.budget`, what it returns `planweave.planner.result` (import each name
from its own module, or the public ones from `planweave`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from planweave.executor import Plan, RetryPolicy, RunEvent
from planweave.executor.backends import Backend
from planweave.executor.masking import Masker
from planweave.executor.requests import InputAnswer, pick_answers
from planweave.executor.store import FINAL_STATUSES, RunStore, open_store
from planweave.executor.waiting import Responder
from planweave.planner.budget import Budget
from planweave.planner.errors import ConfigError
from planweave.planner.llm import LLMConfig
from planweave.planner.models import DEFAULT_STEP_RETRY
from planweave.planner.prompts import PromptLibrary
from planweave.planner.result import PlannerResult
from planweave.planner.run import PlannerRun
from planweave.planner.state import PlannerState
from planweave.planner.tracing.subscriber import TracingConfig
from planweave.planner.worker import given_up
from planweave.tools.base import Tool, ToolRegistry
from planweave.tools.mcp import MCPServer

__all__ = ["Planner"]


class Planner:
    """Plans and runs a goal with an LLM. Without a model configured it uses `planweave/offline`.

    Args:
        model: a litellm model string (`openai/gpt-4o-mini`, `anthropic/...`, `ollama/llama3.1`);
            default `PLANWEAVE_MODEL`, else the offline rule-based model.
        tools: tools or typed functions; default the built-in tools on `workspace`. An `llm` tool
            using the same model is always added.
        budget: limits of each run (`Budget`).
        max_reasks: how often invalid model output (an empty plan with no answer included) is
            re-asked before the run fails.
        step_retry: how planned steps are retried; default 3 attempts with a short backoff, on
            transient errors only (`DEFAULT_STEP_RETRY`). The model may override it per step.
        stream: submit steps while the plan streams (True) or after it is complete (False).
        store: where runs are recorded for `planweave runs`/`show`/`resume`: a `RunStore`, a path,
            or None for the default (`$PLANWEAVE_HOME/runs.db`); False turns recording off.
        name: a label grouping this planner's runs in the monitoring report (default: the goal).
        meta: JSON-ready data recorded with each run (the CLI records its options, for `resume`).
        tracing: Langfuse tracing of each run: None follows the environment (`LANGFUSE_PUBLIC_KEY`,
            `LANGFUSE_SECRET_KEY`, `LANGFUSE_BASE_URL`), False turns it off, or a `TracingConfig`.
        masker: masks secrets in traces (and recorded runs); default the built-in rules plus
            `PLANWEAVE_MASK_PATTERNS` and the model API key.
        mcp: MCP servers whose tools join `tools` (`MCPServer`s, command lines or URLs). They run
            while the planner is entered (`async with planner:`), else for each run; one process
            starts each server once and shares it between concurrent runs.
        approve: tool names whose every call a person approves, edits or denies first (tools with
            `@tool(approval=True)` and steps with `approval: true` always wait).
        on_input: answers people's requests in-process (a `Responder`: the request in, an
            `InputAnswer` or None out); without one, a run whose remaining steps all wait on
            people ends `waiting` and continues with `respond`, in this process or another.
        answer_within_s: default deadline of each request; then approvals are denied and
            questions get their default.
        offer_tools: with more tools than this (say, 100 from MCP servers), each plan prompt lists
            only this many, the most relevant to the goal, plus `llm` (a cheap word-overlap
            selection, no model call); None (default) lists every tool.
        backend: where the plans' tool calls run (default: a `LocalBackend` per run); for
            example `RayBackend()` for tools that ask for Ray.
    """

    def __init__(
        self,
        model: str | None = None,
        tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] | None = None,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        fallbacks: Iterable[str] = (),
        budget: Budget | None = None,
        max_reasks: int = 2,
        step_retry: RetryPolicy = DEFAULT_STEP_RETRY,
        workspace: str | Path = ".",
        allow_private_hosts: bool = False,
        prompts_dir: str | Path | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        max_concurrency: int | None = None,
        tool_limits: Mapping[str, int] | None = None,
        subscribers: Iterable[Callable[[RunEvent], object]] = (),
        stream: bool = True,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        retry_delay_s: float = 0.5,
        output_chars: int = 2000,
        store: RunStore | str | Path | bool | None = None,
        name: str = "",
        meta: Mapping[str, Any] | None = None,
        tracing: bool | TracingConfig | None = None,
        masker: Masker | None = None,
        mcp: Iterable[MCPServer | str] = (),
        approve: Iterable[str] = (),
        on_input: Responder | None = None,
        answer_within_s: float | None = None,
        offer_tools: int | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.config = LLMConfig(
            model=model,
            api_base=api_base,
            api_key=api_key,
            fallbacks=list(fallbacks),
            timeout_s=timeout_s,
            max_retries=max_retries,
            retry_delay_s=retry_delay_s,
            prices=dict(prices or {}),
        )
        if tools is None:
            from planweave.tools.builtin import builtin_tools

            tools = builtin_tools(workspace=workspace, allow_private_hosts=allow_private_hosts)
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self.budget = budget or Budget()
        self._budget_given = budget is not None
        self.max_reasks = max_reasks
        self.step_retry = step_retry
        self.prompts = PromptLibrary(prompts_dir)
        self.max_concurrency = max_concurrency
        self.tool_limits = dict(tool_limits or {})
        self.subscribers = list(subscribers)
        self.stream_plans = stream
        self.output_chars = output_chars
        self._store_arg = store
        self._store: RunStore | None = None
        self.name = name
        self.meta = dict(meta or {})
        self.tracing = tracing
        self.masker = masker if masker is not None else Masker.from_env().with_values(api_key)
        self.mcp = [s if isinstance(s, MCPServer) else MCPServer.parse(s) for s in mcp]
        self._mcp_stack: contextlib.AsyncExitStack | None = None
        self.approve = frozenset(approve)
        self.on_input = on_input
        self.answer_within_s = answer_within_s
        self.offer_tools = offer_tools
        self.backend = backend

    @property
    def store(self) -> RunStore | None:
        """Where runs are recorded (opened on first use); None when recording is off (`store=False`)."""
        if self._store is None and self._store_arg is not False:
            arg = self._store_arg
            if isinstance(arg, RunStore):
                self._store = arg
            else:
                self._store = open_store(arg if isinstance(arg, (str, Path)) else None, mask=self.masker)
        return self._store

    @property
    def model(self) -> str:
        return self.config.resolved_model()

    # --- public API ----------------------------------------------------------------------------

    async def run(
        self,
        goal: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        subscribers: Iterable[Callable[[RunEvent], object]] = (),
        session_id: str | None = None,
        user_id: str | None = None,
        tags: Iterable[str] = (),
        conversation: Sequence[Mapping[str, str]] = (),
    ) -> PlannerResult:
        """Plan and run `goal`; returns the answer, every step, usage and cost (and the trace,
        when tracing is on; `session_id`, `user_id` and `tags` go on it).

        `conversation`: the earlier turns of a chat (`{"role": "user" | "assistant", "text": ...}`,
        oldest first), shown to the model in a section of their own; `goal` is the latest message."""
        if not goal or not goal.strip():
            raise ConfigError("the goal is empty; say what you want done")
        trace = {"session_id": session_id, "user_id": user_id, "tags": list(tags)}
        async with self._mcp_connected():
            return await PlannerRun(
                self, goal.strip(), dict(inputs or {}), run_id, [*self.subscribers, *subscribers], trace=trace,
                conversation=[dict(t) for t in conversation],
            ).go()

    async def plan(self, goal: str, *, inputs: Mapping[str, Any] | None = None) -> tuple[Plan, PlannerResult]:
        """Plan `goal` without running anything: the first round's steps, validated, as a `Plan`
        (save it with `plan.to_yaml()` and run it later with `planweave exec`)."""
        if not goal or not goal.strip():
            raise ConfigError("the goal is empty; say what you want done")
        async with self._mcp_connected():
            return await PlannerRun(
                self, goal.strip(), dict(inputs or {}), None, list(self.subscribers), record=False
            ).plan_only()

    async def respond(
        self,
        run_id: str,
        answer: InputAnswer,
        *,
        step_id: str | None = None,
        subscribers: Iterable[Callable[[RunEvent], object]] = (),
    ) -> PlannerResult:
        """Answer a `waiting` run's request (the step `step_id`, or the only one waiting) and
        continue the run, in this process or any other: the same run, no new plan.

        Raises `AnswerError` when the run waits for no such answer (it names what it waits for)."""
        store = self._store_or_fail()
        record = store.get_run(run_id)
        state = record.resume_state(PlannerState)
        tools = {t.name: t for t in self.tools}
        answers = pick_answers(state.requests, answer, step_id=step_id, run_id=record.summary.id, tools=tools)
        return await self.resume(record.summary.id, answers=answers, subscribers=subscribers)

    def _store_or_fail(self) -> RunStore:
        store = self.store
        if store is None:
            raise ConfigError("this planner records no runs (`store=False`), so it cannot continue one.")
        return store

    async def resume(
        self,
        run_id: str,
        *,
        subscribers: Iterable[Callable[[RunEvent], object]] = (),
        answers: Mapping[str, InputAnswer] | None = None,
        budget: Budget | None = None,
    ) -> PlannerResult:
        """Continue a recorded run that was interrupted (killed, crashed, Ctrl-C) or is `waiting`.

        Steps that succeeded are not run again (their recorded outputs are used), steps that
        were running run again, and the planner continues from the recorded context: a plan
        round cut off while it streamed is finished by the model (shown the steps it had
        planned), never joined on part of a plan.

        The run's budget, model and API base are restored from its record unless given here
        (`budget`) or to this planner; what the run spent before it stopped counts against the
        budget. The planner must have the tools the run had. `answers`
        (by step id) answer the steps that wait for people; those still unanswered ask again.
        """
        store = self.store
        if store is None:
            raise ConfigError("this planner records no runs (`store=False`), so it cannot resume one.")
        record = store.get_run(run_id)
        summary = record.summary
        if summary.kind != "planner":
            raise ConfigError(
                f"run `{summary.id}` ran a workflow file, not a goal; resume it with `planweave resume {summary.id}`."
            )
        if summary.status in FINAL_STATUSES and not given_up(record.events):  # (given up: retried by hand)
            raise ConfigError(
                f"run `{summary.id}` already ended ({summary.status}); nothing to resume. "
                f"Start a new run with the same goal instead."
            )
        state = record.resume_state(PlannerState)  # the planner's fold adds its rounds and replans
        history = record.state(PlannerState)
        planner = self._as_recorded(summary.id, summary.meta, budget)
        async with self._mcp_connected():
            return await PlannerRun(
                planner, state.goal, state.inputs, summary.id, [*self.subscribers, *subscribers], resume=state,
                trace={}, history=history, answers=answers,
                conversation=list(summary.meta.get("conversation") or []),
            ).go()

    def _as_recorded(self, run_id: str, meta: Mapping[str, Any], budget: Budget | None) -> Planner:
        """This planner with the recorded run's settings where this one was given none."""
        missing = sorted(set(meta.get("tools") or ()) - set(self.tools.names()))
        if missing:
            names = ", ".join(f"`{n}`" for n in missing)
            raise ConfigError(
                f"run `{run_id}` used the tools {names}, which this planner does not have; "
                f"pass them in `tools=` to resume it."
            )
        planner = copy.copy(self)
        recorded_budget = meta.get("budget")
        if budget is not None:
            planner.budget = budget
        elif not self._budget_given and isinstance(recorded_budget, dict):
            planner.budget = Budget.model_validate(recorded_budget)
        config = self.config
        model = config.model or meta.get("model")
        api_base = config.api_base or (meta.get("api_base") if config.model is None else None)
        planner.config = dataclasses.replace(config, model=model, api_base=api_base)
        return planner

    def _mcp_connected(self) -> contextlib.AbstractAsyncContextManager[object]:
        """The MCP servers running for one run (joined when the planner is entered)."""
        if not self.mcp:
            return contextlib.nullcontext()
        from planweave.tools.mcp import mcp_tools_into

        return mcp_tools_into(self.tools, self.mcp)

    async def __aenter__(self) -> Planner:
        """Start the MCP servers now and keep them running until the planner is left."""
        if self.mcp and self._mcp_stack is None:
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(self._mcp_connected())
            self._mcp_stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._mcp_stack is not None:
            stack, self._mcp_stack = self._mcp_stack, None
            await stack.aclose()

    def run_sync(self, goal: str, **kwargs: Any) -> PlannerResult:
        """`run` for scripts and notebooks."""
        return asyncio.run(self.run(goal, **kwargs))

    async def stream(self, goal: str, **kwargs: Any) -> AsyncIterator[RunEvent]:
        """Every event of the run as it happens (plan updates, steps, decisions, answer), ending
        with `PlannerFinished`. Closing the iterator early cancels the run."""
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        extra = list(kwargs.pop("subscribers", ()))
        task = asyncio.create_task(self.run(goal, subscribers=[*extra, queue.put_nowait], **kwargs))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
            task.result()  # re-raise a failure of the run itself
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
