"""Pin each package's public names: changing them is a decision, not an accident."""

from planweave import executor
from planweave import tools


def test_tools_public_names() -> None:
    assert sorted(tools.__all__) == sorted(
        [
            "ConfigError", "PlanweaveError", "RuntimeFailure", "SetupError", "Tool", "ToolArgumentsError", "ToolContext",
            "ToolDefinitionError", "ToolError", "ToolNotFoundError", "ToolOutputError", "ToolRefusedError",
            "ToolRegistry", "ask_user", "builtin_tools", "format_validation_error", "tool",
            "MCPConfigError", "MCPConnectionError", "MCPServer", "MCPStartError", "MCPToolError", "ToolProgress",
            "connect_mcp", "load_mcp_config",
        ]
    )


def test_executor_public_names() -> None:
    assert sorted(executor.__all__) == sorted(
        [
            "Backend", "EventBus", "Executor", "Limits", "LocalBackend", "OnFailure", "Parallel", "Plan", "RayBackend",
            "PlanError", "PlanProblem", "Recovery", "ReferenceResolutionError", "RetryPolicy", "Run",
            "RunClosedError", "RunEvent", "RunFailedError", "RunFinished", "RunResult", "RunStarted", "RunStatus",
            "Step", "StepAdded", "StepCancelled", "StepFailed", "StepFailure", "StepProgressed", "StepReady", "StepRestored",
            "StepResult", "StepRetrying", "StepSkipped", "StepStarted", "StepStatus", "StepSucceeded",
            "StepTimeoutError", "Workflow", "WorkflowFileError", "event_from_dict", "load_workflow", "validate_plan",
            "Masker", "REDACTED", "RunRecord", "RunStore", "RunSummary", "SQLiteRunStore", "StoreError", "open_store",
            "AnswerError", "InputAnswer", "InputAnswered", "InputRequest", "InputRequested", "Responder",
            "StepDeniedError",
        ]
    )
    for name in executor.__all__:
        assert hasattr(executor, name)


def test_planner_public_names_load_lazily() -> None:
    import subprocess
    import sys

    from planweave import planner

    assert sorted(planner.__all__) == sorted(
        [
            "AnswerDelta", "Budget", "BudgetExceededError", "ConfigError", "Decision", "JoinDecision", "LLMCall",
            "LLMCalled", "LLMError", "PlanRejected", "PlanUpdate", "PlanUpdated", "PlannedStep", "Planner",
            "PlannerFinished", "PlannerResult", "PlannerStatus", "PlanningError", "Usage", "llm_tool",
            "ResumeOverrides", "Worker", "WorkerEvent", "WorkerStats", "enqueue_workflow", "resume_run",
        ]
    )
    for name in planner.__all__:
        assert getattr(planner, name) is not None
    code = "import planweave.planner, sys; print('planweave.executor' in sys.modules, 'litellm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False", "False"]
