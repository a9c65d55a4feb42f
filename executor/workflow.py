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
    result = await workflow.run()          # or Executor(tools).run(workflow)

Steps with no dependency between them run in parallel; a `Parallel` group makes
that explicit and gives the group an output (a dict of its members' outputs).

A `Workflow` holds its steps as written (groups included) and hands the executor
`workflow.plan`, the `Plan` with every group expanded. `load_workflow` is the one
loader for workflow files (`.yaml`, `.yml`, `.json`, `.py`); its errors name the file,
the step and the field at fault and what is allowed, all problems at once.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError, field_validator

from planweave.executor.backends import Backend
from planweave.executor.errors import WorkflowFileError
from planweave.executor.events import Subscriber
from planweave.executor.failures import FailureHandler
from planweave.executor.graph import GROUP_TOOL, compile_condition
from planweave.executor.plan import STEP_ID_PATTERN, Plan, RetryPolicy, Step
from planweave.executor.refs import PathError, Ref, pick
from planweave.executor.result import RunResult
from planweave.executor.scheduler import Executor
from planweave.tools.base import Tool, ToolRegistry
from planweave.tools.mcp import MCPServer, parse_mcp_servers
from planweave.tools.errors import ConfigError
from planweave.tools.safe_eval import evaluate

__all__ = ["Limits", "Parallel", "Workflow", "load_workflow"]


class Parallel(BaseModel):
    """Steps that run side by side. Depending on the group means depending on all its members;
    `${group_id}` is a dict of the members' outputs by id."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN)
    parallel: list[Step] = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    description: str = ""

    def __init__(self, id: str, steps: list[Step] | None = None, **data: Any) -> None:  # noqa: A002
        if steps is not None:
            data["parallel"] = steps
        super().__init__(id=id, **data)

    def expand(self) -> list[Step]:
        """The members (each needing what the group needs) and the join step that collects them."""
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


def _step_kind(value: Any) -> str:
    # A mapping with `parallel` is a group; anything else is validated (and reported) as a step.
    if isinstance(value, Parallel) or (isinstance(value, Mapping) and "parallel" in value):
        return "parallel"
    return "step"


WorkflowItem = Annotated[
    Annotated[Step, Tag("step")] | Annotated[Parallel, Tag("parallel")],
    Discriminator(_step_kind),
]
"""One entry of `Workflow.steps`: a step, or a parallel group of steps."""


class Workflow(BaseModel):
    """A named, hand-written plan: steps (and parallel groups), inputs, success criteria, limits."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = "workflow"
    description: str = ""
    version: str = "1"
    inputs: dict[str, Any] = Field(default_factory=dict, description="Default inputs, overridable per run.")
    steps: list[WorkflowItem] = Field(default_factory=list)
    success: list[str] = Field(
        default_factory=list, description="Expressions over the final outputs that must all hold."
    )
    limits: Limits = Field(default_factory=Limits)
    mcp: list[MCPServer] = Field(default_factory=list)
    """MCP servers whose tools the steps may call: `mcpServers`-style (name -> `command`/`args`/`env`
    or `url`/`headers`) or a list of command lines and URLs."""
    model: str | None = Field(
        None, description="litellm model of the `llm` steps; `--model` overrides it; default PLANWEAVE_MODEL, else offline."
    )
    on_failure: Callable[..., Any] | None = Field(None, exclude=True)
    """A failure handler: `StepFailure -> Recovery` (sync or async)."""
    _tools: list[Tool] = PrivateAttr(default_factory=list)
    """Tools given to `add_step` as objects: `execute` runs with them."""

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("mcp", mode="before")
    @classmethod
    def _mcp_servers(cls, value: Any) -> Any:
        if value is None or (isinstance(value, list) and all(isinstance(v, MCPServer) for v in value)):
            return value or []
        return parse_mcp_servers(value, where="`mcp`")

    @property
    def plan(self) -> Plan:
        """The steps as the executor runs them: a `Plan` with every parallel group expanded."""
        steps: list[Step] = []
        for s in self.steps:
            steps.extend(s.expand() if isinstance(s, Parallel) else [s])
        return Plan(steps=steps)

    def unmet_criteria(self, result: RunResult) -> list[str]:
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

    def _executor(
        self, tools: ToolRegistry | Iterable[Tool | Callable[..., Any]], responder: Any = None,
        backend: Backend | None = None,
    ) -> Executor:
        handler: FailureHandler | None = self.on_failure
        return Executor(
            tools,
            max_concurrency=self.limits.max_concurrency,
            tool_limits=self.limits.tool_limits,
            failure_handler=handler,
            responder=responder,
            backend=backend,
        )

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
        responder: Any = None,
        answers: Mapping[str, Any] | None = None,
        requests: Mapping[str, Any] | None = None,
        backend: Backend | None = None,
    ) -> RunResult:
        """Run the workflow; the result fails when a success criterion does not hold.

        Without `executor`, one is made from `tools` and the workflow's limits and failure
        handler, and `backend` (default local); with one, its own settings apply (and `tools`
        and `backend` are ignored). `responder`, `answers` and `requests` are for steps that wait
        for people (`planweave.executor.waiting`).
        """
        ex = executor or self._executor(tools, responder, backend)
        try:
            return await ex.run(
                self, goal=goal, inputs=inputs, subscribers=subscribers, completed=completed, run_id=run_id,
                answers=answers, requests=requests,
            )
        finally:
            if executor is None:
                await ex.aclose()

    def run_sync(self, tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (), **kwargs: Any) -> RunResult:
        """`run` for scripts and notebooks without an event loop of their own."""
        return asyncio.run(self.run(tools, **kwargs))

    # --- the builder: the seeds' shape, sugar over the same plan ---------------------------------

    def add_step(
        self,
        step: Step | Parallel | str,
        /,
        *,
        tool: str | Tool | None = None,
        handler: Callable[..., Any] | None = None,
        **fields: Any,
    ) -> Workflow:
        """Append a step (or a `Parallel` group) and return the workflow, for chaining.

            workflow = Workflow("serp_analysis", model="openai/gpt-4o-mini")
            workflow.add_step("fetch_serp", tool="web_search", args={"query": "${inputs.query}"})
            workflow.add_step("analyze_results", tool="llm", args={"prompt": "...", "context": "${fetch_serp}"})
            result = await workflow.execute({"query": "best project management software"})

        `step` is a `Step`, a `Parallel` group, or the new step's id with its fields as keywords
        (`tool` may be a `Tool` object: `execute` then runs with it). A step that says nothing
        about `depends_on` depends on the step added before it, as in the seeds' workflows;
        `depends_on=[]` lets it start at once.
        """
        if isinstance(step, str):
            if isinstance(tool, Tool):
                self._tools.append(tool)
                tool = tool.name
            item: Step | Parallel = Step(id=step, tool=tool, handler=handler, **fields)
        else:
            if tool is not None or handler is not None or fields:
                raise ConfigError(
                    f"`add_step` got a `{type(step).__name__}` and keyword fields; give the step's fields "
                    "either in the object or as keywords after its id, e.g. `add_step(\"search\", tool=\"web_search\")`."
                )
            item = step
        if "depends_on" not in item.model_fields_set and self.steps:
            item = item.model_copy(update={"depends_on": [self.steps[-1].id]})
        self.steps.append(item)
        return self

    async def execute(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] = (),
        save_results: str | Path | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run with the built-in tools, the tools given to `add_step` and `tools`; return the result.

        `save_results` names a directory to write the result to, as
        `<dir>/<workflow>_<UTC timestamp>.json` (`planweave.executor.saved.save_results`).
        Other keywords are `run`'s. The planner's `llm` tool is not built in here (the
        executor sits below the planner): pass `tools=[llm_tool()]` for `llm` steps.
        """
        from planweave.tools.builtin import builtin_tools

        given = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools)
        registry = ToolRegistry(builtin_tools()).merged([*self._tools, *given])
        result = await self.run(registry, inputs=inputs, **kwargs)
        if save_results is not None:
            from planweave.executor.saved import save_results as save

            save(result, save_results, name=self.name)
        return result


# --- the one loader ------------------------------------------------------------------------------


def load_workflow(
    path: str | Path, *, trusted_modules: Iterable[str] = (), trust_all_handlers: bool = False
) -> Workflow:
    """Load a workflow (or a saved plan) from `.yaml`/`.yml`/`.json`, or a `.py` file defining `workflow`.

    A YAML or JSON file may name Python handlers (`handler: module:function`). Importing a
    module runs its code, so by default only these are trusted: modules beside the file (in
    its directory, which is importable while it loads), planweave's own tools
    (`planweave.tools...`), and the modules in `trusted_modules` (and their submodules).
    Any other handler is refused before anything is imported; `trust_all_handlers=True`
    (`--trust-all-handlers`) lifts the check. A `.py` workflow is Python code the user chose
    to run, and is loaded as such.

    Raises `WorkflowFileError` naming the file and, for a malformed workflow, every problem:
    which step, which field, and what is allowed there.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json", ".py"):
        raise WorkflowFileError(f"`{p}`: unknown file type `{p.suffix}`; use .yaml, .yml, .json or .py.", p)
    if suffix == ".py":
        return _anchor_children(_load_python(p), p.parent)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowFileError(f"cannot read `{p}`: {exc.strerror or exc}", p) from exc
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowFileError(f"`{p}` is not valid JSON: {exc}", p) from exc
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WorkflowFileError(f"`{p}` is not valid YAML: {exc}", p) from exc
    if not isinstance(data, Mapping):
        what = "empty" if data is None else f"a {type(data).__name__}"
        raise WorkflowFileError(
            f"`{p}` is {what}; a workflow file holds a mapping with `steps` "
            f"(and optionally {', '.join(f for f in Workflow.model_fields if f not in ('steps', 'on_failure'))}).",
            p,
        )
    beside = [] if trust_all_handlers else _check_handlers(p, data, tuple(trusted_modules))
    directory = str(p.parent.resolve())
    sys.path.insert(0, directory)  # handlers beside the file are importable while it loads
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        raise _file_error(p, exc, data) from None
    finally:
        sys.path.remove(directory)
    for module_name in beside:
        # A module of that name imported earlier from elsewhere (say a stdlib one) is what Python
        # used: it is not the file beside the workflow that made the handler trusted.
        found = getattr(sys.modules.get(module_name), "__file__", None)
        if found is None or not Path(found).resolve().is_relative_to(directory):
            raise WorkflowFileError(
                f"`{p}`: handler module `{module_name}` is beside the workflow file, but Python imported "
                f"`{found or module_name}` under that name instead; rename the module beside the file.",
                p,
            )
    return _anchor_children(workflow, p.parent)


_OWN_HANDLER_MODULES = ("planweave.tools",)
"""planweave's own modules that workflow files may always take handlers from."""


def _check_handlers(p: Path, data: Mapping[str, Any], trusted: tuple[str, ...]) -> list[str]:
    """Refuse handlers from untrusted modules, before anything is imported; return the modules
    trusted because they are beside the file (checked again once imported)."""
    found: list[tuple[str, str]] = []  # (step id, handler spec)
    stack: list[Any] = [data.get("steps")]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, Mapping):
            if isinstance(item.get("handler"), str):
                found.append((str(item.get("id", "?")), item["handler"]))
            stack.append(item.get("parallel"))
    beside: list[str] = []
    refused: list[str] = []
    directory = str(p.parent.resolve())
    for step_id, spec in found:
        module_name = spec.partition(":")[0].strip()
        if not module_name:
            continue  # a malformed spec: validation reports it
        if any(module_name == t or module_name.startswith(t + ".") for t in (*_OWN_HANDLER_MODULES, *trusted)):
            continue
        # PathFinder looks in the directory only and imports nothing.
        if importlib.machinery.PathFinder.find_spec(module_name.split(".")[0], [directory]) is not None:
            beside.append(module_name)
            continue
        refused.append(f"step `{step_id}` uses handler `{spec}` from module `{module_name}`")
    if refused:
        modules = sorted({r.rpartition("`")[0].rpartition("`")[2] for r in refused})
        raise WorkflowFileError(
            f"`{p}`: {'; '.join(refused)}. A workflow file may take handlers only from modules beside it "
            f"(in `{p.parent}`), from planweave's own tools, or from modules you trust, because importing a "
            "module runs its code. If you trust it, pass "
            + " ".join(f"`--trust-module {m}`" for m in modules)
            + f" (Python: `load_workflow(..., trusted_modules={modules!r})`), or `--trust-all-handlers`.",
            p,
        )
    return beside


def _load_python(p: Path) -> Workflow:
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
    except ValidationError as exc:  # a `Step(...)` or `Workflow(...)` with a bad field
        sys.modules.pop(module_name, None)
        raise _file_error(p, exc, None) from None
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
                f"`{p}` must define a `Workflow` named `workflow` (found {len(candidates)} Workflow objects)", p
            )
        found = candidates[0]
    return found


def _anchor_children(workflow: Workflow, folder: Path) -> Workflow:
    """A sub-workflow's relative path is relative to the file naming it, not to where planweave runs."""
    for item in workflow.steps:
        for step in item.parallel if isinstance(item, Parallel) else [item]:
            if isinstance(step.workflow, (str, Path)) and not Path(step.workflow).expanduser().is_absolute():
                step.workflow = str(folder / step.workflow)
    return workflow


# --- workflow-file problems, in the file's own terms -----------------------------------------------

_MODELS: dict[str, type[BaseModel]] = {
    "Workflow": Workflow,
    "Step": Step,
    "Parallel": Parallel,
    "Limits": Limits,
    "RetryPolicy": RetryPolicy,
}


def _file_error(path: Path, exc: ValidationError, data: Any) -> WorkflowFileError:
    problems = list(dict.fromkeys(_problem(err, data, exc.title) for err in exc.errors(include_url=False)))
    if len(problems) == 1:
        message = f"`{path}` is not a valid workflow: {problems[0]}"
    else:
        message = f"`{path}` is not a valid workflow, {len(problems)} problems:\n" + "\n".join(
            f"- {p}" for p in problems
        )
    return WorkflowFileError(message, path, problems)


def _problem(err: Any, data: Any, title: str) -> str:
    """One pydantic error as "where: what is wrong; what is allowed"."""
    where, model, rest = _locate(tuple(err["loc"]), data, title)
    # Walk nested models (`retry.max_attemps`, `limits.deadline`) to know what the field allows.
    for part in rest[:-1]:
        field = model.model_fields.get(str(part))
        nested = field.annotation if field is not None else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            break
        model = nested
    dotted = ".".join(str(p) for p in rest)
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(rest[-1])
        allowed = [f for f in model.model_fields if f != "on_failure" or model is not Workflow]
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return f"{where}: unknown field `{dotted}`; allowed: {', '.join(allowed)}.{hint}"
    if kind == "missing":
        return f"{where}: missing required field `{dotted}`."
    if not rest and kind == "value_error":  # a rule over several fields, e.g. `tool` or `handler`
        return f"{where}: {err['ctx']['error']}."
    target = f"field `{dotted}`" if dotted else "this entry"
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{where}: {target}: {err['msg'][:1].lower()}{err['msg'][1:]} (got {got})."


def _locate(loc: tuple[Any, ...], data: Any, title: str) -> tuple[str, type[BaseModel], tuple[Any, ...]]:
    """Where an error is, in the file's terms ("step `book` (steps[1])"), the model there, and the field path."""
    if title != "Workflow" or len(loc) < 2 or loc[0] != "steps" or not isinstance(loc[1], int):
        if title == "Workflow":
            return "workflow", Workflow, loc
        return f"`{title}`", _MODELS.get(title, Workflow), loc
    index = loc[1]
    raw = _item(data, "steps", index)
    rest = loc[2:]
    kind = "step"
    if rest and rest[0] in ("step", "parallel"):
        kind, rest = rest[0], rest[1:]
    label = f"steps[{index}]"
    model: type[BaseModel] = Step
    noun = "step"
    if kind == "parallel":
        model, noun = Parallel, "parallel group"
        if len(rest) >= 2 and rest[0] == "parallel" and isinstance(rest[1], int):
            raw = _item(raw, "parallel", rest[1])
            label += f".parallel[{rest[1]}]"
            model, noun, rest = Step, "step", rest[2:]
    sid = raw.get("id") if isinstance(raw, Mapping) else None
    where = f"{noun} `{sid}` ({label})" if isinstance(sid, str) and sid else f"unnamed {noun} ({label})"
    return where, model, rest


def _item(data: Any, key: str, index: int) -> Any:
    if isinstance(data, Mapping) and isinstance(data.get(key), list) and index < len(data[key]):
        return data[key][index]
    return None
