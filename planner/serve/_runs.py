"""The runs one replica serves: admitting them, driving them, interrupting them on shutdown.

    runs = Runs(planner, config)
    slot = runs.admit()                       # a place under `max_concurrent_runs`, or 429 / 503
    async for item in runs.drive(goal, slot.run_id):
        ...                                   # the run's events as they happen, then its result
    await runs.shutdown(grace_s)              # SIGTERM: no new runs; the rest `interrupted`

The model libraries (litellm, instructor) take seconds to import, so they load once per process
on a worker thread (`MODEL_LIBRARIES`); a run awaits that load without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from planweave.executor.events import RunEvent
from planweave.planner.core import Planner
from planweave.planner.errors import ConfigError
from planweave.planner.result import PlannerResult
from planweave.planner.serve._errors import APIError
from planweave.planner.serve._launch import Background, LoadState
from planweave.planner.serve.ops import Metrics
from planweave.planner.serve.services import Services

if TYPE_CHECKING:
    from planweave.planner.serve.app import ServerConfig

__all__ = ["AdmittedStream", "CANCEL_GRACE_S", "Interrupted", "MODEL_LIBRARIES", "ModelLibraries", "Runs", "Slot", "Start"]

CANCEL_GRACE_S = 10.0
"""How long a request that goes away waits for its cancelled run to record itself."""

Start = Callable[[list[Callable[[RunEvent], object]]], Coroutine[Any, Any, PlannerResult]]
"""Starts a run with these subscribers (`Runs.drive`)."""


class ModelLibraries:
    """litellm and instructor, imported once on a daemon thread so the event loop never waits on them.

    `start` is called by the app's lifespan, by `serve` once the app is built, and by the first
    request (for servers that run no lifespan); `ready` is what a request that needs a model awaits.
    """

    def __init__(self) -> None:
        self._load = Background(_import_model_libraries, name="planweave-serve-models")

    @property
    def state(self) -> LoadState:
        return self._load.state

    def start(self) -> None:
        self._load.start()

    async def ready(self) -> None:
        """Return once the libraries are loaded (start loading them if nobody did); raise if they failed to."""
        await self._load.wait()
        error = self._load.error
        if error is not None:
            raise ConfigError(
                f"the model libraries failed to load ({type(error).__name__}: {error}); "
                "reinstall planweave (`pip install -c constraints.txt -e .`) and restart the server."
            )


def _import_model_libraries() -> None:
    from planweave.planner.llm import import_litellm

    import_litellm()
    import instructor  # noqa: F401  (structured calls need it; importing it costs as much again)


MODEL_LIBRARIES = ModelLibraries()
"""One per process, as imports are: every app in it shares the one load."""


class Interrupted(Exception):
    """The server shut down while this run was going: it is recorded `interrupted` (resumable)."""

    def __init__(self, run_id: str, grace_s: float) -> None:
        super().__init__(
            f"planweave shut down while run `{run_id}` was going (it had {grace_s:g}s to finish); the run is "
            f"recorded as `interrupted`: resume it with `planweave resume {run_id}`, or send the request again."
        )
        self.run_id = run_id


class Runs:
    """The server's shared state: the planner, the settings, and how many runs are going."""

    def __init__(self, planner: Planner, config: ServerConfig) -> None:
        self.planner = planner
        self.config = config
        self.active = 0
        self.created = int(time.time())
        self.models = MODEL_LIBRARIES
        self.tasks: dict[str, asyncio.Task[PlannerResult]] = {}
        self.stopping = False
        """Shutdown began: no new runs."""
        self.interrupted: set[str] = set()
        self.metrics = Metrics()
        self.services = Services(planner, self.metrics, takeover=config.takeover, grace_s=config.shutdown_grace_s)
        self.metrics.in_flight.set_function(lambda: len(self.tasks) + self.services.in_flight())

    async def start(self) -> None:
        """Start what the replica runs beside its API (`Services`); once, however often called."""
        if not self.stopping:
            await self.services.start()

    async def shutdown(self, grace_s: float) -> None:
        """Stop admitting runs; give those running `grace_s` to finish, then interrupt the rest.

        An interrupted run is recorded `interrupted` (not `cancelled`: it can be resumed), and its
        client's stream ends with an error event saying so (`drive` raises `Interrupted`)."""
        self.stopping = True
        taken_over = asyncio.ensure_future(self.services.stop_taking_over(grace_s))  # the same grace, meanwhile
        running = [t for t in self.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for run_id, task in list(self.tasks.items()):
            if not task.done():
                self.interrupted.add(run_id)
                task.cancel()
        await taken_over
        await self.services.stop()

    def admit(self) -> Slot:
        """Reserve a run slot now, before any response starts (streamed or not), or raise 429.

        The caller releases it when the run's response is over (`Slot.release`, idempotent):
        counting only once a stream's generator starts would let any number of streams in."""
        if self.stopping:
            self.metrics.rejected.labels("shutting_down").inc()
            raise APIError(
                503, "planweave is shutting down and takes no new runs; send the request again in a moment.",
                code="server_shutting_down", type_="server_error",
            )
        limit = self.config.max_concurrent_runs
        if limit is not None and self.active >= limit:
            self.metrics.rejected.labels("limit").inc()
            raise APIError(
                429,
                f"planweave is already running {self.active} runs, its limit (`--max-concurrent-runs`); "
                "retry in a moment.",
                code="rate_limit_exceeded",
                type_="rate_limit_error",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        return Slot(self, uuid.uuid4().hex[:16])

    async def drive(
        self, goal: str, run_id: str, inputs: dict[str, Any] | None = None, start: Start | None = None
    ) -> AsyncGenerator[RunEvent | PlannerResult, None]:
        """The run's events as they happen, then its result. Closing this early cancels the run and
        waits (shielded, bounded) until it has recorded itself as cancelled. `start` starts the run
        another way (a chat turn's conversation, or the answer that continues a waiting run). The
        caller holds the run's slot (`admit`) from before this starts until its response is over."""
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        await self.models.ready()
        task = asyncio.create_task(
            start([queue.put_nowait]) if start is not None
            else self.planner.run(goal, inputs=inputs, run_id=run_id, subscribers=[queue.put_nowait]),
            name=f"planweave-serve-{run_id}",
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        self.tasks[run_id] = task
        self.metrics.started.inc()
        task.add_done_callback(self._count_finished)
        try:
            while (event := await queue.get()) is not None:
                yield event
            if run_id in self.interrupted:
                store = self.planner.store
                if store is not None:  # recorded before the client hears of it
                    await asyncio.to_thread(store.set_status, run_id, "interrupted", error="the server shut down")
                raise Interrupted(run_id, self.config.shutdown_grace_s)
            yield task.result()
        finally:
            self.tasks.pop(run_id, None)
            if not task.done():
                task.cancel()
                with anyio.move_on_after(CANCEL_GRACE_S, shield=True):
                    await asyncio.wait({task})

    def _count_finished(self, task: asyncio.Task[PlannerResult]) -> None:
        if task.cancelled():
            status = "cancelled"
        elif task.exception() is not None:
            status = "error"
        else:
            status = task.result().status
        self.metrics.finished.labels(status).inc()


class Slot:
    """One admitted run's place under `max_concurrent_runs`, held until `release` (safe to call twice)."""

    def __init__(self, runs: Runs, run_id: str) -> None:
        self._runs: Runs | None = runs
        self.run_id = run_id

    def release(self) -> None:
        if self._runs is not None:
            self._runs.active -= 1
            self._runs = None


class AdmittedStream(EventSourceResponse):
    """A streamed run's response: its slot is released when the response is over, however it ends
    (finished, client gone, or never started because the connection closed first)."""

    def __init__(
        self, content: AsyncGenerator[str, None], slot: Slot, headers: dict[str, str], *, grace_s: float
    ) -> None:
        super().__init__(content, headers=headers, sep="\n", shutdown_grace_period=grace_s)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
