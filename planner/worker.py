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

The loop wakes when the store changes (`RunStore.wait_changed`: PostgreSQL's LISTEN/NOTIFY,
polling on SQLite), and re-scans every `poll_s` (a third of the store's lease by default)
because a lease expiring writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from planweave.executor.store import RunLeasedError, RunStore, RunSummary, StoreError
from planweave.tools.errors import ConfigError, PlanweaveError, SetupError

if TYPE_CHECKING:
    from planweave.planner.resuming import Resumed

__all__ = ["Worker", "WorkerEvent", "WorkerStats", "enqueue_workflow", "takes"]

log = logging.getLogger("planweave.worker")

DEFAULT_GRACE_S = 5.0
_FALLBACK_LEASE_S = 30.0


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
    running: int = 0
    """Runs in flight now."""


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One thing a worker did to a run, for a log line (`Worker(on_event=...)`)."""

    kind: Literal["started", "finished", "interrupted", "refused"]
    run_id: str
    name: str
    """The run's workflow name or goal label."""
    takeover: bool = False
    """For `started`: the run had been interrupted (its owner died), not queued."""
    status: str | None = None
    """For `finished`: how the run ended (`succeeded`, `waiting`, ...)."""
    error: str | None = None
    """For `refused` and failed runs: why."""


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
    ) -> None:
        if concurrency < 1:
            raise SetupError(f"a worker's concurrency must be at least 1 (got {concurrency}).")
        self.store = store
        self.concurrency = concurrency
        lease_s = float(getattr(store, "lease_s", _FALLBACK_LEASE_S))
        self.poll_s = poll_s if poll_s is not None else max(0.05, lease_s / 3)
        self._min_scan_s = min(0.2, self.poll_s)
        self.grace_s = grace_s
        self.on_event = on_event
        self.resume = resume or _default_resume
        self.stats = WorkerStats()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        """Runs in flight here, by id."""
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._interrupting: set[str] = set()

    # --- public -----------------------------------------------------------------------------

    async def take_over_once(self) -> list[str]:
        """Scan the store once and start every run this worker takes, up to its free slots;
        returns the ids of the runs it started (they run in the background, in `tasks`)."""
        if self._stopping:
            return []
        free = self.concurrency - len(self.tasks)
        if free <= 0:
            return []
        candidates = await asyncio.to_thread(self._candidates)
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
        marker = await asyncio.to_thread(self.store.change_marker, None)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                scanned = time.monotonic()
                try:
                    await self.take_over_once()
                except StoreError as exc:  # the store is down for now: try again at the next scan
                    log.warning("the worker could not scan the run store: %s", exc)
                self._slot_freed.clear()
                full = len(self.tasks) >= self.concurrency
                # Full: only a freed slot (or stop) matters. Else: a change in the store (a new run,
                # a run that ended), or the re-scan timer (a lease expiring writes nothing).
                watch = asyncio.ensure_future(
                    asyncio.sleep(self.poll_s) if full
                    else self.store.wait_changed(marker, None, timeout_s=self.poll_s)
                )
                freed = asyncio.ensure_future(self._slot_freed.wait())
                await asyncio.wait([stopped, watch, freed], return_when=asyncio.FIRST_COMPLETED)
                for future in (watch, freed):
                    if not future.done():
                        future.cancel()
                if not full and watch.done() and not watch.cancelled() and watch.exception() is None:
                    marker = watch.result()
                # Runs in flight here write to the store all the time: scan at most this often.
                pause = self._min_scan_s - (time.monotonic() - scanned)
                if pause > 0 and not stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stopped), pause)
        finally:
            stopped.cancel()
            await self.shutdown(self.grace_s)

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

    def _candidates(self) -> list[RunSummary]:
        queued = self.store.list_runs(status="queued", limit=None)
        interrupted = [r for r in self.store.list_runs(status="interrupted", limit=None) if takes(r)]
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
            result = await self.resume(self.store, run_id)
        except asyncio.CancelledError:
            if run_id in self._interrupting:
                await self._record_interrupted(run_id, name)
                return
            raise
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

