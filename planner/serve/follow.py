"""Following a run from the store: `GET /v1/runs/{id}/events`, on any replica.

    async for number, event in follow(store, run_id, after=0, metrics=metrics):
        ...   # the recorded events (numbered from 1), then each new one as any process records it

The run may be running on this replica, another replica, a `planweave worker` or a CLI: the
store is the one place all of them write, so the follower reads it, and between reads waits on
`RunStore.wait_changed` (polling with backoff on SQLite, LISTEN/NOTIFY on PostgreSQL), never in a
tight loop. The events are the recorded ones, as `GET /v1/runs/{id}` exports them (the live
stream of `POST /v1/runs` also carries a few unrecorded ones, such as plan text as it streams).

Each read after the first asks only for the events after the last one sent
(`RunStore.events_after`: one range query on the events' `(run_id, seq)` key). A wake that
changed nothing in the run (the periodic one of a quiet run) reads only its summary.

It ends when the run does: a final status, `waiting` (nothing happens until someone answers;
follow again afterwards, from the last event number), or `interrupted` when no service will take
the run over (it lacks `meta["takeover"]`). An interrupted run a service may take over is
followed on: it goes on recording when a replica or worker takes it over.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from planweave.executor.store import FINAL_STATUSES, RunStore, RunSummary
from planweave.planner.serve.ops import Metrics

__all__ = ["FOLLOW_WAIT_S", "follow", "follow_over"]

FOLLOW_WAIT_S = 15.0
"""Longest wait between two reads of a quiet run (a change wakes the follower at once)."""

_SETTLE_S = 2.0
"""How long a run that ended without its last event stays quiet before the follower ends."""

_NEVER = object()

_LAST_EVENT = {"planner": "planner_finished", "workflow": "run_finished"}
"""The event a run of each kind records last (its recorder releases the run's lease after it)."""


def follow_over(summary: RunSummary) -> bool:
    """Whether nothing more will be recorded for the run without someone acting."""
    if summary.status in FINAL_STATUSES or summary.status == "waiting":
        return True
    return summary.status == "interrupted" and not summary.meta.get("takeover")


async def follow(
    store: RunStore, run_id: str, *, after: int, metrics: Metrics, wait_s: float = FOLLOW_WAIT_S
) -> AsyncGenerator[tuple[int, dict[str, Any]], None]:
    """(number, event) for the run's events after the `after`-th, as they are recorded, until
    `follow_over`. `StoreError` when the run is unknown (before anything is yielded)."""
    marker = await metrics.timed("follow", store.change_marker, run_id)
    read_at: Any = _NEVER  # the marker the events were last read at
    last: str | None = None  # the kind of the last event sent (or read)
    probed = False
    settled = False
    while True:
        # Read after taking the marker: a change made meanwhile is read now and wakes the next wait.
        summary = await metrics.timed("follow", store.summary, run_id)
        if marker != read_at:
            read_at = marker
            new = await metrics.timed("follow", store.events_after, run_id, after)
            for offset, event in enumerate(new, start=after + 1):
                yield offset, event
            after += len(new)
            last = new[-1]["kind"] if new else last
            if last is None and after and not probed:  # resumed after the last event: what was it?
                probed = True
                tail = await metrics.timed("follow", store.events_after, run_id, after - 1)
                last = tail[-1]["kind"] if tail else None
        if follow_over(summary):
            # A run's status says it ended a moment before its last event is written (a planner
            # run's own `planner_finished` follows the executor's `run_finished`): end on that
            # event, or once the run stays quiet (a status set without events, an interruption).
            if last == _LAST_EVENT.get(summary.kind, "run_finished") or summary.status == "interrupted" or settled:
                return
            previous = marker
            marker = await store.wait_changed(marker, run_id, timeout_s=_SETTLE_S)
            settled = marker == previous
            continue
        settled = False
        marker = await store.wait_changed(marker, run_id, timeout_s=wait_s)
