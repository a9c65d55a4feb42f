"""The `planweave` command line. Thin: parse, call the library, render.

Heavy modules (litellm, the executor, networkx) are imported inside the commands,
so `planweave --help` stays fast. What is printed lives in `planweave.planner.cli.output`; the
run-store commands (runs, show, stats, prune, delete, graph) in `planweave.planner.cli.runs`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from planweave.planner.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    exit_code,
    fail_usage,
    plural,
    print_failure,
    print_result,
    print_tools,
)
from planweave.planner.cli.runs import open_run_store, register

if TYPE_CHECKING:
    from collections.abc import Callable

    from planweave.executor.result import RunResult

app = typer.Typer(
    name="planweave",
    help="Plan a graph of tool calls with an LLM and run it in parallel; or run a hand-written workflow.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)

_debug = False
_owns_process = False
"""True when `main` runs the command line as its own process (not `app` embedded in another program)."""


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail_usage(f"--input `{pair}` is not KEY=VALUE; for example `--input nights=5`.")
        try:
            inputs[key] = json.loads(raw)  # numbers, booleans, lists stay typed
        except json.JSONDecodeError:
            inputs[key] = raw
    return inputs


def _print_version(value: bool) -> None:
    if value:
        from planweave import __version__

        typer.echo(f"planweave {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print planweave's version and exit."),
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _preload_model_libraries() -> threading.Event:
    """Import litellm in a background thread; set the event when done.

    A run spends most of its start-up importing litellm; the command builds its tools, store
    and executor meanwhile, and the live view says "loading model libraries" until this is
    done. Imports are CPU work under one interpreter lock, so this hides the waiting (disk,
    SQLite) rather than the work: bench/startup.py measures what it gains. Only litellm,
    which the first model call needs anyway (instructor is left to that call): the thread
    is done before the run goes on, so nothing imports behind a running plan. A failure
    here is left for the run to meet again (and report) on its own import.

    When the command line owns the process (`main`), the garbage collector is kept out of
    the way meanwhile (`_collect_after_loading`).
    """
    loaded = threading.Event()
    from planweave.planner.llm import import_litellm

    settle = _collect_after_loading() if _owns_process else None

    def load() -> None:
        try:
            import_litellm()
        except BaseException:  # the run imports it again and reports what went wrong
            pass
        finally:
            if settle is not None:
                settle()
            loaded.set()

    threading.Thread(target=load, name="planweave-preload", daemon=True).start()
    return loaded


def _collect_after_loading() -> Callable[[], None]:
    """Pause the cyclic garbage collector now; the returned function freezes what was built
    meanwhile and resumes it.

    The model libraries build about 350,000 objects that live as long as the process
    (modules, classes, pydantic schemas) and are never garbage. Each full collection while
    they load walks all of them again, and so does the interpreter's last collection at
    exit: about 1.3 s of CPU for litellm alone. Frozen (`gc.freeze`, documented for such
    long-lived objects), they are left out of every later collection; what a run creates
    after that is collected as usual. Only for the command line's own process: a program
    that embeds `app` keeps its collector as it set it.
    """
    import gc

    gc.disable()

    def settle() -> None:
        gc.freeze()
        gc.enable()

    return settle


# --- options shared by the commands --------------------------------------------------------------

ModelOpt = Annotated[
    Optional[str], typer.Option(help="litellm model, e.g. openai/gpt-4o-mini (default: PLANWEAVE_MODEL, else offline).")
]
ApiBaseOpt = Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")]
WorkspaceOpt = Annotated[Path, typer.Option(help="Root directory for the file tools (read_file, write_file, list_files).")]
PrivateHostsOpt = Annotated[bool, typer.Option(help="Let http_get reach private and loopback addresses.")]
HttpTimeoutOpt = Annotated[
    float, typer.Option("--http-timeout", min=0.001, help="Seconds each http_get call may take (DNS, connect, body).")
]
MaxCostOpt = Annotated[Optional[float], typer.Option(help="Budget of each run: most USD to spend.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most tokens.")]
MaxLLMCallsOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most LLM calls.")]
MaxStepsOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most steps.")]
MaxReplansOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most replans.")]
MaxSecondsOpt = Annotated[Optional[float], typer.Option(help="Budget of each run: wall-clock seconds.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")]
ToolsOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--tools",
        "-t",
        help="Tools to enable: built-in names (calculator,http_get,llm,...), a module, a .py file or module:attr. "
        "Repeatable; default all built-in tools.",
    ),
]

# What http_get's errors tell a user of the command line to do (instead of naming Python functions).
CLI_FIXES = {
    "allow_private": "run again with `--allow-private-hosts`",
    "timeout_s": "run again with a larger `--http-timeout` (seconds; default 10)",
}
DEFAULT_HTTP_TIMEOUT = 10.0
BackendOpt = Annotated[
    Optional[str],
    typer.Option(
        "--backend",
        help="Where tools that ask for Ray (`@tool(num_cpus=...)`) run: `local` (default; every tool here), "
        "`ray` (a local Ray, started on demand), `ray:HOST:PORT` or `ray://HOST:PORT` (a cluster). "
        "Needs `pip install 'planweave[ray]'`.",
    ),
]


def _tools(
    specs: list[str] | None,
    *,
    workspace: Path,
    allow_private_hosts: bool,
    http_timeout: float,
    llm: Any = None,
) -> list[Any]:
    """The tools `--tools` names, configured by the command's flags; `llm` is the planner's `llm` tool, if any."""
    from planweave.tools.builtin import select_tools

    return select_tools(
        specs or [],
        workspace=workspace,
        allow_private_hosts=allow_private_hosts,
        http_timeout_s=http_timeout,
        fixes=CLI_FIXES,
        extra=[llm] if llm is not None else [],
    )


def _backend(spec: str | None) -> Any:
    """The executor backend `--backend` names (None: the default, local), connected now so a bad
    address or a missing Ray is bad input (exit 2) before any step runs."""
    if spec is None or spec == "local":
        return None
    if spec == "ray" or spec.startswith(("ray:", "ray://")):
        from planweave.executor.ray_backend import RayBackend

        address = spec if spec.startswith("ray://") else (spec.partition(":")[2] or None)
        backend = RayBackend(address)
        backend.connect()
        return backend
    fail_usage(f"--backend `{spec}` is not known; use `local`, `ray`, `ray:HOST:PORT` or `ray://HOST:PORT`.")


def _llm_tool(model: str | None, api_base: str | None) -> Any:
    """The `llm` tool for workflow files (`exec`, `validate`, `tools`), as the planner gives it to its plans."""
    from planweave.planner.llm import LLMClient, LLMConfig
    from planweave.planner.prompts import PromptLibrary
    from planweave.planner.run import make_llm_tool

    return make_llm_tool(LLMClient(LLMConfig(model=model, api_base=api_base)), PromptLibrary())


def _run_workflow(
    file: Path,
    inputs: dict[str, Any],
    *,
    tools: list[Any],
    meta: dict[str, Any],
    run_id: str | None = None,
    completed: dict[str, Any] | None = None,
    record: bool = True,
    backend: str | None = None,
) -> tuple[Any, RunResult]:
    """Load, validate, record and run a workflow file (shared by `exec` and `resume`)."""
    import asyncio
    import uuid

    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import load_workflow

    workflow = load_workflow(file)
    validate_plan(workflow, tools)
    unknown = set(inputs) - set(workflow.inputs)
    if workflow.inputs and unknown:
        fail_usage(
            f"unknown input {', '.join(f'`{k}`' for k in sorted(unknown))} for workflow `{workflow.name}`; "
            f"its inputs are {', '.join(f'`{k}`' for k in workflow.inputs)}."
        )
    run_id = run_id or uuid.uuid4().hex[:16]
    executor_backend = _backend(backend)
    store = open_run_store() if record else None
    subscribers = []
    if store is not None:
        meta = {"file": str(file.resolve()), "inputs": inputs, **meta, **({"backend": backend} if backend else {})}
        subscribers.append(store.recorder(kind="workflow", name=workflow.name, meta=meta))
    from planweave.planner.tracing.subscriber import create_tracer

    tracer = create_tracer(name=workflow.name, planner=False, tags=["workflow"])
    if tracer is not None:
        subscribers.append(tracer)

    async def go() -> RunResult:
        try:
            return await workflow.run(
                tools, inputs=inputs, run_id=run_id, completed=completed, subscribers=subscribers,
                backend=executor_backend,
            )
        finally:
            if tracer is not None:
                await tracer.aclose()

    try:
        result = asyncio.run(go())
    except KeyboardInterrupt:
        if store is not None:
            store.set_status(run_id, "interrupted", error="interrupted by Ctrl-C")
        typer.echo(f"planweave: interrupted; resume with `planweave resume {run_id}`", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if store is not None and result.status == "failed" and result.error:
        store.set_status(run_id, "failed", error=result.error)  # a success criterion did not hold
    return workflow, result


AllowFailedStepsOpt = Annotated[
    bool,
    typer.Option(
        "--allow-failed-steps",
        help="Exit 0 when the run ends `partial` (a step failed and the run went on); default exit 1.",
    ),
]


def _finish_workflow(
    workflow: Any, result: RunResult, *, title: str, as_json: bool, quiet: bool, allow_failed_steps: bool
) -> NoReturn:
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        if not quiet:
            print_result(result, title=title)
        print_failure(result)
    raise typer.Exit(exit_code(result, allow_failed_steps=allow_failed_steps))


def _tool_meta(
    specs: list[str] | None, workspace: Path, allow_private_hosts: bool, http_timeout: float
) -> dict[str, Any]:
    """The tool flags as recorded with a run, for `resume`."""
    return {
        "tool_specs": list(specs or []),
        "workspace": str(workspace.resolve()),
        "allow_private_hosts": allow_private_hosts,
        "http_timeout": http_timeout,
    }


@app.command("exec")
def exec_(
    file: Annotated[Path, typer.Argument(help="A workflow or saved plan: .yaml, .yml, .json or .py.")],
    input_: Annotated[
        Optional[list[str]], typer.Option("--input", "-i", help="An input as KEY=VALUE (JSON values allowed). Repeatable.")
    ] = None,
    tools: ToolsOpt = None,
    workspace: WorkspaceOpt = Path("."),
    allow_private_hosts: PrivateHostsOpt = False,
    http_timeout: HttpTimeoutOpt = DEFAULT_HTTP_TIMEOUT,
    model: Annotated[
        Optional[str], typer.Option(help="litellm model of the `llm` tool (default: PLANWEAVE_MODEL, else offline).")
    ] = None,
    api_base: ApiBaseOpt = None,
    record: Annotated[bool, typer.Option(help="Record the run in the run store (for show/resume/stats).")] = True,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only why the run failed, if it did.")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
    backend: BackendOpt = None,
) -> None:
    """Run a workflow or saved plan file (`planweave plan GOAL -o FILE`) with the built-in tools and `llm`."""
    selected = _tools(
        tools, workspace=workspace, allow_private_hosts=allow_private_hosts, http_timeout=http_timeout,
        llm=_llm_tool(model, api_base),
    )
    meta = {**_tool_meta(tools, workspace, allow_private_hosts, http_timeout), "model": model, "api_base": api_base}
    workflow, result = _run_workflow(
        file, _parse_inputs(input_ or []), tools=selected, meta=meta, record=record, backend=backend
    )
    _finish_workflow(workflow, result, title=f"workflow {workflow.name}", as_json=as_json, quiet=quiet,
        allow_failed_steps=allow_failed_steps,
    )


def _budget(**limits: Any) -> Any:
    from planweave.planner.budget import Budget

    return Budget(**{k: v for k, v in limits.items() if v is not None})


def _planner(
    *,
    model: str | None,
    api_base: str | None,
    tools: list[str] | None,
    workspace: Path,
    allow_private_hosts: bool,
    budget: Any,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    name: str = "",
    record: bool = True,
    backend: str | None = None,
) -> Any:
    from planweave.planner.core import Planner

    # The planner always adds its own `llm` tool (on the run's client and budget): `--tools llm` is welcome, not needed.
    specs = [s for spec in tools or [] for s in spec.split(",") if s.strip() and s.strip() != "llm"]
    selected = (
        _tools(specs, workspace=workspace, allow_private_hosts=allow_private_hosts, http_timeout=http_timeout)
        if specs or not tools
        else []  # `--tools llm` only
    )
    return Planner(
        model=model,
        api_base=api_base,
        tools=selected,
        budget=budget,
        name=name,
        store=None if record else False,
        meta={**_tool_meta(tools, workspace, allow_private_hosts, http_timeout), **({"backend": backend} if backend else {})},
        backend=_backend(backend),
    )


def _live_view(*, quiet: bool, loading: threading.Event | None = None) -> Any:
    """The live view, drawing from now on (planning progress shows before the planner exists)."""
    from planweave.planner.cli.live import LiveView

    view = LiveView(console=console(), quiet=quiet, loading=loading)
    view.start()
    return view


def _finish_planner_run(
    planner: Any, run: Any, view: Any, *, run_id: str, as_json: bool, quiet: bool, allow_failed_steps: bool = False
) -> NoReturn:
    """Run a planner coroutine with the live view; print the result and why it failed; exit with its code."""
    import asyncio

    try:
        with view:
            result = asyncio.run(run(view))
    except KeyboardInterrupt:
        if planner.store is not None:
            planner.store.set_status(run_id, "interrupted", error="interrupted by Ctrl-C")
        typer.echo(f"planweave: interrupted; resume with `planweave resume {run_id}`", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        if quiet:
            if result.answer:
                typer.echo(result.answer)
        else:
            view.print_answer(result.answer or "")
            console().print(view.summary_line(result, model=planner.model, trace_url=result.trace_url), soft_wrap=True)
        print_failure(result)
    from planweave.planner.llm import OFFLINE_HINT, OFFLINE_MODEL

    if planner.model == OFFLINE_MODEL and not quiet and not as_json:
        typer.secho(OFFLINE_HINT, err=True, dim=True)  # once per run, never in the answer
    raise typer.Exit(exit_code(result, allow_failed_steps=allow_failed_steps))


def _start_planner_run(
    *,
    model: str | None,
    api_base: str | None,
    tools: list[str] | None,
    workspace: Path,
    allow_private_hosts: bool,
    http_timeout: float,
    budget: Any,
    name: str,
    record: bool,
    quiet: bool,
    backend: str | None = None,
) -> tuple[Any, Any]:
    """Preload the model libraries, show the view, build the planner (a bad flag stops the view): (planner, view)."""
    loading = _preload_model_libraries()
    view = _live_view(quiet=quiet, loading=loading)
    try:
        planner = _planner(
            model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
            http_timeout=http_timeout, budget=budget, name=name, record=record, backend=backend,
        )
        if record:
            planner.store  # open it now: a broken store is bad input (exit 2) before anything runs
    except BaseException:
        view.stop()
        raise
    return planner, view


@app.command("run")
def run_(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    tools: ToolsOpt = None,
    workspace: WorkspaceOpt = Path("."),
    allow_private_hosts: PrivateHostsOpt = False,
    http_timeout: HttpTimeoutOpt = DEFAULT_HTTP_TIMEOUT,
    max_cost: MaxCostOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_llm_calls: MaxLLMCallsOpt = None,
    max_steps: MaxStepsOpt = None,
    max_replans: MaxReplansOpt = None,
    max_seconds: MaxSecondsOpt = None,
    name: Annotated[str, typer.Option(help="A label grouping this kind of goal in `planweave stats`.")] = "",
    session_id: Annotated[Optional[str], typer.Option(help="Langfuse session id for the trace.")] = None,
    user_id: Annotated[Optional[str], typer.Option(help="Langfuse user id for the trace.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option(help="A Langfuse tag for the trace. Repeatable.")] = None,
    record: Annotated[bool, typer.Option(help="Record the run in the run store.")] = True,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer (and why the run failed, if it did).")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
    backend: BackendOpt = None,
) -> None:
    """Plan GOAL with an LLM and run it, showing the graph live; print the answer and what it cost."""
    import uuid

    if not goal.strip():
        fail_usage("the goal is empty; say what you want done, e.g. planweave run \"what is 17 * 23\".")
    budget = _budget(
        max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
        max_replans=max_replans, max_seconds=max_seconds,
    )
    planner, view = _start_planner_run(
        model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
        http_timeout=http_timeout, budget=budget, name=name, record=record, quiet=quiet or as_json, backend=backend,
    )
    run_id = uuid.uuid4().hex[:16]
    _finish_planner_run(
        planner,
        lambda view: planner.run(
            goal, run_id=run_id, subscribers=[view], session_id=session_id, user_id=user_id, tags=tag or ()
        ),
        view,
        run_id=run_id,
        as_json=as_json,
        quiet=quiet,
        allow_failed_steps=allow_failed_steps,
    )


@app.command("plan")
def plan_(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    tools: ToolsOpt = None,
    workspace: WorkspaceOpt = Path("."),
    format_: Annotated[
        Optional[str],
        typer.Option(
            "--format", "-f",
            help="tree, mermaid, dot, json or yaml (json/yaml run with `planweave exec`); "
            "default: from the --output file's suffix, else tree.",
        ),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Plan GOAL without running it, and print the graph (`-o plan.yaml` saves it for `planweave exec`)."""
    import asyncio

    from planweave.planner.cli.render import render_plan

    if format_ is None:
        suffixes = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".mmd": "mermaid", ".dot": "dot"}
        format_ = suffixes.get(output.suffix.lower(), "tree") if output is not None else "tree"
    if format_ not in ("tree", "mermaid", "json", "yaml", "dot"):
        fail_usage(f"unknown format `{format_}`; use tree, mermaid, dot, json or yaml.")
    if not goal.strip():
        fail_usage("the goal is empty; say what you want done.")
    _preload_model_libraries()
    planner = _planner(
        model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=False,
        budget=_budget(), record=False,
    )
    plan, result = asyncio.run(planner.plan(goal))
    if not plan.steps:
        typer.echo(f"no steps needed: {result.answer or ''}", err=True)
    text = str({"json": plan.to_json, "yaml": plan.to_yaml}.get(format_, lambda: render_plan(plan, format_))())  # type: ignore[arg-type]
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n")
        typer.echo(f"wrote {output} ({plural(len(plan.steps), 'step')})", err=True)
    else:
        typer.echo(text)


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="An interrupted run's id (or a unique prefix).")],
    model: Annotated[Optional[str], typer.Option(help="litellm model (default: the run's model).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL (default: the run's).")] = None,
    tools: Annotated[
        Optional[list[str]], typer.Option("--tools", "-t", help="Tools to enable, as for `run` (default: the run's).")
    ] = None,
    workspace: Annotated[
        Optional[Path], typer.Option(help="Root directory for the file tools (default: the run's).")
    ] = None,
    allow_private_hosts: Annotated[
        Optional[bool], typer.Option(help="Let http_get reach private and loopback addresses (default: as the run did).")
    ] = None,
    http_timeout: Annotated[
        Optional[float], typer.Option("--http-timeout", min=0.001, help="Seconds each http_get call may take (default: the run's).")
    ] = None,
    max_cost: MaxCostOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_llm_calls: MaxLLMCallsOpt = None,
    max_steps: MaxStepsOpt = None,
    max_replans: MaxReplansOpt = None,
    max_seconds: MaxSecondsOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer (and why the run failed, if it did).")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
    backend: BackendOpt = None,
) -> None:
    """Continue an interrupted run: succeeded steps are reused, the rest run again. Takes `run`'s flags."""
    from planweave.executor.store import FINAL_STATUSES

    store = open_run_store()
    summary = store.summary(run_id)
    if summary.status in FINAL_STATUSES:
        fail_usage(f"run `{summary.id}` already ended ({summary.status}); nothing to resume.")
    if summary.status == "running":
        fail_usage(f"run `{summary.id}` is still running in another process; wait for it, or stop it first.")
    meta = summary.meta
    tool_specs = tools or meta.get("tool_specs")
    where = workspace or Path(meta.get("workspace", "."))
    private = bool(meta.get("allow_private_hosts")) if allow_private_hosts is None else allow_private_hosts
    timeout = http_timeout or float(meta.get("http_timeout") or DEFAULT_HTTP_TIMEOUT)
    if summary.kind == "workflow":
        llm_model, llm_base = model or meta.get("model"), api_base or meta.get("api_base")
        selected = _tools(
            tool_specs, workspace=where, allow_private_hosts=private, http_timeout=timeout,
            llm=_llm_tool(llm_model, llm_base),
        )
        state = store.get_run(summary.id).resume_state()
        workflow, result = _run_workflow(
            Path(meta["file"]),
            dict(meta.get("inputs") or {}),
            tools=selected,
            meta={**_tool_meta(tool_specs, where, private, timeout), "model": llm_model, "api_base": llm_base},
            run_id=summary.id,
            completed=state.completed,
            backend=backend or meta.get("backend"),  # default: where the run's Ray steps ran
        )
        _finish_workflow(workflow, result, title=f"workflow {workflow.name} (resumed)", as_json=as_json, quiet=quiet,
            allow_failed_steps=allow_failed_steps,
        )
    budget = _budget(
        max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
        max_replans=max_replans, max_seconds=max_seconds,
    )
    planner, view = _start_planner_run(
        model=model or meta.get("model") or None, api_base=api_base or meta.get("api_base"), tools=tool_specs,
        workspace=where, allow_private_hosts=private, http_timeout=timeout, budget=budget, name=summary.name,
        record=True, quiet=quiet or as_json, backend=backend or meta.get("backend"),
    )
    _finish_planner_run(
        planner,
        lambda view: planner.resume(summary.id, subscribers=[view]),
        view,
        run_id=summary.id,
        as_json=as_json,
        quiet=quiet,
        allow_failed_steps=allow_failed_steps,
    )


@app.command("serve")
def serve_(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar="PLANWEAVE_API_KEY", show_default=False, help="Clients must send `Authorization: Bearer KEY`."),
    ] = None,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    tools: ToolsOpt = None,
    workspace: WorkspaceOpt = Path("."),
    allow_private_hosts: PrivateHostsOpt = False,
    http_timeout: HttpTimeoutOpt = DEFAULT_HTTP_TIMEOUT,
    max_cost: MaxCostOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_llm_calls: MaxLLMCallsOpt = None,
    max_steps: MaxStepsOpt = None,
    max_replans: MaxReplansOpt = None,
    max_seconds: MaxSecondsOpt = None,
    name: Annotated[str, typer.Option(help="A label grouping the served runs in `planweave stats`.")] = "chat",
    record: Annotated[bool, typer.Option(help="Record the runs in the run store.")] = True,
    reasoning: Annotated[
        str, typer.Option(help="How plan and step progress is shown: think (<think> block), field (reasoning_content), off.")
    ] = "think",
    model_id: Annotated[str, typer.Option(help="The model name clients choose.")] = "planweave",
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = 1_000_000,
    max_messages: Annotated[int, typer.Option(help="Most messages in one conversation.")] = 200,
    max_chars: Annotated[int, typer.Option(help="Most characters in one conversation.")] = 200_000,
    max_concurrent_runs: Annotated[int, typer.Option(help="More runs at once get 429.")] = 32,
    cors_origin: Annotated[
        Optional[list[str]], typer.Option(help="A browser origin allowed to call the API. Repeatable.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the planner as an OpenAI-compatible chat API (Open WebUI, LibreChat, the openai client)."""
    # Only the launcher here: FastAPI, the planner and its tools are imported by `build`, on the
    # server's start-up thread, so `/health` answers before they are (planweave.planner.serve._launch).
    from planweave.planner.serve._launch import run_server

    if reasoning not in ("think", "field", "off"):
        fail_usage(f"unknown reasoning format `{reasoning}`; use think, field or off.")
    for option, value in (("--max-body-bytes", max_body_bytes), ("--max-messages", max_messages),
                          ("--max-chars", max_chars), ("--max-concurrent-runs", max_concurrent_runs)):
        if value <= 0:
            fail_usage(f"`{option}` must be a positive number, not {value}.")

    def build() -> Any:
        from planweave.planner.serve.app import ServerConfig, start_app

        budget = _budget(
            max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
            max_replans=max_replans, max_seconds=max_seconds,
        )
        planner = _planner(
            model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
            http_timeout=http_timeout, budget=budget, name=name, record=record,
        )
        config = ServerConfig(
            api_key=api_key or None, reasoning=reasoning, model_id=model_id, max_body_bytes=max_body_bytes,
            max_messages=max_messages, max_chars=max_chars, max_concurrent_runs=max_concurrent_runs,
            cors_origins=list(cors_origin or []),
        )
        return start_app(planner, config)

    # As the planner resolves it (`LLMConfig.resolved_model`), without importing the planner to ask.
    planning_model = model or os.environ.get("PLANWEAVE_MODEL") or "planweave/offline"

    def announce(url: str) -> None:
        typer.echo(f"planweave: serving model `{model_id}` (planning with `{planning_model}`) at {url}", err=True)

    run_server(build, host=host, port=port, api_key=api_key or None, log_level=log_level, on_start=announce)


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="A workflow or saved plan file.")],
    tools: ToolsOpt = None,
) -> None:
    """Check a workflow or plan file against the tools (`exec`'s) without running it."""
    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import load_workflow

    workflow = load_workflow(file)
    validate_plan(
        workflow,
        _tools(tools, workspace=Path("."), allow_private_hosts=False, http_timeout=DEFAULT_HTTP_TIMEOUT,
               llm=_llm_tool(None, None)),
    )
    typer.echo(f"{file}: valid ({plural(len(workflow.plan.steps), 'step')})")


@app.command("tools")
def tools_(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List the tools plans and workflows can use (the built-in ones and `llm`), with their arguments."""
    from planweave.tools.base import ToolRegistry
    from planweave.tools.builtin import builtin_tools

    registry = ToolRegistry([*builtin_tools(), _llm_tool(None, None)])
    if as_json:
        typer.echo(json.dumps(registry.catalogue(), indent=2))
        return
    print_tools(registry)


register(app)  # runs, show, stats, prune, delete, graph


def main() -> None:
    """Console entry point: maps errors to exit codes (2 bad input, 1 failed run, 130 Ctrl-C)."""
    global _owns_process
    _owns_process = True
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        app()  # standalone: usage errors exit 2 with click's message, `typer.Exit` exits with its code
    except KeyboardInterrupt:
        typer.echo("planweave: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # Imported here, not above: `tools` pulls in httpx and the built-in tools, which
        # `planweave --help` does not need.
        from planweave.tools.errors import PlanweaveError, SetupError

        if _debug or not isinstance(exc, PlanweaveError):
            raise
        typer.echo(f"planweave: error: {exc}", err=True)
        sys.exit(EXIT_USAGE if isinstance(exc, SetupError) else EXIT_FAILED)


if __name__ == "__main__":
    main()
