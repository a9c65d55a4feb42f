"""The scheduler: runs a plan graph, starting every step the moment its inputs are ready.

There is no superstep barrier: when a step finishes, each dependent whose last
missing input it was starts at once, whatever else is still running. Steps are
tasks in one `asyncio.TaskGroup` per run, so no task outlives its run.

    executor = Executor(tools=[search, summarize], max_concurrency=8, tool_limits={"http_get": 4})
    result = await executor.run(plan, inputs={"topic": "rust"})

    async with executor.start(goal="...") as run:      # a live run: add steps while it runs
        run.add_steps([...])
        async for event in run.events(): ...
        run.close()                                     # no more steps: finish when all are done
    result = run.result

`Executor` is here; the rest of the scheduler is one module per concept, re-exported here:
`planweave.executor.run` (`Run`: the graph's progress and final states), `planweave.executor._attempts` (how one
step's tool is called and retried), `planweave.executor._nodes` (per-step state and dependency
countdowns), `planweave.executor.failures` (`StepFailure`, `Recovery`, `FailureHandler`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from planweave.executor.backends import Backend, LocalBackend
from planweave.executor.events import Subscriber
from planweave.executor.failures import FailureHandler, Recovery, StepFailure
from planweave.executor.plan import Plan, Step
from planweave.executor.requests import InputAnswer, InputRequest
from planweave.executor.result import RunResult
from planweave.executor.run import Run, RunClosedError
from planweave.executor.waiting import Responder
from planweave.tools.base import Tool, ToolRegistry
from planweave.tools.errors import ConfigError

if TYPE_CHECKING:
    from planweave.executor.cache import StepCache
    from planweave.executor.workflow import Workflow
    from planweave.tools.mcp import MCPServer

__all__ = ["DEFAULT_MAX_ITEMS_PER_STEP", "Executor", "Recovery", "Run", "RunClosedError", "StepFailure"]

DEFAULT_MAX_ITEMS_PER_STEP = 1_000
"""Most items one `for_each` step runs unless `Executor(max_items_per_step=...)` says otherwise."""


class Executor:
    """Runs plans with a set of tools. Reusable across runs; one instance can run many at once.

    Args:
        tools: tools or typed functions (wrapped with `@tool`), or a `ToolRegistry`.
        max_concurrency: most steps running at once in a run (None: no limit).
        tool_limits: most concurrent calls per tool name, e.g. `{"http_get": 4}`.
        backend: where tool calls run (default: `LocalBackend`).
        failure_handler: called on every failed attempt; returns a `Recovery` that overrides
            the step's retry policy (the eight-factor guide's `on_failure`).
        seed: seeds retry jitter, for reproducible delays.
        mcp: MCP servers whose tools join `tools` (`MCPServer`s, command lines or URLs). They
            start when the executor is entered (`async with executor:`) or, if it is not, for
            each `run`; a live run (`start`) needs the executor entered.
        cache: the step cache of cached steps (`planweave.executor.cache`): True for the
            default one, a `StepCache`, or False to run every call.
        approve: tool names whose every call a person approves first (as `@tool(approval=True)`).
        responder: answers people's requests in-process (`planweave.executor.waiting.Responder`);
            without one, a run whose remaining steps all wait on people ends `waiting`.
        answer_within_s: default deadline of each request (a step's `answer_within_s` overrides it).
    """

    def __init__(
        self,
        tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (),
        *,
        max_concurrency: int | None = None,
        tool_limits: Mapping[str, int] | None = None,
        backend: Backend | None = None,
        failure_handler: FailureHandler | None = None,
        seed: int | None = None,
        mcp: Iterable[MCPServer | str] = (),
        max_items_per_step: int = DEFAULT_MAX_ITEMS_PER_STEP,
        cache: StepCache | bool = True,
        approve: Iterable[str] = (),
        responder: Responder | None = None,
        answer_within_s: float | None = None,
    ) -> None:
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        self.mcp = list(mcp)
        self._mcp_stack: contextlib.AsyncExitStack | None = None
        self._mcp_users = 0
        """Connections open now (the entered executor's, each `run`'s): `start` needs one."""
        if max_items_per_step < 1:
            raise ConfigError(f"`max_items_per_step` must be at least 1, not {max_items_per_step}.")
        self.max_items_per_step = max_items_per_step
        """Most items one `for_each` step may run (each also counts against the run's `max_steps`)."""
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigError(f"`max_concurrency` must be at least 1, not {max_concurrency}; pass None for no limit.")
        for name, limit in (tool_limits or {}).items():
            if limit < 1:
                raise ConfigError(f"`tool_limits[{name!r}]` must be at least 1, not {limit}; leave the tool out for no limit.")
        self.max_concurrency = max_concurrency
        self.tool_limits = dict(tool_limits or {})
        self.backend = backend or LocalBackend()
        self.failure_handler = failure_handler
        self.seed = seed
        self.cache: StepCache | bool = cache
        """Where cached steps keep their results: True for the default cache (`<home>/cache.db`,
        opened when a step first uses it), a `StepCache`, or False to cache nothing."""
        self._own_cache: StepCache | None = None
        self.approve = frozenset(approve)
        self.responder = responder
        self.answer_within_s = answer_within_s

    def step_cache(self) -> StepCache:
        """The step cache (opened on first use when it is the default one)."""
        if isinstance(self.cache, bool):
            if self._own_cache is None:
                from planweave.executor.cache import open_cache

                self._own_cache = open_cache()
            return self._own_cache
        return self.cache

    def start(
        self,
        plan: Plan | Workflow | Iterable[Step] | None = None,
        *,
        goal: str = "",
        inputs: Mapping[str, Any] | None = None,
        completed: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        subscribers: Iterable[Subscriber] = (),
        deadline_s: float | None = None,
        max_steps: int | None = None,
        replans_handled: bool = False,
        keep_events: bool = True,
        answers: Mapping[str, InputAnswer] | None = None,
        requests: Mapping[str, InputRequest] | None = None,
    ) -> Run:
        """Create a run (validating `plan` now). Use it as `async with executor.start(...) as run:`.

        `completed` maps step ids to recorded outputs: those steps are not run again (resume).
        `answers` are people's answers to steps that wait (by step id), `requests` the requests an
        earlier process of this run recorded (their deadlines hold).
        A `Workflow` runs its expanded plan with its default inputs and limits (its success
        criteria are checked by `run`, not here).
        """
        from planweave.executor.workflow import Workflow  # workflow.py builds on this module

        model = plan.model if isinstance(plan, Workflow) else None
        if isinstance(plan, Workflow):
            goal = goal or plan.description or plan.name
            inputs = {**plan.inputs, **(inputs or {})}
            deadline_s = deadline_s if deadline_s is not None else plan.limits.deadline_s
            max_steps = max_steps if max_steps is not None else plan.limits.max_steps
            plan = plan.plan
        if self.mcp and self._mcp_users == 0:
            raise ConfigError(
                "this executor has MCP servers, which must be running before a live run starts; "
                "enter the executor first: `async with Executor(..., mcp=[...]) as executor:`."
            )
        run = Run(
            self,
            plan,
            goal=goal,
            inputs=inputs,
            completed=completed,
            run_id=run_id,
            subscribers=subscribers,
            deadline_s=deadline_s,
            max_steps=max_steps,
            replans_handled=replans_handled,
            keep_events=keep_events,
            answers=answers,
            requests=requests,
        )
        run.model = model  # what `llm` steps call unless told otherwise (`ToolContext.model`)
        return run

    async def run(self, plan: Plan | Workflow | Iterable[Step], **kwargs: Any) -> RunResult:
        """Run a complete plan and return its result (keyword arguments as for `start`).

        A `Workflow`'s result fails when one of its success criteria does not hold.
        """
        async with self._mcp_for_run(plan):
            async with self.start(plan, **kwargs) as run:
                run.close()
        result = run.result
        from planweave.executor.workflow import Workflow

        if isinstance(plan, Workflow) and result.status in ("succeeded", "partial"):
            unmet = plan.unmet_criteria(result)
            if unmet:
                result = result.model_copy(update={"status": "failed", "error": "; ".join(unmet)})
        return result

    def run_sync(self, plan: Plan | Workflow | Iterable[Step], **kwargs: Any) -> RunResult:
        """`run` for scripts and notebooks without an event loop of their own."""

        async def main() -> RunResult:
            try:
                return await self.run(plan, **kwargs)
            finally:
                await self.aclose()

        return asyncio.run(main())

    @contextlib.asynccontextmanager
    async def _mcp_for_run(self, plan: Any) -> AsyncIterator[None]:
        """Connect the MCP servers (the executor's and a workflow's) for one run; servers already
        running in this process (an entered executor's) are joined, not started again."""
        servers = [*self.mcp, *getattr(plan, "mcp", ())]
        if not servers:
            yield
            return
        from planweave.tools.mcp import mcp_tools_into

        async with mcp_tools_into(self.tools, servers):
            self._mcp_users += 1
            try:
                yield
            finally:
                self._mcp_users -= 1

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self._mcp_stack is not None:
            stack, self._mcp_stack = self._mcp_stack, None
            self._mcp_users -= 1
            await stack.aclose()
        if self._own_cache is not None:
            self._own_cache.close()
            self._own_cache = None

    async def __aenter__(self) -> Executor:
        if self.mcp and self._mcp_stack is None:
            from planweave.tools.mcp import mcp_tools_into

            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(mcp_tools_into(self.tools, self.mcp))
            self._mcp_stack = stack
            self._mcp_users += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
