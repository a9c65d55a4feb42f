"""The plan model: steps, retry policies, plans, and their JSON/YAML forms.

A plan is a list of `Step`s. Each step calls one tool (or, in a hand-written
workflow, a Python handler) with arguments that may reference other steps'
outputs with `${step_id.path}` (see `planweave.executor.refs`). Plans round-trip losslessly
through JSON and YAML: a saved plan is a workflow file, read back (like any workflow
file) by `planweave.executor.workflow.load_workflow`.
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from planweave.executor.errors import WorkflowFileError
from planweave.tools.errors import PlanweaveError

__all__ = [
    "OnFailure",
    "Plan",
    "RetryPolicy",
    "Step",
    "load_handler",
]

OnFailure = Literal["fail", "continue", "replan"]
"""What a step's final failure does to the run.

- `fail`: the run fails; running steps are cancelled and the rest marked cancelled.
- `continue`: the step is marked failed, steps that need it are skipped, the rest go on.
- `replan`: like `continue`, and the failure is handed to the planner to plan around it.
"""

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


class RetryPolicy(BaseModel):
    """When and how often a failing step is tried again.

    The delay before attempt n+1 is `initial_delay_s * backoff_factor**(n-1)`,
    capped at `max_delay_s`, then spread by +-`jitter` (a fraction of the delay).
    `retry_on` names the exception classes worth retrying (matched against the
    error's class and its bases); by default every error except permanent ones
    (bad arguments, policy refusals, bad references) is retried.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(1, ge=1, le=100, description="Total tries, the first included.")
    initial_delay_s: float = Field(0.5, ge=0, le=3600)
    backoff_factor: float = Field(2.0, ge=1, le=100)
    max_delay_s: float = Field(30.0, ge=0, le=3600)
    jitter: float = Field(0.1, ge=0, le=1)
    retry_on: list[str] | None = Field(None, description="Exception class names to retry; None: all but permanent.")

    @classmethod
    def exponential(
        cls,
        max_attempts: int = 3,
        initial_delay_s: float = 0.5,
        backoff_factor: float = 2.0,
        max_delay_s: float = 30.0,
        jitter: float = 0.1,
        retry_on: list[str] | None = None,
    ) -> RetryPolicy:
        return cls(
            max_attempts=max_attempts,
            initial_delay_s=initial_delay_s,
            backoff_factor=backoff_factor,
            max_delay_s=max_delay_s,
            jitter=jitter,
            retry_on=retry_on,
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.initial_delay_s * self.backoff_factor ** (attempt - 1), self.max_delay_s)
        if self.jitter and base:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, base)

    def retries(self, error: BaseException) -> bool:
        """Whether `error` is worth another attempt under this policy (attempt count aside)."""
        if getattr(error, "permanent", False):
            return False
        if self.retry_on is None:
            return True
        names = {cls.__name__ for cls in type(error).__mro__}
        return any(name in names for name in self.retry_on)


def load_handler(spec: str) -> Callable[..., Any]:
    """Import `module.path:function` (the YAML form of a Python handler)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise WorkflowFileError(f"handler `{spec}` is not of the form `module.path:function`.")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise WorkflowFileError(
            f"handler `{spec}` cannot be imported ({exc}); check the module is importable "
            "(on `sys.path`) and defines that function."
        ) from exc
    if not callable(obj):
        raise WorkflowFileError(f"handler `{spec}` is not callable.")
    return obj  # type: ignore[no-any-return]


def _handler_spec(fn: Callable[..., Any]) -> str | None:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"


class Step(BaseModel):
    """One node of a plan: a tool call (or a Python handler) with its inputs and policies."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    id: str = Field(pattern=STEP_ID_PATTERN, description="Unique short slug, e.g. `fetch_docs`.")
    tool: str | None = Field(None, description="Name of a registered tool.")
    handler: Callable[..., Any] | None = Field(
        None, description="A Python function to call instead of a tool (hand-written workflows)."
    )
    workflow: Any = Field(
        None,
        description="Another workflow to run as a child run instead of a tool: a file path (relative to this "
        "workflow's file) or a `Workflow`; `args` are its inputs, its outputs by step id are this step's output.",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments; may hold `${...}` references.")
    depends_on: list[str] = Field(default_factory=list, description="Extra steps that must succeed first.")
    description: str = ""
    when: str | None = Field(None, description="Condition on earlier outputs; false skips the step.")
    for_each: str | None = Field(None, description="A `${...}` list reference: run once per item, in parallel.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(None, gt=0, description="Per-attempt time limit in seconds.")
    on_failure: OnFailure = "fail"
    cache: bool | float | None = Field(
        None,
        description="Reuse the result of an identical earlier call (same tool, version and arguments): "
        "true keeps it until `planweave cache clear`, a number for that many seconds, false never; "
        "default: the tool's own `cache`.",
    )
    approval: bool = Field(False, description="A person approves, edits or denies the call before it runs.")
    answer_within_s: float | None = Field(
        None, gt=0, description="Seconds a person has to answer its approval or question; then denied, or the default."
    )

    @field_validator("handler", mode="before")
    @classmethod
    def _import_handler(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return load_handler(value)
            except WorkflowFileError as exc:
                # A ValueError lets pydantic report it with the step's other problems.
                raise ValueError(str(exc)) from None
        return value

    @field_validator("cache")
    @classmethod
    def _cache_seconds(cls, value: bool | float | None) -> bool | float | None:
        if value is not None and not isinstance(value, bool) and value <= 0:
            raise ValueError("`cache` is true, false or a number of seconds above 0")
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_dependency(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("retry", mode="before")
    @classmethod
    def _retry_shorthand(cls, value: Any) -> Any:
        # `retry: 3` in YAML means "up to 3 attempts with the default backoff".
        if isinstance(value, int) and not isinstance(value, bool):
            return {"max_attempts": value}
        return value

    @model_validator(mode="after")
    def _tool_or_handler(self) -> Step:
        if self.workflow is not None:
            if self.tool is not None or self.handler is not None:
                raise ValueError("a step with `workflow` runs that workflow; remove its `tool` or `handler`")
            return self
        if (self.tool is None) == (self.handler is None):
            raise ValueError(
                "give a step exactly one of `tool` (a registered tool name) or `handler` (a Python function)"
            )
        return self

    @field_serializer("handler", when_used="unless-none")
    def _serialize_handler(self, fn: Callable[..., Any] | None) -> str | None:
        if fn is None:
            return None
        spec = _handler_spec(fn)
        if spec is None:
            raise PlanweaveError(
                f"step `{self.id}`: handler `{getattr(fn, '__qualname__', fn)}` cannot be saved; "
                "define it at module level in an importable module to save this plan."
            )
        return spec

    @property
    def action(self) -> str:
        """The tool name, or the handler's name, for display."""
        if self.tool is not None:
            return self.tool
        if self.workflow is not None:
            name = getattr(self.workflow, "name", None) or Path(str(self.workflow)).stem
            return f"workflow {name}"
        return getattr(self.handler, "__name__", "handler")


class Plan(BaseModel):
    """An ordered list of steps. Order is for reading only: dependencies decide what runs when."""

    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(default_factory=list)

    # --- JSON / YAML -------------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        """Plain data, defaults left out so saved files stay short."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        for step in data.get("steps", []):
            if step.get("handler", 0) is None:  # pydantic keeps serialized None defaults
                del step["handler"]
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_data(), indent=indent, ensure_ascii=False)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        p = Path(path)
        text = self.to_json() if p.suffix.lower() == ".json" else self.to_yaml()
        p.write_text(text, encoding="utf-8")

    @classmethod
    def of(cls, steps: Iterable[Step | dict[str, Any]]) -> Plan:
        return cls(steps=[s if isinstance(s, Step) else Step.model_validate(s) for s in steps])
