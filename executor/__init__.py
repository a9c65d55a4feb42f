"""The executor: validates plan graphs and runs them, every step as soon as its inputs are ready.

Layering: `planner` -> `executor` -> `tools`. Nothing here imports `planner` or any LLM library.


Every name below is imported on first use, so that reading one module of this package
(the run store, for `planweave runs`) does not import all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planweave.executor.backends import Backend, LocalBackend
    from planweave.executor.errors import PlanError, PlanProblem, ReferenceResolutionError, RunFailedError, StepTimeoutError
    from planweave.executor.events import (
        EventBus,
        RunEvent,
        RunFinished,
        RunStarted,
        StepAdded,
        StepCancelled,
        StepFailed,
        StepReady,
        StepRestored,
        StepRetrying,
        StepSkipped,
        StepStarted,
        StepSucceeded,
        event_from_dict,
    )
    from planweave.executor.graph import PlanGraph, validate_plan
    from planweave.executor.masking import REDACTED, Masker
    from planweave.executor.plan import OnFailure, Plan, RetryPolicy, Step, WorkflowFileError
    from planweave.executor.result import RunResult, RunStatus, StepResult, StepStatus
    from planweave.executor.sqlite_store import SQLiteRunStore
    from planweave.executor.store import RunRecord, RunStore, RunSummary, StoreError, open_store
    from planweave.executor.scheduler import Executor, Recovery, Run, RunClosedError, StepFailure
    from planweave.executor.workflow import Limits, Parallel, Workflow, load_workflow

_WHERE = {
    "Backend": "planweave.executor.backends",
    "LocalBackend": "planweave.executor.backends",
    "PlanError": "planweave.executor.errors",
    "PlanProblem": "planweave.executor.errors",
    "ReferenceResolutionError": "planweave.executor.errors",
    "RunFailedError": "planweave.executor.errors",
    "StepTimeoutError": "planweave.executor.errors",
    "EventBus": "planweave.executor.events",
    "RunEvent": "planweave.executor.events",
    "RunFinished": "planweave.executor.events",
    "RunStarted": "planweave.executor.events",
    "StepAdded": "planweave.executor.events",
    "StepCancelled": "planweave.executor.events",
    "StepFailed": "planweave.executor.events",
    "StepReady": "planweave.executor.events",
    "StepRestored": "planweave.executor.events",
    "StepRetrying": "planweave.executor.events",
    "StepSkipped": "planweave.executor.events",
    "StepStarted": "planweave.executor.events",
    "StepSucceeded": "planweave.executor.events",
    "event_from_dict": "planweave.executor.events",
    "PlanGraph": "planweave.executor.graph",
    "validate_plan": "planweave.executor.graph",
    "REDACTED": "planweave.executor.masking",
    "Masker": "planweave.executor.masking",
    "OnFailure": "planweave.executor.plan",
    "Plan": "planweave.executor.plan",
    "RetryPolicy": "planweave.executor.plan",
    "Step": "planweave.executor.plan",
    "WorkflowFileError": "planweave.executor.plan",
    "RunResult": "planweave.executor.result",
    "RunStatus": "planweave.executor.result",
    "StepResult": "planweave.executor.result",
    "StepStatus": "planweave.executor.result",
    "SQLiteRunStore": "planweave.executor.sqlite_store",
    "RunRecord": "planweave.executor.store",
    "RunStore": "planweave.executor.store",
    "RunSummary": "planweave.executor.store",
    "StoreError": "planweave.executor.store",
    "open_store": "planweave.executor.store",
    "Executor": "planweave.executor.scheduler",
    "Recovery": "planweave.executor.scheduler",
    "Run": "planweave.executor.scheduler",
    "RunClosedError": "planweave.executor.scheduler",
    "StepFailure": "planweave.executor.scheduler",
    "Limits": "planweave.executor.workflow",
    "Parallel": "planweave.executor.workflow",
    "Workflow": "planweave.executor.workflow",
    "load_workflow": "planweave.executor.workflow",
}

__all__ = [
    "Backend",
    "EventBus",
    "Executor",
    "Limits",
    "Masker",
    "REDACTED",
    "RunRecord",
    "RunStore",
    "RunSummary",
    "SQLiteRunStore",
    "StoreError",
    "open_store",
    "LocalBackend",
    "OnFailure",
    "Parallel",
    "Plan",
    "PlanError",
    "PlanGraph",
    "PlanProblem",
    "Recovery",
    "ReferenceResolutionError",
    "RetryPolicy",
    "Run",
    "RunClosedError",
    "RunEvent",
    "RunFailedError",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "Step",
    "StepAdded",
    "StepCancelled",
    "StepFailed",
    "StepFailure",
    "StepReady",
    "StepRestored",
    "StepResult",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepStatus",
    "StepSucceeded",
    "StepTimeoutError",
    "Workflow",
    "WorkflowFileError",
    "event_from_dict",
    "load_workflow",
    "validate_plan",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module `planweave.executor` has no attribute `{name}`")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
