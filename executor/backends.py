"""Where a tool call actually runs.

The scheduler decides *when* a step runs; a `Backend` decides *where*. The local
backend runs async tools on the event loop and blocking sync tools in worker
threads. A distributed backend (a job queue, a remote worker) implements the same
two methods and plugs in without touching the scheduler.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from planweave.tools.base import Tool, ToolContext
from planweave.tools.errors import ConfigError

__all__ = ["Backend", "LocalBackend"]


class Backend(ABC):
    """Runs one tool call. Must be cancellable: cancelling the awaiting task abandons the call."""

    @abstractmethod
    async def invoke(self, tool: Tool, args: Mapping[str, Any], context: ToolContext) -> Any:
        """Validate `args`, call `tool`, and return its JSON-compatible output (or raise)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (thread pools, connections). Called once when the executor closes."""


def _call_sync(tool: Tool, args: Mapping[str, Any], context: ToolContext) -> Any:
    return tool.to_output(tool.fn(**tool.bind(args, context)))


class LocalBackend(Backend):
    """Async tools on the loop; sync tools in a worker thread unless they are marked non-blocking.

    Worker threads start when needed, up to `max_threads` (a call beyond that waits for a
    free thread), and stop after `idle_s` seconds without work, so a high limit costs nothing
    until a plan runs that many blocking steps side by side. A sync call that outlives its
    step's timeout keeps its thread until it returns: Python threads cannot be killed.
    Prefer async tools for long I/O.
    """

    def __init__(self, max_threads: int = 256, *, idle_s: float = 10.0) -> None:
        if max_threads < 1:
            raise ConfigError(f"max_threads must be at least 1, not {max_threads}")
        self.max_threads = max_threads
        self.idle_s = idle_s
        self._pool: _Workers | None = None
        self._inbox: _Inbox | None = None

    async def invoke(self, tool: Tool, args: Mapping[str, Any], context: ToolContext) -> Any:
        if tool.is_async:
            return tool.to_output(await tool.fn(**tool.bind(args, context)))
        if not tool.blocking:
            return _call_sync(tool, args, context)
        if self._pool is None:
            self._pool = _Workers(self.max_threads, self.idle_s)
        loop = asyncio.get_running_loop()
        inbox = self._inbox
        if inbox is None or inbox.loop is not loop:  # one inbox per event loop using this backend
            inbox = self._inbox = _Inbox(loop)
        return await self._pool.submit(inbox, functools.partial(_call_sync, tool, args, context))

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown()  # idle threads stop now; busy ones when their call returns


# Why not `loop.run_in_executor`: it wakes the event loop once per finished call, and each
# wake-up (a write to the loop's self-pipe, from the worker thread) drops and retakes the GIL.
# When a layer of 200 blocking calls finishes at once, those 200 hand-offs convoy on the GIL:
# about 10 ms per layer on 2 cores (bench/README.md). Here a finished call joins its loop's
# inbox, and one wake-up delivers everything that finished meanwhile.


class _Inbox:
    """Calls finished by worker threads, waiting to be delivered on one event loop."""

    __slots__ = ("loop", "_done", "_wake_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._done: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self._wake_pending = False

    def put(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        """From a worker thread: deliver `value` (a result, or an exception when not `ok`)."""
        self._done.append((future, ok, value))
        # Reset by `_deliver` *before* it drains, so an item appended after the drain always
        # sees False here and schedules another delivery.
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _deliver(self) -> None:
        self._wake_pending = False
        done = self._done
        while done:
            future, ok, value = done.popleft()
            if future.done():  # cancelled while the call ran
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


_Job = tuple[_Inbox, "asyncio.Future[Any]", Callable[[], Any]]


class _Workers:
    """Daemon worker threads for blocking calls, started on demand up to `size`."""

    def __init__(self, size: int, idle_s: float) -> None:
        self.size = size
        self.idle_s = idle_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._busy = 0  # jobs submitted and not finished; a thread starts when it exceeds `_threads`

    def submit(self, inbox: _Inbox, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = inbox.loop.create_future()
        with self._lock:
            self._busy += 1
            start = self._busy > self._threads and self._threads < self.size
            if start:
                self._threads += 1
        if start:
            threading.Thread(target=self._work, name="planweave-tool", daemon=True).start()
        self._jobs.put((inbox, future, fn))
        return future

    def shutdown(self) -> None:
        with self._lock:
            n = self._threads
        for _ in range(n):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._busy < self._threads:  # the others can take every queued job
                        self._threads -= 1
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            inbox, future, fn = job
            ok, value = True, None
            if not future.cancelled():
                try:
                    value = fn()
                except StopIteration as exc:  # a future cannot hold StopIteration
                    ok, value = False, RuntimeError(f"the tool raised StopIteration: {exc}")
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises
                    ok, value = False, exc
            with self._lock:
                self._busy -= 1
            inbox.put(future, ok, value)
            del job, inbox, future, fn, value  # do not keep the last call's objects alive while idle
