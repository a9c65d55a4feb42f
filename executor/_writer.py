"""The run store's writer thread: events are committed in batches, off the event loop.

Recorders hand events over with `submit` (a list append under a lock: well under a
microsecond on the loop). One thread per store takes everything gathered, writes it in one
transaction (group commit), then raises the `committed` watermark and wakes the runs waiting
for it, on their own loops. A run waits only for the events its next step depends on
(`planweave.executor.durability`).

The thread is woken when someone waits for an event (a step's inputs, a flush, the end of a
run) or when `MAX_BATCH` events have gathered; otherwise it writes what has gathered every
`LINGER_S`. So a chain of steps commits once per step (each step's events together), and
thousands of independent steps commit a few times in all.

One shortcut: when a step must wait for a few events (at most `INLINE_MAX`) and no batch is
being written, the waiting loop commits them itself, on a connection that never waits for a
lock (`write_batch(..., wait=False)`): a chain of quick steps then costs one small commit per
step rather than two thread switches. If the store is busy, the events go to the thread as
usual; the loop is never held up by another process's lock. While loops commit like this, the
thread stays out of their way: events nobody waits for go with the loops' next commit (the
thread writes them itself after `LOOP_LINGER_S` without one), it checkpoints the WAL they grow
outside the write lock (`BatchSink.checkpoint`), and it wakes waiting loops only once it has
released the write lock (woken sooner, a loop would find it held and fall back to the thread
for its next commit too, and so on).

The same thread renews the leases of the runs it records (`heartbeat_s`), so a live run
keeps its lease however long its steps take, and a dead one's lease expires.

If a batch cannot be committed, the runs with events in it fail (`Recorder.fail`): their
later events are dropped, and the runs stop starting steps. Other runs go on.
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from planweave.executor.events import Noted, NotedBatch, RunEvent

if TYPE_CHECKING:
    from planweave.executor.store import Recorder, StoreError

__all__ = ["BatchOutcome", "BatchSink", "EventWriter"]

log = logging.getLogger("planweave.store")

MAX_BATCH = 4096
"""Most events in one transaction (a bigger backlog is committed in several)."""

LINGER_S = 0.01
"""Longest an event nobody waits for stays in memory before the thread writes it."""

LOOP_LINGER_S = 0.1
"""The same while loops commit events themselves: those go with their next commit (and this
thread does not wake every `LINGER_S`, taking the GIL from them, for nothing)."""

VISIBLE_S = 0.25
"""Longest an event nobody waits for (a long step's start) stays unwritten while its run lives:
other processes following the run see it within about this."""

INLINE_MAX = 64
"""Most events a waiting loop commits itself (more go to the thread: the loop stays responsive)."""

BACKLOG = 512
"""Events gathered that wake the thread at once (more than a loop would commit itself: a run of
many independent steps has them written while it runs, not all at its end)."""

_WAKE_AT = frozenset({BACKLOG, MAX_BATCH})

CHECKPOINT_EVERY = 256
"""Commits made by loops between two calls of the sink's `checkpoint` (by the thread, when it
next wakes: waking it for that would take the write lock from the loops at random)."""


@dataclass(slots=True)
class BatchOutcome:
    """What writing one batch did, by run id."""

    failed: dict[str, StoreError] = field(default_factory=dict)
    """Runs whose events could not be written (the batch's other runs were written)."""
    finished: set[str] = field(default_factory=set)
    """Runs that recorded a final status in this batch (their leases are no longer renewed)."""
    busy: bool = False
    """`wait=False` and another connection held the lock: nothing was written, nothing failed."""


class BatchSink(Protocol):
    """What the writer thread writes to (`SQLiteRunStore`); called on the writer thread only."""

    def write_batch(
        self, items: list[tuple[str, RunEvent | Noted]], *, wait: bool = True, release: frozenset[str] = frozenset()
    ) -> BatchOutcome:
        """Write `items` in one transaction; in the same transaction, give up this process's lease
        of each run in `release` (after its events: the run's last one is among them or before)."""

    def checkpoint(self) -> None:
        """Copy the log back if it has grown (called outside the write lock: a loop's
        `write_batch(wait=False)` may run meanwhile, on its own connection)."""

    def renew_leases(self, run_ids: list[str]) -> dict[str, StoreError]: ...

    def close_writer(self) -> None: ...


class _Release:
    """Give up the lease of a run, in the transaction of the events before it (`EventWriter.release`)."""

    __slots__ = ()


_RELEASE = _Release()


class _Control:
    """A call to make on the writer thread, in order with the events around it."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn


class EventWriter:
    """One writer thread for one store (started on the first `submit`)."""

    def __init__(self, sink: BatchSink, *, heartbeat_s: float, name: str = "planweave-store-writer") -> None:
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.name = name
        self.committed = 0
        """Every event submitted up to this number has been written (or has failed)."""
        self.batches = 0
        """Transactions of events written so far (group commit: far fewer than events)."""
        self._pending: list[tuple[int, str | None, Any]] = []  # submitted, not yet taken by the thread
        self._last = 0  # number of the last event submitted
        self._submit_lock = threading.Lock()  # numbers follow list order, whatever thread submits
        self._wake = threading.Event()  # set: the thread should write now
        self._stopping = False
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, int, asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._reached: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []  # to wake
        self._tie = itertools.count()
        self._recorders: dict[str, Recorder] = {}  # live runs: failures go to them, leases are renewed
        self._failed: set[str] = set()  # runs whose recording failed: what they queued meanwhile is dropped
        self._thread: threading.Thread | None = None
        self.closed = False
        """The thread has stopped: nothing submitted from now on is written."""
        self._flushing = 0  # threads waiting in `flush` (woken by `_advance`)
        self._write_lock = threading.Lock()  # held while a batch is written (by the thread or a loop)
        self._inline_commits = 0
        self._control_pending = False  # `_pending` holds a `call` or a batch: loops leave it to the thread
        self._inline_at = 0.0  # when a loop last committed events itself (`time.monotonic()`)

    # --- any thread ------------------------------------------------------------------------------

    def attach(self, recorder: Recorder) -> None:
        """Route `recorder.run_id`'s failures to `recorder` and renew its lease until the run ends.

        Raises `RunLeasedError` when another live recorder of this process records that run."""
        from planweave.executor.store import RunLeasedError, StoreError

        run_id = recorder.run_id
        assert run_id is not None
        if self.closed:
            raise StoreError(f"the run store was closed; run `{run_id}` cannot be recorded (open the store again).")
        other = self._recorders.get(run_id)
        if other is not None and other is not recorder and other.failure is None:
            raise RunLeasedError(
                f"run `{run_id}` is already being executed by this process; wait for it to finish.",
                run_id=run_id, owner="this process", expires_at=None,
            )
        self._recorders[run_id] = recorder
        self._failed.discard(run_id)  # (recorded again: resumed)
        self._start()

    def submit(self, run_id: str, event: RunEvent | Noted) -> int:
        """Queue `event` for writing; returns its number (durable once `committed` reaches it)."""
        with self._submit_lock:
            self._last = number = self._last + 1
            pending = self._pending
            pending.append((number, run_id, event))
            if len(pending) in _WAKE_AT:
                self._wake.set()
        return number

    def submit_batch(self, run_id: str, batch: NotedBatch) -> int:
        """Queue a batch of events, built when written (by the thread: it may hold thousands);
        returns its number, as `submit`."""
        with self._submit_lock:
            self._last = number = self._last + 1
            self._pending.append((number, run_id, batch))
            self._control_pending = True
        return number

    def release(self, run_id: str) -> int:
        """Give up this process's lease of `run_id` once the events queued so far for it are
        written, in their transaction (the run's last event is queued); returns a number as `submit`."""
        with self._submit_lock:
            self._last = number = self._last + 1
            self._pending.append((number, run_id, _RELEASE))
        return number

    def call(self, fn: Callable[[], object]) -> int:
        """Run `fn` on the writer thread after the events queued so far; returns a number as `submit`."""
        with self._submit_lock:
            self._last = number = self._last + 1
            self._pending.append((number, None, _Control(fn)))
            self._control_pending = True
        self._start()
        self._wake.set()
        return number

    def commit_now(self, mark: int) -> bool:
        """True when event `mark` is written, perhaps by the calling thread at once (a few events,
        nobody else writing, the store not busy: see `_write_inline`); False when it must wait."""
        if self.committed >= mark or self.closed:  # (both only ever grow: no lock needed to see them)
            return True
        return self._write_inline() and self.committed >= mark

    def when_committed(self, mark: int, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
        """True when event `mark` is written; else call `callback` on `loop` once it is, and return False."""
        if self.commit_now(mark):
            return True
        with self._cond:
            if self.committed >= mark:
                return True
            heapq.heappush(self._waiters, (mark, next(self._tie), loop, callback))
        self._wake.set()
        return False

    def _write_inline(self) -> bool:
        """Commit the few gathered events on the calling thread if nobody is writing; True if done."""
        pending = self._pending
        if (not pending or len(pending) > INLINE_MAX or self._control_pending or self._thread is None
                or self.closed):
            return False  # (a call waiting to run goes to the thread, with the events around it)
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            with self._submit_lock:
                if self._control_pending:
                    return False
                batch, self._pending = self._pending, []
            if not batch:
                return True
            if not self._write(batch, wait=False):
                with self._submit_lock:
                    self._pending[:0] = batch  # the thread writes them, in order
                return False
        finally:
            self._write_lock.release()
            self._wake_waiters()
        self._inline_at = time.monotonic()
        self._inline_commits += 1  # (the thread checkpoints the WAL they grow when it next wakes)
        return True

    def flush(self, timeout_s: float | None = None) -> bool:
        """Block until every event submitted so far is written (True), or `timeout_s` passed (False)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        target = self._last
        self._wake.set()
        with self._cond:
            self._flushing += 1
            try:
                return self._cond.wait_for(lambda: self.committed >= target or self.closed, timeout_s)
            finally:
                self._flushing -= 1

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        thread = self._thread
        if thread is None or self.closed:
            return
        self._stopping = True
        self._wake.set()
        if threading.current_thread() is not thread:
            thread.join(timeout_s)

    # --- the thread ------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._submit_lock:
            if self._thread is not None:
                return
            # A daemon thread, closed by `atexit`: events queued at the end of a script
            # (the planner's last event) are written before the interpreter goes.
            thread = threading.Thread(target=self._main, name=self.name, daemon=True)
            self._thread = thread
            thread.start()
            atexit.register(_close_at_exit, weakref.ref(self))

    def _main(self) -> None:
        last_renewal = time.monotonic()
        checkpointed = 0
        try:
            while True:
                loops_commit = time.monotonic() - self._inline_at < LOOP_LINGER_S and len(self._pending) <= INLINE_MAX
                if self._pending:
                    timeout = LOOP_LINGER_S if loops_commit else LINGER_S
                else:  # (an event submitted meanwhile wakes nobody: while runs live, look again soon)
                    timeout = min(self.heartbeat_s, VISIBLE_S) if self._recorders else self.heartbeat_s
                woken = self._wake.wait(timeout)
                self._wake.clear()
                stop = self._stopping
                # Nobody waits for what has gathered: while loops commit events themselves
                # (a chain of steps), it goes with their next commit rather than in a
                # commit of its own that would hold their next one up.
                wrote = False
                if (woken or stop or len(self._pending) > INLINE_MAX
                        or time.monotonic() - self._inline_at >= LOOP_LINGER_S):
                    # (more than a loop would commit itself: write them now, while the loops run)
                    with self._write_lock:
                        with self._submit_lock:
                            batch, self._pending = self._pending, []
                            self._control_pending = False
                        for start in range(0, len(batch), MAX_BATCH):
                            self._write(batch[start : start + MAX_BATCH])
                            wrote = True
                    self._wake_waiters()
                if wrote or self._inline_commits - checkpointed >= CHECKPOINT_EVERY:
                    # Outside the write lock: loops go on committing while the WAL is copied
                    # back (the sink checkpoints only once its WAL has grown).
                    checkpointed = self._inline_commits
                    self.sink.checkpoint()
                if time.monotonic() - last_renewal >= self.heartbeat_s:
                    last_renewal = time.monotonic()
                    self._renew()
                if stop:
                    return
        except BaseException as exc:  # a bug here must not leave runs waiting forever
            log.exception("the run store's writer thread stopped")
            from planweave.executor.store import StoreError

            for recorder in list(self._recorders.values()):
                recorder.fail(StoreError(f"the run store's writer thread stopped: {type(exc).__name__}: {exc}"))
        finally:
            self.closed = True
            try:
                self.sink.close_writer()
            finally:
                self._advance(self._last)
                self._wake_waiters()

    def _write(self, batch: list[tuple[int, str | None, Any]], *, wait: bool = True) -> bool:
        """Write `batch` (the caller holds `_write_lock`); False when `wait=False` found the store busy."""
        events: list[tuple[str, RunEvent | Noted]] = []
        releases: set[str] = set()
        recorders, failed = self._recorders, self._failed
        for number, run_id, item in batch:
            if run_id is None:  # a `_Control`
                self._flush_events(events, number - 1, releases)
                events = []
                releases = set()
                try:
                    item.fn()
                except Exception:
                    log.exception("a run store call on the writer thread failed")
                self._advance(number)
                continue
            if run_id in failed:
                continue  # the run has stopped: nothing after its failure is written (nor its lease given up)
            recorder = recorders.get(run_id)
            if recorder is not None and recorder.failure is not None:
                continue
            if item is _RELEASE:
                releases.add(run_id)
            elif type(item) is NotedBatch:  # (made now: they live only while written)
                events += [(run_id, event) for event in item.unbuilt(run_id)]
            else:
                events.append((run_id, item))
        return self._flush_events(events, batch[-1][0], releases, wait=wait)

    def _flush_events(
        self, events: list[tuple[str, RunEvent | Noted]], number: int, releases: set[str], *, wait: bool = True
    ) -> bool:
        if events or releases:
            outcome = self.sink.write_batch(events, wait=wait, release=frozenset(releases))
            if outcome.busy:
                return False
            self.batches += 1
            for run_id, error in outcome.failed.items():
                self._failed.add(run_id)
                recorder = self._recorders.pop(run_id, None)
                if recorder is not None:
                    recorder.fail(error)
                else:
                    log.warning("events of run `%s` were not recorded: %s", run_id, error)
            for run_id in outcome.finished:
                self._recorders.pop(run_id, None)
        self._advance(number)
        return True

    def _renew(self) -> None:
        run_ids = list(self._recorders)
        if not run_ids:
            return
        for run_id, error in self.sink.renew_leases(run_ids).items():
            self._failed.add(run_id)
            recorder = self._recorders.pop(run_id, None)
            if recorder is not None:
                recorder.fail(error)

    def _advance(self, number: int) -> None:
        """Raise the watermark; the waiters it reaches are woken by `_wake_waiters`, called once
        the write lock is released (a loop woken sooner would find it held, and fall back to
        this thread for its next commit too)."""
        with self._cond:
            if number > self.committed:
                self.committed = number
            waiters = self._waiters
            while waiters and waiters[0][0] <= self.committed:
                _, _, loop, callback = heapq.heappop(waiters)
                self._reached.append((loop, callback))
            if self._flushing:
                self._cond.notify_all()

    def _wake_waiters(self) -> None:
        if not self._reached:  # (what this thread's own `_advance` added is seen without the lock)
            return
        with self._cond:
            reached, self._reached = self._reached, []
        wake: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        for loop, callback in reached:
            wake.setdefault(loop, []).append(callback)
        for loop, callbacks in wake.items():
            try:
                loop.call_soon_threadsafe(_call_all, callbacks)
            except RuntimeError:  # that loop is closed: its run is over
                pass


def _close_at_exit(ref: weakref.ref[EventWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.close()


def _call_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        callback()
