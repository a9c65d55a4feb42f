"""What a replica runs beside its API, for its whole life.

- The planner's MCP servers, connected once when the server starts and shared by every run
  (not once per request), closed when it stops.
- The take-over loop (`planweave.planner.worker.Worker`, when `ServerConfig.takeover`): runs
  whose owner died (a replica SIGKILLed mid-run: its lease expired) and queued runs are claimed
  and finished here, from their recorded events (no recorded success runs again). It wakes on
  the store's changes (`RunStore.wait_changed`), not in a tight loop.

`start` is called once the app is built (`serve`) or by the app's lifespan (any ASGI server);
on shutdown, `stop_taking_over` first (no new take-overs while runs wind down), then `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from planweave.executor.store import RunStore
from planweave.planner.core import Planner
from planweave.planner.serve.ops import Metrics

if TYPE_CHECKING:
    from planweave.planner.worker import Worker

__all__ = ["Services"]

log = logging.getLogger("planweave.server")


class Services:
    """The MCP connections and the take-over loop of one replica (see the module doc)."""

    def __init__(self, planner: Planner, metrics: Metrics, *, takeover: bool, grace_s: float) -> None:
        self.planner = planner
        self.metrics = metrics
        self.grace_s = grace_s
        self.worker: Worker | None = None
        self.takeover = takeover and planner.store is not None
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self.planner)  # its MCP servers, until `stop`
        self._stack = stack
        if self.takeover:
            self._loop = asyncio.create_task(self._take_over(), name="planweave-serve-takeover")

    async def _take_over(self) -> None:
        from planweave.planner.worker import Worker, WorkerEvent

        def on_event(event: WorkerEvent) -> None:
            if event.kind == "started" and event.takeover:
                self.metrics.takeovers.inc()
            log.warning("take-over: run `%s` %s%s", event.run_id, event.kind, f" ({event.status})" if event.status else "")

        store = self.planner.store
        assert store is not None
        self.worker = Worker(store, grace_s=self.grace_s, on_event=on_event, resume=self._resume)
        try:
            await self.worker.run(self._stop)
        except Exception:  # the API goes on serving; the log says why runs are no longer taken over
            log.exception("the take-over loop stopped")

    async def _resume(self, store: RunStore, run_id: str) -> object:
        """A chat run continues with this server's planner (its tools, model and MCP servers);
        a workflow run (`exec --detach`) with its recorded settings, as `planweave worker` runs it."""
        summary = await asyncio.to_thread(store.summary, run_id)
        if summary.kind == "planner":
            return await self.planner.resume(run_id)
        from planweave.planner.resuming import resume_run

        return await resume_run(store, run_id)

    def in_flight(self) -> int:
        """Runs taken over that are running here now."""
        return len(self.worker.tasks) if self.worker is not None else 0

    async def stop_taking_over(self, grace_s: float) -> None:
        """Take over no more runs; give the runs taken over `grace_s` to finish (the worker's own rule)."""
        self._stop.set()
        if self._loop is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._loop), timeout=grace_s + 5)

    async def stop(self) -> None:
        self._stop.set()
        if self._loop is not None and not self._loop.done():
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
