"""What a run needs from a subscriber that makes its events durable (the run store's `Recorder`).

The guarantee a recorded run keeps (the executor's half of it):

1. A step never starts before the results it depends on are durable: when a step's inputs
   come from steps whose success events are still being written, it waits for that write.
   Steps with nothing pending start at once.
2. Fail closed: when an event cannot be made durable (the store is locked past its wait,
   full, corrupted or read-only), no new step starts; running steps are cancelled and the
   run raises the journal's error (`RunInterruptedError`: resumable once the store works).

`Run` finds its journal among its subscribers (the first `Journal`); a run without one
(`--no-record`, plain `executor.run`) never waits.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from planweave.tools.errors import PlanweaveError

__all__ = ["Journal", "journal_of"]


class Journal(ABC):
    """A subscriber that makes the events it is given durable, asynchronously and in order.

    Events are numbered in the order they are handed over (`mark()` is the last number);
    `committed` is the highest number known durable. Implementations write from a thread
    and call back on the run's event loop.
    """

    @property
    @abstractmethod
    def committed(self) -> int:
        """Every event numbered up to this one is durable (or failed: see `failure`)."""

    failure: PlanweaveError | None
    """Set once an event could not be made durable: the run must stop starting steps."""

    @abstractmethod
    def __call__(self, event: object) -> None:
        """Take one event (the `Subscriber` call); never raises: a failure goes to `failure`."""

    @abstractmethod
    def mark(self) -> int:
        """The number of the last event handed over (0 before any)."""

    def durable_now(self, mark: int) -> bool:
        """True when event `mark` is durable (or failed) now, perhaps made so at once (a few
        events committed on the calling thread), without waiting for anything; else False
        (then `when_durable` waits for it)."""
        return self.failure is not None or self.committed >= mark

    @abstractmethod
    def when_durable(self, mark: int, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
        """True when event `mark` is already durable (or failed); else call `callback` on `loop`
        (thread-safely) once it is, or once the journal fails, and return False."""

    @abstractmethod
    def on_failure(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call `callback` on `loop` (thread-safely) when the journal fails (at once if it has)."""

    @abstractmethod
    def stop_error(self) -> PlanweaveError:
        """What the run raises after `failure` stopped it (says what failed and how to resume)."""

    async def wait_durable(self, mark: int | None = None) -> None:
        """Wait until event `mark` (default: every event handed over so far) is durable or failed."""
        target = self.mark() if mark is None else mark
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        if not self.when_durable(target, loop, wake):
            await done


def journal_of(subscribers: Iterable[object]) -> Journal | None:
    """The first `Journal` among `subscribers` (the one whose durability the run waits for)."""
    for fn in subscribers:
        if isinstance(fn, Journal):
            return fn
    return None
