"""Hand-written workflows: a named plan with inputs, success criteria and limits.

In YAML (run it with `planweave exec FILE`):

    name: triage
    inputs: {a: 6, b: 7}
    limits: {deadline_s: 30}
    success: ["${product} == 42"]
    steps:
      - id: product
        tool: calculator
        args: {expression: "${inputs.a} * ${inputs.b}"}
        retry: {max_attempts: 3}

In Python, in the spirit of the eight-factor guide's workflow chapter:

    workflow = Workflow(
        name="document_analysis",
        steps=[
            Step(id="summary", handler=summarize, retry=RetryPolicy.exponential(max_attempts=3)),
            Step(id="topics", handler=extract_topics, args={"text": "${summary}"}),
            Parallel(id="analysis", steps=[
                Step(id="sentiment", handler=analyze_sentiment),
                Step(id="entities", handler=extract_entities),
            ]),
            Step(id="report", handler=compile_report, depends_on=["topics", "analysis"]),
        ],
        on_failure=handle_failure,   # StepFailure -> Recovery.retry() / .fail() / .proceed()
    )
    result = await workflow.run()

Steps with no dependency between them run in parallel; a `Parallel` group makes
that explicit and gives the group an output (a dict of its members' outputs).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planweave.executor.errors import PlanError, PlanProblem
from planweave.executor.events import Subscriber
from planweave.executor.graph import GROUP_TOOL, compile_condition
from planweave.executor.plan import Plan, Step, WorkflowFileError
from planweave.executor.refs import Ref, pick, PathError
from planweave.executor.result import RunResult
from planweave.executor.failures import FailureHandler
from planweave.executor.scheduler import Executor
from planweave.tools.base import Tool, ToolRegistry, tool
from planweave.tools.safe_eval import evaluate

__all__ = ["Limits", "Parallel", "Workflow", "load_workflow", "group_tool"]


@tool(name=GROUP_TOOL, blocking=False)
def group_tool(outputs: dict[str, Any]) -> dict[str, Any]:
    """Collect the outputs of a parallel group's members (internal)."""
    return outputs


class Parallel(BaseModel):
    """Steps that run side by side. Depending on the group means depending on all its members;
    `${group_id}` is a dict of the members' outputs by id."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    parallel: list[Step] = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    description: str = ""

    def __init__(self, id: str, steps: list[Step] | None = None, **data: Any) -> None:  # noqa: A002
        if steps is not None:
            data["parallel"] = steps
        super().__init__(id=id, **data)

    def expand(self) -> list[Step]:
        members = [
            m.model_copy(update={"depends_on": [*self.depends_on, *[d for d in m.depends_on if d not in self.depends_on]]})
            for m in self.parallel
        ]
        join = Step(
            id=self.id,
            tool=GROUP_TOOL,
            args={"outputs": {m.id: "${" + m.id + "}" for m in self.parallel}},
            description=self.description or f"parallel group of {', '.join(m.id for m in self.parallel)}",
        )
        return [*members, join]


class Limits(BaseModel):
    """Resource limits of a workflow run."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(None, ge=1)
    deadline_s: float | None = Field(None, gt=0, description="Wall-clock limit for the whole run.")
    max_concurrency: int | None = Field(None, ge=1)
    tool_limits: dict[str, int] = Field(default_factory=dict)


class Workflow(Plan):
    """A named, hand-written plan: steps (and parallel groups), inputs, success criteria, limits."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = "workflow"
    description: str = ""
    version: str = "1"
    inputs: dict[str, Any] = Field(default_factory=dict, description="Default inputs, overridable per run.")
    steps: list[Step | Parallel] = Field(default_factory=list)  # type: ignore[assignment]  # widens Plan.steps
    success: list[str] = Field(
        default_factory=list, description="Expressions over the final outputs that must all hold."
    )
    limits: Limits = Field(default_factory=Limits)
    on_failure: Callable[..., Any] | None = Field(None, exclude=True)
    """A failure handler: `StepFailure -> Recovery` (sync or async)."""

    @model_validator(mode="before")
    @classmethod
    def _groups(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("steps"), list):
            steps = [
                Parallel.model_validate(s) if isinstance(s, Mapping) and "parallel" in s else s
                for s in data["steps"]
            ]
            data = {**data, "steps": steps}
        return data

    def flat_steps(self) -> list[Step]:
        """The steps as the executor runs them, parallel groups expanded."""
        out: list[Step] = []
        for s in self.steps:
            out.extend(s.expand() if isinstance(s, Parallel) else [s])
        return out

    def check_success(self, result: RunResult) -> list[str]:
        """The success criteria that do not hold for `result` (each with the reason)."""
        failed = []
        outputs = result.outputs
        for expr in self.success:

            def lookup(ref: Ref) -> Any:
                if ref.root == "inputs":
                    return pick(result.inputs, ref.path, Ref("inputs"))
                if ref.root == "goal":
                    return result.goal
                if ref.root not in outputs:
                    raise PathError(f"step `{ref.root}` has no output")
                return pick(outputs[ref.root], ref.path, ref)

            try:
                text, refs = compile_condition(expr)
                ok = bool(evaluate(text, {f"_r{i}": lookup(r) for i, r in enumerate(refs)}))
                if not ok:
                    failed.append(f"success criterion `{expr}` does not hold")
            except Exception as exc:
                failed.append(f"success criterion `{expr}` cannot be checked: {exc}")
        return failed

    def executor(self, tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (), **kwargs: Any) -> Executor:
        registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        registry = registry.merged([group_tool])
        kwargs.setdefault("max_concurrency", self.limits.max_concurrency)
        kwargs.setdefault("tool_limits", self.limits.tool_limits)
        handler: FailureHandler | None = self.on_failure
        kwargs.setdefault("failure_handler", handler)
        return Executor(registry, **kwargs)

    async def run(
        self,
        tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (),
        *,
        inputs: Mapping[str, Any] | None = None,
        goal: str = "",
        subscribers: Iterable[Subscriber] = (),
        completed: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> RunResult:
        """Run the workflow; the result fails when a success criterion does not hold."""
        ex = executor or self.executor(tools)
        try:
            result = await ex.run(
                self.flat_steps(),
                goal=goal or self.description or self.name,
                inputs={**self.inputs, **(inputs or {})},
                subscribers=subscribers,
                completed=completed,
                run_id=run_id,
                deadline_s=self.limits.deadline_s,
                max_steps=self.limits.max_steps,
            )
        finally:
            if executor is None:
                await ex.aclose()
        if result.status in ("succeeded", "partial"):
            unmet = self.check_success(result)
            if unmet:
                result = result.model_copy(update={"status": "failed", "error": "; ".join(unmet)})
        return result

    def run_sync(self, tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (), **kwargs: Any) -> RunResult:
        import asyncio

        return asyncio.run(self.run(tools, **kwargs))

    def validate_with(self, tools: ToolRegistry | Iterable[Tool | Callable[..., Any]]) -> Self:
        """Check the workflow against `tools` now, raising `PlanError` listing every problem."""
        from planweave.executor.graph import PlanGraph

        registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        graph = PlanGraph(registry.merged([group_tool]), inputs=self.inputs)
        problems: list[PlanProblem] = graph.check(self.flat_steps())
        if problems:
            raise PlanError(problems)
        return self


def load_workflow(path: str | Path) -> Workflow:
    """Load a workflow from `.yaml`/`.yml`/`.json`, or from a `.py` file defining `workflow`."""
    p = Path(path)
    if p.suffix.lower() != ".py":
        return Workflow.load(p)
    if not p.is_file():
        raise WorkflowFileError(f"cannot read `{p}`: no such file", p)
    module_name = f"_planweave_workflow_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise WorkflowFileError(f"cannot import `{p}` as Python", p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(p.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise WorkflowFileError(f"`{p}` raised {type(exc).__name__} while loading: {exc}", p) from exc
    finally:
        sys.path.remove(str(p.parent.resolve()))
    found = getattr(module, "workflow", None)
    if not isinstance(found, Workflow):
        candidates = [v for v in vars(module).values() if isinstance(v, Workflow)]
        if len(candidates) != 1:
            raise WorkflowFileError(
                f"`{p}` must define a `Workflow` named `workflow` "
                f"(found {len(candidates)} Workflow objects)", p
            )
        found = candidates[0]
    return found
