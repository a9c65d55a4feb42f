"""Continue a recorded run from its record: the library behind `planweave resume` and `Worker`.

    resumed = await resume_run(store, run_id)                 # the run's own settings, as recorded
    resumed = await resume_run(store, run_id, overrides=ResumeOverrides(model="gpt-4o-mini"))
    print(resumed.result.status)

A run records how it was started (`RunSummary.meta`: model, API base, tool flags, MCP servers,
trust decisions, backend, budget, approvals); `prepare_resume` claims the run's lease
(`RunStore.claim`: `RunLeasedError` when a live process owns it, unless `force`), rebuilds those
settings (an override given here wins), and returns a `Resumption` whose `run()` continues it:
steps whose success was recorded are reused, the rest run again.

The same module holds what every entry point shares to run a workflow file with the settings
`planweave exec` takes: `settings_tools`, `connect_backend`, `mcp_servers`, `check_workflow_file`
(load and validate, nothing recorded) and `run_workflow` (record, trace, mask, run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planweave.executor.store import FINAL_STATUSES, Lease, ResumeState, RunStore, RunSummary
from planweave.tools.errors import ConfigError

if TYPE_CHECKING:
    from planweave.executor.result import RunResult
    from planweave.executor.workflow import Workflow
    from planweave.planner.core import Planner
    from planweave.planner.result import PlannerResult

__all__ = [
    "CLI_FIXES",
    "DEFAULT_HTTP_TIMEOUT",
    "CheckedWorkflow",
    "ResumeOverrides",
    "Resumed",
    "Resumption",
    "build_planner",
    "check_inputs",
    "check_workflow_file",
    "connect_backend",
    "load_checked_workflow",
    "mcp_meta",
    "mcp_servers",
    "prepare_resume",
    "resume_run",
    "run_workflow",
    "settings_tools",
    "tool_meta",
    "workflow_tools",
]

DEFAULT_HTTP_TIMEOUT = 10.0
# What http_get's errors tell a user of the command line to do (instead of naming Python functions).
CLI_FIXES = {
    "allow_private": "run again with `--allow-private-hosts`",
    "timeout_s": "run again with a larger `--http-timeout` (seconds; default 10)",
}


# --- settings, as `exec`, `run` and `resume` take them ---------------------------------------------


def tool_meta(specs: list[str] | None, workspace: Path, allow_private_hosts: bool, http_timeout: float) -> dict[str, Any]:
    """The tool flags as recorded with a run, for `resume`."""
    return {
        "tool_specs": list(specs or []),
        "workspace": str(workspace.resolve()),
        "allow_private_hosts": allow_private_hosts,
        "http_timeout": http_timeout,
    }


def mcp_meta(specs: list[str] | None, config: Path | None) -> dict[str, Any]:
    """The MCP flags as recorded with a run, for `resume` (the flags, not the resolved servers:
    a config file's headers and env may hold secrets)."""
    meta: dict[str, Any] = {}
    if specs:
        meta["mcp"] = list(specs)
    if config is not None:
        meta["mcp_config"] = str(config.resolve())
    return meta


def mcp_servers(specs: list[str] | None, config: Path | None) -> list[Any]:
    """The servers `--mcp` and `--mcp-config` name (`MCPConfigError` for a bad value or file)."""
    if not specs and config is None:
        return []
    from planweave.tools.mcp import MCPServer, load_mcp_config

    servers = [MCPServer.parse(spec) for spec in specs or []]
    return servers + (load_mcp_config(config) if config is not None else [])


def connect_backend(spec: str | None) -> Any:
    """The executor backend `--backend` names (None: the default, local), connected now so a bad
    address or a missing Ray is a `ConfigError` before any step runs."""
    if spec is None or spec == "local":
        return None
    if spec == "ray" or spec.startswith(("ray:", "ray://")):
        from planweave.executor.ray_backend import RayBackend

        address = spec if spec.startswith("ray://") else (spec.partition(":")[2] or None)
        backend = RayBackend(address)
        backend.connect()
        return backend
    raise ConfigError(f"--backend `{spec}` is not known; use `local`, `ray`, `ray:HOST:PORT` or `ray://HOST:PORT`.")


def settings_tools(
    specs: list[str] | None, *, workspace: Path, allow_private_hosts: bool, http_timeout: float, llm: Any = None
) -> list[Any]:
    """The tools `--tools` names, configured by the command's flags; `llm` is the planner's `llm` tool, if any.
    `ask_user` counts as a built-in tool (a workflow may ask a question)."""
    from planweave.tools.ask import ask_user
    from planweave.tools.builtin import select_tools

    return select_tools(
        specs or [],
        workspace=workspace,
        allow_private_hosts=allow_private_hosts,
        http_timeout_s=http_timeout,
        fixes=CLI_FIXES,
        extra=[llm, ask_user] if llm is not None else [ask_user],
    )


def workflow_tools(meta: Mapping[str, Any]) -> list[Any]:
    """The tools of a workflow run recorded with `meta` (as `exec` records it), its `llm` included."""
    from planweave.planner.llm_tool import llm_tool

    return settings_tools(
        meta.get("tool_specs"), workspace=Path(meta.get("workspace") or "."),
        allow_private_hosts=bool(meta.get("allow_private_hosts")),
        http_timeout=float(meta.get("http_timeout") or DEFAULT_HTTP_TIMEOUT),
        llm=llm_tool(meta.get("model"), api_base=meta.get("api_base")),
    )


def build_planner(
    *,
    model: str | None,
    api_base: str | None,
    tools: list[str] | None,
    workspace: Path,
    allow_private_hosts: bool,
    budget: Any,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    name: str = "",
    store: RunStore | bool | None = None,
    mcp: list[Any] | None = None,
    mcp_meta: dict[str, Any] | None = None,
    approve: list[str] | None = None,
    on_input: Any = None,
    answer_within: float | None = None,
    backend: str | None = None,
) -> Planner:
    """A planner configured as `planweave run` configures it (`store`: a store, None for the
    default one, False to record nothing)."""
    from planweave.planner.core import Planner

    # The planner always adds its own `llm` tool (on the run's client and budget): `--tools llm` is welcome, not needed.
    specs = [s for spec in tools or [] for s in spec.split(",") if s.strip() and s.strip() != "llm"]
    selected = (
        settings_tools(specs, workspace=workspace, allow_private_hosts=allow_private_hosts, http_timeout=http_timeout)
        if specs or not tools
        else []  # `--tools llm` only
    )
    return Planner(
        model=model,
        api_base=api_base,
        tools=selected,
        budget=budget,
        name=name,
        store=store,
        meta={**tool_meta(tools, workspace, allow_private_hosts, http_timeout), **(mcp_meta or {}),
              "approve": list(approve or []), "answer_within": answer_within,
              **({"backend": backend} if backend else {})},
        backend=connect_backend(backend),
        mcp=mcp or (),
        approve=approve or (),
        on_input=on_input,
        answer_within_s=answer_within,
    )


# --- workflow files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedWorkflow:
    """A workflow file loaded and validated for a run (`check_workflow_file`)."""

    workflow: Workflow
    inputs: dict[str, Any]
    tools: list[Any]
    meta: dict[str, Any]
    """The run's settings as recorded: the file (absolute), the inputs that are not secret, the
    flags in `meta` given to the check."""
    secret_inputs: frozenset[str] = frozenset()
    """Names of the inputs that look secret: never recorded (a run that needs them cannot be queued)."""


def load_checked_workflow(
    file: Path,
    inputs: Mapping[str, Any],
    *,
    tools: list[Any],
    meta: Mapping[str, Any],
    mcp: list[Any] | None = None,
    trusted_modules: Iterable[str] = (),
    trust_all_handlers: bool = False,
) -> Workflow:
    """Load `file` and check it as `exec` does, before anything runs or is recorded: its handlers'
    modules are trusted, its steps name known tools, its `llm` steps have a model (the inputs:
    `check_inputs`). Raises the `SetupError` naming what is wrong."""
    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import load_workflow

    workflow = load_workflow(file, trusted_modules=trusted_modules, trust_all_handlers=trust_all_handlers)
    if mcp:
        workflow = workflow.model_copy(update={"mcp": [*workflow.mcp, *mcp]})
    if not workflow.mcp:  # with MCP servers, the executor checks the plan once their tools are known
        validate_plan(workflow, tools)
    if any(getattr(t, "name", None) == "llm" for t in tools):
        from planweave.planner.llm_tool import check_llm_steps

        check_llm_steps(workflow.plan.steps, model=meta.get("model"), workflow_model=workflow.model,
                        api_base=meta.get("api_base"))
    return workflow


def check_inputs(workflow: Workflow, inputs: Mapping[str, Any]) -> None:
    """`ConfigError` when `inputs` names an input the workflow does not declare."""
    unknown = set(inputs) - set(workflow.inputs)
    if workflow.inputs and unknown:
        raise ConfigError(
            f"unknown input {', '.join(f'`{k}`' for k in sorted(unknown))} for workflow `{workflow.name}`; "
            f"its inputs are {', '.join(f'`{k}`' for k in workflow.inputs)}."
        )


def check_workflow_file(
    file: Path, inputs: Mapping[str, Any], *, meta: Mapping[str, Any], tools: list[Any] | None = None
) -> CheckedWorkflow:
    """Load and check a workflow file with the settings `meta` records (as `exec` records them:
    `tool_specs`, `workspace`, `model`, `api_base`, `mcp`, `mcp_config`, `trusted_modules`,
    `trust_all_handlers`, `backend`, ...); `tools` replaces the tools the settings name."""
    from planweave.executor.masking import Masker, SecretInputs

    file = Path(file).expanduser().resolve()
    settings = dict(meta)
    if tools is None:
        tools = workflow_tools(settings)
    config = settings.get("mcp_config")
    servers = mcp_servers(settings.get("mcp"), Path(config) if config else None)
    workflow = load_checked_workflow(
        file, inputs, tools=tools, meta=settings, mcp=servers,
        trusted_modules=list(settings.get("trusted_modules") or []),
        trust_all_handlers=bool(settings.get("trust_all_handlers")),
    )
    check_inputs(workflow, inputs)
    secrets = SecretInputs(inputs, Masker.from_env())
    kept = {k: v for k, v in inputs.items() if k not in secrets.names}
    recorded = {"file": str(file), "inputs": kept, "secret_inputs": sorted(secrets.names), **settings}
    return CheckedWorkflow(workflow=workflow, inputs=dict(inputs), tools=tools, meta=recorded,
                           secret_inputs=frozenset(secrets.names))


async def run_workflow(
    workflow: Workflow,
    file: Path,
    inputs: Mapping[str, Any],
    *,
    store: RunStore | None,
    tools: list[Any],
    meta: Mapping[str, Any],
    run_id: str,
    completed: Mapping[str, Any] | None = None,
    answers: Mapping[str, Any] | None = None,
    requests: Mapping[str, Any] | None = None,
    backend: Any = None,
    backend_spec: str | None = None,
    responder: Any = None,
    subscribers: Iterable[Callable[[Any], object]] = (),
) -> RunResult:
    """Run a checked workflow, recorded in `store` (None: not recorded) and traced when tracing
    is configured. Secret inputs (and environment keys) are masked by value in the store and the
    trace; the store keeps the other inputs (for `resume`) and only the names of the secret ones.
    `backend` is a connected backend (`connect_backend(backend_spec)`); `responder` answers steps
    that wait for people (None: the run ends `waiting`)."""
    from planweave.executor.masking import Masker, SecretInputs
    from planweave.planner.tracing.subscriber import create_tracer

    masker = Masker.from_env()
    secrets = SecretInputs(inputs, masker)
    secrets.remember_in(masker)
    secrets.remember_in(getattr(store, "mask", None))
    watchers: list[Callable[[Any], object]] = []
    if store is not None:
        kept = {k: v for k, v in inputs.items() if k not in secrets.names}
        recorded = {"file": str(file.resolve()), "inputs": kept, "secret_inputs": sorted(secrets.names), **meta,
                    **({"backend": backend_spec} if backend_spec else {})}
        watchers.append(store.recorder(kind="workflow", name=workflow.name, meta=recorded))
    tracer = create_tracer(name=workflow.name, planner=False, tags=["workflow"], masker=masker)
    if tracer is not None:
        watchers.append(tracer)
    watchers += list(subscribers)
    try:
        result = await workflow.run(tools, inputs=inputs, run_id=run_id, completed=completed, subscribers=watchers,
                                    responder=responder, answers=answers, requests=requests, backend=backend)
    finally:
        if tracer is not None:
            await tracer.aclose()
    if store is not None and result.status == "failed" and result.error:
        # a success criterion did not hold
        await asyncio.to_thread(store.set_status, run_id, "failed", error=result.error)
    return result


# --- resuming ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeOverrides:
    """Settings that replace a resumed run's recorded ones (None: as recorded), as `resume`'s flags do."""

    model: str | None = None
    api_base: str | None = None
    tools: list[str] | None = None
    workspace: Path | None = None
    allow_private_hosts: bool | None = None
    http_timeout: float | None = None
    budget: Mapping[str, Any] = field(default_factory=dict)
    """Budget limits by `Budget` field (`max_cost_usd`, `max_steps`, ...); the others as recorded."""
    mcp: list[str] | None = None
    mcp_config: Path | None = None
    allow_failed_steps: bool | None = None
    approve: list[str] | None = None
    answer_within: float | None = None
    backend: str | None = None


@dataclass
class Resumption:
    """A claimed run with its settings rebuilt, ready to continue (`run`). From `prepare_resume`."""

    store: RunStore
    summary: RunSummary
    lease: Lease
    """This process's lease on the run (`forced`, `previous_owner`: whose it took over)."""
    allow_failed_steps: bool
    tool_specs: list[str] | None
    workspace: Path
    allow_private_hosts: bool
    http_timeout: float
    mcp: list[str] | None
    mcp_config: Path | None
    servers: list[Any]
    backend: str | None
    # a workflow run
    workflow: Workflow | None = None
    tools: list[Any] = field(default_factory=list)
    state: ResumeState | None = None
    workflow_meta: dict[str, Any] = field(default_factory=dict)
    # a planner run
    model: str | None = None
    api_base: str | None = None
    budget: Any = None
    approve: list[str] = field(default_factory=list)
    answer_within: float | None = None

    @property
    def run_id(self) -> str:
        return self.summary.id

    async def run_workflow(
        self, *, subscribers: Iterable[Callable[[Any], object]] = (), responder: Any = None
    ) -> RunResult:
        """Continue a workflow run (`run` for either kind)."""
        if self.workflow is None or self.state is None:
            raise ConfigError(f"run `{self.run_id}` planned a goal, not a workflow file; continue it with `run`.")
        meta = self.summary.meta
        backend = await asyncio.to_thread(connect_backend, self.backend)
        return await run_workflow(
            self.workflow, Path(meta["file"]), dict(meta.get("inputs") or {}), store=self.store,
            tools=self.tools, meta=self.workflow_meta, run_id=self.run_id, completed=self.state.completed,
            answers=self.state.answers, requests=self.state.requests, backend=backend,
            backend_spec=self.backend, responder=responder, subscribers=subscribers,
        )

    def planner(self, *, on_input: Any = None, store: RunStore | bool | None = None) -> Planner:
        """The planner that continues a planner run (`on_input` answers people's steps;
        `store`: default the store the run is in)."""
        if self.summary.kind == "workflow":
            raise ConfigError(f"run `{self.run_id}` ran a workflow file, not a goal; it has no planner.")
        planner = build_planner(
            model=self.model, api_base=self.api_base, tools=self.tool_specs, workspace=self.workspace,
            allow_private_hosts=self.allow_private_hosts, http_timeout=self.http_timeout, budget=self.budget,
            name=self.summary.name, store=self.store if store is None else store, mcp=self.servers,
            mcp_meta=mcp_meta(self.mcp, self.mcp_config), approve=self.approve, on_input=on_input,
            answer_within=self.answer_within, backend=self.backend,
        )
        planner.meta["allow_failed_steps"] = self.allow_failed_steps
        return planner

    async def run(
        self,
        *,
        subscribers: Iterable[Callable[[Any], object]] = (),
        responder: Any = None,
        planner: Planner | None = None,
    ) -> RunResult | PlannerResult:
        """Continue the run; returns its result. `responder` answers steps that wait for people
        (None: the run ends `waiting`); `planner` is one from `planner()`, for a planner run."""
        if self.workflow is not None:
            return await self.run_workflow(subscribers=subscribers, responder=responder)
        if planner is None:
            planner = self.planner(on_input=responder)
        return await planner.resume(self.run_id, subscribers=list(subscribers))


def prepare_resume(
    store: RunStore, run_id: str, *, force: bool = False, overrides: ResumeOverrides | None = None
) -> Resumption:
    """Claim a run that has not ended and rebuild its settings (recorded, or `overrides`). With
    `force`, also a run that workers gave up on (`failed`: its process died too often, see
    `planweave.planner.worker`), to retry it by hand.

    Raises `ConfigError` when the run already ended or cannot be resumed (its secret inputs are
    not stored), `RunLeasedError` when a live process owns it (unless `force`: then it is taken
    over, and `Resumption.lease` says whose it was), and the `SetupError` of a workflow file that
    no longer loads or checks."""
    given = overrides or ResumeOverrides()
    summary = store.summary(run_id)
    if summary.status in FINAL_STATUSES and not (force and _given_up(store, summary)):
        raise ConfigError(f"run `{summary.id}` already ended ({summary.status}); nothing to resume.")
    # Atomic: of two resumes of one run, one gets the lease; the other stops here (`RunLeasedError`).
    lease = store.claim(summary.id, force=force)
    meta = summary.meta
    mcp, mcp_config = given.mcp, given.mcp_config
    if not mcp and mcp_config is None:  # the run's own MCP servers
        mcp, config = meta.get("mcp"), meta.get("mcp_config")
        mcp_config = Path(config) if config else None
    resumption = Resumption(
        store=store,
        summary=summary,
        lease=lease,
        allow_failed_steps=(bool(meta.get("allow_failed_steps")) if given.allow_failed_steps is None
                            else given.allow_failed_steps),
        tool_specs=given.tools or meta.get("tool_specs"),
        workspace=given.workspace or Path(meta.get("workspace", ".")),
        allow_private_hosts=(bool(meta.get("allow_private_hosts")) if given.allow_private_hosts is None
                             else given.allow_private_hosts),
        http_timeout=given.http_timeout or float(meta.get("http_timeout") or DEFAULT_HTTP_TIMEOUT),
        mcp=mcp,
        mcp_config=mcp_config,
        servers=mcp_servers(mcp, mcp_config),
        backend=given.backend or meta.get("backend"),  # default: where the run's Ray steps ran
    )
    if summary.kind == "workflow":
        _prepare_workflow(resumption, given)
    else:
        _prepare_planner(resumption, given)
    return resumption


def _given_up(store: RunStore, summary: RunSummary) -> bool:
    from planweave.planner.worker import given_up

    return summary.status == "failed" and given_up(store.events(summary.id))


def _prepare_workflow(resumption: Resumption, given: ResumeOverrides) -> None:
    from planweave.planner.llm_tool import llm_tool

    summary, meta = resumption.summary, resumption.summary.meta
    if meta.get("secret_inputs"):  # not stored, so the resumed run would lack them
        names = ", ".join(f"`{n}`" for n in meta["secret_inputs"])
        raise ConfigError(
            f"run `{summary.id}` had secret inputs ({names}), which the run store does not keep; "
            f"run the workflow again with `planweave exec {meta['file']}` and those `--input`s."
        )
    model, api_base = given.model or meta.get("model"), given.api_base or meta.get("api_base")
    tools = settings_tools(
        resumption.tool_specs, workspace=resumption.workspace, allow_private_hosts=resumption.allow_private_hosts,
        http_timeout=resumption.http_timeout, llm=llm_tool(model, api_base=api_base),
    )
    resumption.state = resumption.store.get_run(summary.id).resume_state()
    trusted = list(meta.get("trusted_modules") or [])
    trust_all = bool(meta.get("trust_all_handlers"))
    resumption.workflow_meta = {
        **tool_meta(resumption.tool_specs, resumption.workspace, resumption.allow_private_hosts,
                    resumption.http_timeout),
        "model": model, "api_base": api_base, **mcp_meta(resumption.mcp, resumption.mcp_config),
        "allow_failed_steps": resumption.allow_failed_steps, "trusted_modules": trusted, "trust_all_handlers": trust_all,
    }
    resumption.tools = tools
    resumption.workflow = load_checked_workflow(
        Path(meta["file"]), dict(meta.get("inputs") or {}), tools=tools, meta=resumption.workflow_meta,
        mcp=resumption.servers, trusted_modules=trusted, trust_all_handlers=trust_all,
    )
    check_inputs(resumption.workflow, dict(meta.get("inputs") or {}))


def _prepare_planner(resumption: Resumption, given: ResumeOverrides) -> None:
    from planweave.planner.budget import Budget

    meta = resumption.summary.meta
    budget = meta.get("budget")
    recorded: dict[str, Any] = budget if isinstance(budget, dict) else {}
    limits = {k: v for k, v in given.budget.items() if v is not None}
    resumption.budget = Budget(**{**recorded, **limits})
    resumption.model = given.model or meta.get("model") or None
    resumption.api_base = given.api_base or meta.get("api_base")
    resumption.approve = list(given.approve or []) or list(meta.get("approve") or [])
    resumption.answer_within = given.answer_within if given.answer_within is not None else meta.get("answer_within")


@dataclass(frozen=True)
class Resumed:
    """A resumed run's outcome (`resume_run`)."""

    run_id: str
    kind: str
    """`workflow` or `planner`."""
    name: str
    lease: Lease
    result: RunResult | PlannerResult


async def resume_run(
    store: RunStore,
    run_id: str,
    *,
    force: bool = False,
    overrides: ResumeOverrides | None = None,
    subscribers: Iterable[Callable[[Any], object]] = (),
    responder: Any = None,
) -> Resumed:
    """Claim a run that has not ended and continue it with its recorded settings (`overrides`
    win); steps whose success was recorded are reused. See `prepare_resume` for the errors."""
    resumption = await asyncio.to_thread(prepare_resume, store, run_id, force=force, overrides=overrides)
    planner = None
    if resumption.workflow is None:
        planner = await asyncio.to_thread(resumption.planner, on_input=responder)
    result = await resumption.run(subscribers=subscribers, responder=responder, planner=planner)
    summary = resumption.summary
    name = resumption.workflow.name if resumption.workflow is not None else summary.name
    return Resumed(run_id=summary.id, kind=summary.kind, name=name, lease=resumption.lease, result=result)
