"""The executor: validates plan graphs and runs them, every step as soon as its inputs are ready.

Layering: `planner` -> `executor` -> `tools`. Nothing here imports `planner` or any LLM library.
"""

from planweave.executor.backends import Backend, LocalBackend
from planweave.executor.errors import (
    PlanError,
    PlanProblem,
    ReferenceResolutionError,
    RunFailedError,
    StepTimeoutError,
    WorkflowFileError,
)
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
from planweave.executor.graph import validate_plan
from planweave.executor.masking import REDACTED, Masker
from planweave.executor.plan import OnFailure, Plan, RetryPolicy, Step
from planweave.executor.result import RunResult, RunStatus, StepResult, StepStatus
from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.executor.store import RunRecord, RunStore, RunSummary, StoreError, open_store
from planweave.executor.scheduler import Executor, Recovery, Run, RunClosedError, StepFailure
from planweave.executor.workflow import Limits, Parallel, Workflow, load_workflow

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
