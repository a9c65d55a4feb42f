"""Building and validating the plan graph.

`PlanGraph` turns steps into a `networkx.DiGraph` (an edge `a -> b` means `b` needs
`a`), checking everything that can be checked before anything runs and
reporting every problem at once in one `PlanError`. Steps can be added in
batches (the streaming planner does); each batch is checked against the live
graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from planweave.executor.errors import PlanError, PlanProblem
from planweave.executor.plan import Plan, Step
from planweave.executor.refs import RESERVED_ROOTS, Ref, RefSyntaxError, check_path, find_refs, has_refs, parse
from planweave.tools.base import Tool, ToolRegistry, format_validation_error, tool
from planweave.tools.safe_eval import SafeEvalError
from planweave.tools.safe_eval import check as check_expression

if TYPE_CHECKING:
    import networkx as nx

    from planweave.executor.workflow import Workflow

__all__ = ["CompiledStep", "GROUP_TOOL", "PlanGraph", "compile_condition", "validate_plan"]

_NO_DEPS: frozenset[str] = frozenset()

GROUP_TOOL = "parallel_group"
"""Internal tool of a parallel group's join step: collects its members' outputs into a dict."""


@tool(name=GROUP_TOOL, blocking=False)
def _group_tool(outputs: dict[str, Any]) -> dict[str, Any]:
    """Collect the outputs of a parallel group's members (internal)."""
    return outputs


@dataclass(slots=True)
class CompiledStep:
    """A validated step with everything the scheduler needs precomputed."""

    step: Step
    tool: Tool
    deps: frozenset[str]
    """Step ids this step needs: `depends_on` plus every referenced step."""
    args_dynamic: bool
    """False when the arguments hold no reference, so they are used as they are."""
    condition: tuple[str, tuple[Ref, ...]] | None = None
    """`when` rewritten as an expression over variables `_r0`, `_r1`, ... bound to references."""
    for_each: Ref | None = None


def compile_condition(expr: str) -> tuple[str, tuple[Ref, ...]]:
    """Rewrite `${...}` references in an expression as variables `_r0`, `_r1`, ... (with the refs)."""
    parts = parse(expr)
    refs: list[Ref] = []
    text: list[str] = []
    for part in parts:
        if isinstance(part, Ref):
            text.append(f" _r{len(refs)} ")
            refs.append(part)
        else:
            text.append(part)
    return "".join(text).strip(), tuple(refs)


class PlanGraph:
    """The validated, growing graph of a run's steps."""

    def __init__(self, tools: ToolRegistry, *, inputs: Mapping[str, Any] | None = None) -> None:
        self.tools = tools
        self.inputs = inputs
        self._graph: nx.DiGraph[str] | None = None
        self.steps: dict[str, CompiledStep] = {}
        self._handler_tools: dict[int, Tool] = {}
        self._child_problems: dict[str, str] = {}  # why a `workflow` step's workflow cannot run
        self._empty_args_ok: dict[str, bool] = {}
        self._dep_sets: dict[frozenset[str], frozenset[str]] = {}
        """One shared frozenset per distinct dependency set (the scheduler keys its joins on them)."""

    def __contains__(self, step_id: object) -> bool:
        return step_id in self.steps

    def __len__(self) -> int:
        return len(self.steps)

    # --- validation --------------------------------------------------------------------------

    def add(self, steps: Iterable[Step]) -> list[CompiledStep]:
        """Validate `steps` against the graph and add them; raises `PlanError` listing every problem."""
        batch = list(steps)
        compiled, problems = self._compile(batch)
        if problems:
            raise PlanError(problems)
        steps_by_id = self.steps
        for c in compiled:
            steps_by_id[c.step.id] = c
        self._graph = None
        return compiled

    @property
    def graph(self) -> nx.DiGraph[str]:
        """The steps as a `networkx.DiGraph`; an edge `a -> b` means `b` needs `a`.

        Built on first use after a change: the scheduler itself never needs it, so a
        10,000-step run does not pay for it unless something asks.
        """
        if self._graph is None:
            import networkx as nx  # only here and for cycles: a run that never asks never imports it

            g: nx.DiGraph[str] = nx.DiGraph()
            g.add_nodes_from(self.steps)
            g.add_edges_from((dep, sid) for sid, c in self.steps.items() for dep in c.deps)
            self._graph = g
        return self._graph

    def check(self, steps: Iterable[Step]) -> list[PlanProblem]:
        """Every problem `steps` would have if added now (empty when they are valid)."""
        return self._compile(list(steps))[1]

    def _tool_for(self, step: Step) -> Tool | None:
        if step.workflow is not None:
            from planweave.executor.subworkflow import child_tool

            child, problem = child_tool(step, self.tools)
            if problem is not None:
                self._child_problems[step.id] = problem
            return child
        if step.handler is not None:
            key = id(step.handler)
            t = self._handler_tools.get(key)
            if t is None:
                name = getattr(step.handler, "__name__", step.id)
                t = Tool.from_function(step.handler, name=name if name.isidentifier() else step.id)
                self._handler_tools[key] = t
            return t
        assert step.tool is not None
        if step.tool in self.tools:
            return self.tools.get(step.tool)
        # Every graph knows the join tool of parallel groups, whatever tools it was given.
        return _group_tool if step.tool == GROUP_TOOL else None

    def _compile(self, batch: list[Step]) -> tuple[list[CompiledStep], list[PlanProblem]]:
        problems: list[PlanProblem] = []
        new_ids: dict[str, int] = {}
        for pos, step in enumerate(batch, 1):
            if step.id in self.steps:
                problems.append(
                    PlanProblem(step.id, f"step `{step.id}` already exists in the run; give the new step another id.")
                )
            elif step.id in new_ids:
                problems.append(
                    PlanProblem(
                        step.id,
                        f"duplicate step id `{step.id}` (steps {new_ids[step.id]} and {pos}); "
                        "give each step a unique id.",
                    )
                )
            elif step.id in RESERVED_ROOTS:
                problems.append(
                    PlanProblem(step.id, f"step id `{step.id}` is reserved for references; choose another id.")
                )
            else:
                new_ids[step.id] = pos
        batch_by_id = {s.id: s for s in batch}
        old = self.steps

        compiled: list[CompiledStep] = []
        batch_deps: dict[str, frozenset[str]] = {}
        # Set operations, not a loop per edge: a layered plan has tens of thousands of edges.
        # `earlier` holds the batch's steps seen so far; while every step needs only earlier
        # steps (or steps of earlier batches) the batch is acyclic, and `_cycles` is skipped.
        earlier: set[str] = set()
        in_order = True
        last_needs: list[str] | None = None  # consecutive steps often need the same steps
        last_deps = _NO_DEPS
        tools_by_name: dict[str, Tool] = {}  # registry lookups, once per tool name
        for step in batch:
            sid = step.id
            tool = tools_by_name.get(step.tool) if step.tool is not None else None
            if tool is None:
                tool = self._tool_for(step)
                if tool is not None and step.tool is not None:
                    tools_by_name[step.tool] = tool
            if tool is None and step.workflow is not None:
                problems.append(PlanProblem(sid, self._child_problems.pop(sid)))
            elif tool is None:
                suggestions = self.tools.suggest(step.tool or "")
                if suggestions:
                    hint = f"did you mean {' or '.join(f'`{s}`' for s in suggestions)}?"
                elif len(self.tools):
                    hint = f"available tools: {', '.join(f'`{n}`' for n in self.tools.names()[:20])}."
                else:
                    hint = "no tools are registered: pass the tool to the executor."
                problems.append(PlanProblem(sid, f"step `{sid}` uses unknown tool `{step.tool}`; {hint}"))
            elif step.cache and not tool.pure:
                problems.append(
                    PlanProblem(
                        sid,
                        f"step `{sid}` asks to cache tool `{tool.name}`, which has side effects (`pure=False`): "
                        "a cached call would skip them; remove `cache` from the step.",
                    )
                )

            needs = step.depends_on
            if not needs:
                deps = _NO_DEPS
            elif needs == last_needs and sid not in last_deps:
                deps = last_deps  # known, and still before this step if they were before the last
            else:
                deps = frozenset(needs)
                if sid in deps or not (new_ids.keys() >= deps or old.keys() >= deps.difference(new_ids)):
                    deps = self._check_depends_on(step, new_ids, problems)
                else:
                    last_needs, last_deps = needs, deps
                if in_order and not earlier >= deps:
                    in_order = old.keys() >= deps.difference(earlier)

            refs: list[tuple[str, Ref]] = []  # (where, ref)
            if step.args:
                try:
                    refs += [("args", r) for r in find_refs(step.args)]
                except RefSyntaxError as exc:
                    problems.append(PlanProblem(sid, f"step `{sid}` `args`: {exc}."))
            condition = None
            if step.when is not None:
                try:
                    condition = compile_condition(step.when)
                    # The checker `evaluate` runs at run time, so what it would refuse is a plan problem.
                    check_expression(condition[0], [f"_r{i}" for i in range(len(condition[1]))])
                    refs += [("when", r) for r in condition[1]]
                except RefSyntaxError as exc:
                    problems.append(PlanProblem(sid, f"step `{sid}` `when`: {exc}."))
                except SafeEvalError as exc:
                    condition = None
                    problems.append(
                        PlanProblem(
                            sid,
                            f"step `{sid}` has an invalid `when` condition `{step.when}` ({exc}); "
                            "write an expression such as `${check.count} > 0`.",
                        )
                    )
            for_each: Ref | None = None
            if step.for_each is not None:
                try:
                    parts = parse(step.for_each)
                except RefSyntaxError as exc:
                    parts = ()
                    problems.append(PlanProblem(sid, f"step `{sid}` `for_each`: {exc}."))
                if len(parts) == 1 and isinstance(parts[0], Ref) and parts[0].root != "item":
                    for_each = parts[0]
                    refs.append(("for_each", for_each))
                elif parts:
                    problems.append(
                        PlanProblem(
                            sid,
                            f"step `{sid}` `for_each` must be a single reference to a list, "
                            f"such as `${{search.results}}`, not `{step.for_each}`.",
                        )
                    )

            ref_deps: set[str] = set()
            for where, ref in refs:
                root = ref.root
                if root == "item":
                    if step.for_each is None:
                        problems.append(
                            PlanProblem(
                                sid,
                                f"step `{sid}` uses `{ref}` but has no `for_each`; "
                                "`${item}` only exists in steps that run `for_each`.",
                            )
                        )
                    continue
                if root == "goal":
                    if ref.path:
                        problems.append(PlanProblem(sid, f"step `{sid}`: `{ref}`: the goal is text and has no fields."))
                    continue
                if root == "inputs":
                    if self.inputs is not None and ref.path and ref.path[0] not in self.inputs:
                        names = ", ".join(f"`{k}`" for k in self.inputs) or "none"
                        problems.append(
                            PlanProblem(
                                sid,
                                f"step `{sid}` references `{ref}`, but the run has no input "
                                f"`{ref.path[0]}` (inputs: {names}).",
                            )
                        )
                    continue
                if root == sid:
                    problems.append(
                        PlanProblem(sid, f"step `{sid}` references its own output `{ref}`; a step cannot use its own output.")
                    )
                    continue
                if root not in old and root not in new_ids:
                    problems.append(
                        PlanProblem(
                            sid,
                            f"step `{sid}` references `{ref}`, but there is no step `{root}`; "
                            "add that step or fix the reference.",
                        )
                    )
                    continue
                ref_deps.add(root)
                if not ref.path:
                    continue
                producer: Tool | None
                if root in old:
                    producer_step, producer = old[root].step, old[root].tool
                else:
                    producer_step = batch_by_id[root]
                    producer = self._tool_for(producer_step)
                # A `for_each` step outputs a list of its tool's outputs: the schema does not apply.
                if producer is None or producer_step.for_each is not None:
                    continue
                why = check_path(producer.output_schema, ref.path, root)
                if why is not None:
                    problems.append(
                        PlanProblem(
                            sid,
                            f"step `{sid}` references `{ref}`, which cannot exist: {why} "
                            f"(tool `{producer.name}`); fix the field path.",
                        )
                    )

            if ref_deps and not ref_deps <= deps:
                deps = deps.union(ref_deps)
                if in_order and not earlier >= deps:
                    in_order = old.keys() >= deps.difference(earlier)
            deps = self._dep_sets.setdefault(deps, deps)
            batch_deps[sid] = deps
            earlier.add(sid)
            if tool is not None:
                if step.args or not self._empty_args_ok.get(tool.name):
                    problems += self._check_args(step, tool)
                compiled.append(
                    CompiledStep(
                        step=step,
                        tool=tool,
                        deps=deps,
                        args_dynamic=bool(step.args) and has_refs(step.args),
                        condition=condition,
                        for_each=for_each,
                    )
                )

        if not in_order:
            problems += self._cycles(batch_deps)
        return compiled, problems

    def _check_depends_on(self, step: Step, new_ids: Mapping[str, int], problems: list[PlanProblem]) -> frozenset[str]:
        """`step.depends_on` without the ids that are wrong, each reported in order."""
        sid = step.id
        deps: set[str] = set()
        for dep in step.depends_on:
            if dep == sid:
                problems.append(PlanProblem(sid, f"step `{sid}` depends on itself; remove `{sid}` from its `depends_on`."))
            elif dep not in self.steps and dep not in new_ids:
                problems.append(
                    PlanProblem(
                        sid,
                        f"step `{sid}` depends on `{dep}`, which is not in the plan; "
                        "add that step or remove the dependency.",
                    )
                )
            else:
                deps.add(dep)
        return frozenset(deps)


    def _check_args(self, step: Step, tool: Tool) -> list[PlanProblem]:
        if not step.args:
            # Large generated plans repeat argument-less calls: validate `{}` once per tool.
            ok = self._empty_args_ok.get(tool.name)
            if ok is None:
                ok = self._empty_args_ok[tool.name] = not self._check_args_full(step, tool)
            return [] if ok else self._check_args_full(step, tool)
        return self._check_args_full(step, tool)

    def _check_args_full(self, step: Step, tool: Tool) -> list[PlanProblem]:
        dynamic = {k for k, v in step.args.items() if has_refs(v)}
        static = {k: v for k, v in step.args.items() if k not in dynamic}
        try:
            tool.args_model.model_validate(static)
            return []
        except ValidationError as exc:
            errors = [e for e in exc.errors(include_url=False) if not (e["loc"] and e["loc"][0] in dynamic)]
            if not errors:
                return []
            filtered = ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]
            return [
                PlanProblem(
                    step.id,
                    f"step `{step.id}` arguments do not match tool `{tool.name}`: {format_validation_error(filtered)}.",
                )
            ]

    def _cycles(self, deps_by_step: Mapping[str, frozenset[str]]) -> list[PlanProblem]:
        # Earlier batches only point back to earlier steps, so a new cycle lies within this batch.
        # Only called when some step needs a later step of its batch: a linear Kahn pass
        # settles that acyclic case; networkx then describes any cycle.
        indegree = {sid: 0 for sid in deps_by_step}
        dependents: dict[str, list[str]] = {}
        for sid, deps in deps_by_step.items():
            for dep in deps:
                if dep in indegree:
                    indegree[sid] += 1
                    dependents.setdefault(dep, []).append(sid)
        queue = [sid for sid, n in indegree.items() if n == 0]
        seen = 0
        while queue:
            sid = queue.pop()
            seen += 1
            for d in dependents.get(sid, ()):
                indegree[d] -= 1
                if indegree[d] == 0:
                    queue.append(d)
        if seen == len(indegree):
            return []
        import networkx as nx

        needs: nx.DiGraph[str] = nx.DiGraph()  # edge a -> b: `a` needs `b`
        needs.add_nodes_from(deps_by_step)
        needs.add_edges_from((sid, dep) for sid, deps in deps_by_step.items() for dep in deps if dep in deps_by_step)
        problems = []
        for component in nx.strongly_connected_components(needs):
            if len(component) < 2:
                continue
            edges = nx.find_cycle(needs.subgraph(component))
            path = [u for u, _ in edges] + [edges[0][0]]
            problems.append(
                PlanProblem(
                    path[0],
                    f"dependency cycle `{' -> '.join(path)}` (each step needs the next); "
                    "remove one of these dependencies or references.",
                )
            )
        return problems


def validate_plan(
    plan: Plan | Workflow | Iterable[Step | Mapping[str, Any]],
    tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (),
    *,
    inputs: Mapping[str, Any] | None = None,
) -> None:
    """Check a plan or workflow completely without running it: the one validation entry point.

    Raises `PlanError` listing every problem (unknown tools, bad arguments, references to
    missing steps or fields, cycles, ...); returns None when the plan is valid. For a
    `Workflow`, its parallel groups are expanded and its default `inputs` are known
    (`inputs` adds to them).
    """
    from planweave.executor.workflow import Workflow  # workflow.py builds on this module

    registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
    if isinstance(plan, Workflow):
        steps = plan.plan.steps
        inputs = {**plan.inputs, **(inputs or {})}
    elif isinstance(plan, Plan):
        steps = plan.steps
    else:
        steps = [s if isinstance(s, Step) else Step.model_validate(s) for s in plan]
    PlanGraph(registry, inputs=inputs).add(steps)
