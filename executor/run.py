"""A run: one execution of a growing plan graph, created by `Executor.start`.

`Run` keeps a `Node` per step, starts each step the moment its last input succeeds (as a task
of the run's `TaskGroup`, or in the task of the step that made it ready), records final states,
skips what needs a step that did not succeed, and builds the `RunResult`. How a step's tool is
called and retried is `StepAttempts` (`planweave.executor._attempts`), which `Run` inherits.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import types
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from planweave.executor._attempts import StepAttempts
from planweave.executor._nodes import FINAL, Join, Node, needs_reason, new_join
from planweave.executor.durability import journal_of
from planweave.executor.errors import PlanError, PlanProblem, RunNotStartedError
from planweave.executor.events import EventBus, RunEvent, RunStarted, StepAdded, Subscriber
from planweave.executor.graph import CompiledStep, PlanGraph
from planweave.executor.plan import Plan, Step
from planweave.executor.requests import InputAnswer, InputRequest
from planweave.executor.result import RunResult, RunStatus, StepResult, StepStatus, describe_failed_steps
from planweave.tools.errors import RuntimeFailure
from planweave.tools.safe_eval import INLINE_WORK, WorkLimitExceeded, evaluate, evaluate_async

if TYPE_CHECKING:
    from planweave.executor.scheduler import Executor

__all__ = ["Run", "RunClosedError"]


class RunClosedError(RuntimeFailure):
    """Steps were added to a run that is closed or finished."""


_BURST = 256
"""Most step tasks created per turn of the event loop (see `Run._next_burst`)."""


def _added_fields(compiled: tuple[CompiledStep, ...]) -> list[tuple[str, str, Step, list[str]]]:
    """The fields of a `StepAdded` for each step of a batch (for a subscriber taking them unbuilt:
    it only reads them; steps with the same dependencies share one sorted list)."""
    ordered: dict[frozenset[str], list[str]] = {}  # a dependency set shared by many steps is sorted once
    fields = []
    for c in compiled:
        deps = ordered.get(c.deps)
        if deps is None:
            deps = ordered[c.deps] = sorted(c.deps)
        fields.append((c.step.id, c.step.action, c.step, deps))
    return fields


def _added_events(compiled: tuple[CompiledStep, ...], run_id: str, at: float) -> list[RunEvent]:
    """`StepAdded` for each step of a batch (built only when someone needs them)."""
    return [
        StepAdded(run_id=run_id, at=at, step_id=sid, tool=tool, step=step, deps=list(deps))
        for sid, tool, step, deps in _added_fields(compiled)
    ]


class Run(StepAttempts):
    """One execution of a growing plan graph. Create with `Executor.start`."""

    def __init__(
        self,
        executor: Executor,
        plan: Plan | Iterable[Step] | None,
        *,
        goal: str,
        inputs: Mapping[str, Any] | None,
        completed: Mapping[str, Any] | None,
        run_id: str | None,
        subscribers: Iterable[Subscriber],
        deadline_s: float | None,
        max_steps: int | None,
        replans_handled: bool,
        keep_events: bool,
        answers: Mapping[str, InputAnswer] | None = None,
        requests: Mapping[str, InputRequest] | None = None,
    ) -> None:
        self.executor = executor
        self.id = run_id or uuid.uuid4().hex[:16]
        self.goal = goal
        self.inputs: dict[str, Any] = dict(inputs or {})
        self.deadline_s = deadline_s
        self.max_steps = max_steps
        self.replans_handled = replans_handled
        self.graph = PlanGraph(executor.tools, inputs=self.inputs)
        subscribers = list(subscribers)
        self._bus = EventBus(subscribers, keep_history=keep_events, run_id=self.id)
        self._journal = journal_of(subscribers)
        """The subscriber recording the run (`planweave.executor.durability`): steps wait for it."""
        self._held: dict[int, list[Node]] = {}  # ready steps waiting for an event number to be durable
        self._nodes: dict[str, Node] = {}
        self._joins: dict[frozenset[str], Join] = {}
        self._outputs: dict[str, Any] = {}
        self.outputs: Mapping[str, Any] = types.MappingProxyType(self._outputs)
        """Outputs of the steps that have succeeded so far (read-only, live)."""
        self._restore: dict[str, Any] = dict(completed or {})
        self._item_steps = 0
        """`for_each` items beyond one per step, counted against `max_steps` (see `steps_used`)."""
        self._unfinished = 0
        self._closed = False
        self._finished = False
        self._status: RunStatus = "running"
        self._error: str | None = None
        self._replans: list[str] = []
        self._settling: deque[Node] = deque()
        self._handoff: Node | None = None
        self._handoff_task: asyncio.Task[None] | None = None
        self._draining = False
        self._rng = random.Random(executor.seed)
        self._global_sem = asyncio.Semaphore(executor.max_concurrency) if executor.max_concurrency else None
        self._tool_sems = {name: asyncio.Semaphore(n) for name, n in executor.tool_limits.items()}
        self._unlimited = self._global_sem is None and not self._tool_sems
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_now = 0  # step tasks created since the loop last ran `_next_burst`
        self._queued: deque[Node] = deque()  # ready steps waiting for the next burst
        self._done: asyncio.Event | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self._result: RunResult | None = None
        self._initial: list[CompiledStep] = []
        self._parked: dict[str, InputRequest] = {}
        self._answers: dict[str, InputAnswer] = dict(answers or {})
        self._requested: dict[str, InputRequest] = dict(requests or {})
        self._stall: asyncio.Event | None = None
        if plan is not None:
            steps = plan.steps if isinstance(plan, Plan) else list(plan)
            self._check_max_steps(len(steps))
            self._initial = self.graph.add(steps)

    # --- public API ----------------------------------------------------------------------------

    @property
    def status(self) -> RunStatus:
        return self._status

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def result(self) -> RunResult:
        """The final result; available once the run has finished."""
        if self._result is None:
            raise RunNotStartedError(f"run `{self.id}` has not finished; await `run.wait()` first")
        return self._result

    def step_status(self, step_id: str) -> StepStatus:
        return self._nodes[step_id].status

    def step_error(self, step_id: str) -> str | None:
        """Why a step failed, was skipped or was cancelled (None otherwise)."""
        return self._nodes[step_id].error

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call `fn` with every later event. Returns a function that unsubscribes."""
        return self._bus.subscribe(fn)

    def events(self, *, replay: bool = True) -> AsyncIterator[RunEvent]:
        """Async iterator over the run's events (earlier ones replayed first), ending with the run."""
        return self._bus.iterate(replay=replay)

    @property
    def history(self) -> list[RunEvent]:
        return self._bus.history

    def emit(self, event: RunEvent) -> None:
        """Send an event of a layer above (the planner's decisions, LLM calls, ...) through the
        run's bus: every subscriber and `events()` iterator sees it in order with the run's own,
        under the bus's one failure policy. Works before, during and after the run."""
        self._bus.emit(event)

    @property
    def subscriber_errors(self) -> int:
        """How many times a subscriber raised (each one is logged; the run went on)."""
        return self._bus.subscriber_errors

    async def drain_subscribers(self) -> None:
        """Wait until the coroutines of async subscribers are done (`__aexit__` does it too)."""
        await self._bus.drain()

    def add_steps(self, steps: Iterable[Step | dict[str, Any]]) -> list[str]:
        """Validate steps against the live graph and schedule them; raises `PlanError` on any problem.

        A step whose inputs are all available starts at once. Returns the added ids.
        """
        if self._closed:
            raise RunClosedError(
                f"run `{self.id}` is {'finished' if self._finished else 'closed'}; "
                "add steps before calling `close()`."
            )
        batch = [s if isinstance(s, Step) else Step.model_validate(s) for s in steps]
        self._check_max_steps(len(batch))
        compiled = self.graph.add(batch)
        if self._tg is None:
            self._initial.extend(compiled)
        else:
            self._schedule(compiled)
        return [c.step.id for c in compiled]

    def check_steps(self, steps: Iterable[Step]) -> list[PlanProblem]:
        """Problems `steps` would have if added now, without adding them."""
        return self.graph.check(steps)

    def close(self) -> None:
        """No more steps will be added: the run finishes when every step is final."""
        self._closed = True
        if self._tg is not None and self._unfinished == 0 and not self._finished:
            self._finish()
        elif self._parked and self._tg is not None:
            self._check_stalled()  # everything left waits on people: the run ends `waiting`

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel running steps, mark every other unfinished step cancelled, and end the run."""
        self._abort("cancelled", reason)

    async def wait(self) -> RunResult:
        """Wait until the run has finished (call `close()` first, or it waits for more steps)."""
        if self._done is None:
            raise RunNotStartedError("the run has not started; use `async with executor.start(...) as run:`")
        await self._done.wait()
        return self.result

    async def __aenter__(self) -> Run:
        if self._tg is not None:
            raise RunNotStartedError(f"run `{self.id}` was already started; start a new run with `executor.start(...)`")
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        if self._journal is not None:
            self._journal.on_failure(self._loop, self._on_journal_failure)
        if self._bus.active:
            self._bus.emit(RunStarted(run_id=self.id, goal=self.goal, inputs=self.inputs, at=self.started_at))
        if self.deadline_s is not None:
            self._deadline_handle = self._loop.call_later(self.deadline_s, self._on_deadline)
        initial, self._initial = self._initial, []
        self._schedule(initial)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        assert self._tg is not None and self._done is not None
        try:
            if exc is not None:
                self._abort("cancelled", f"the code driving the run raised {type(exc).__name__}: {exc}")
            else:
                self.close()
            await self._done.wait()
            await self._bus.drain()
            if self._journal is not None:
                await self._journal.wait_durable()  # the run ends once its record does
        except BaseException:
            # Cancelled while waiting (e.g. Ctrl-C): cancel the steps, then let the cancellation through.
            self._abort("cancelled", "the run was interrupted")
            raise
        finally:
            await self._tg.__aexit__(None, None, None)
        if self._journal is not None and self._journal.failure is not None:
            raise self._journal.stop_error()

    # --- scheduling ------------------------------------------------------------------------------

    @property
    def steps_used(self) -> int:
        """Steps counted against `max_steps`: every step, plus each `for_each` item after the first."""
        return len(self.graph) + self._item_steps

    def _check_max_steps(self, n: int) -> None:
        if self.max_steps is not None and self.steps_used + n > self.max_steps:
            raise PlanError(
                [
                    PlanProblem(
                        None,
                        f"the run allows at most {self.max_steps} steps and would have "
                        f"{self.steps_used + n}; plan fewer steps or raise `max_steps`.",
                    )
                ]
            )

    def _schedule(self, compiled: list[CompiledStep]) -> None:
        nodes = self._nodes
        new = []
        for c in compiled:
            node = Node(c)
            nodes[c.step.id] = node
            new.append(node)
        self._unfinished += len(new)
        if self._bus.active and new:
            batch = tuple(compiled)
            self._bus.defer(StepAdded.kind, functools.partial(_added_events, batch), functools.partial(_added_fields, batch))
        if self._closed and not new:
            return
        # Restored outputs first, so the joins below see them as succeeded.
        if self._restore:
            for node in new:
                sid = node.c.step.id
                if sid in self._restore:
                    node.restored = True
                    node.attempts = 0
                    self._succeed(node, self._restore.pop(sid), emit_restored=True)
        joins = self._joins
        for node in new:
            if node.status != "pending":  # restored, or settled by something this loop started
                continue
            deps = node.c.deps
            if not deps:
                self._ready(node)
                continue
            join = joins.get(deps)
            if join is None:
                join = joins[deps] = new_join(nodes, deps)
            if join.blocked is not None:
                self._skip(node, needs_reason(nodes, join.blocked))
            elif join.waiting == 0:
                self._ready(node, max(nodes[d].mark for d in deps) if self._journal is not None else 0)
            else:
                join.members.append(node)
        self._drain()

    def _ready(self, node: Node, need: int = 0, *, condition_checked: bool = False) -> None:
        """`node`'s inputs are all there: check its condition and start it, once the journal's
        event `need` (the success of its last input) is durable."""
        journal = self._journal
        if journal is not None:
            if need > journal.committed:
                held = self._held.get(need)
                if held is not None:  # (others wait for that event already: no need to ask again)
                    held.append(node)
                    return
                if not journal.durable_now(need):
                    self._hold(node, need)
                    return
            if journal.failure is not None:
                self._on_journal_failure()  # fail closed: no step starts unrecorded
                return
        c = node.c
        if c.condition is not None and not condition_checked:
            expr, refs = c.condition
            try:
                names = {f"_r{i}": self._lookup(r, None) for i, r in enumerate(refs)}
                ok = bool(evaluate(expr, names, work_limit=INLINE_WORK))
            except WorkLimitExceeded:
                # Too heavy for the event loop: decide in a worker thread, the step waits meanwhile.
                assert self._tg is not None
                self._tg.create_task(self._ready_heavy(node, expr, names), name=f"planweave-when-{c.step.id}")
                return
            except Exception as exc:
                self._fail(node, exc)
                return
            if not ok:
                self._skip(node, f"condition `{c.step.when}` is false")
                return
        node.status = "ready"
        if self._bus.active:
            self._bus.note("step_ready", c.step.id)
        if self._handoff_task is not None and self._handoff is None:
            # The step task that made this one ready runs it next, saving a task creation.
            self._handoff = node
            node.task = self._handoff_task
        elif self._started_now < _BURST and not self._queued:
            if self._started_now == 0:
                assert self._loop is not None
                self._loop.call_soon(self._next_burst)
            self._start(node)
        else:
            self._queued.append(node)

    async def _ready_heavy(self, node: Node, expr: str, names: dict[str, Any]) -> None:
        try:
            ok = bool(await evaluate_async(expr, names))
        except Exception as exc:
            if node.status == "pending":
                self._fail(node, exc)
            return
        if node.status != "pending":  # the run ended meanwhile
            return
        if ok:
            self._ready(node, condition_checked=True)
        else:
            self._skip(node, f"condition `{node.c.step.when}` is false")
        self._drain()

    def _hold(self, node: Node, need: int) -> None:
        group = self._held.get(need)
        if group is not None:
            group.append(node)
            return
        self._held[need] = [node]
        assert self._journal is not None and self._loop is not None
        if self._journal.when_durable(need, self._loop, functools.partial(self._release, need)):
            self._release(need)

    def _release(self, need: int) -> None:
        """The journal made event `need` durable (or failed): the steps held for it go on."""
        for node in self._held.pop(need, ()):
            if node.status == "pending":  # not cancelled meanwhile
                self._ready(node)
        self._drain()

    def _on_journal_failure(self) -> None:
        journal = self._journal
        assert journal is not None and journal.failure is not None
        self._abort("cancelled", f"the run stopped because it could not be recorded: {journal.failure}")

    def _start(self, node: Node) -> None:
        assert self._tg is not None
        self._started_now += 1
        node.task = self._tg.create_task(self._execute(node), name=f"planweave-step-{node.c.step.id}")

    def _next_burst(self) -> None:
        """Start the steps queued by `_ready`, at most `_BURST` per turn of the event loop.

        When thousands of steps become ready at once, they would start in this order anyway,
        one after the other; creating their tasks a burst at a time lets the tasks of quick
        steps finish and be freed before the next burst, instead of tens of thousands of live
        tasks filling the garbage collector's older generations.
        """
        self._started_now = 0
        queued = self._queued
        if not queued:
            return
        assert self._loop is not None
        self._loop.call_soon(self._next_burst)
        while queued and self._started_now < _BURST:
            node = queued.popleft()
            if node.status == "ready":  # not cancelled meanwhile
                self._start(node)

    # --- step tasks (a step's attempts themselves are `StepAttempts`) ---------------------------

    async def _execute(self, first: Node) -> None:
        node: Node | None = first
        while node is not None:
            if node.status not in FINAL:
                await self._execute_one(node)
            node.task = None  # a finished task (and its coroutine) is not kept for the whole run
            node, self._handoff = self._handoff, None

    def _settle_here(self, node: Node, output: Any = None, exc: BaseException | None = None) -> None:
        """Record the outcome of `node`, run from its own task, which may take over one dependent."""
        self._handoff_task = node.task
        try:
            if exc is None:
                self._succeed(node, output)
                self._drain()
            else:
                self._fail(node, exc)
        finally:
            self._handoff_task = None

    # --- final states ------------------------------------------------------------------------

    def _succeed(self, node: Node, output: Any, *, emit_restored: bool = False) -> None:
        sid = node.c.step.id
        node.status = "succeeded"
        node.output = output
        node.finished_at = now = time.time()
        self._outputs[sid] = output
        if self._bus.active:
            if emit_restored:
                self._bus.note("step_restored", sid, output)
            else:
                self._bus.note("step_succeeded", sid, output, node.attempts, now - (node.started_at or now))
                if self._journal is not None:
                    node.mark = self._journal.mark()
        self._settling.append(node)

    def _fail(self, node: Node, exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        sid = node.c.step.id
        node.status = "failed"
        node.error = str(exc) or type(exc).__name__
        node.error_type = type(exc).__name__
        node.finished_at = now = time.time()
        if self._bus.active:
            self._bus.note(
                "step_failed",
                sid,
                node.error,
                node.error_type,
                node.attempts,
                node.policy,
                now - (node.started_at or now),
            )
        self._settling.append(node)
        if node.policy == "replan":
            self._replans.append(sid)
        if node.policy == "fail":
            self._abort("failed", f"step `{sid}` failed: {node.error}")
        self._drain()

    def _skip(self, node: Node, reason: str) -> None:
        node.status = "skipped"
        node.error = reason
        node.finished_at = time.time()
        if self._bus.active:
            self._bus.note("step_skipped", node.c.step.id, reason)
        self._settling.append(node)

    def _cancel_node(self, node: Node, reason: str) -> None:
        node.status = "cancelled"
        node.error = reason
        node.finished_at = time.time()
        if self._bus.active:
            self._bus.note("step_cancelled", node.c.step.id, reason)
        self._settling.append(node)

    def _drain(self) -> None:
        """Propagate final states to dependents, iteratively (a 10,000-step chain must not recurse)."""
        if self._draining:
            return
        self._draining = True
        try:
            settling = self._settling
            while settling:
                node = settling.popleft()
                self._unfinished -= 1
                joins = node.joins
                if joins is None:
                    continue
                node.joins = None
                if node.status == "succeeded":
                    for join in joins:
                        join.waiting -= 1
                        if join.waiting == 0 and join.blocked is None:
                            members, join.members = join.members, []
                            for member in members:
                                if member.status == "pending":
                                    self._ready(member, node.mark)
                else:
                    sid = node.c.step.id
                    reason = needs_reason(self._nodes, sid)
                    for join in joins:
                        if join.blocked is None:
                            join.blocked = sid
                        members, join.members = join.members, []
                        for member in members:
                            if member.status == "pending":
                                self._skip(member, reason)
        finally:
            self._draining = False
        if self._closed and self._unfinished == 0 and not self._finished and self._tg is not None:
            self._finish()
        elif self._parked:
            self._check_stalled()

    def _abort(self, status: RunStatus, error: str) -> None:
        if self._finished:
            return
        if self._status == "running":
            self._status = status
            self._error = error
        self._closed = True
        reason = error if status == "failed" else "the run was cancelled"
        current = asyncio.current_task()
        for node in list(self._nodes.values()):
            if node.status in FINAL:
                continue
            # Marked now, not when the task unwinds: a task cancelled before its first step never runs.
            self._cancel_node(node, reason)
            if node.task is not None and node.task is not current:
                node.task.cancel()
        self._drain()
        if self._unfinished == 0 and not self._finished and self._tg is not None:
            self._finish()

    def _park(self) -> None:
        """End the run `waiting`: every step left waits on people (`planweave.executor.waiting`)."""
        if self._finished or self._tg is None:
            return
        self._status = "waiting"
        self._error = "waiting for a person: " + "; ".join(r.describe() for r in self._parked.values())
        self._finish()

    def _on_deadline(self) -> None:
        self._abort("failed", f"the run passed its deadline of {self.deadline_s:g}s; raise `deadline_s` or plan less")

    def _finish(self) -> None:
        self._finished = True
        self._closed = True
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        if self._status == "running":
            unhandled = [] if self.replans_handled else self._replans
            if unhandled:
                self._status = "failed"
                self._error = (
                    f"step{'s' if len(unhandled) > 1 else ''} {', '.join(f'`{s}`' for s in unhandled)} failed "
                    "with `on_failure: replan`, and no planner handled it"
                )
        self.finished_at = time.time()
        steps = {}
        for sid, n in self._nodes.items():
            steps[sid] = StepResult(
                id=sid,
                tool=n.c.tool.name,
                status=n.status,
                output=n.output,
                error=n.error,
                error_type=n.error_type,
                attempts=n.attempts,
                started_at=n.started_at,
                finished_at=n.finished_at,
                restored=n.restored,
            )
        if self._status == "running":
            # The run went to its end; a step that failed and was let go (`continue`, a handled
            # `replan`, `Recovery.proceed()`) makes it `partial`, never `succeeded`.
            self._error = describe_failed_steps(steps)
            self._status = "succeeded" if self._error is None else "partial"
        self._result = RunResult.model_construct(
            run_id=self.id,
            status=self._status,
            goal=self.goal,
            inputs=self.inputs,
            steps=steps,
            error=self._error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            replan_requests=list(self._replans),
            requests=[r for sid, r in self._parked.items() if self._nodes[sid].status == "waiting"],
        )
        if self._bus.active:
            self._bus.note("run_finished", self._status, time.perf_counter() - self._t0, self._error)
        self._bus.close()
        assert self._done is not None
        self._done.set()
