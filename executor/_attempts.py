"""How one step is attempted: its arguments, its concurrency slots, its timeout, its `for_each`
items, and whether a failed attempt is tried again.

`Run` inherits `StepAttempts`: a base class rather than a helper object, so the per-step path
(`Run._execute` -> `_execute_one` -> `_call` -> the backend) has no extra hop. What an attempt's
outcome does to the run (`_settle_here`, `_cancel_node`, `_drain`) is `Run`'s.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from planweave.executor._nodes import FINAL, Node
from planweave.executor.errors import ReferenceResolutionError, StepTimeoutError
from planweave.executor.events import EventBus
from planweave.executor.failures import Recovery, StepFailure
from planweave.executor.refs import PathError, Ref, pick, resolve
from planweave.executor.waiting import PersonWaits
from planweave.tools.base import ToolContext

if TYPE_CHECKING:
    from planweave.executor.scheduler import Executor

__all__ = ["StepAttempts"]

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

    # Implemented by `Run`: what an attempt's outcome does to the run.
    def _settle_here(self, node: Node, output: Any = None, exc: BaseException | None = None) -> None:
        raise NotImplementedError

    def _cancel_node(self, node: Node, reason: str) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError

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
            )
            if c.tool.context_param is not None
            else _NO_CONTEXT
        )
        call = self.executor.backend.invoke(c.tool, args, ctx)
        if step.timeout_s is None:
            return call
        return self._timed(node, attempt, call)

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
