"""Wait for an event instead of sleeping a fixed time and hoping it happened.

A test that sleeps 0.1 s and then asserts is a test that fails on a loaded machine
and wastes time on an idle one. These helpers poll a condition until it holds and
fail with a message naming what never happened. The deadline is generous on
purpose: it only bounds how long a broken test takes to fail, it is never a
speed requirement.

Example::

    from planweave.planner.testing import wait_until

    wait_until(lambda: server.chat_requests, "the model was never called")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
"""How long to wait before failing: far above any honest wait on a loaded machine."""


class WaitTimeoutError(AssertionError):
    """A condition a test waited for never held (an AssertionError, so pytest shows it as a failure)."""


def wait_until(
    condition: Callable[[], T],
    what: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = 0.01,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Raises :class:`WaitTimeoutError` naming `what` after `timeout_s` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"waited {timeout_s:g}s, but never: {what}")
        time.sleep(interval_s)


async def await_until(
    condition: Callable[[], T],
    what: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    interval_s: float = 0.005,
) -> T:
    """The same as :func:`wait_until` for a coroutine: yields to the event loop between checks."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"waited {timeout_s:g}s, but never: {what}")
        await asyncio.sleep(interval_s)
