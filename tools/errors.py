"""The planweave error tree.

Every error planweave raises on purpose derives from `PlanweaveError`. The tree is
drawn once, here; each class lives in the lowest layer that raises it, so that
dependencies keep pointing one way (planner -> executor -> tools).

    PlanweaveError                      base of everything below
    ├── SetupError                      raised while *building*: nothing has run yet
    │   ├── ConfigError                 a setting is missing or out of range (tools, executor, planner)
    │   │   ├── MissingAPIKeyError      the model's provider key is not set (before any call; planner)
    │   │   ├── UnknownProviderError    litellm knows no provider for the model name (before any call)
    │   │   ├── UnpricedBudgetError     a cost budget on a model with no known price (before any call)
    │   │   ├── PortInUseError          `planweave serve`'s port is taken (planner)
    │   │   ├── MCPConfigError          an MCP server setting (`--mcp`, an `mcpServers` file, a workflow's `mcp:`) is wrong (tools)
    │   │   ├── MCPStartError           an MCP server does not start, or its URL does not answer (tools)
    │   │   ├── AnswerError             an answer does not fit the request it answers (executor)
    │   │   └── RayUnavailableError     Ray is not installed or its cluster unreachable (executor)
    │   ├── ToolDefinitionError         a function cannot become a tool (tools)
    │   ├── ToolNotFoundError           a name is not in the registry (tools)
    │   ├── PlanError                   a plan is invalid; lists every problem (executor)
    │   ├── RefSyntaxError              a malformed `${...}` reference (executor)
    │   ├── WorkflowFileError           a workflow/plan file cannot be read; lists every problem (executor)
    │   ├── StoreError                  the run store is corrupted, locked or lacks a run (executor)
    │   │   ├── StoreLockedError        another process held the store's write lock past the bounded wait
    │   │   ├── StoreFullError          the disk or the store's size cap is full; prune or delete runs
    │   │   ├── StoreReadOnlyError      the store is not writable: runs can be read, not recorded
    │   │   └── RunLeasedError          a live process owns the run (its lease); `resume --force` takes it over
    │   ├── NoSuchStepError             a result has no such step, or the step no output (executor; a KeyError)
    │   ├── RunNotStartedError          a `Run` used outside `async with executor.start(...)` (executor)
    │   └── ConversationError           a chat request cannot become a goal; HTTP 400 (planner)
    └── RuntimeFailure                  raised while *running*
        ├── ToolError                   a tool call failed (tools); retryable unless permanent
        │   ├── ToolArgumentsError      arguments do not match the tool's schema (permanent)
        │   ├── ToolRefusedError        the tool refused on policy, e.g. a private address (permanent)
        │   ├── ToolOutputError         the tool returned something not JSON-serialisable (permanent)
        │   ├── MCPToolError            an MCP server's tool answered with an error (`isError`; permanent)
        │   ├── MCPConnectionError      the connection to an MCP server broke during a call (transient)
        │   ├── SafeEvalError           an expression is outside the safe subset or fails (tools; permanent)
        │   │   ├── SizeLimitExceeded   a value an expression would build is too large
        │   │   └── WorkLimitExceeded   an expression needs more work or time than its budget
        │   ├── StepTimeoutError        the step ran past its `timeout_s` (executor)
        │   ├── StepDeniedError         a person denied the step, or nobody answered in time (executor; permanent)
        │   ├── ChildWorkflowError      a sub-workflow step's child run did not succeed (executor)
        │   ├── ToolShippingError       a tool cannot be pickled to, or loaded on, a Ray worker (executor; permanent)
        │   ├── RemoteStepError         Ray lost the call: worker or node died (executor)
        │   ├── ReferenceResolutionError  a `${...}` reference could not be resolved at run time (executor)
        │   └── ForEachLimitError       a `for_each` has more items than its cap or the step budget (executor)
        ├── PathError                   a field path does not exist in a value (executor)
        ├── RunClosedError              steps were added to a closed or finished run (executor)
        ├── RunFailedError              a run ended failed; carries the result (executor)
        ├── RunInterruptedError         a run stopped because its events could not be recorded; resumable (executor)
        ├── PlanningError               the planner could not get a valid plan (planner)
        ├── LLMError                    a model call failed for good (planner)
        │   ├── APIKeyRejectedError     the provider refused the key: 401/403, never retried
        │   ├── ModelNotFoundError      the provider has no such model: 404
        │   ├── ProviderUnreachableError no connection to the provider, retries included
        │   ├── ProviderError           the provider kept failing (5xx, 429, timeout) or refused the request
        │   └── ModelStreamError        the streamed reply broke off (the planner re-asks)
        └── BudgetExceededError         a run hit one of its budgets (planner)

A few classes also derive from the builtin exception a caller would expect
(`ConfigError`, `RefSyntaxError` and `ConversationError` from `ValueError`, `ToolNotFoundError` and
`PathError` from `LookupError`, `NoSuchStepError` from `KeyError`, `RunNotStartedError` from `RuntimeError`), so `except ValueError` keeps working; no other
builtin exception is raised on purpose to a user.

Errors carry fields (`step_id`, `tool`, `attempt`) as well as a message, and the
message always names the thing at fault and how to fix it: the LLM planner reads
these messages to repair its plans.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "PlanweaveError",
    "SetupError",
    "RuntimeFailure",
    "ToolDefinitionError",
    "ToolNotFoundError",
    "ToolError",
    "ToolArgumentsError",
    "ToolRefusedError",
    "ToolOutputError",
    "MCPConfigError",
    "MCPConnectionError",
    "MCPStartError",
    "MCPToolError",
]


class PlanweaveError(Exception):
    """Base class of every error planweave raises on purpose."""


class SetupError(PlanweaveError):
    """Something is wrong with what was built or configured; nothing has run yet."""


class RuntimeFailure(PlanweaveError):
    """Something failed while a run was in progress."""


class ConfigError(SetupError, ValueError):
    """A setting is missing or out of range (a model name, an API key, `max_concurrency`, a timeout)."""


class ToolDefinitionError(SetupError):
    """A Python function cannot be turned into a tool (for example a parameter without a type)."""


class ToolNotFoundError(SetupError, LookupError):
    """A tool name is not registered."""

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f" Did you mean {', '.join(f'`{s}`' for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown tool `{name}`.{hint} Register it, or use one of the registered tools.")


class ToolError(RuntimeFailure):
    """A tool call failed.

    `permanent` errors are never retried: trying again with the same arguments
    cannot help. Tools raise `ToolError(..., permanent=True)` for such cases;
    any other exception a tool raises is treated as transient.
    """

    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        tool: str | None = None,
        step_id: str | None = None,
        attempt: int | None = None,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.step_id = step_id
        self.attempt = attempt
        if permanent is not None:
            self.permanent = permanent


class ToolArgumentsError(ToolError):
    """The arguments given to a tool do not match its argument schema."""

    permanent = True


class ToolRefusedError(ToolError):
    """A tool refused to act on policy (private address, path outside the workspace, ...)."""

    permanent = True


class ToolOutputError(ToolError):
    """A tool returned a value that cannot be serialised to JSON."""

    permanent = True


class MCPConfigError(ConfigError):
    """An MCP server's configuration is wrong: a `--mcp` value, an `mcpServers` file, a workflow's `mcp:`."""


class MCPStartError(ConfigError):
    """An MCP server could not be started (its command fails) or reached (its URL does not answer)."""

    def __init__(self, message: str, *, server: str = "") -> None:
        super().__init__(message)
        self.server = server


class MCPToolError(ToolError):
    """An MCP server's tool answered with an error result (`isError`). Permanent: the server
    looked at the arguments and said no, so the same call would fail again."""

    permanent = True

    def __init__(self, message: str, *, server: str = "", tool: str | None = None) -> None:
        super().__init__(message, tool=tool)
        self.server = server


class MCPConnectionError(ToolError):
    """The connection to an MCP server failed during a call (it crashed, timed out or hung up).
    Transient: a crashed stdio server has been restarted by then, so trying again can work."""

    def __init__(self, message: str, *, server: str = "", tool: str | None = None) -> None:
        super().__init__(message, tool=tool)
        self.server = server
