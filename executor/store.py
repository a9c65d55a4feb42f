"""The run store: the events of every run, kept locally so runs can be inspected and resumed.

    store = open_store()                       # SQLite under $PLANWEAVE_HOME (default ~/.planweave)
    run = executor.start(plan, subscribers=[store.recorder(kind="workflow", name="trip")])
    ...
    for summary in store.list_runs(status="failed"):
        print(summary.id, summary.goal, summary.duration_s)
    record = store.get_run(run_id)             # summary + every event, outputs included
    state = record.resume_state()              # what a resumed run starts from

A `Recorder` is an event subscriber and the run's `Journal`
(`planweave.executor.durability`): it hands each event to the store's writer thread, which
commits them in batches (group commit, `planweave.executor._writer`), and the run starts
no step before the success events it depends on are committed. When the store cannot
record (locked past its wait, full, corrupted, read-only), the run stops starting steps
and raises `RunInterruptedError`: nothing runs unrecorded, and the run resumes once the
store works again.

A run is owned through a lease in the store (`claim`, `Lease`): a second process that
claims a live run gets `RunLeasedError`; a run whose owner died (its lease expired, on any
host) reads as `interrupted`, and `claim(..., force=True)` takes a live lease over.

`RunStore` is the small interface both stores implement: `SQLiteRunStore` (WAL mode,
`executor/sqlite_store.py`) is the embedded default; `PostgresRunStore`
(`executor/postgres_store.py`, the `planweave[postgres]` extra) is shared by processes on many
hosts. `open_store(url_or_path)` picks one (`PLANWEAVE_STORE_URL`, `planweave --store URL`).

Errors (all `StoreError`, a `SetupError`, except the last):

    StoreError                  the store cannot be used; an unknown run id
    ├── StoreLockedError        another process held the store's write lock past the bounded wait
    ├── StoreFullError          the disk (or the store's size cap) is full; prune or delete runs
    ├── StoreReadOnlyError      the file or its directory is not writable; reading still works
    └── RunLeasedError          the run is owned by a live process (its lease has not expired)
    RunInterruptedError         (a `RuntimeFailure`) a run stopped because an event could not be recorded
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field

from planweave.executor.durability import Journal
from planweave.executor.events import (
    EVENT_TYPES,
    Noted,
    NotedBatch,
    RunEvent,
    StepAdded,
    StepReady,
    StepStarted,
    StepSucceeded,
    build_noted,
    event_from_dict,
)
from planweave.executor.plan import Step
from planweave.executor.requests import InputAnswer, InputRequest
from planweave.executor.state import RunState
from planweave.tools.errors import PlanweaveError, RuntimeFailure, SetupError

if TYPE_CHECKING:
    from planweave.executor._writer import EventWriter

__all__ = [
    "DEFAULT_HOME",
    "GroupStats",
    "LEASE_S_ENV",
    "Lease",
    "Recorder",
    "ResumeState",
    "RunRecord",
    "RunStore",
    "RunInterruptedError",
    "RunLeasedError",
    "RunSummary",
    "STORE_MAX_MB_ENV",
    "StepStats",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoredStatus",
    "STORE_URL_ENV",
    "default_home",
    "default_lease_s",
    "is_postgres_url",
    "mask_url",
    "open_store",
]

DEFAULT_HOME = "~/.planweave"

StoredStatus = Literal[
    "queued", "running", "waiting", "succeeded", "partial", "failed", "cancelled", "budget_exceeded", "interrupted"
]
"""A recorded run's status.

- `queued`: recorded to run later (`planweave exec --detach`, the API); a worker or a `serve`
  replica takes it (`planweave.planner.worker`).
- `running`: its process is still writing it (it holds a live lease).
- `waiting`: everything left waits on people; it continues when they answer (`planweave respond`).
- `succeeded` / `partial` / `failed` / `cancelled` / `budget_exceeded`: how it ended (see `RunStatus`
  and `PlannerStatus`).
- `interrupted`: its process died (SIGKILL, crash, Ctrl-C, restart: its lease expired), or the
  store could not record it, before it ended; resumable.
"""

log = logging.getLogger("planweave.store")

_S = TypeVar("_S", bound=RunState)

FINAL_STATUSES = frozenset({"succeeded", "partial", "failed", "cancelled", "budget_exceeded"})


class StoreError(SetupError):
    """The run store cannot be used: a corrupted or locked database, an unknown run id."""


class StoreLockedError(StoreError):
    """Another process held the store's write lock longer than the bounded wait (`busy_timeout_s`)."""


class StoreFullError(StoreError):
    """The store cannot grow: the disk is full, or the store reached its size cap (`max_bytes`)."""


class StoreReadOnlyError(StoreError):
    """The store's file or directory is not writable: runs can be read, not recorded."""


class RunLeasedError(StoreError):
    """The run is owned by another live process: its lease (`owner`, `expires_at`) has not expired."""

    def __init__(self, message: str, *, run_id: str, owner: str, expires_at: float | None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.owner = owner
        self.expires_at = expires_at


class RunInterruptedError(RuntimeFailure):
    """A run stopped starting steps because one of its events could not be recorded.

    `run_id` names the run, `cause` is the store's error (`__cause__` too). The run is
    `interrupted` in the store (once the store can say so, or its lease expires) and resumes
    with `planweave resume RUN_ID` once the store works again.
    """

    def __init__(self, run_id: str, cause: StoreError) -> None:
        super().__init__(
            f"run `{run_id}` stopped: {cause} Steps that were not recorded did not start; resume the run "
            f"with `planweave resume {run_id}` once the store works again (or run with `--no-record`)."
        )
        self.run_id = run_id
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a run: only its owner executes and records it (see `RunStore.claim`)."""

    run_id: str
    owner: str
    """Who holds it: `host:pid:random` of the claiming process."""
    expires_at: float
    """Unix time after which the run counts as interrupted unless the owner renews it."""
    previous_owner: str | None = None
    """Whose lease this one replaced when it was taken over (expired, or `force=True`), else None."""
    previous_expires_at: float | None = None
    """When the replaced lease was due to expire."""
    forced: bool = False
    """True when the replaced lease was still live (taken over with `force=True`)."""


def default_home() -> Path:
    """`$PLANWEAVE_HOME`, else `~/.planweave`: where runs are recorded."""
    return Path(os.environ.get("PLANWEAVE_HOME") or DEFAULT_HOME).expanduser()


LEASE_S_ENV = "PLANWEAVE_LEASE_S"
"""How long a run's lease lasts, in seconds, unless its owner renews it (default 30): a run whose
owner died reads `interrupted` (and a worker may take it over) at most this long after."""

DEFAULT_LEASE_S = 30.0
"""How long a run's lease lasts without renewal, unless `PLANWEAVE_LEASE_S` says otherwise (its owner
renews it every third of that)."""


def default_lease_s() -> float:
    """`$PLANWEAVE_LEASE_S` seconds, else 30: how long a store's leases last unless renewed."""
    raw = os.environ.get(LEASE_S_ENV)
    if not raw:
        return DEFAULT_LEASE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StoreError(f"{LEASE_S_ENV}=`{raw}` is not a positive number of seconds; set it to e.g. `30`, or unset it.")
    return value


STORE_MAX_MB_ENV = "PLANWEAVE_STORE_MAX_MB"
"""A cap on the run store's size in megabytes (default: none, as large as the disk allows)."""


STORE_URL_ENV = "PLANWEAVE_STORE_URL"
"""The run store to use: a `postgresql://` URL, or a SQLite file or directory (default: `<home>/runs.db`)."""


def open_store(path: str | Path | None = None, *, mask: Callable[[Any], Any] | None = None) -> RunStore:
    """The run store at `path`: PostgreSQL for a `postgresql://` (or `postgres://`) URL, else
    SQLite at a file or a directory. Without `path`: `$PLANWEAVE_STORE_URL`, else
    `<home>/runs.db` (see `default_home`).

    Secrets are masked before anything is stored: by `mask`, default `Masker.from_env()`
    (API keys, bearer tokens, secret-named arguments, `PLANWEAVE_MASK_PATTERNS`).
    `PLANWEAVE_STORE_MAX_MB` caps a SQLite store's size: past it, recording fails closed as on
    a full disk (`StoreFullError`) until `prune` or `delete` makes room.
    """
    from planweave.executor.masking import Masker

    if path is None:
        path = os.environ.get(STORE_URL_ENV) or None
    masker = mask if mask is not None else Masker.from_env()
    if isinstance(path, str) and is_postgres_url(path):
        try:
            from planweave.executor.postgres_store import PostgresRunStore
        except ImportError:
            raise StoreError(
                f"the run store `{mask_url(path)}` is a PostgreSQL database, and the PostgreSQL driver is not "
                "installed; install planweave[postgres] (`pip install 'planweave[postgres]'`)."
            ) from None
        return PostgresRunStore(path, mask=masker)
    from planweave.executor.sqlite_store import SQLiteRunStore

    target = Path(path).expanduser() if path is not None else default_home()
    if target.suffix != ".db":
        target = target / "runs.db"
    cap = os.environ.get(STORE_MAX_MB_ENV)
    try:
        max_bytes = int(float(cap) * 1_000_000) if cap else None
    except ValueError:
        raise StoreError(f"{STORE_MAX_MB_ENV}=`{cap}` is not a number of megabytes; set it to e.g. `500`, or unset it.") from None
    return SQLiteRunStore(target, mask=masker, max_bytes=max_bytes)


def is_postgres_url(text: str) -> bool:
    """Whether `text` names a PostgreSQL database (`postgresql://...` or `postgres://...`)."""
    return text.startswith(("postgresql://", "postgres://"))


def mask_url(url: str) -> str:
    """`url` with its password (in the authority, or a `password=` parameter) replaced by `***`."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        auth, _, hosts = netloc.rpartition("@")
        if ":" in auth:
            auth = auth.partition(":")[0] + ":***"
        netloc = f"{auth}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in ("password", "sslpassword") for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in ("password", "sslpassword") else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class RunSummary(BaseModel):
    """One line of `planweave runs`."""

    id: str
    kind: str
    """`planner` for goals, `workflow` for workflow and plan files."""
    name: str
    """The workflow's name, or a label for the goal (used to group runs in `stats`)."""
    goal: str
    status: StoredStatus
    created_at: float
    finished_at: float | None = None
    duration_s: float | None = None
    steps: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    """None when a model call's price was unknown."""
    answer: str | None = None
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    """How the run was started (model, file, options), for resume and display."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ResumeState(BaseModel):
    """What a resumed run starts from."""

    goal: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    """Every tool step added to the run, in order (steps with Python handlers come from the workflow file)."""
    completed: dict[str, Any] = Field(default_factory=dict)
    """Outputs of the steps that succeeded: they are not run again."""
    rounds: int = 0
    """Planning rounds so far (contributed by the planner's fold; 0 for a workflow run)."""
    replans: int = 0
    requests: dict[str, InputRequest] = Field(default_factory=dict)
    """Open requests to people, by step id: they keep their time and deadline when asked again."""
    answers: dict[str, InputAnswer] = Field(default_factory=dict)
    """People's answers to steps that have not succeeded yet, by step id: used, not asked again."""


class RunRecord(BaseModel):
    """A recorded run: its summary and every event (as dicts, outputs included), in order."""

    summary: RunSummary
    events: list[dict[str, Any]]

    def state(self, state_type: type[_S]) -> _S:
        """The run's events, rebuilt with `event_from_dict`, folded into `state_type` (a `RunState`).

        Events of kinds not registered in this process (a layer that is not imported) are
        left out: a state that handles them belongs to that layer, which registers them."""
        state = state_type()
        for data in self.events:
            if data.get("kind") in EVENT_TYPES:
                state.apply(event_from_dict(data))
        return state

    def resume_state(self, state_type: type[RunState] = RunState) -> ResumeState:
        """What a resumed run starts from; `state_type` adds a layer's own fields (the planner's rounds)."""
        state = self.state(state_type)
        steps, handlers = state.resumable_steps()
        kept = {s.id for s in steps} | handlers
        return ResumeState(
            goal=self.summary.goal,
            inputs=state.inputs,
            steps=steps,
            completed={k: v for k, v in state.outputs.items() if k in kept},
            requests=dict(state.requests),
            answers={k: a for k, a in state.answers.items() if k not in state.outputs},
            **state.resume_fields(),
        )

    def steps(self) -> dict[str, dict[str, Any]]:
        """Each step's latest state: tool, status, attempts, start/end times, output or error."""
        return {sid: s.to_dict() for sid, s in self.state(RunState).steps.items()}


class StepStats(BaseModel):
    step: str
    tool: str
    runs: int
    p50_s: float
    p95_s: float
    max_s: float


class GroupStats(BaseModel):
    """The eight-factor monitoring report for one workflow or goal kind."""

    name: str
    runs: int
    succeeded: int
    success_rate: float
    p50_s: float | None
    p95_s: float | None
    tokens: int
    tokens_per_run: float
    cached_input_tokens: int = 0
    """Of the input tokens, those a provider's prompt cache served (at its discount)."""
    cost_usd: float | None
    slowest_steps: list[StepStats] = Field(default_factory=list)


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class RunStore(ABC):
    """Where runs are recorded.

    Writing goes through the store's writer thread (`writer()`): `Recorder`s submit events,
    which are committed in batches; `append` writes one event and waits for it.
    """

    path: str
    """Where the store lives (for messages)."""

    # --- writing -----------------------------------------------------------------------------

    @abstractmethod
    def begin(self, run_id: str, *, kind: str, name: str, goal: str, meta: dict[str, Any]) -> Lease:
        """Create the run's row and claim its lease, or reopen it to resume (keeping its events,
        claiming it as `claim` does: `RunLeasedError` when another live process owns it)."""

    @abstractmethod
    def claim(self, run_id: str, *, force: bool = False) -> Lease:
        """Claim the run's lease for this process, atomically.

        Succeeds when nobody holds a live lease on it (never claimed, released, expired: its
        owner died) or this process does. Otherwise raises `RunLeasedError` naming the owner
        and when its lease expires, unless `force`: then the lease is taken over, and the
        returned `Lease` says whose it was (`previous_owner`, `forced`). The old owner, if
        alive, fails closed at its next write.
        """

    @abstractmethod
    def release(self, run_id: str) -> None:
        """Give up this process's lease on the run (no-op when it holds none)."""

    def abandon(self, run_id: str) -> None:
        """This process stopped executing the run (its recording failed): its lease no longer
        counts as live here, even before it expires."""

    @abstractmethod
    def writer(self) -> EventWriter:
        """The store's writer thread (one per store, started on first use)."""

    def append(self, event: RunEvent) -> None:
        """Record one event (masked, large values stored once), update the run's summary, and wait
        until it is durable. Raises the `StoreError` of a failed write."""
        writer = self.writer()
        box: list[BaseException] = []

        def write() -> None:
            outcome = self.write_batch([(event.run_id, event)])
            box.extend(outcome.failed.values())

        writer.call(write)
        writer.flush()
        if box:
            raise box[0]

    @abstractmethod
    def write_batch(self, items: list[tuple[str, RunEvent | Noted]], *, wait: bool = True, release: frozenset[str] = frozenset()) -> Any:
        """Write `(run id, event)` pairs in one transaction (on the writer thread), giving up this
        process's lease of the runs in `release` in it; returns a `planweave.executor._writer.BatchOutcome`."""

    @abstractmethod
    def set_status(self, run_id: str, status: StoredStatus, *, error: str | None = None) -> None:
        """Force a status (e.g. `interrupted` after Ctrl-C)."""

    def recorder(
        self, *, kind: str = "workflow", name: str = "", meta: dict[str, Any] | None = None,
        last_event: str = "run_finished",
    ) -> Recorder:
        """An event subscriber that records the run it is attached to (and is the run's `Journal`).
        Once the event of kind `last_event` is written, the run's lease is released (`release`)."""
        return Recorder(self, kind=kind, name=name, meta=dict(meta or {}), last_event=last_event)

    # --- reading -----------------------------------------------------------------------------

    @abstractmethod
    def list_runs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        contains: str | None = None,
        since: float | None = None,
        limit: int | None = 50,
    ) -> list[RunSummary]:
        """Runs, newest first. `contains` matches the goal or name; `since` is a Unix time."""

    @abstractmethod
    def summary(self, run_id: str) -> RunSummary:
        """One run's summary; `StoreError` when the id (or a unique prefix of it) is unknown."""

    @abstractmethod
    def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of the run in order, with large values resolved."""

    def events_after(self, run_id: str, after: int) -> list[dict[str, Any]]:
        """The run's events after its first `after` (events are numbered 1, 2, ... in order):
        `events(run_id)[after:]`, read without the ones before (following a long run)."""
        return self.events(run_id)[after:]

    def get_run(self, run_id: str) -> RunRecord:
        summary = self.summary(run_id)
        return RunRecord(summary=summary, events=self.events(summary.id))

    def export(self, run_id: str) -> dict[str, Any]:
        """The run as one JSON-ready document (summary, steps, events)."""
        record = self.get_run(run_id)
        return {
            "run": record.summary.model_dump(mode="json"),
            "steps": list(record.steps().values()),
            "events": record.events,
        }

    @abstractmethod
    def import_run(
        self, summary: RunSummary, rows: list[tuple[str, int, str, float, str | None, str]], blobs: dict[str, str],
        *, replace: bool = False,
    ) -> None:
        """Add a run copied from another store (`planweave.executor._transfer`): its summary as it
        was, its event rows (run id, seq, kind, at, step id, JSON) and the blobs they point at, in
        one transaction. `StoreError` when the run id exists, unless `replace`."""

    @abstractmethod
    def delete(self, run_id: str) -> None:
        """Delete one run and its events."""

    @abstractmethod
    def prune(self, older_than_s: float) -> int:
        """Delete finished runs created more than `older_than_s` ago; returns how many."""

    @abstractmethod
    def step_durations(self, run_ids: Iterable[str]) -> list[tuple[str, str, str, float]]:
        """(run id, step id, tool, seconds) for every step that ran and finished."""

    def cached_input_tokens(self, run_ids: Iterable[str]) -> dict[str, int]:
        """Per run, the input tokens a provider's prompt cache served (from its recorded model calls).

        A store can answer this with one query; this default reads each run's events."""
        totals: dict[str, int] = {}
        for run_id in run_ids:
            n = sum(int(e.get("cached_input_tokens") or 0) for e in self.events(run_id))  # model calls carry it
            if n:
                totals[run_id] = n
        return totals

    # --- watching ----------------------------------------------------------------------------

    @abstractmethod
    def change_marker(self, run_id: str | None = None) -> Hashable:
        """A value that differs after the run `run_id` changed (a new event, its status or lease),
        or, with None, after anything in the store changed (a new run, ...): compare two to see."""

    async def wait_changed(self, marker: Hashable, run_id: str | None = None, *, timeout_s: float) -> Hashable:
        """Wait until `change_marker(run_id)` differs from `marker`, or `timeout_s` passed; returns
        the current marker. Any process's writes count (other replicas on a shared store).

        This default polls, backing off from 20 ms to 500 ms; a server store wakes on the
        database's own notifications instead (PostgreSQL's LISTEN/NOTIFY)."""
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while True:
            current = await asyncio.to_thread(self.change_marker, run_id)
            left = deadline - time.monotonic()
            if current != marker or left <= 0:
                return current
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.5)

    def close(self) -> None:
        """Release connections."""

    # --- monitoring --------------------------------------------------------------------------

    def stats(
        self, *, since: float | None = None, name: str | None = None, kind: str | None = None, top_steps: int = 3
    ) -> list[GroupStats]:
        """Per workflow or goal kind: success rate, p50/p95 latency, tokens, cost, slowest steps."""
        runs = [
            r for r in self.list_runs(since=since, name=name, kind=kind, limit=None) if r.status in FINAL_STATUSES
        ]
        groups: dict[str, list[RunSummary]] = {}
        for r in runs:
            groups.setdefault(r.name or r.goal[:60], []).append(r)
        durations = self.step_durations([r.id for r in runs])
        cached = self.cached_input_tokens([r.id for r in runs])
        by_run: dict[str, list[tuple[str, str, float]]] = {}
        for run_id, step_id, tool, seconds in durations:
            by_run.setdefault(run_id, []).append((step_id, tool, seconds))
        report = []
        for group, members in groups.items():
            lat = sorted(r.duration_s for r in members if r.duration_s is not None)
            ok = sum(1 for r in members if r.status == "succeeded")
            tokens = sum(r.total_tokens for r in members)
            costs = [r.cost_usd for r in members]
            per_step: dict[tuple[str, str], list[float]] = {}
            for r in members:
                for step_id, tool, seconds in by_run.get(r.id, []):
                    per_step.setdefault((step_id, tool), []).append(seconds)
            steps = sorted(
                (
                    StepStats(
                        step=sid,
                        tool=tool,
                        runs=len(v),
                        p50_s=_percentile(sorted(v), 50),
                        p95_s=_percentile(sorted(v), 95),
                        max_s=max(v),
                    )
                    for (sid, tool), v in per_step.items()
                ),
                key=lambda s: s.p95_s,
                reverse=True,
            )
            report.append(
                GroupStats(
                    name=group,
                    runs=len(members),
                    succeeded=ok,
                    success_rate=ok / len(members),
                    p50_s=_percentile(lat, 50) if lat else None,
                    p95_s=_percentile(lat, 95) if lat else None,
                    tokens=tokens,
                    tokens_per_run=tokens / len(members),
                    cached_input_tokens=sum(cached.get(r.id, 0) for r in members),
                    cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
                    slowest_steps=steps[:top_steps],
                )
            )
        report.sort(key=lambda g: g.runs, reverse=True)
        return report


def _release_failed(release: Iterable[str], written: Container[str], error: BaseException) -> None:
    """Say that a batch could not give up the leases of `release` (the runs among `written` fail
    with their events; a lease given up alone just expires by itself)."""
    for run_id in release:
        if run_id not in written:
            log.warning("could not release the lease of run `%s`: %s (it expires by itself)", run_id, error)


_USUAL = frozenset({StepAdded, StepStarted, StepSucceeded})
"""The events every step records (never a run's last event): `Recorder` hands them over at once."""


class Recorder(Journal):
    """Records the events of one run into a store. Subscribe it to the run (or the planner).

    The first event claims the run (`RunStore.begin`); every event is then handed to the
    store's writer thread. As the run's `Journal`, it tells the run when events are durable,
    and makes it stop when the store fails (`failure`). Once the run's last event (of kind
    `last_event`: the executor's `run_finished`, the planner's `planner_finished`) is written,
    the lease is released, so another process can continue a `waiting` run at once.
    """

    ignored_kinds: ClassVar[frozenset[str]] = frozenset({StepReady.kind})
    """Not stored (a ready step that never started is pending on resume): the run need not build them for it."""
    noted_kinds: ClassVar[frozenset[str]] = frozenset({StepAdded.kind, StepStarted.kind, StepSucceeded.kind})
    """Taken unbuilt (`noted`, `noted_batch`): the writer writes their rows from the fields, and
    builds a plan's `step_added` events when it writes them (they are not kept meanwhile)."""

    def __init__(
        self, store: RunStore, *, kind: str, name: str, meta: dict[str, Any], last_event: str = "run_finished"
    ) -> None:
        self.store = store
        self.kind = kind
        self.name = name
        self.meta = meta
        self.last_event = last_event
        self.run_id: str | None = None
        self.failure: StoreError | None = None
        """The first error recording the run (later events are not recorded; the run stops)."""
        self._writer: EventWriter | None = None
        self._last = 0
        self._hooks: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._lock = threading.Lock()

    @property
    def failed(self) -> StoreError | None:
        """`failure`, by its former name."""
        return self.failure

    @property
    def committed(self) -> int:
        return self._writer.committed if self._writer is not None else self._last

    def __call__(self, event: object) -> None:
        writer = self._writer
        if writer is not None and self.failure is None and not writer.closed and type(event) in _USUAL:
            self._last = writer.submit(event.run_id, event)  # type: ignore[attr-defined,arg-type]  # (a step event)
            return
        if self.failure is not None or not isinstance(event, RunEvent) or type(event) is StepReady:
            return  # (`step_ready` is not stored: a ready step that never started is pending on resume)
        if writer is None:
            self.run_id = event.run_id
            goal = str(getattr(event, "goal", "") or "")
            try:
                self.store.begin(event.run_id, kind=self.kind, name=self.name, goal=goal, meta=self.meta)
                writer = self._writer = self.store.writer()
                writer.attach(self)
            except StoreError as exc:
                self.fail(exc)
                return
        if writer.closed:
            self.fail(StoreError(f"the run store `{self.store.path}` was closed while run `{event.run_id}` ran."))
            return
        self._last = writer.submit(event.run_id, event)
        if event.kind == self.last_event:
            # The run is over here (ended, or `waiting` for people): give up the lease in the
            # transaction that writes its last event, so `wait_durable` covers it.
            self._last = writer.release(event.run_id)

    def noted(self, run_id: str, kind: str, at: float, fields: tuple[Any, ...]) -> None:
        """Take an event unbuilt (a step's start or success: see `planweave.executor.events.Subscriber`)."""
        writer = self._writer
        if writer is not None and self.failure is None and not writer.closed:
            self._last = writer.submit(run_id, (kind, at, fields))
        else:  # (not begun, failed or closed: the general way says what to do)
            self(build_noted(run_id, (kind, at, fields)))

    def noted_batch(self, run_id: str, batch: NotedBatch) -> None:
        """Take a batch of events unbuilt (a plan's steps being added: see `planweave.executor.events.Subscriber`)."""
        writer = self._writer
        if writer is not None and self.failure is None and not writer.closed:
            self._last = writer.submit_batch(run_id, batch)
        else:
            for event in batch.build(run_id, batch.at):
                self(event)

    def mark(self) -> int:
        return self._last

    def durable_now(self, mark: int) -> bool:
        if self.failure is not None or self._writer is None:
            return True
        return self._writer.commit_now(mark)

    def when_durable(self, mark: int, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
        if self.failure is not None or self._writer is None:
            return True
        return self._writer.when_committed(mark, loop, callback)

    def on_failure(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        with self._lock:
            if self.failure is None:
                self._hooks.append((loop, callback))
                return
        loop.call_soon(callback)

    def fail(self, error: StoreError) -> None:
        """Stop recording: keep `error`, drop later events, and tell the run (any thread)."""
        with self._lock:
            if self.failure is not None:
                return
            self.failure = error
            hooks, self._hooks = self._hooks, []
        if self._writer is not None:  # (a run that never began gets the error itself)
            log.warning("run `%s` is no longer recorded: %s", self.run_id, error)
        if self.run_id is not None:
            self.store.abandon(self.run_id)
        for loop, callback in hooks:
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the run's loop is closed: the run is over
                pass
        if not isinstance(error, RunLeasedError) and self._writer is not None and self.run_id is not None:
            # Say why in the store if it works again by then (else the lease expires: `interrupted` too).
            run_id, store = self.run_id, self.store

            def note() -> None:
                try:
                    store.set_status(run_id, "interrupted", error=str(error))
                except StoreError:
                    pass

            self._writer.call(note)

    def stop_error(self) -> PlanweaveError:
        assert self.failure is not None
        if isinstance(self.failure, RunLeasedError) or self._writer is None or self.run_id is None:
            return self.failure  # owned elsewhere, or never recorded at all: nothing to resume
        error = RunInterruptedError(self.run_id, self.failure)
        error.__cause__ = self.failure
        return error
