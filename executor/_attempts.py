"""How one step is attempted: its arguments, its concurrency slots, its timeout, its `for_each`
items, and whether a failed attempt is tried again.

`Run` inherits `StepAttempts`: a base class rather than a helper object, so the per-step path
(`Run._execute` -> `_execute_one` -> `_call` -> the backend) has no extra hop. What an attempt's
outcome does to the run (`_settle_here`, `_cancel_node`, `_drain`) is `Run`'s.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from planweave.executor._nodes import FINAL, Node
from planweave.executor.errors import ForEachLimitError, ReferenceResolutionError, StepTimeoutError
from planweave.executor.events import EventBus
from planweave.executor.failures import Recovery, StepFailure
from planweave.executor.refs import PathError, Ref, pick, resolve
from planweave.executor.waiting import PersonWaits
from planweave.tools.base import ToolContext, ToolProgress

if TYPE_CHECKING:
    from planweave.executor.scheduler import Executor

__all__ = ["StepAttempts"]

log = logging.getLogger("planweave.executor")

_NO_CONTEXT = ToolContext()
"""Passed to tools that do not ask for a context (building one per call costs more than the call)."""


class _Slots:
    """Acquire the global and the per-tool concurrency slots (either may be absent)."""

    __slots__ = ("a", "b")

    def __init__(self, a: asyncio.Semaphore | None, b: asyncio.Semaphore | None) -> None:
        self.a, self.b = a, b

    async def __aenter__(self) -> None:
        if self.a is not None:
            await self.a.acquire()
        if self.b is not None:
            try:
                await self.b.acquire()
            except BaseException:
                if self.a is not None:
                    self.a.release()
                raise

    async def __aexit__(self, *exc: object) -> None:
        if self.b is not None:
            self.b.release()
        if self.a is not None:
            self.a.release()


class StepAttempts(PersonWaits):
    """The attempts of a run's steps (the half of `Run` that calls tools; waiting for people
    before the first attempt is `PersonWaits`)."""

    # Set by `Run.__init__`.
    executor: Executor
    id: str
    goal: str
    inputs: dict[str, Any]
    outputs: Mapping[str, Any]
    _outputs: dict[str, Any]
    _bus: EventBus
    _rng: random.Random
    _global_sem: asyncio.Semaphore | None
    _tool_sems: dict[str, asyncio.Semaphore]
    _unlimited: bool
    """No concurrency limit at all: attempts skip `_Slots`."""
    max_steps: int | None
    _item_steps: int
    _loop: asyncio.AbstractEventLoop | None
    model: str | None = None
    """The model the workflow names (`Workflow.model`), handed to tools in their context."""

    # Implemented by `Run`: what an attempt's outcome does to the run.
    @property
    def steps_used(self) -> int:
        raise NotImplementedError

    def _settle_here(self, node: Node, output: Any = None, exc: BaseException | None = None) -> None:
        raise NotImplementedError

    def _cancel_node(self, node: Node, reason: str) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError

    def _tool_emit(self, event: Any) -> None:
        """`ToolContext.emit`: a tool's own event joins the run's bus on the event loop's thread."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # a sync tool in a worker thread
            running = None
        if loop is None or running is loop:
            self._bus.emit(event)
        else:
            loop.call_soon_threadsafe(self._bus.emit, event)

    def _lookup(self, ref: Ref, item: Any) -> Any:
        root = ref.root
        try:
            if root in self._outputs:
                value = self._outputs[root]
            elif root == "inputs":
                return pick(self.inputs, ref.path, Ref("inputs"))
            elif root == "goal":
                return self.goal
            elif root == "item":
                value = item
            else:
                raise PathError(f"step `{root}` has no output")
            return pick(value, ref.path, ref) if ref.path else value
        except PathError as exc:
            raise ReferenceResolutionError(f"cannot resolve `{ref}`: {exc}") from None

    async def _execute_one(self, node: Node) -> None:
        c = node.c
        sid = c.step.id
        try:
            kind = self._needs_person(c)
            if kind is not None and not await self._wait_for_person(node, kind):
                return
            while True:
                node.attempts += 1
                attempt = node.attempts
                try:
                    if c.for_each is not None:
                        output = await self._run_for_each(node, attempt)
                    elif self._unlimited:
                        output = await self._call(node, attempt, None)
                    else:
                        async with _Slots(self._global_sem, self._tool_sems.get(c.tool.name)):
                            output = await self._call(node, attempt, None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if node.status in FINAL:  # the run was aborted meanwhile
                        return
                    try:
                        delay = await self._decide(node, exc, attempt)
                    except Exception as handler_exc:  # a broken failure handler fails the step
                        delay, exc = None, handler_exc
                    if delay is None:
                        self._settle_here(node, exc=exc)
                        return
                    if self._bus.active:
                        self._bus.note("step_retrying", sid, attempt, delay, str(exc), type(exc).__name__)
                    await asyncio.sleep(delay)
                    continue
                if node.status not in FINAL:
                    self._settle_here(node, output)
                return
        except asyncio.CancelledError:
            # Only `_abort` cancels step tasks, and it has already marked the step cancelled;
            # this covers a cancellation from anywhere else.
            if node.status not in FINAL:
                self._cancel_node(node, "the run was cancelled")
                self._drain()
            raise

    def _call(self, node: Node, attempt: int, item: tuple[int, Any] | None) -> Awaitable[Any]:
        """Start one attempt: resolve the arguments and return the backend call to await.

        A plain method returning the coroutine, not a coroutine itself: one frame less per step.
        """
        c = node.c
        step = c.step
        if node.started_at is None:
            node.started_at = time.time()
            node.status = "running"
        item_value = item[1] if item is not None else None
        if node.args_override is not None:  # a person edited them: used as given (a for_each step's are resolved per item)
            override = node.args_override
            args = override if item is None else resolve(override, lambda r: self._lookup(r, item_value))
        else:
            args = resolve(step.args, lambda r: self._lookup(r, item_value)) if c.args_dynamic else step.args
        if item is None and self._bus.active:
            self._bus.note("step_started", step.id, c.tool.name, attempt, args)
        ctx = (
            ToolContext(
                run_id=self.id,
                step_id=step.id,
                attempt=attempt,
                goal=self.goal,
                inputs=self.inputs,
                outputs=self.outputs,
                item=item_value,
                report=self._progress_reporter(step.id),
                item_index=item[0] if item is not None else None,
                emit=self._tool_emit,
                model=self.model,
            )
            if c.tool.context_param is not None
            else _NO_CONTEXT
        )
        policy = step.cache if step.cache is not None else c.tool.cache
        if step.workflow is not None:
            from planweave.executor.subworkflow import run_child

            call: Awaitable[Any] = run_child(self, step.id, c.tool, args)
        elif policy is None or policy is False or not c.tool.pure or self.executor.cache is False:
            call = self.executor.backend.invoke(c.tool, args, ctx)
        else:
            call = self._cached(node, args, ctx, item, None if policy is True else float(policy))
        if step.timeout_s is None:
            return call
        return self._timed(node, attempt, call)

    def _progress_reporter(self, step_id: str) -> Callable[[ToolProgress], None]:
        """`ToolContext.report` for one step: a `StepProgressed` event per report, emitted on the
        loop's thread (a sync tool reports from its worker thread)."""
        bus = self._bus
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def report(update: ToolProgress) -> None:
            if not bus.active:
                return
            fields = (step_id, update.kind, update.done, update.total, update.message, update.partial)
            if threading.get_ident() == loop_thread:
                bus.note("step_progress", *fields)
            else:
                try:
                    loop.call_soon_threadsafe(bus.note, "step_progress", *fields)
                except RuntimeError:  # the loop is closed: the run is over, nobody is listening
                    pass

        return report
    async def _cached(
        self, node: Node, args: Mapping[str, Any], ctx: ToolContext, item: tuple[int, Any] | None, max_age_s: float | None
    ) -> Any:
        """The call through the step cache: a stored result when there is one, else the tool's (then stored).

        The cache is a help, never a reason to fail: when it cannot be read or written, the
        tool is called and the problem logged."""
        from planweave.executor.cache import cache_key

        tool = node.c.tool
        key = cache_key(tool, args, self.model)
        cache = None
        try:
            cache = self.executor.step_cache()
            found, output, age = await asyncio.to_thread(cache.get, key, max_age_s)
        except Exception:
            log.warning("step `%s`: the step cache cannot be read; calling `%s`", node.c.step.id, tool.name, exc_info=True)
            found, output, age = False, None, 0.0
        if found:
            if self._bus.active:
                self._bus.note("step_cache_hit", node.c.step.id, tool.name, key, age, item[0] if item is not None else None)
            return output
        output = await self.executor.backend.invoke(tool, args, ctx)
        if cache is not None:
            try:
                await asyncio.to_thread(cache.put, key, tool, output)
            except Exception:
                log.warning("step `%s`: the step cache cannot be written", node.c.step.id, exc_info=True)
        return output

    async def _timed(self, node: Node, attempt: int, call: Awaitable[Any]) -> Any:
        step = node.c.step
        assert step.timeout_s is not None
        try:
            async with asyncio.timeout(step.timeout_s):
                return await call
        except TimeoutError:
            raise StepTimeoutError(
                f"step `{step.id}` timed out after {step.timeout_s:g}s (attempt {attempt}); "
                "raise its `timeout_s` or make the tool faster.",
                tool=node.c.tool.name,
                step_id=step.id,
                attempt=attempt,
            ) from None

    async def _run_for_each(self, node: Node, attempt: int) -> list[Any]:
        c = node.c
        assert c.for_each is not None
        items = self._lookup(c.for_each, None)
        if not isinstance(items, list):
            raise ReferenceResolutionError(
                f"step `{c.step.id}` `for_each` needs a list, but `{c.for_each}` is a {type(items).__name__}; "
                "point it at a list output.",
                step_id=c.step.id,
            )
        if node.item_outputs is None:
            self._count_items(c.step.id, len(items))  # before any item runs; once, not per attempt
            node.item_outputs = {}
        done = node.item_outputs
        if self._bus.active:
            self._bus.note("step_started", c.step.id, c.tool.name, attempt, {"for_each": len(items), **c.step.args})
        if node.started_at is None:
            node.started_at = time.time()
            node.status = "running"

        async def one(i: int, value: Any) -> None:
            async with _Slots(self._global_sem, self._tool_sems.get(c.tool.name)):
                done[i] = await self._call(node, attempt, (i, value))

        # Items that succeeded in an earlier attempt are kept; only the failed ones run again.
        async with asyncio.TaskGroup() as tg:
            for i, value in enumerate(items):
                if i not in done:
                    tg.create_task(one(i, value))
        return [done[i] for i in range(len(items))]

    def _count_items(self, step_id: str, items: int) -> None:
        """Each item is a tool call: it counts against the per-step cap and the run's `max_steps`."""
        cap = self.executor.max_items_per_step
        if items > cap:
            raise ForEachLimitError(
                f"step `{step_id}` `for_each` has {items:,} items; one step may run at most {cap:,}. "
                "Use a shorter list (slice it in an earlier step) or raise `max_items_per_step`.",
                step_id=step_id,
                items=items,
                limit=cap,
            )
        extra = max(items - 1, 0)
        if self.max_steps is not None and self.steps_used + extra > self.max_steps:
            raise ForEachLimitError(
                f"step `{step_id}` `for_each` has {items:,} items, and each counts as a step: the run "
                f"would have {self.steps_used + extra:,} steps, over its budget of {self.max_steps:,}. "
                "Use a shorter list or raise `max_steps`.",
                step_id=step_id,
                items=items,
                limit=self.max_steps,
            )
        self._item_steps += extra

    async def _decide(self, node: Node, exc: BaseException, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to stop trying."""
        if isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        policy = node.c.step.retry
        handler = self.executor.failure_handler
        if handler is not None:
            decision = handler(StepFailure(node.c.step.id, node.c.tool.name, exc, attempt))
            if inspect.isawaitable(decision):
                decision = await decision
            assert isinstance(decision, Recovery)
            if decision.action == "retry" and attempt < decision.max_attempts:
                return decision.delay_s if decision.delay_s is not None else policy.delay(attempt, self._rng)
            if decision.action != "retry":
                node.policy = "continue" if decision.action == "continue" else "fail"
            return None
        if attempt < policy.max_attempts and policy.retries(exc):
            return policy.delay(attempt, self._rng)
        return None
