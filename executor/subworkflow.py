"""Sub-workflows: a step that runs another workflow as a child run.

    - id: research
      workflow: research.yaml            # a file (relative to this one), or a `Workflow` in Python
      args: {topic: "${inputs.topic}"}   # the child's inputs

The child is checked with the parent (its file read, its plan validated against the same
tools, the step's `args` against its `inputs`), runs with the parent's executor (tools, limits
of concurrency, step cache) under its own run id, and its outputs by step id are the step's
output: `${research.summary}` is the child's `summary` step's output.

It is recorded and traced as a child: the parent's events say which child run a step
started (`ChildRunStarted`), and each subscriber of the parent that knows how gives the child
one of its own: a store `Recorder` records the child as a run of its own with
`parent_run_id` and `parent_step` in its meta; any other subscriber may define
`child_subscriber(run_id=..., name=..., parent_run_id=..., parent_step_id=...)` (the Langfuse
tracer nests the child's steps under the step). Resuming the parent restores a step whose
child succeeded, so that child is not run again.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, create_model

from planweave.executor.events import RunEvent, Subscriber, register_event_type
from planweave.executor.store import Recorder
from planweave.tools.base import Tool, ToolRegistry
from planweave.tools.errors import ToolError

if TYPE_CHECKING:
    from planweave.executor._attempts import StepAttempts
    from planweave.executor.plan import Step
    from planweave.executor.workflow import Workflow

__all__ = ["ChildRunStarted", "ChildWorkflowError", "child_tool", "run_child"]

_CHILDREN: weakref.WeakKeyDictionary[Tool, Workflow] = weakref.WeakKeyDictionary()
_CHECKING: set[str] = set()
"""Workflow files being checked now (a file that runs itself, directly or not, is refused)."""


class ChildWorkflowError(ToolError):
    """A sub-workflow's child run did not succeed."""


@register_event_type
@dataclass(slots=True, kw_only=True)
class ChildRunStarted(RunEvent):
    """A step started a child run of another workflow (`planweave.executor.subworkflow`)."""

    kind: ClassVar[str] = "child_run_started"
    step_id: str
    child_run_id: str
    workflow: str


def child_tool(step: Step, tools: ToolRegistry) -> tuple[Tool | None, str | None]:
    """The tool standing for a `workflow` step, or a problem saying why its workflow cannot run."""
    from planweave.executor.errors import PlanError, WorkflowFileError
    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import Workflow, load_workflow

    spec = step.workflow
    where = f"step `{step.id}` runs workflow"
    key = ""
    try:
        if isinstance(spec, Workflow):
            child = spec
        elif isinstance(spec, Mapping):  # a saved plan read back: the child as data
            child = Workflow.model_validate(spec)
        elif isinstance(spec, (str, Path)):
            key = str(Path(spec).resolve())
            if key in _CHECKING:
                return None, f"{where} `{spec}`, which runs itself (directly or through others); remove the loop."
            child = load_workflow(spec)
        else:
            return None, f"step `{step.id}`: `workflow` is a file path or a `Workflow`, not a {type(spec).__name__}."
        if key:
            _CHECKING.add(key)
        try:
            validate_plan(child, tools)
        finally:
            _CHECKING.discard(key)
    except WorkflowFileError as exc:
        return None, f"{where} `{spec}`, which cannot be loaded: {exc}"
    except PlanError as exc:
        name = spec if isinstance(spec, (str, Path)) else child.name
        return None, f"{where} `{name}`, which is not valid: {exc}"
    fields: dict[str, Any] = {name: (Any, default) for name, default in child.inputs.items()}
    args_model = create_model(f"{_camel(child.name)}Inputs", __config__=ConfigDict(extra="forbid"), **fields)
    tool = Tool(
        name=_tool_name(child.name),
        description=child.description or f"the workflow `{child.name}`",
        fn=_never_called,
        args_model=args_model,
        is_async=True,
        pure=False,  # what a workflow does is its steps' business: its own steps cache themselves
    )
    _CHILDREN[tool] = child
    return tool, None


async def run_child(run: StepAttempts, step_id: str, tool: Tool, args: Mapping[str, Any]) -> dict[str, Any]:
    """Run the child workflow of `tool` for step `step_id` of `run`; its outputs by step id."""
    child = _CHILDREN[tool]
    if child.model is None and run.model is not None:
        child = child.model_copy(update={"model": run.model})  # the parent's model, unless it names its own
    child_id = uuid.uuid4().hex[:16]
    bus = run._bus
    bus.emit(ChildRunStarted(run_id=run.id, step_id=step_id, child_run_id=child_id, workflow=child.name))
    made = (_child_subscriber(parent, child_id, child.name, run.id, step_id) for parent in bus.subscribers)
    subscribers = [s for s in made if s is not None]
    result = await child.run(executor=run.executor, inputs=args, run_id=child_id, subscribers=subscribers)
    if result.status != "succeeded":
        raise ChildWorkflowError(
            f"step `{step_id}`: workflow `{child.name}` (child run `{child_id}`) {result.status}: "
            f"{result.error or 'no reason given'}; see `planweave show {child_id}`.",
            tool=tool.name,
            step_id=step_id,
        )
    return result.outputs


def _child_subscriber(
    parent: Subscriber, run_id: str, name: str, parent_run_id: str, parent_step_id: str
) -> Subscriber | None:
    if isinstance(parent, Recorder):
        kept = {k: v for k, v in parent.meta.items() if k not in ("file", "inputs")}  # the parent's, not the child's
        meta = {**kept, "parent_run_id": parent_run_id, "parent_step": parent_step_id}
        return parent.store.recorder(kind=parent.kind, name=name, meta=meta)
    make = getattr(parent, "child_subscriber", None)
    if make is None:
        return None
    child: Subscriber | None = make(run_id=run_id, name=name, parent_run_id=parent_run_id, parent_step_id=parent_step_id)
    return child


def _never_called(**_: Any) -> None:
    raise AssertionError("a workflow step runs its child through `run_child`, never through its tool")


def _tool_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:55] or "workflow"
    return cleaned if cleaned[0].isalpha() or cleaned[0] == "_" else f"_{cleaned}"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in _tool_name(name).replace("-", "_").split("_")) or "Workflow"
