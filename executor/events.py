"""Typed events: the single source of truth for what happened in a run.

The executor emits one event for everything it decides. Tracing, the run store,
the CLI's live view and the chat stream all consume these events and nothing else.

Events are slotted dataclasses, cheap to create on the hot path (not frozen: that
triples their cost); treat them as read-only. `to_dict` and `event_from_dict` give
their JSON form, with `kind` naming the class.

Upper layers add their own event classes (the planner's `PlanUpdated`, `LLMCalled`, ...) with
`register_event_type`, so that `event_from_dict` rebuilds them from a stored run, and say what
each adds to a run's stored summary by overriding `RunEvent.summary_update`: nothing here
names them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from planweave.executor.plan import Step
from planweave.tools.errors import ConfigError

__all__ = [
    "EVENT_TYPES",
    "EventBus",
    "Noted",
    "NotedBatch",
    "RunEvent",
    "RunFinished",
    "RunStarted",
    "StepAdded",
    "StepCacheHit",
    "StepCancelled",
    "StepFailed",
    "StepProgressed",
    "StepReady",
    "StepRestored",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepSucceeded",
    "Subscriber",
    "SummaryUpdate",
    "build_noted",
    "event_from_dict",
    "register_event_type",
]

log = logging.getLogger("planweave.events")


@dataclass(slots=True, frozen=True)
class SummaryUpdate:
    """What one event adds to its run's stored summary (`planweave.executor.store.RunSummary`).

    The store applies it without knowing the event's class: the layer that defines an event
    says what it counts by overriding `RunEvent.summary_update`.
    """

    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    """Added to the run's cost; None when the price is unknown (the run's cost becomes unknown)."""
    status: str | None = None
    """Set by an event that ends the run: its final status (a later one overrides an earlier one)."""
    answer: str | None = None
    error: str | None = None


@dataclass(slots=True, kw_only=True)
class RunEvent:
    """Base of every event. `at` is wall-clock time (`time.time()`)."""

    kind: ClassVar[str] = "event"
    run_id: str
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(data.get("step"), Step):
            data["step"] = data["step"].model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
        data["kind"] = self.kind
        return data

    def summary_update(self) -> SummaryUpdate | None:
        """What this event adds to its run's stored summary (None: nothing)."""
        return None


@dataclass(slots=True, kw_only=True)
class RunStarted(RunEvent):
    kind: ClassVar[str] = "run_started"
    goal: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class StepAdded(RunEvent):
    """A validated step joined the run's graph (from the plan, a workflow or the planner)."""

    kind: ClassVar[str] = "step_added"
    step_id: str
    tool: str
    step: Step | dict[str, Any]
    """The step (a `Step`; a dict as saved in a plan file once read back from JSON)."""
    deps: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class StepRestored(RunEvent):
    """A step's output came from a recorded earlier run (resume): it is not run again."""

    kind: ClassVar[str] = "step_restored"
    step_id: str
    output: Any = None


@dataclass(slots=True, kw_only=True)
class StepReady(RunEvent):
    """Every input of the step is available; it starts as soon as a concurrency slot is free."""

    kind: ClassVar[str] = "step_ready"
    step_id: str


@dataclass(slots=True, kw_only=True)
class StepStarted(RunEvent):
    kind: ClassVar[str] = "step_started"
    step_id: str
    tool: str
    attempt: int
    args: dict[str, Any] = field(default_factory=dict)
    """Arguments with every reference resolved."""


@dataclass(slots=True, kw_only=True)
class StepProgressed(RunEvent):
    """A running step's tool reported progress or a partial output (`ToolContext.progress`,
    `ToolContext.partial`, an MCP server's progress notifications)."""

    kind: ClassVar[str] = "step_progress"
    step_id: str
    progress_kind: str = "progress"
    """`progress` (done of total, with a message), `partial` (a piece of output) or `notice`
    (something the run should know, e.g. a crashed MCP server was restarted)."""
    done: float | None = None
    total: float | None = None
    message: str | None = None
    partial: Any = None


@dataclass(slots=True, kw_only=True)
class StepRetrying(RunEvent):
    kind: ClassVar[str] = "step_retrying"
    step_id: str
    attempt: int
    """The attempt that failed."""
    delay_s: float
    error: str
    error_type: str


@dataclass(slots=True, kw_only=True)
class StepSucceeded(RunEvent):
    kind: ClassVar[str] = "step_succeeded"
    step_id: str
    output: Any
    attempts: int
    duration_s: float


@dataclass(slots=True, kw_only=True)
class StepFailed(RunEvent):
    kind: ClassVar[str] = "step_failed"
    step_id: str
    error: str
    error_type: str
    attempts: int
    on_failure: str
    """The step's failure policy: `fail`, `continue` or `replan`."""
    duration_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class StepSkipped(RunEvent):
    kind: ClassVar[str] = "step_skipped"
    step_id: str
    reason: str


@dataclass(slots=True, kw_only=True)
class StepCancelled(RunEvent):
    kind: ClassVar[str] = "step_cancelled"
    step_id: str
    reason: str = ""


@dataclass(slots=True, kw_only=True)
class StepCacheHit(RunEvent):
    """A call of the step was answered from the step cache (`planweave.executor.cache`): the tool
    was not called, and nothing was spent. A `for_each` step has one per cached item."""

    kind: ClassVar[str] = "step_cache_hit"
    step_id: str
    tool: str
    key: str
    age_s: float
    """How old the cached result is."""
    item: int | None = None
    """The item's index, for a `for_each` step."""


@dataclass(slots=True, kw_only=True)
class RunFinished(RunEvent):
    kind: ClassVar[str] = "run_finished"
    status: str
    duration_s: float
    error: str | None = None

    def summary_update(self) -> SummaryUpdate:
        return SummaryUpdate(status=self.status, error=self.error)


_EVENT_TYPES: dict[str, type[RunEvent]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        StepAdded,
        StepRestored,
        StepReady,
        StepStarted,
        StepProgressed,
        StepRetrying,
        StepSucceeded,
        StepFailed,
        StepSkipped,
        StepCancelled,
        StepCacheHit,
        RunFinished,
    )
}

EVENT_TYPES: Mapping[str, type[RunEvent]] = MappingProxyType(_EVENT_TYPES)
"""Every event class `event_from_dict` knows, by `kind` (read-only: add one with `register_event_type`)."""

_E = TypeVar("_E", bound=type[RunEvent])


def register_event_type(cls: _E) -> _E:
    """Make `event_from_dict` rebuild events of `cls` (a `RunEvent` subclass with its own `kind`).

    For the event classes of the layers above the executor; usable as a class decorator.
    Registering the same class again is a no-op; another class with a taken `kind` is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, RunEvent)) or cls is RunEvent:
        raise ConfigError(f"`{cls!r}` is not a subclass of `RunEvent`; only event classes can be registered.")
    known = _EVENT_TYPES.get(cls.kind)
    if known is cls:
        return cls
    if known is not None or cls.kind == RunEvent.kind:
        taken = f"is taken by `{known.__module__}.{known.__qualname__}`" if known else "is the base class's"
        raise ConfigError(
            f"event kind `{cls.kind}` of `{cls.__module__}.{cls.__qualname__}` {taken}; "
            "give the class its own `kind`."
        )
    _EVENT_TYPES[cls.kind] = cls
    return cls


def event_from_dict(data: dict[str, Any]) -> RunEvent:
    """Rebuild an event from `to_dict` output (the run store reads events back with this)."""
    payload = dict(data)
    kind = payload.pop("kind")
    cls = _EVENT_TYPES.get(kind)
    if cls is None:
        raise ConfigError(
            f"unknown event kind `{kind}`; known: {', '.join(_EVENT_TYPES)} "
            "(a layer's own kinds are known once its events module is imported)"
        )
    return cls(**payload)


Subscriber = Callable[[RunEvent], object]
"""A function called with every event, in order, on the event loop. Keep it quick.

An async function is fine too: its coroutine is scheduled on the loop (`EventBus.drain`
waits for it). Whatever a subscriber raises, or its coroutine raises, is logged with the
subscriber's name and the event's kind and counted in `EventBus.subscriber_errors`; the
run goes on.

A subscriber that has no use for some kinds of event can say so with an `ignored_kinds`
attribute (a frozenset of kinds, e.g. the run store's recorder ignores `step_ready`): when
every subscriber ignores a kind and no iterator is listening, such events are not built for
them at all (the history still keeps them, built when it is read).

Likewise a subscriber that can take some kinds unbuilt says so with a `noted_kinds` attribute
(a frozenset) and a method `noted(run_id, kind, at, fields)`, where `fields` are the event's
fields after `run_id` and `at`, in declaration order (`build_noted` builds the event from
them). When every subscriber takes a kind so and no iterator is listening, its events are
handed over unbuilt (the run store's recorder writes a step's start and success this way).
A batch of such events (a plan's steps being added) comes to `noted_batch(run_id, batch)`
instead: a `NotedBatch` that builds them, or gives their fields, when they are needed.
"""

Noted = tuple[str, float, tuple[Any, ...]]
"""An event not built: its kind, time and fields after `run_id` and `at` (see `Subscriber`)."""


class NotedBatch:
    """A batch of events not built (`EventBus.defer`): `build(run_id, at)` returns them, and
    `fields()` (when given) the fields of each, as `noted` takes them."""

    __slots__ = ("kind", "at", "build", "fields")

    def __init__(
        self, kind: str, at: float, build: Callable[[str, float], list[RunEvent]],
        fields: Callable[[], list[tuple[Any, ...]]] | None = None,
    ) -> None:
        self.kind = kind
        self.at = at
        self.build = build
        self.fields = fields

    def unbuilt(self, run_id: str) -> list[RunEvent | Noted]:
        """The events, unbuilt when their fields can be had."""
        if self.fields is None:
            return list(self.build(run_id, self.at))
        kind, at = self.kind, self.at
        return [(kind, at, fields) for fields in self.fields()]


def build_noted(run_id: str, noted: Noted) -> RunEvent:
    """The event `noted` stands for."""
    kind, at, fields = noted
    return _MAKERS[kind](run_id, at, *fields)


def _name(fn: Subscriber) -> str:
    """A subscriber's name for the log: `module.qualname` of a function or method, else its class's."""
    target: Any = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"

_CLOSED = object()

# Event constructors by kind, taking every field positionally in declaration order. The
# executor records events as plain values `kind, at, *fields` when only the history keeps
# them, and these build the objects (at once for listeners, or when the history is read).
# tests/executor/test_events.py checks that each matches its class's fields.
_MAKERS: dict[str, Callable[..., RunEvent]] = {
    "run_started": lambda run_id, at, goal, inputs: RunStarted(run_id=run_id, at=at, goal=goal, inputs=inputs),
    "step_restored": lambda run_id, at, step_id, output: StepRestored(
        run_id=run_id, at=at, step_id=step_id, output=output
    ),
    "step_ready": lambda run_id, at, step_id: StepReady(run_id=run_id, at=at, step_id=step_id),
    "step_started": lambda run_id, at, step_id, tool, attempt, args: StepStarted(
        run_id=run_id, at=at, step_id=step_id, tool=tool, attempt=attempt, args=args
    ),
    "step_progress": lambda run_id, at, step_id, progress_kind, done, total, message, partial: StepProgressed(
        run_id=run_id, at=at, step_id=step_id, progress_kind=progress_kind, done=done, total=total, message=message,
        partial=partial,
    ),
    "step_retrying": lambda run_id, at, step_id, attempt, delay_s, error, error_type: StepRetrying(
        run_id=run_id, at=at, step_id=step_id, attempt=attempt, delay_s=delay_s, error=error, error_type=error_type
    ),
    "step_succeeded": lambda run_id, at, step_id, output, attempts, duration_s: StepSucceeded(
        run_id=run_id, at=at, step_id=step_id, output=output, attempts=attempts, duration_s=duration_s
    ),
    "step_failed": lambda run_id, at, step_id, error, error_type, attempts, on_failure, duration_s: StepFailed(
        run_id=run_id,
        at=at,
        step_id=step_id,
        error=error,
        error_type=error_type,
        attempts=attempts,
        on_failure=on_failure,
        duration_s=duration_s,
    ),
    "step_skipped": lambda run_id, at, step_id, reason: StepSkipped(run_id=run_id, at=at, step_id=step_id, reason=reason),
    "step_cancelled": lambda run_id, at, step_id, reason: StepCancelled(
        run_id=run_id, at=at, step_id=step_id, reason=reason
    ),
    "step_cache_hit": lambda run_id, at, step_id, tool, key, age_s, item: StepCacheHit(
        run_id=run_id, at=at, step_id=step_id, tool=tool, key=key, age_s=age_s, item=item
    ),
    "step_added": lambda run_id, at, step_id, tool, step, deps: StepAdded(
        run_id=run_id, at=at, step_id=step_id, tool=tool, step=step, deps=list(deps)
    ),
    "run_finished": lambda run_id, at, status, duration_s, error: RunFinished(
        run_id=run_id, at=at, status=status, duration_s=duration_s, error=error
    ),
}

_DEFERRED = "*"
"""Kind of a history entry `_DEFERRED, at, build`: `build(run_id, at)` returns the events."""

_ARITY = {kind: len(dataclasses.fields(_EVENT_TYPES[kind])) - 2 for kind in _MAKERS} | {_DEFERRED: 1}
"""How many fields follow `kind, at` in the history, by kind."""


class EventBus:
    """Fans events out to subscribers and to any number of async iterators, and keeps the history.

    Events are built only when someone needs them: with subscribers or iterators, every event
    is built and delivered as it happens; with only the history kept, `note` appends the kind,
    time and fields to one flat list (no object per event for the garbage collector to track
    in a large run), and reading `history` or replaying into `iterate` builds the events, with
    the same fields and timestamps.
    """

    __slots__ = (
        "_subscribers", "_queues", "_history", "_built", "_closed", "_pending", "_unwanted", "_noted", "active", "live",
        "run_id", "subscriber_errors",
    )

    def __init__(
        self, subscribers: list[Subscriber] | None = None, *, keep_history: bool = True, run_id: str = ""
    ) -> None:
        self._subscribers: list[Subscriber] = list(subscribers or [])
        self._queues: list[asyncio.Queue[object]] = []
        # Events, each followed by nothing, or unbuilt entries `kind, at, *fields` (see `_ARITY`).
        self._history: list[Any] | None = [] if keep_history else None
        self._built = 0  # the history before this index holds built events only
        self._closed = False
        self._pending: set[asyncio.Future[Any]] = set()  # async subscribers' coroutines still running
        self.subscriber_errors = 0
        """How many times a subscriber (or an async subscriber's coroutine) raised; each one is logged."""
        self.run_id = run_id
        """Put in the events built from `note` and `defer`."""
        self.active = bool(self._subscribers) or keep_history
        """False when nobody listens: the executor then skips building events at all."""
        self.live = bool(self._subscribers)
        """True when a subscriber or an iterator needs each event as it happens."""
        self._unwanted: frozenset[str] = frozenset()  # kinds every listener ignores (`_listeners_changed`)
        self._noted: frozenset[str] = frozenset()  # kinds every listener takes unbuilt (`_listeners_changed`)
        self._listeners_changed()

    @property
    def subscribers(self) -> list[Subscriber]:
        """The subscribers now (a copy): a sub-workflow's child run asks each for one of its own."""
        return list(self._subscribers)

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call `fn` with every later event; returns a function that unsubscribes."""
        self._subscribers.append(fn)
        self.active = self.live = True
        self._listeners_changed()

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)
            self.live = bool(self._subscribers or self._queues)
            self._listeners_changed()

        return unsubscribe

    def _listeners_changed(self) -> None:
        """Work out the kinds of event no listener needs as they happen, and those every listener
        takes unbuilt (see `Subscriber`)."""
        self._unwanted = self._common("ignored_kinds")
        self._noted = self._common("noted_kinds")

    def _common(self, attribute: str) -> frozenset[str]:
        """The kinds in the `attribute` of every subscriber (none while an iterator listens)."""
        common: frozenset[str] | None = None
        if not self._queues:
            for fn in self._subscribers:
                kinds = getattr(fn, attribute, None)
                if not isinstance(kinds, frozenset):
                    return frozenset()
                common = kinds if common is None else common & kinds
        return common or frozenset()

    @property
    def history(self) -> list[RunEvent]:
        return list(self._materialize())

    def emit(self, event: RunEvent) -> None:
        if self._history is not None:
            self._history.append(event)
        for fn in self._subscribers:
            try:
                outcome = fn(event)
            except Exception:  # a broken observer must never break the run
                self._report(fn, event)
            else:
                if outcome is not None and inspect.isawaitable(outcome):
                    self._schedule(fn, event, outcome)
        for q in self._queues:
            q.put_nowait(event)

    def _report(self, fn: Subscriber, event: RunEvent, exc: BaseException | None = None) -> None:
        self.subscriber_errors += 1
        log.error(
            "event subscriber `%s` failed on a `%s` event of run `%s`; the run goes on without it for this event",
            _name(fn), event.kind, event.run_id, exc_info=exc if exc is not None else True,
        )

    def _schedule(self, fn: Subscriber, event: RunEvent, outcome: Awaitable[Any]) -> None:
        try:
            future = asyncio.ensure_future(outcome)
        except RuntimeError as exc:  # no running event loop to run it on
            if inspect.iscoroutine(outcome):
                outcome.close()
            self._report(fn, event, exc)
            return
        self._pending.add(future)

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(f)
            if not f.cancelled() and f.exception() is not None:
                self._report(fn, event, f.exception())

        future.add_done_callback(done)

    async def drain(self) -> None:
        """Wait until the coroutines of async subscribers are done (their errors are reported, not raised)."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    def note(self, kind: str, *fields: Any) -> None:
        """Emit an event of `kind` with `fields` (those after `run_id` and `at`, in declaration order),
        timestamped now; when only the history keeps it, store it unbuilt."""
        if self.live and kind not in self._unwanted:
            if kind in self._noted:
                self._hand_over(kind, time.time(), fields)
            else:
                self.emit(_MAKERS[kind](self.run_id, time.time(), *fields))
        elif self._history is not None:
            self._history += (kind, time.time(), *fields)

    def _hand_over(self, kind: str, at: float, fields: tuple[Any, ...]) -> None:
        """Give every subscriber the event unbuilt (each takes `kind` so); the history keeps it unbuilt too."""
        if self._history is not None:
            self._history += (kind, at, *fields)
        run_id = self.run_id
        for fn in self._subscribers:
            try:
                fn.noted(run_id, kind, at, fields)  # type: ignore[attr-defined]  # (it has `noted_kinds`)
            except Exception:  # a broken observer must never break the run
                self._report(fn, _MAKERS[kind](run_id, at, *fields))

    def defer(
        self, kind: str, build: Callable[[str, float], list[RunEvent]],
        fields: Callable[[], list[tuple[Any, ...]]] | None = None,
    ) -> None:
        """Emit the events of `kind` that `build(run_id, at)` returns (for example one per step of
        a batch), calling it only when a listener needs them built or the history is read;
        `fields()`, when given, returns their fields instead (for subscribers taking them unbuilt)."""
        if self.live and kind not in self._unwanted:
            if kind not in self._noted:
                for event in build(self.run_id, time.time()):
                    self.emit(event)
                return
            at = time.time()
            if self._history is not None:
                self._history += (_DEFERRED, at, build)
            batch = NotedBatch(kind, at, build, fields)
            for fn in self._subscribers:
                try:
                    fn.noted_batch(self.run_id, batch)  # type: ignore[attr-defined]  # (it has `noted_kinds`)
                except Exception:  # a broken observer must never break the run
                    self.subscriber_errors += 1
                    log.error("event subscriber `%s` failed on a batch of `%s` events of run `%s`; the run goes on "
                              "without it for them", _name(fn), kind, self.run_id, exc_info=True)
        elif self._history is not None:
            self._history += (_DEFERRED, time.time(), build)

    def _materialize(self) -> list[RunEvent]:
        """Build the stored events in place (once) and return the history."""
        history = self._history
        if history is None:
            return []
        if self._built < len(history):
            built: list[Any] = history[: self._built]
            i, end = self._built, len(history)
            while i < end:
                item = history[i]
                if isinstance(item, RunEvent):
                    built.append(item)
                    i += 1
                    continue
                at, n = history[i + 1], _ARITY[item]
                if item == _DEFERRED:
                    built.extend(history[i + 2](self.run_id, at))
                else:
                    built.append(_MAKERS[item](self.run_id, at, *history[i + 2 : i + 2 + n]))
                i += 2 + n
            history[:] = built
            self._built = len(history)
        return history

    def close(self) -> None:
        """End every iterator after the events already queued."""
        self._closed = True
        for q in self._queues:
            q.put_nowait(_CLOSED)
        self._queues.clear()
        self.live = bool(self._subscribers)
        self._listeners_changed()

    async def iterate(self, *, replay: bool = True) -> AsyncIterator[RunEvent]:
        """Events as they happen (after replaying earlier ones when `replay`), until the run ends."""
        q: asyncio.Queue[object] = asyncio.Queue()
        if replay:
            for ev in self._materialize():
                q.put_nowait(ev)
        if self._closed:
            q.put_nowait(_CLOSED)
        else:
            self._queues.append(q)
            self.live = True
            self._unwanted = self._noted = frozenset()  # an iterator takes every event as it happens, built
        self.active = True
        try:
            while True:
                item = await q.get()
                if item is _CLOSED:
                    return
                assert isinstance(item, RunEvent)
                yield item
        finally:
            if q in self._queues:
                self._queues.remove(q)
            self.live = bool(self._subscribers or self._queues)
            self._listeners_changed()
