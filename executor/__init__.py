"""The executor: validates plan graphs and runs them, every step as soon as its inputs are ready.

Layering: `planner` -> `executor` -> `tools`. Nothing here imports `planner` or any LLM library.

Every name below is imported on first use, so that reading one module of this package
(the run store, for `planweave runs`) does not import all of them (networkx among them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planweave.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from planweave.executor.backends import (
        Backend as Backend,
        LocalBackend as LocalBackend,
    )
    from planweave.executor.ray_backend import RayBackend as RayBackend
    from planweave.executor.errors import (
        PlanError as PlanError,
        PlanProblem as PlanProblem,
        ReferenceResolutionError as ReferenceResolutionError,
        RunFailedError as RunFailedError,
        StepTimeoutError as StepTimeoutError,
        WorkflowFileError as WorkflowFileError,
    )
    from planweave.executor.events import (
        EventBus as EventBus,
        RunEvent as RunEvent,
        RunFinished as RunFinished,
        RunStarted as RunStarted,
        StepAdded as StepAdded,
        StepCancelled as StepCancelled,
        StepFailed as StepFailed,
        StepProgressed as StepProgressed,
        StepReady as StepReady,
        StepRestored as StepRestored,
        StepRetrying as StepRetrying,
        StepSkipped as StepSkipped,
        StepStarted as StepStarted,
        StepSucceeded as StepSucceeded,
        event_from_dict as event_from_dict,
    )
    from planweave.executor.graph import (
        validate_plan as validate_plan,
    )
    from planweave.executor.masking import (
        Masker as Masker,
        REDACTED as REDACTED,
    )
    from planweave.executor.plan import (
        OnFailure as OnFailure,
        Plan as Plan,
        RetryPolicy as RetryPolicy,
        Step as Step,
    )
    from planweave.executor.result import (
        RunResult as RunResult,
        RunStatus as RunStatus,
        StepResult as StepResult,
        StepStatus as StepStatus,
    )
    from planweave.executor.sqlite_store import (
        SQLiteRunStore as SQLiteRunStore,
    )
    from planweave.executor.store import (
        RunRecord as RunRecord,
        RunStore as RunStore,
        RunSummary as RunSummary,
        StoreError as StoreError,
        open_store as open_store,
    )
    from planweave.executor.scheduler import (
        Executor as Executor,
        Recovery as Recovery,
        Run as Run,
        RunClosedError as RunClosedError,
        StepFailure as StepFailure,
    )
    from planweave.executor.errors import (
        AnswerError as AnswerError,
        StepDeniedError as StepDeniedError,
    )
    from planweave.executor.requests import (
        InputAnswer as InputAnswer,
        InputAnswered as InputAnswered,
        InputRequest as InputRequest,
        InputRequested as InputRequested,
    )
    from planweave.executor.waiting import (
        Responder as Responder,
    )
    from planweave.executor.workflow import (
        Limits as Limits,
        Parallel as Parallel,
        Workflow as Workflow,
        load_workflow as load_workflow,
    )

_WHERE = {
    "Backend": "planweave.executor.backends",
    "LocalBackend": "planweave.executor.backends",
    "RayBackend": "planweave.executor.ray_backend",
    "PlanError": "planweave.executor.errors",
    "PlanProblem": "planweave.executor.errors",
    "ReferenceResolutionError": "planweave.executor.errors",
    "RunFailedError": "planweave.executor.errors",
    "StepTimeoutError": "planweave.executor.errors",
    "WorkflowFileError": "planweave.executor.errors",
    "EventBus": "planweave.executor.events",
    "RunEvent": "planweave.executor.events",
    "RunFinished": "planweave.executor.events",
    "RunStarted": "planweave.executor.events",
    "StepAdded": "planweave.executor.events",
    "StepCancelled": "planweave.executor.events",
    "StepFailed": "planweave.executor.events",
    "StepProgressed": "planweave.executor.events",
    "StepReady": "planweave.executor.events",
    "StepRestored": "planweave.executor.events",
    "StepRetrying": "planweave.executor.events",
    "StepSkipped": "planweave.executor.events",
    "StepStarted": "planweave.executor.events",
    "StepSucceeded": "planweave.executor.events",
    "event_from_dict": "planweave.executor.events",
    "validate_plan": "planweave.executor.graph",
    "Masker": "planweave.executor.masking",
    "REDACTED": "planweave.executor.masking",
    "OnFailure": "planweave.executor.plan",
    "Plan": "planweave.executor.plan",
    "RetryPolicy": "planweave.executor.plan",
    "Step": "planweave.executor.plan",
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
    "AnswerError": "planweave.executor.errors",
    "StepDeniedError": "planweave.executor.errors",
    "InputAnswer": "planweave.executor.requests",
    "InputAnswered": "planweave.executor.requests",
    "InputRequest": "planweave.executor.requests",
    "InputRequested": "planweave.executor.requests",
    "Responder": "planweave.executor.waiting",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
