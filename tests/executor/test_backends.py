"""The local backend: blocking tools in worker threads, started on demand and stopped when idle."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel, Field

from planweave.executor import LocalBackend
from planweave.planner.testing import await_until
from planweave.tools import Tool, ToolContext, tool

NO_CONTEXT = ToolContext()


def sleeper(record: list[threading.Thread] | None = None) -> Tool:
    @tool
    def block(seconds: float) -> float:
        if record is not None:
            record.append(threading.current_thread())
        time.sleep(seconds)
        return seconds

    return block


async def test_blocking_calls_run_side_by_side_up_to_max_threads() -> None:
    running = peak = 0
    lock = threading.Lock()

    @tool
    def busy() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    backend = LocalBackend(max_threads=3)
    await asyncio.gather(*(backend.invoke(busy, {}, NO_CONTEXT) for _ in range(9)))
    assert peak == 3  # three side by side, never more
    await backend.aclose()

    # A barrier only opens when all 100 calls are blocked in it at once (else it breaks after 30 s).
    barrier = threading.Barrier(100, timeout=30)

    @tool
    def meet() -> int:
        return barrier.wait()

    wide = LocalBackend(max_threads=100)
    results = await asyncio.gather(*(wide.invoke(meet, {}, NO_CONTEXT) for _ in range(100)))
    assert sorted(results) == list(range(100))
    await wide.aclose()


async def test_errors_reach_the_caller() -> None:
    @tool
    def fails() -> None:
        raise KeyError("k")

    @tool
    def stops() -> None:
        raise StopIteration

    backend = LocalBackend()
    with pytest.raises(KeyError):
        await backend.invoke(fails, {}, NO_CONTEXT)
    with pytest.raises(RuntimeError, match="StopIteration"):  # a future cannot carry StopIteration
        await backend.invoke(stops, {}, NO_CONTEXT)
    assert await backend.invoke(sleeper(), {"seconds": 0}, NO_CONTEXT) == 0
    await backend.aclose()


async def test_a_cancelled_call_does_not_disturb_the_others() -> None:
    slow_started, release_slow, slow_returned = threading.Event(), threading.Event(), threading.Event()

    @tool
    def held() -> str:
        slow_started.set()
        try:
            release_slow.wait(30)
            return "late"
        finally:
            slow_returned.set()

    backend = LocalBackend(max_threads=4)
    slow = asyncio.ensure_future(backend.invoke(held, {}, NO_CONTEXT))
    others = [asyncio.ensure_future(backend.invoke(sleeper(), {"seconds": 0.05}, NO_CONTEXT)) for _ in range(3)]
    await await_until(slow_started.is_set, "the slow call started in its thread")
    slow.cancel()
    assert await asyncio.gather(*others) == [0.05] * 3
    with pytest.raises(asyncio.CancelledError):
        await slow
    release_slow.set()
    await await_until(slow_returned.is_set, "the abandoned call returned")  # into a cancelled future: ignored
    await asyncio.sleep(0)  # let its result reach the loop
    assert await backend.invoke(sleeper(), {"seconds": 0}, NO_CONTEXT) == 0
    await backend.aclose()


def test_one_backend_serves_successive_event_loops() -> None:
    backend = LocalBackend()
    for _ in range(2):
        assert asyncio.run(backend.invoke(sleeper(), {"seconds": 0.01}, NO_CONTEXT)) == 0.01
    asyncio.run(backend.aclose())


async def test_threads_stop_when_idle_and_on_close() -> None:
    used: list[threading.Thread] = []
    idle = LocalBackend(max_threads=4, idle_s=0.05)
    await asyncio.gather(*(idle.invoke(sleeper(used), {"seconds": 0.01}, NO_CONTEXT) for _ in range(4)))
    assert used
    await await_until(lambda: not any(t.is_alive() for t in used), "idle worker threads stopped")
    assert await idle.invoke(sleeper(), {"seconds": 0}, NO_CONTEXT) == 0  # new threads start as needed

    used.clear()
    closing = LocalBackend(max_threads=4)
    await asyncio.gather(*(closing.invoke(sleeper(used), {"seconds": 0.01}, NO_CONTEXT) for _ in range(4)))
    await closing.aclose()
    await await_until(lambda: not any(t.is_alive() for t in used), "worker threads stopped on close")


async def test_argument_less_calls_get_fresh_defaults() -> None:
    """`bind({})` is reused only when the result cannot differ between calls."""

    @tool
    async def items(into: list[int] = [], n: int = 3) -> list[int]:  # noqa: B006 - the point of the test
        into.append(n)
        return into

    class Stamped(BaseModel):
        stamp: int = Field(default_factory=time.perf_counter_ns)

    async def stamp(stamp: int) -> int:
        return stamp

    stamped = Tool(
        name="stamp", description="", fn=stamp, args_model=Stamped, is_async=True, _arg_names=("stamp",)
    )

    @tool
    async def where(ctx: ToolContext, n: int = 1) -> str:
        return f"{ctx.step_id}:{n}"

    backend = LocalBackend()
    assert await backend.invoke(items, {}, NO_CONTEXT) == [3]
    assert await backend.invoke(items, {}, NO_CONTEXT) == [3]
    assert await backend.invoke(stamped, {}, NO_CONTEXT) != await backend.invoke(stamped, {}, NO_CONTEXT)
    for sid in ("a", "b"):
        assert await backend.invoke(where, {}, ToolContext(step_id=sid)) == f"{sid}:1"
    assert await backend.invoke(where, {"n": 2}, ToolContext(step_id="c")) == "c:2"


def test_max_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_threads must be at least 1, not 0"):
        LocalBackend(max_threads=0)
