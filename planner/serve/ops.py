"""Operating a replica: readiness (`GET /ready`) and metrics (`GET /metrics`, Prometheus text).

    metrics = Metrics()
    found = await metrics.timed("list_runs", store.list_runs)   # a store call on a thread, timed
    ready = Readiness(store, metrics, stopping=lambda: runs.stopping)
    reason = await ready.check()                               # None: ready; else why not

The metrics (one registry per app, so several apps in one process do not collide):

    planweave_runs_in_flight                       gauge      runs this replica is running now
    planweave_runs_started_total                   counter    runs this replica started (chat turns, /v1/runs)
    planweave_runs_finished_total{status}          counter    ... and how they ended (`waiting` included)
    planweave_store_runs_waiting                   gauge      runs in the whole store waiting for people
                                                              (the same on every replica: aggregate with max)
    planweave_takeovers_total                      counter    runs this replica took over (owner's lease expired, or queued)
    planweave_admission_rejections_total{reason}   counter    requests refused a run: `limit` (429), `shutting_down` (503)
    planweave_store_seconds{op}                    histogram  store calls this replica makes to serve requests
                                                              (turn look-ups, reads, tails, probes, take-over scans)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from planweave.executor.store import RunStore

__all__ = ["METRICS_CONTENT_TYPE", "Metrics", "Readiness"]

T = TypeVar("T")

log = logging.getLogger("planweave.server")

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

READY_BOUND_S = 2.0
"""How long the store may take to answer the readiness probe before the replica reads not ready."""

_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The replica's Prometheus metrics (see the module doc)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.in_flight = Gauge("planweave_runs_in_flight", "Runs this replica is running now.", registry=self.registry)
        self.started = Counter("planweave_runs_started", "Runs this replica started.", registry=self.registry)
        self.finished = Counter(
            "planweave_runs_finished", "Runs this replica ran, by how they ended.", ["status"], registry=self.registry
        )
        self.waiting = Gauge(
            "planweave_store_runs_waiting", "Runs in the whole store waiting for people (aggregate with max).",
            registry=self.registry,
        )
        self.takeovers = Counter(
            "planweave_takeovers", "Runs this replica took over (their owner's lease expired, or they were queued).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "planweave_admission_rejections", "Requests refused a run: `limit` (429) or `shutting_down` (503).",
            ["reason"], registry=self.registry,
        )
        self.store_seconds = Histogram(
            "planweave_store_seconds", "Store calls this replica made to serve requests, by operation.", ["op"],
            buckets=_STORE_BUCKETS, registry=self.registry,
        )

    async def timed(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` (a blocking store call) on a worker thread, its duration observed under `op`."""
        start = time.perf_counter()
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self.store_seconds.labels(op).observe(time.perf_counter() - start)

    async def render(self, store: RunStore | None) -> bytes:
        """The metrics in Prometheus text format, the store-wide ones read now."""
        if store is not None:
            waiting = await self.timed("count_waiting", lambda: len(store.list_runs(status="waiting", limit=None)))
            self.waiting.set(waiting)
        return generate_latest(self.registry)


class Readiness:
    """Whether this replica should get traffic: not shutting down, and its store answers a cheap query in time.

    One probe at a time: a load balancer probing often does not pile threads up on a stuck store
    (while one probe is stuck, every check answers not ready at once)."""

    def __init__(
        self, store: RunStore | None, metrics: Metrics, *, stopping: Callable[[], bool], bound_s: float = READY_BOUND_S
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.stopping = stopping
        self.bound_s = bound_s
        self._probe: asyncio.Future[object] | None = None
        self._last_problem: str | None = None

    def _unavailable(self, reason: str, exc: BaseException | None) -> tuple[str, str]:
        if reason != self._last_problem:  # once per change, not at every probe of a load balancer
            log.warning("not ready: %s%s", reason, f" ({exc})" if exc is not None else "")
            self._last_problem = reason
        return "store_unavailable", reason

    async def check(self) -> tuple[str, str] | None:
        """None when ready, else (code, reason): `shutting_down` or `store_unavailable`."""
        if self.stopping():
            return "shutting_down", "the server is shutting down and takes no new runs."
        if self.store is None:
            return None
        store = self.store
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self.metrics.timed("ready", store.change_marker))
            self._probe.add_done_callback(_retrieve)
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self.bound_s)
        except TimeoutError:
            return self._unavailable(f"the run store did not answer within {self.bound_s:g}s.", None)
        except Exception as exc:  # said by type only: `/ready` needs no key, the store's address stays in the log
            return self._unavailable(f"the run store failed ({type(exc).__name__}); see the server's log.", exc)
        self._last_problem = None
        if self.stopping():
            return "shutting_down", "the server is shutting down and takes no new runs."
        return None


def _retrieve(probe: asyncio.Future[object]) -> None:
    # A probe that fails after its check gave up is still read, so asyncio logs no "never retrieved".
    if not probe.cancelled():
        probe.exception()
