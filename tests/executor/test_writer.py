"""The store's writer thread, against a sink that plays a store: what a failed batch means for
the events its run queued meanwhile."""

from __future__ import annotations

import threading
from typing import Any

from planweave.executor._writer import BatchOutcome, EventWriter
from planweave.executor.store import StoreError


class Run:
    """What the writer needs of a `Recorder`: a run id, and a place for its failure."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.failure: StoreError | None = None

    def fail(self, error: StoreError) -> None:
        self.failure = error


class FailingFirst:
    """A sink whose first batch waits until told to go on, then fails its runs (as a store
    locked past its wait does); later batches are written."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.go_on = threading.Event()
        self.written: list[tuple[list[Any], set[str]]] = []

    def write_batch(self, items: list[tuple[str, Any]], *, wait: bool = True, release: frozenset[str] = frozenset()) -> BatchOutcome:
        outcome = BatchOutcome()
        if not self.inside.is_set():
            self.inside.set()
            assert self.go_on.wait(10)
            outcome.failed = {run_id: StoreError("the store is locked") for run_id, _ in items}
            return outcome
        self.written.append(([event for _, event in items], set(release)))
        return outcome

    def checkpoint(self) -> None:
        pass

    def renew_leases(self, run_ids: list[str]) -> dict[str, StoreError]:
        return {}

    def close_writer(self) -> None:
        pass


def test_what_a_run_queued_while_its_batch_failed_is_not_written_nor_its_lease_given_up() -> None:
    sink = FailingFirst()
    writer = EventWriter(sink, heartbeat_s=60)
    failing, other = Run("a"), Run("b")
    writer.attach(failing)
    writer.attach(other)
    try:
        writer.submit("a", "a1")
        writer.flush(0)  # (wakes the thread: it takes `a1`, and its batch waits in the store)
        assert sink.inside.wait(10)
        writer.submit("a", "a2")  # queued before the run learns its batch failed
        writer.release("a")
        writer.submit("b", "b1")
        sink.go_on.set()
        assert writer.flush(10)
        assert failing.failure is not None and other.failure is None
        assert [events for events, _ in sink.written] == [["b1"]]  # nothing of `a` after its failure
        assert all("a" not in released for _, released in sink.written)  # its lease is not given up
        writer.attach(Run("a"))  # resumed: recorded again
        writer.submit("a", "a3")
        assert writer.flush(10)
        assert sink.written[-1][0] == ["a3"]
    finally:
        writer.close()
