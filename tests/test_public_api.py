"""Pin each package's public names: changing them is a decision, not an accident."""

import executor
import tools


def test_tools_public_names() -> None:
    assert sorted(tools.__all__) == sorted(
        [
            "PlanweaveError", "RuntimeFailure", "SetupError", "Tool", "ToolArgumentsError", "ToolContext",
            "ToolDefinitionError", "ToolError", "ToolNotFoundError", "ToolOutputError", "ToolRefusedError",
            "ToolRegistry", "builtin_tools", "format_validation_error", "tool",
        ]
    )


def test_executor_public_names() -> None:
    assert sorted(executor.__all__) == sorted(
        [
            "Backend", "EventBus", "Executor", "Limits", "LocalBackend", "OnFailure", "Parallel", "Plan",
            "PlanError", "PlanGraph", "PlanProblem", "Recovery", "ReferenceResolutionError", "RetryPolicy", "Run",
            "RunClosedError", "RunEvent", "RunFailedError", "RunFinished", "RunResult", "RunStarted", "RunStatus",
            "Step", "StepAdded", "StepCancelled", "StepFailed", "StepFailure", "StepReady", "StepRestored",
            "StepResult", "StepRetrying", "StepSkipped", "StepStarted", "StepStatus", "StepSucceeded",
            "StepTimeoutError", "Workflow", "WorkflowFileError", "event_from_dict", "load_workflow", "validate_plan",
            "Masker", "REDACTED", "RunRecord", "RunStore", "RunSummary", "SQLiteRunStore", "StoreError", "open_store",
        ]
    )
    for name in executor.__all__:
        assert hasattr(executor, name)
