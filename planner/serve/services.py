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

from planweave.planner.core import Planner
from planweave.planner.serve.ops import Metrics

__all__ = ["Services"]

log = logging.getLogger("planweave.server")


class Services:
    """The MCP connections and the take-over loop of one replica (see the module doc)."""

    def __init__(self, planner: Planner, metrics: Metrics, *, takeover: bool) -> None:
        self.planner = planner
        self.metrics = metrics
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
        from planweave.planner.worker import Worker

        worker = Worker(self.planner, on_takeover=lambda run_ids: self.metrics.takeovers.inc(len(run_ids)))
        try:
            await worker.run(self._stop)
        except Exception:  # the API goes on serving; the log says why runs are no longer taken over
            log.exception("the take-over loop stopped")

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
