"""The take-over loop: run queued runs, and finish service runs whose owner died.

    store = open_store()
    worker = Worker(store, concurrency=4)
    stop = asyncio.Event()                     # set it on SIGTERM
    await worker.run(stop)                     # until `stop` is set; then a grace, then `interrupted`

A `Worker` takes two kinds of runs from the store:

- `queued` runs: recorded to run later (`enqueue_workflow`, `planweave exec --detach`, the API);
- runs that read `interrupted` (their owner's lease expired: it was killed, or shut down) and
  carry `meta["takeover"] = True`: runs a service started (`serve`, a worker, `exec --detach`).
  A run a person interrupted in a terminal has no such flag and is left to them
  (`planweave resume`).

Runs `waiting` for people are not taken: they continue when answered. Each run is claimed
atomically (`RunStore.claim`): of several workers (or `serve` replicas) on one store, exactly
one gets it, the others skip it. A taken run resumes from its record (`resume_run`), so a step
whose success was recorded never runs again.

Poison runs: a run whose step kills its process (a segfaulting library, the OOM killer) would
kill every worker that takes it over. Each take-over of a run whose owner died without
finishing it is recorded in the run (a `run_taken_over` event); a run taken over
`max_takeovers` times (`PLANWEAVE_MAX_TAKEOVERS`, default 3) is not taken again: it is recorded
`failed`, with a reason that says so and how to retry it by hand (`planweave resume --force ID`).
A run stopped on purpose (a worker or replica shutting down records it `interrupted` after its
last event) does not count.

When it scans: a full scan (queued runs and runs whose owner died) at start, every `poll_s` (a
third of the store's lease by default: a lease expiring writes nothing), and when a slot frees
while runs were left over. In between it wakes on the store's writes (`RunStore.wait_changed`:
PostgreSQL's LISTEN/NOTIFY, polling on SQLite), which runs in flight make all the time, and then
only looks for queued runs (one query on the indexed status), at most every 0.2 s. A store that
can say when a run's *status* changed (`StatusWatch`: `status_marker`, `wait_status_changed`)
wakes it only then, and each wake is a full scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from planweave.executor.events import RunEvent, SummaryUpdate, register_event_type
from planweave.executor.store import RunLeasedError, RunStore, RunSummary, StoreError
from planweave.tools.errors import ConfigError, PlanweaveError, SetupError

if TYPE_CHECKING:
    from planweave.planner.resuming import Resumed

__all__ = [
    "DEFAULT_MAX_TAKEOVERS", "MAX_TAKEOVERS_ENV", "RunGivenUp", "RunTakenOver", "StatusWatch", "Worker", "WorkerEvent",
    "WorkerStats", "default_max_takeovers", "enqueue_workflow", "given_up", "takeovers", "takes",
]

log = logging.getLogger("planweave.worker")

DEFAULT_GRACE_S = 5.0
_FALLBACK_LEASE_S = 30.0
_MIN_SCAN_S = 0.2
"""Runs in flight write all the time: look for queued runs at most this often."""

MAX_TAKEOVERS_ENV = "PLANWEAVE_MAX_TAKEOVERS"
DEFAULT_MAX_TAKEOVERS = 3

_LAST_EVENT = {"planner": "planner_finished", "workflow": "run_finished"}
"""The event a run of each kind records last: a run stopped on purpose ends on it, a dead owner's does not."""


def default_max_takeovers() -> int:
    """`$PLANWEAVE_MAX_TAKEOVERS` (how often a run whose owner died may be taken over), else 3."""
    text = os.environ.get(MAX_TAKEOVERS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_TAKEOVERS
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"{MAX_TAKEOVERS_ENV} is `{text}`; set it to how many times a run whose process died may be taken "
            f"over (a whole number, 0 or more; default {DEFAULT_MAX_TAKEOVERS}), or unset it."
        )
    return value


@register_event_type
@dataclass(slots=True, kw_only=True)
class RunTakenOver(RunEvent):
    """A worker or replica took the run over (recorded before it continues the run)."""

    kind: ClassVar[str] = "run_taken_over"
    takeover: int
    """Which take-over this is, from 1."""
    owner_died: bool
    """Its last owner stopped without finishing it (killed, crashed, hung): these count toward the cap."""
    by: str = ""
    """The process that took it over (`host:pid`)."""


@register_event_type
@dataclass(slots=True, kw_only=True)
class RunGivenUp(RunEvent):
    """The run's owners died too often (`max_takeovers`): it is not taken over again, and ends `failed`.

    `planweave resume --force ID` (or `Planner.resume`) still continues it, by hand."""

    kind: ClassVar[str] = "run_given_up"
    reason: str
    takeovers: int
    """How many times its owner had died."""

    def summary_update(self) -> SummaryUpdate:
        return SummaryUpdate(status="failed", error=self.reason)


def given_up(events: list[dict[str, Any]]) -> bool:
    """Whether the run ended because workers gave up on it (its last event is `run_given_up`)."""
    return bool(events) and events[-1].get("kind") == RunGivenUp.kind


def takeovers(events: list[dict[str, Any]]) -> int:
    """How many times the run was taken over from an owner that died (its `run_taken_over` events)."""
    return sum(1 for e in events if e.get("kind") == RunTakenOver.kind and e.get("owner_died"))


@runtime_checkable
class StatusWatch(Protocol):
    """What a store offers so that workers wake only when a run's status changes (not on every event).

    Neither store has it yet (see `Worker`): `status_marker()` differs after any run's status,
    owner or lease changed (a run queued, claimed, released, ended, recorded `interrupted`), and
    `wait_status_changed` waits for that (PostgreSQL: a notification sent only by those writes)."""

    def status_marker(self) -> Hashable: ...

    async def wait_status_changed(self, marker: Hashable, *, timeout_s: float) -> Hashable: ...


@dataclass(slots=True)
class WorkerStats:
    """What a worker did since it started (for metrics)."""

    started: int = 0
    """Runs it started: queued runs and taken-over runs."""
    taken_over: int = 0
    """Of those, runs that had been interrupted (their owner's lease expired) and were taken over."""
    finished: int = 0
    """Runs that ended here (succeeded, failed, waiting for people, ...), whatever their status."""
    interrupted: int = 0
    """Runs it stopped on shutdown, recorded `interrupted` for another worker to finish."""
    refused: int = 0
    """Runs that could not start (their file is gone, a setting is wrong): recorded `failed`."""
    gave_up: int = 0
    """Runs taken over `max_takeovers` times already (each owner died): recorded `failed`, not run."""
    scans: int = 0
    """Full scans of the store (queued runs and runs whose owner died)."""
    queued_scans: int = 0
    """Scans for queued runs only (after other processes' writes)."""
    running: int = 0
    """Runs in flight now."""


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One thing a worker did to a run, for a log line (`Worker(on_event=...)`)."""

    kind: Literal["started", "finished", "interrupted", "refused", "gave_up"]
    run_id: str
    name: str
    """The run's workflow name or goal label."""
    takeover: bool = False
    """For `started`: the run had been interrupted (its owner died), not queued."""
    status: str | None = None
    """For `finished`: how the run ended (`succeeded`, `waiting`, ...)."""
    error: str | None = None
    """For `refused`, `gave_up`, failed and `interrupted` runs (a store error): why."""


Resume = Callable[[RunStore, str], Awaitable[Any]]
"""Continues one claimed run and returns its result (default: `planweave.planner.resuming.resume_run`)."""


async def _default_resume(store: RunStore, run_id: str) -> Resumed:
    from planweave.planner.resuming import resume_run

    return await resume_run(store, run_id)


def takes(summary: RunSummary) -> bool:
    """Whether a worker takes this run: queued, or interrupted with `meta["takeover"]`."""
    if summary.status == "queued":
        return True
    return summary.status == "interrupted" and summary.meta.get("takeover") is True


class Worker:
    """Runs queued runs and takes over service runs whose owner died, up to `concurrency` at once.

    Args:
        store: the run store to take runs from (shared with other workers and `serve` replicas).
        concurrency: how many runs this worker executes at once.
        poll_s: how often to re-scan the store even if nothing was written (a lease expiring
            writes nothing); default a third of the store's lease.
        grace_s: on stop, how long runs in flight may take to finish before they are stopped and
            recorded `interrupted` (another worker finishes them).
        on_event: called with a `WorkerEvent` when a run starts, finishes, is interrupted or refused.
        resume: how a claimed run is continued (default `resume_run`: its recorded settings).
        max_takeovers: how many times a run whose owner died may be taken over before it is
            recorded `failed` instead (default `$PLANWEAVE_MAX_TAKEOVERS`, else 3; 0: never).
    """

    def __init__(
        self,
        store: RunStore,
        *,
        concurrency: int = 4,
        poll_s: float | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        on_event: Callable[[WorkerEvent], object] | None = None,
        resume: Resume | None = None,
        max_takeovers: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise SetupError(f"a worker's concurrency must be at least 1 (got {concurrency}).")
        if max_takeovers is not None and max_takeovers < 0:
            raise SetupError(f"a worker's max_takeovers must be 0 or more (got {max_takeovers}).")
        self.store = store
        self.concurrency = concurrency
        self.max_takeovers = max_takeovers if max_takeovers is not None else default_max_takeovers()
        lease_s = float(getattr(store, "lease_s", _FALLBACK_LEASE_S))
        self.poll_s = poll_s if poll_s is not None else max(0.05, lease_s / 3)
        self._min_scan_s = min(_MIN_SCAN_S, self.poll_s)
        self.grace_s = grace_s
        self.on_event = on_event
        self.resume = resume or _default_resume
        self.stats = WorkerStats()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        """Runs in flight here, by id."""
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._interrupting: set[str] = set()
        self._left_over = False  # the last scan found more runs to take than free slots

    # --- public -----------------------------------------------------------------------------

    async def take_over_once(self, *, queued_only: bool = False) -> list[str]:
        """Scan the store once and start every run this worker takes, up to its free slots;
        returns the ids of the runs it started (they run in the background, in `tasks`).
        `queued_only`: look for queued runs only (one cheap query), not for runs whose owner died."""
        if self._stopping:
            return []
        free = self.concurrency - len(self.tasks)
        if free <= 0:
            return []
        candidates = await asyncio.to_thread(self._candidates, queued_only)
        if queued_only:
            self.stats.queued_scans += 1
        else:
            self.stats.scans += 1
        self._left_over = len([c for c in candidates if c.id not in self.tasks]) > free
        started: list[str] = []
        for summary in candidates:
            if len(started) >= free or self._stopping:
                break
            if summary.id in self.tasks:
                continue
            claimed = await asyncio.to_thread(self._claim, summary)
            if claimed is None:
                continue
            self._start(claimed)
            started.append(claimed.id)
        return started

    async def run(self, stop: asyncio.Event) -> None:
        """Take runs until `stop` is set; then stop taking, give runs in flight `grace_s` to
        finish, and record the others `interrupted` (resumable: another worker takes them)."""
        watch_status = isinstance(self.store, StatusWatch)
        marker: Hashable = None
        full_scan = True
        next_full = 0.0
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                scanned = time.monotonic()
                self._slot_freed.clear()  # (before the scan: a run ending during it wakes the wait below)
                try:
                    if marker is None:
                        marker = await asyncio.to_thread(self._marker, watch_status)
                    full_scan = full_scan or scanned >= next_full
                    await self.take_over_once(queued_only=not full_scan)
                    if full_scan:
                        next_full = scanned + self.poll_s
                except StoreError as exc:  # the store is down for now: try again at the next scan
                    log.warning("the worker could not scan the run store: %s", exc)
                full_scan = False
                full = len(self.tasks) >= self.concurrency
                # Full: only a freed slot (or stop) matters. Else: a change in the store (a new run,
                # a run that ended), or the re-scan timer (a lease expiring writes nothing).
                timeout = max(0.0, next_full - time.monotonic())
                watch = asyncio.ensure_future(
                    asyncio.sleep(timeout) if full
                    else self._wait(marker, watch_status, timeout)
                )
                freed = asyncio.ensure_future(self._slot_freed.wait())
                await asyncio.wait([stopped, watch, freed], return_when=asyncio.FIRST_COMPLETED)
                for future in (watch, freed):
                    if not future.done():
                        future.cancel()
                changed = False
                if not full and watch.done() and not watch.cancelled() and watch.exception() is None:
                    changed = watch.result() != marker
                    marker = watch.result()
                # A freed slot with runs left over, or a status change, calls for a full scan; the
                # other processes' writes only for a look at the queue.
                full_scan = (freed.done() and self._left_over) or (changed and watch_status)
                if not full_scan:
                    pause = self._min_scan_s - (time.monotonic() - scanned)
                    if pause > 0 and not stop.is_set():
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(asyncio.shield(stopped), pause)
        finally:
            stopped.cancel()
            await self.shutdown(self.grace_s)

    def _marker(self, watch_status: bool) -> Hashable:
        store = self.store
        if watch_status and isinstance(store, StatusWatch):
            return store.status_marker()
        return store.change_marker(None)

    async def _wait(self, marker: Hashable, watch_status: bool, timeout_s: float) -> Hashable:
        store = self.store
        if watch_status and isinstance(store, StatusWatch):
            return await store.wait_status_changed(marker, timeout_s=timeout_s)
        return await store.wait_changed(marker, None, timeout_s=timeout_s)

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking runs; give those in flight `grace_s` to finish, then stop them and record
        them `interrupted` (another worker, or `planweave resume`, continues them)."""
        self._stopping = True
        running = [t for t in self.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        left = [(run_id, t) for run_id, t in self.tasks.items() if not t.done()]
        for run_id, task in left:
            self._interrupting.add(run_id)
            task.cancel()
        if left:
            await asyncio.wait([t for _, t in left])

    # --- internals ----------------------------------------------------------------------------

    def _candidates(self, queued_only: bool = False) -> list[RunSummary]:
        queued = self.store.list_runs(status="queued", limit=None)
        interrupted = [] if queued_only else [
            r for r in self.store.list_runs(status="interrupted", limit=None) if takes(r)
        ]
        return sorted([*queued, *interrupted], key=lambda r: r.created_at)  # oldest first

    def _claim(self, summary: RunSummary) -> RunSummary | None:
        """Claim the run, then check it still is one to take (another worker may have finished
        it since the scan); None when it is not ours to run."""
        try:
            self.store.claim(summary.id)
        except RunLeasedError:
            return None  # another worker or replica has it
        try:
            fresh = self.store.summary(summary.id)
        except StoreError:
            return None
        # Ours now, so a run whose owner died reads `running` (our lease) rather than `interrupted`.
        if fresh.status == "queued" or (
            fresh.status in ("running", "interrupted") and fresh.meta.get("takeover") is True
        ):
            return summary if summary.status == "interrupted" else fresh
        # Claimed after its last owner released it (it ended, or waits for people): not ours.
        with contextlib.suppress(StoreError):
            self.store.release(summary.id)
        return None

    def _start(self, summary: RunSummary) -> None:
        takeover = summary.status != "queued"
        self.stats.started += 1
        if takeover:
            self.stats.taken_over += 1
        self._emit(WorkerEvent("started", summary.id, summary.name or summary.goal[:60], takeover=takeover))
        task = asyncio.create_task(self._execute(summary), name=f"planweave-worker-{summary.id}")
        self.tasks[summary.id] = task
        self.stats.running = len(self.tasks)

    async def _execute(self, summary: RunSummary) -> None:
        run_id, name = summary.id, summary.name or summary.goal[:60]
        try:
            if summary.status != "queued":
                reason = await asyncio.to_thread(self._note_takeover, summary)
                if reason is not None:
                    self.stats.gave_up += 1
                    self._emit(WorkerEvent("gave_up", run_id, name, error=reason))
                    return
            result = await self.resume(self.store, run_id)
        except asyncio.CancelledError:
            if run_id in self._interrupting:
                await self._record_interrupted(run_id, name)
                return
            raise
        except StoreError as exc:
            # The store failed (locked, full, ...) or another process took the run over: the
            # run keeps its status (a later scan, here or elsewhere, takes it again).
            log.warning("run `%s` stopped: %s", run_id, exc)
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self.store.release, run_id)
            self._emit(WorkerEvent("interrupted", run_id, name, error=str(exc)))
            return
        except SetupError as exc:
            # The run cannot start here (its file is gone, a setting is wrong): taking it again
            # would fail again, so it is recorded `failed` with the reason.
            self.stats.refused += 1
            await asyncio.to_thread(self._refuse, run_id, str(exc))
            self._emit(WorkerEvent("refused", run_id, name, error=str(exc)))
            return
        except PlanweaveError as exc:
            self.stats.finished += 1
            self._emit(WorkerEvent("finished", run_id, name, status="failed", error=str(exc)))
            return
        except Exception as exc:  # a bug in a tool or here: keep the worker alive, say what happened
            log.exception("run `%s` broke the worker", run_id)
            self.stats.finished += 1
            self._emit(WorkerEvent("finished", run_id, name, status="failed", error=f"{type(exc).__name__}: {exc}"))
            return
        finally:
            self.tasks.pop(run_id, None)
            self.stats.running = len(self.tasks)
            self._slot_freed.set()
        if run_id in self._interrupting:  # it ended as it was being stopped: keep it resumable
            await self._record_interrupted(run_id, name)
            return
        self.stats.finished += 1
        status = getattr(_result_of(result), "status", None)
        error = getattr(_result_of(result), "error", None)
        self._emit(WorkerEvent("finished", run_id, name, status=str(status) if status else None, error=error))

    async def _record_interrupted(self, run_id: str, name: str) -> None:
        self.stats.interrupted += 1
        try:
            await asyncio.to_thread(self._note_interrupted, run_id)
        except StoreError as exc:  # its lease expires by itself: it reads `interrupted` then
            log.warning("could not record run `%s` interrupted: %s", run_id, exc)
        self._emit(WorkerEvent("interrupted", run_id, name))

    def _note_interrupted(self, run_id: str) -> None:
        # After the run's own last events (`cancelled`) are written, or they would overwrite this.
        self.store.writer().flush(timeout_s=30)
        self.store.set_status(run_id, "interrupted", error="the worker stopped")

    def _note_takeover(self, summary: RunSummary) -> str | None:
        """Record this take-over in the run (before it continues); or, when its owners already died
        `max_takeovers` times, the reason it is not taken over again (it is then recorded `failed`)."""
        from planweave.executor._leases import process_owner

        events = self.store.events(summary.id)
        last = events[-1].get("kind") if events else None
        owner_died = last != _LAST_EVENT.get(summary.kind, "run_finished")
        died = takeovers(events) + (1 if owner_died else 0)
        if owner_died and died > self.max_takeovers:
            reason = (
                f"run `{summary.id}` was not taken over again: its process stopped without finishing it {died} times "
                f"(the worker or replica running it died each time, perhaps killed by one of its steps; at most "
                f"{self.max_takeovers} take-overs, `{MAX_TAKEOVERS_ENV}`). Find the cause in the run "
                f"(`planweave show {summary.id}`: the step that was running), then retry it by hand with "
                f"`planweave resume --force {summary.id}`."
            )
            self.store.append(RunGivenUp(run_id=summary.id, reason=reason, takeovers=died - 1))
            self.store.release(summary.id)
            return reason
        count = sum(1 for e in events if e.get("kind") == RunTakenOver.kind) + 1
        self.store.append(RunTakenOver(run_id=summary.id, takeover=count, owner_died=owner_died,
                                       by=process_owner().rsplit(":", 1)[0]))
        return None

    def _refuse(self, run_id: str, reason: str) -> None:
        try:
            self.store.set_status(run_id, "failed", error=reason)
            self.store.release(run_id)
        except StoreError as exc:
            log.warning("could not record run `%s` failed: %s", run_id, exc)

    def _emit(self, event: WorkerEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken log line must not stop the worker
                log.exception("the worker's on_event callback failed")


def _result_of(resumed: Any) -> Any:
    return getattr(resumed, "result", resumed)


def _absolute_tool_specs(specs: list[str]) -> list[str]:
    parts = [s.strip() for spec in specs for s in str(spec).split(",") if s.strip()]
    return [str(Path(s).expanduser().resolve()) if s.endswith(".py") else s for s in parts]


def enqueue_workflow(
    store: RunStore,
    path: str | Path,
    inputs: Mapping[str, Any] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    tools: list[Any] | None = None,
    run_id: str | None = None,
) -> str:
    """Record a workflow run as `queued` for a worker to run; returns its id. Nothing runs here.

    The file is loaded and checked first, exactly as running it would (a bad file or input
    raises its `SetupError` and nothing is recorded). `meta` holds the run's settings as
    `planweave exec` records them (tool flags, model, trust, backend); the run is marked
    `takeover` so that any worker or `serve` replica may run it, and take it over if its
    owner dies."""
    from planweave.planner.resuming import check_workflow_file

    settings = dict(meta or {})
    if settings.get("tool_specs"):  # a worker runs elsewhere: `.py` tool files by absolute path
        settings["tool_specs"] = _absolute_tool_specs(settings["tool_specs"])
    checked = check_workflow_file(Path(path), dict(inputs or {}), meta=settings, tools=tools)
    if checked.secret_inputs:
        names = ", ".join(f"`{n}`" for n in sorted(checked.secret_inputs))
        raise ConfigError(
            f"the input {names} looks secret, and the run store does not keep secrets, so a queued run could "
            f"not get it; run the workflow here instead (`planweave exec` without `--detach`)."
        )
    run_id = run_id or uuid.uuid4().hex[:16]
    record = {**checked.meta, "takeover": True, "queued_at": time.time()}
    store.begin(run_id, kind="workflow", name=checked.workflow.name, goal="", meta=record)
    store.set_status(run_id, "queued")
    store.release(run_id)
    return run_id

