"""The run store: every event of every run, kept locally so runs can be inspected and resumed.

    store = open_store()                       # SQLite under $PLANWEAVE_HOME (default ~/.planweave)
    run = executor.start(plan, subscribers=[store.recorder(kind="workflow", name="trip")])
    ...
    for summary in store.list_runs(status="failed"):
        print(summary.id, summary.goal, summary.duration_s)
    record = store.get_run(run_id)             # summary + every event, outputs included
    state = record.resume_state()              # what a resumed run starts from

A `Recorder` is an event subscriber: it appends each event synchronously, before
the executor or planner takes the next decision that depends on it, so a run
killed at any point can be reconstructed exactly. `RunStore` is the small
interface a server database can implement later; `SQLiteRunStore` (WAL mode,
`executor/sqlite_store.py`) is the embedded default.
"""

from __future__ import annotations

import logging
import os
import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from planweave.executor.events import EVENT_TYPES, RunEvent, event_from_dict
from planweave.executor.plan import Step
from planweave.executor.requests import InputAnswer, InputRequest
from planweave.executor.state import RunState
from planweave.tools.errors import SetupError

__all__ = [
    "DEFAULT_HOME",
    "GroupStats",
    "Recorder",
    "ResumeState",
    "RunRecord",
    "RunStore",
    "RunSummary",
    "StepStats",
    "StoreError",
    "StoredStatus",
    "default_home",
    "open_store",
]

DEFAULT_HOME = "~/.planweave"

StoredStatus = Literal[
    "running", "waiting", "succeeded", "partial", "failed", "cancelled", "budget_exceeded", "interrupted"
]
"""A recorded run's status.

- `running`: its process is still writing it.
- `waiting`: everything left waits on people; it continues when they answer (`planweave respond`).
- `succeeded` / `partial` / `failed` / `cancelled` / `budget_exceeded`: how it ended (see `RunStatus`
  and `PlannerStatus`).
- `interrupted`: its process died (SIGKILL, crash, Ctrl-C, restart) before it ended; resumable.
"""

log = logging.getLogger("planweave.store")

_S = TypeVar("_S", bound=RunState)

FINAL_STATUSES = frozenset({"succeeded", "partial", "failed", "cancelled", "budget_exceeded"})


class StoreError(SetupError):
    """The run store cannot be used: a corrupted or locked database, an unknown run id."""


def default_home() -> Path:
    """`$PLANWEAVE_HOME`, else `~/.planweave`: where runs are recorded."""
    return Path(os.environ.get("PLANWEAVE_HOME") or DEFAULT_HOME).expanduser()


def open_store(path: str | Path | None = None, *, mask: Callable[[Any], Any] | None = None) -> RunStore:
    """The default store: SQLite at `path` (a file or a directory), else `<home>/runs.db`.

    Secrets are masked before anything is stored: by `mask`, default `Masker.from_env()`
    (API keys, bearer tokens, secret-named arguments, `PLANWEAVE_MASK_PATTERNS`).
    """
    from planweave.executor.masking import Masker
    from planweave.executor.sqlite_store import SQLiteRunStore

    target = Path(path).expanduser() if path is not None else default_home()
    if target.suffix != ".db":
        target = target / "runs.db"
    return SQLiteRunStore(target, mask=mask if mask is not None else Masker.from_env())


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
    cost_usd: float | None
    slowest_steps: list[StepStats] = Field(default_factory=list)


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class RunStore(ABC):
    """Where runs are recorded. Implementations must make `append` durable before returning."""

    path: str
    """Where the store lives (for messages)."""

    # --- writing -----------------------------------------------------------------------------

    @abstractmethod
    def begin(self, run_id: str, *, kind: str, name: str, goal: str, meta: dict[str, Any]) -> None:
        """Create the run's row (or reopen it to resume, keeping its events)."""

    @abstractmethod
    def append(self, event: RunEvent) -> None:
        """Record one event (masked, large values stored once) and update the run's summary."""

    @abstractmethod
    def set_status(self, run_id: str, status: StoredStatus, *, error: str | None = None) -> None:
        """Force a status (e.g. `interrupted` after Ctrl-C)."""

    def recorder(
        self, *, kind: str = "workflow", name: str = "", meta: dict[str, Any] | None = None
    ) -> Recorder:
        """An event subscriber that records the run it is attached to."""
        return Recorder(self, kind=kind, name=name, meta=dict(meta or {}))

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
    def delete(self, run_id: str) -> None:
        """Delete one run and its events."""

    @abstractmethod
    def prune(self, older_than_s: float) -> int:
        """Delete finished runs created more than `older_than_s` ago; returns how many."""

    @abstractmethod
    def step_durations(self, run_ids: Iterable[str]) -> list[tuple[str, str, str, float]]:
        """(run id, step id, tool, seconds) for every step that ran and finished."""

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
                    cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
                    slowest_steps=steps[:top_steps],
                )
            )
        report.sort(key=lambda g: g.runs, reverse=True)
        return report


class Recorder:
    """Records the events of one run into a store. Subscribe it to the run (or the planner)."""

    __slots__ = ("store", "kind", "name", "meta", "run_id", "failed")

    def __init__(self, store: RunStore, *, kind: str, name: str, meta: dict[str, Any]) -> None:
        self.store = store
        self.kind = kind
        self.name = name
        self.meta = meta
        self.run_id: str | None = None
        self.failed: StoreError | None = None
        """The first error writing to the store (later events are not recorded); the run goes on."""

    def __call__(self, event: RunEvent) -> None:
        if self.failed is not None:
            return
        try:
            if self.run_id is None:
                self.run_id = event.run_id
                goal = str(getattr(event, "goal", "") or "")
                self.store.begin(event.run_id, kind=self.kind, name=self.name, goal=goal, meta=self.meta)
            self.store.append(event)
        except StoreError as exc:
            self.failed = exc
            log.warning("run `%s` is no longer recorded: %s", event.run_id, exc)
