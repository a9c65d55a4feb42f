"""Where a tool call actually runs.

The scheduler decides *when* a step runs; a `Backend` decides *where*. The local
backend runs async tools on the event loop and blocking sync tools in a thread
pool. A distributed backend (a job queue, a remote worker) implements the same
two methods and plugs in without touching the scheduler.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tools.base import Tool, ToolContext

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

    A sync call that outlives its step's timeout keeps its thread until it returns:
    Python threads cannot be killed. Prefer async tools for long I/O.
    """

    def __init__(self, max_threads: int = 64) -> None:
        self.max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None

    async def invoke(self, tool: Tool, args: Mapping[str, Any], context: ToolContext) -> Any:
        if tool.is_async:
            return tool.to_output(await tool.fn(**tool.bind(args, context)))
        if not tool.blocking:
            return _call_sync(tool, args, context)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="planweave-tool")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(_call_sync, tool, args, context))

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, functools.partial(pool.shutdown, wait=False))
