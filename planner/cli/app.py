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
from planweave.planner.cli.cache import cache_app
from planweave.planner.cli.runs import open_run_store, register
from planweave.planner.cli.store_cmd import store_app

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
    store: Annotated[
        Optional[str],
        typer.Option(
            "--store", metavar="URL",
            help="The run store for every command: a postgresql:// URL (needs planweave[postgres]) or a SQLite "
            "file (default: $PLANWEAVE_STORE_URL, else $PLANWEAVE_HOME/runs.db).",
        ),
    ] = None,
) -> None:
    global _debug
    _debug = debug
    if store:
        from planweave.executor.store import STORE_URL_ENV

        os.environ[STORE_URL_ENV] = store  # this process and those it starts (resume, serve, mcp) use it


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

McpOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--mcp",
        help="An MCP server whose tools plans may use: a command line (`python server.py`) or a Streamable HTTP "
        "URL. Repeatable.",
    ),
]
McpConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--mcp-config", help="A JSON file of MCP servers in the `mcpServers` format of desktop assistants."),
]


def _mcp_meta(specs: list[str] | None, config: Path | None) -> dict[str, Any]:
    """The MCP flags as recorded with a run, for `resume`."""
    from planweave.planner.resuming import mcp_meta

    return mcp_meta(specs, config)


def _mcp_servers(specs: list[str] | None, config: Path | None) -> list[Any]:
    """The servers `--mcp` and `--mcp-config` name (a bad value or file is bad input: exit 2)."""
    if not specs and config is None:
        return []
    from planweave.planner.resuming import mcp_servers
    from planweave.tools.errors import MCPConfigError

    try:
        return mcp_servers(specs, config)
    except MCPConfigError as exc:
        fail_usage(str(exc))


DEFAULT_HTTP_TIMEOUT = 10.0  # as `planweave.planner.resuming.DEFAULT_HTTP_TIMEOUT` (not imported: --help stays fast)
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
    from planweave.planner.resuming import settings_tools

    return settings_tools(
        specs, workspace=workspace, allow_private_hosts=allow_private_hosts, http_timeout=http_timeout, llm=llm
    )


def _backend_spec_check(spec: str) -> None:
    if spec != "local" and spec != "ray" and not spec.startswith(("ray:", "ray://")):
        fail_usage(f"--backend `{spec}` is not known; use `local`, `ray`, `ray:HOST:PORT` or `ray://HOST:PORT`.")


def _backend(spec: str | None) -> Any:
    """The executor backend `--backend` names (None: the default, local), connected now so a bad
    address or a missing Ray is bad input (exit 2) before any step runs."""
    if spec is None or spec == "local":
        return None
    _backend_spec_check(spec)
    from planweave.planner.resuming import connect_backend

    return connect_backend(spec)


def _llm_tool(model: str | None, api_base: str | None) -> Any:
    """The `llm` tool for workflow files (`exec`, `validate`, `tools`), as the planner gives it to its plans."""
    from planweave.planner.llm_tool import llm_tool

    # The model: `--model`, else the workflow's `model:`, else PLANWEAVE_MODEL, else offline.
    return llm_tool(model, api_base=api_base)


def _run_workflow(
    file: Path,
    inputs: dict[str, Any],
    *,
    tools: list[Any],
    meta: dict[str, Any],
    run_id: str | None = None,
    completed: dict[str, Any] | None = None,
    record: bool = True,
    mcp: list[Any] | None = None,
    trusted_modules: list[str] | None = None,
    trust_all_handlers: bool = False,
    answers: dict[str, Any] | None = None,
    requests: dict[str, Any] | None = None,
    backend: str | None = None,
) -> tuple[Any, RunResult]:
    """Load, validate, record and run a workflow file (shared by `exec`, `resume` and `respond`).

    On a terminal, steps that wait for a person ask inline; elsewhere the run ends `waiting` (exit 3)."""
    import asyncio
    import uuid

    from planweave.planner.resuming import check_inputs, load_checked_workflow, run_workflow
    from planweave.tools.errors import ConfigError

    workflow = load_checked_workflow(file, inputs, tools=tools, meta=meta, mcp=mcp,
                                     trusted_modules=trusted_modules or (), trust_all_handlers=trust_all_handlers)
    try:
        check_inputs(workflow, inputs)
    except ConfigError as exc:
        fail_usage(str(exc))
    run_id = run_id or uuid.uuid4().hex[:16]
    executor_backend = _backend(backend)
    store = open_run_store() if record else None
    from planweave.planner.cli.ask import can_ask, terminal_responder

    responder = terminal_responder(None) if can_ask() else None
    try:
        result = asyncio.run(run_workflow(
            workflow, file, inputs, store=store, tools=tools, meta=meta, run_id=run_id, completed=completed,
            answers=answers, requests=requests, backend=executor_backend, backend_spec=backend, responder=responder,
        ))
    except KeyboardInterrupt:
        if store is not None:
            store.set_status(run_id, "interrupted", error="interrupted by Ctrl-C")
        typer.echo(f"planweave: interrupted; resume with `planweave resume {run_id}`", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
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
    from planweave.executor.masking import Masker, SecretInputs

    masker = Masker.from_env()  # known secrets (secret inputs, environment keys) a tool echoed stay hidden
    SecretInputs(result.inputs, masker).remember_in(masker)
    result = type(result).model_validate(masker.values_only().mask(result.model_dump(mode="json")))
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
    from planweave.planner.resuming import tool_meta

    return tool_meta(specs, workspace, allow_private_hosts, http_timeout)


TrustModuleOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--trust-module",
        help="A module (and its submodules) the workflow file may take Python handlers from, besides the "
        "modules beside the file and planweave's tools. Repeatable.",
    ),
]
TrustAllHandlersOpt = Annotated[
    bool,
    typer.Option(
        "--trust-all-handlers",
        help="Let the workflow file import handlers from any module (importing a module runs its code).",
    ),
]


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
    mcp: McpOpt = None,
    mcp_config: McpConfigOpt = None,
    trust_module: TrustModuleOpt = None,
    trust_all_handlers: TrustAllHandlersOpt = False,
    save_results: Annotated[
        Optional[Path],
        typer.Option("--save-results", help="Also write the result to DIR/<workflow>_<UTC timestamp>.json.",
                     metavar="DIR"),
    ] = None,
    backend: BackendOpt = None,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Check the workflow and its inputs, record the run `queued` and return at once: "
                     "`planweave worker` (or a `serve` replica) runs it."),
    ] = False,
) -> None:
    """Run a workflow or saved plan file (`planweave plan GOAL -o FILE`) with the built-in tools and `llm`.

    With `--detach`, nothing runs here: the run is queued for `planweave worker`."""
    servers = _mcp_servers(mcp, mcp_config)
    selected = _tools(
        tools, workspace=workspace, allow_private_hosts=allow_private_hosts, http_timeout=http_timeout,
        llm=_llm_tool(model, api_base),
    )
    meta = {**_tool_meta(tools, workspace, allow_private_hosts, http_timeout), "model": model, "api_base": api_base,
            **_mcp_meta(mcp, mcp_config), "allow_failed_steps": allow_failed_steps,
            # the user's trust decisions, so that `resume` loads the same file the same way
            "trusted_modules": list(trust_module or []), "trust_all_handlers": trust_all_handlers}
    if detach:
        _detach(file, _parse_inputs(input_ or []), tools=selected, meta=meta, record=record, backend=backend,
                save_results=save_results, as_json=as_json)
    workflow, result = _run_workflow(
        file, _parse_inputs(input_ or []), tools=selected, meta=meta, record=record, mcp=servers,
        trusted_modules=trust_module, trust_all_handlers=trust_all_handlers, backend=backend,
    )
    if save_results is not None:
        _save_results(result, save_results, workflow.name)
    _finish_workflow(workflow, result, title=f"workflow {workflow.name}", as_json=as_json, quiet=quiet,
        allow_failed_steps=allow_failed_steps,
    )


def _detach(
    file: Path, inputs: dict[str, Any], *, tools: list[Any], meta: dict[str, Any], record: bool, backend: str | None,
    save_results: Path | None, as_json: bool,
) -> NoReturn:
    """`exec --detach`: check the workflow as `exec` does, record it `queued`, say how to follow it."""
    from planweave.planner.worker import enqueue_workflow
    from planweave.tools.errors import ConfigError

    if not record:
        fail_usage("`--detach` records the run for a worker to run it; drop `--no-record`.")
    if save_results is not None:
        fail_usage("`--save-results` needs the run's result here; drop it with `--detach` "
                   "(`planweave show RUN_ID` shows a queued run's result once a worker ran it).")
    if backend is not None:
        _backend_spec_check(backend)  # connected by the worker that runs it
    try:
        run_id = enqueue_workflow(open_run_store(), file, inputs, tools=tools,
                                  meta={**meta, **({"backend": backend} if backend else {})})
    except ConfigError as exc:  # an unknown or secret input, a model with no key: bad input
        fail_usage(str(exc))
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, "status": "queued"}))
    else:
        typer.echo(run_id)
        typer.echo(f"planweave: queued run {run_id}; `planweave worker` runs it, `planweave show {run_id}` follows it.",
                   err=True)
    raise typer.Exit(EXIT_OK)


def _save_results(result: RunResult, directory: Path, name: str) -> None:
    from planweave.executor.saved import save_results
    from planweave.tools.errors import ConfigError

    try:
        path = save_results(result, directory, name=name)
    except (ConfigError, OSError) as exc:
        fail_usage(f"cannot save the results in `{directory}`: {exc}")
    typer.echo(f"planweave: saved the results to {path}", err=True)


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
    mcp: list[Any] | None = None,
    mcp_meta: dict[str, Any] | None = None,
    approve: list[str] | None = None,
    on_input: Any = None,
    answer_within: float | None = None,
    backend: str | None = None,
) -> Any:
    from planweave.planner.resuming import build_planner

    if backend is not None:
        _backend_spec_check(backend)
    return build_planner(
        model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
        budget=budget, http_timeout=http_timeout, name=name, store=None if record else False, mcp=mcp,
        mcp_meta=mcp_meta, approve=approve, on_input=on_input, answer_within=answer_within, backend=backend,
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
    # Known secrets (secret inputs, environment keys) that a tool echoed stay hidden here too.
    result = type(result).model_validate(planner.masker.values_only().mask(result.model_dump(mode="json")))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        if quiet:
            if result.answer:
                from planweave.planner.cli.terminal import clean

                typer.echo(clean(result.answer))
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
    mcp: list[Any] | None = None,
    mcp_meta: dict[str, Any] | None = None,
    approve: list[str] | None = None,
    answer_within: float | None = None,
    backend: str | None = None,
) -> tuple[Any, Any]:
    """Preload the model libraries, show the view, build the planner (a bad flag stops the view): (planner, view).

    On a terminal, steps that wait for a person ask inline; elsewhere the run ends `waiting` (exit 3)."""
    from planweave.planner.cli.ask import can_ask, terminal_responder

    loading = _preload_model_libraries()
    view = _live_view(quiet=quiet, loading=loading)
    try:
        planner = _planner(
            model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
            http_timeout=http_timeout, budget=budget, name=name, record=record, mcp=mcp, mcp_meta=mcp_meta,
            approve=approve,
            on_input=terminal_responder(view) if can_ask() else None, answer_within=answer_within, backend=backend,
        )
        if record:
            planner.store  # open it now: a broken store is bad input (exit 2) before anything runs
    except BaseException:
        view.stop()
        raise
    return planner, view


ApproveOpt = Annotated[
    Optional[list[str]],
    typer.Option("--approve", help="Tools whose every call a person approves first, e.g. `write_file,http_get`. Repeatable."),
]


AnswerWithinOpt = Annotated[
    Optional[float],
    typer.Option("--answer-within", min=0.0, help="Seconds a person has to answer each request; then it is denied "
                 "(a question gets its default)."),
]


def _approve_list(specs: list[str] | None) -> list[str]:
    return [s.strip() for spec in specs or [] for s in spec.split(",") if s.strip()]


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
    mcp: McpOpt = None,
    mcp_config: McpConfigOpt = None,
    approve: ApproveOpt = None,
    answer_within: AnswerWithinOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Plan GOAL with an LLM and run it, showing the graph live; print the answer and what it cost.

    Steps that need a person (approvals, `ask_user` questions) ask on the terminal; without one the
    run stops `waiting` (exit 3) and `planweave respond RUN_ID ...` continues it."""
    import uuid

    if not goal.strip():
        fail_usage("the goal is empty; say what you want done, e.g. planweave run \"what is 17 * 23\".")
    servers = _mcp_servers(mcp, mcp_config)
    budget = _budget(
        max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
        max_replans=max_replans, max_seconds=max_seconds,
    )
    planner, view = _start_planner_run(
        model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
        http_timeout=http_timeout, budget=budget, name=name, record=record, quiet=quiet or as_json, mcp=servers,
        mcp_meta=_mcp_meta(mcp, mcp_config),
        approve=_approve_list(approve), answer_within=answer_within, backend=backend,
    )
    planner.meta["allow_failed_steps"] = allow_failed_steps  # for `resume` (the budget is recorded by the run)
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
    mcp: McpOpt = None,
    mcp_config: McpConfigOpt = None,
    allow_failed_steps: Annotated[
        Optional[bool],
        typer.Option(
            "--allow-failed-steps/--no-allow-failed-steps",
            help="Exit 0 when the run ends `partial` (default: as the run was started).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Take the run over even if a live process holds its lease (it is stuck, or on a host that is gone)."),
    ] = False,
    approve: Annotated[
        Optional[list[str]],
        typer.Option("--approve", help="Tools whose every call a person approves first (default: the run's)."),
    ] = None,
    answer_within: Annotated[
        Optional[float],
        typer.Option("--answer-within", min=0.0, help="Seconds a person has to answer each request (default: the run's)."),
    ] = None,
    backend: BackendOpt = None,
) -> None:
    """Continue an interrupted run: succeeded steps are reused, the rest run again. Takes `run`'s flags;
    those not given are the run's own (its model, tools, budget and flags, as recorded)."""
    import asyncio

    from planweave.planner.resuming import ResumeOverrides, prepare_resume
    from planweave.tools.errors import ConfigError

    if backend is not None:
        _backend_spec_check(backend)
    overrides = ResumeOverrides(
        model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
        http_timeout=http_timeout, mcp=mcp, mcp_config=mcp_config, allow_failed_steps=allow_failed_steps,
        approve=_approve_list(approve), answer_within=answer_within, backend=backend,
        budget=dict(max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
                    max_replans=max_replans, max_seconds=max_seconds),
    )
    store = open_run_store()
    try:
        # Atomic: of two `resume`s of one run, one gets the lease; the other stops (`RunLeasedError`, exit 2).
        resumption = prepare_resume(store, run_id, force=force, overrides=overrides)
    except ConfigError as exc:  # the run ended, its secret inputs are gone, a flag is wrong: bad input
        fail_usage(str(exc))
    summary, lease = resumption.summary, resumption.lease
    if lease.forced:
        typer.echo(f"planweave: took run {summary.id} over from `{lease.previous_owner}`, whose lease was live", err=True)
    if resumption.workflow is not None:
        from planweave.planner.cli.ask import can_ask, terminal_responder

        workflow = resumption.workflow
        responder = terminal_responder(None) if can_ask() else None
        try:
            result = asyncio.run(resumption.run_workflow(responder=responder))
        except KeyboardInterrupt:
            store.set_status(summary.id, "interrupted", error="interrupted by Ctrl-C")
            typer.echo(f"planweave: interrupted; resume with `planweave resume {summary.id}`", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        _finish_workflow(workflow, result, title=f"workflow {workflow.name} (resumed)", as_json=as_json, quiet=quiet,
            allow_failed_steps=resumption.allow_failed_steps,
        )
    from planweave.planner.cli.ask import can_ask, terminal_responder

    loading = _preload_model_libraries()
    view = _live_view(quiet=quiet or as_json, loading=loading)
    try:
        planner = resumption.planner(on_input=terminal_responder(view) if can_ask() else None, store=store)
    except BaseException:
        view.stop()
        raise
    _finish_planner_run(
        planner,
        lambda view: planner.resume(summary.id, subscribers=[view]),
        view,
        run_id=summary.id,
        as_json=as_json,
        quiet=quiet,
        allow_failed_steps=resumption.allow_failed_steps,
    )


@app.command("respond")
def respond(
    run_id: Annotated[str, typer.Argument(help="A waiting run's id (or a unique prefix): `planweave runs --status waiting`.")],
    step: Annotated[Optional[str], typer.Option("--step", help="The waiting step to answer (needed when several wait).")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve the step's call as shown.")] = False,
    deny: Annotated[
        Optional[str],
        typer.Option("--deny", flag_value="", is_flag=False, help="Deny the step (optionally with a reason): it fails with it."),
    ] = None,
    answer: Annotated[Optional[str], typer.Option("--answer", help="Answer the step's question with this text.")] = None,
    edit: Annotated[Optional[str], typer.Option("--edit", help="Approve the call with these arguments instead (JSON).")] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer (and why the run failed, if it did).")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
) -> None:
    """Answer a waiting run (approve, deny, edit, or answer a question) and continue it: the same run, no new plan."""
    from planweave.executor.requests import InputAnswer

    given = [name for name, value in (("--approve", approve or None), ("--deny", deny), ("--answer", answer),
                                      ("--edit", edit)) if value is not None]
    if len(given) != 1:
        fail_usage("give exactly one of `--approve`, `--deny [REASON]`, `--answer TEXT` or `--edit JSON`.")
    if edit is not None:
        try:
            args = json.loads(edit)
        except json.JSONDecodeError as exc:
            fail_usage(f"`--edit` is not JSON ({exc.msg}); give the arguments as a JSON object, e.g. '{{\"to\": \"ann\"}}'.")
        if not isinstance(args, dict):
            fail_usage("`--edit` must be a JSON object of arguments, e.g. '{\"to\": \"ann\"}'.")
        reply = InputAnswer.edit(args, by="respond")
    elif answer is not None:
        reply = InputAnswer.reply(answer, by="respond")
    elif deny is not None:
        reply = InputAnswer.deny(deny, by="respond")
    else:
        reply = InputAnswer.approve(by="respond")
    store = open_run_store()
    summary = store.summary(run_id)
    if summary.status != "waiting":
        fail_usage(f"run `{summary.id}` is not waiting for anyone (it is {summary.status}); "
                   "`planweave runs --status waiting` lists the runs that are.")
    meta = summary.meta
    if summary.kind == "workflow":
        from planweave.executor.requests import pick_answers

        tool_specs = meta.get("tool_specs")
        selected = _tools(
            tool_specs, workspace=Path(meta.get("workspace", ".")), allow_private_hosts=bool(meta.get("allow_private_hosts")),
            http_timeout=float(meta.get("http_timeout") or DEFAULT_HTTP_TIMEOUT),
            llm=_llm_tool(meta.get("model"), meta.get("api_base")),
        )
        state = store.get_run(summary.id).resume_state()
        answers = pick_answers(state.requests, reply, step_id=step, run_id=summary.id, tools={t.name: t for t in selected})
        workflow, result = _run_workflow(
            Path(meta["file"]), dict(meta.get("inputs") or {}), tools=selected,
            meta={k: v for k, v in meta.items() if k not in ("file", "inputs", "resumed_at")}, run_id=summary.id,
            completed=state.completed, answers={**state.answers, **answers}, requests=state.requests,
        )
        _finish_workflow(workflow, result, title=f"workflow {workflow.name}", as_json=as_json, quiet=quiet,
            allow_failed_steps=allow_failed_steps,
        )
    planner, view = _start_planner_run(
        model=meta.get("model") or None, api_base=meta.get("api_base"), tools=meta.get("tool_specs"),
        workspace=Path(meta.get("workspace", ".")), allow_private_hosts=bool(meta.get("allow_private_hosts")),
        http_timeout=float(meta.get("http_timeout") or DEFAULT_HTTP_TIMEOUT), budget=_budget(), name=summary.name,
        record=True, quiet=quiet or as_json, approve=list(meta.get("approve") or []),
        answer_within=meta.get("answer_within"),
    )
    _finish_planner_run(
        planner,
        lambda view: planner.respond(summary.id, reply, step_id=step, subscribers=[view]),
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
    allowed_host: Annotated[
        Optional[list[str]],
        typer.Option(
            envvar="PLANWEAVE_ALLOWED_HOSTS",
            help="A Host name (NAME or NAME:PORT) to answer besides loopback ones, e.g. behind a proxy. Repeatable.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    mcp: McpOpt = None,
    mcp_config: McpConfigOpt = None,
    shutdown_grace: Annotated[
        float,
        typer.Option(min=0, help="On SIGINT/SIGTERM, seconds running runs may go on before they are interrupted (resumable)."),
    ] = 5.0,
    approve: ApproveOpt = None,
    takeover: Annotated[
        bool,
        typer.Option(help="Finish the runs of replicas that died (their lease expired) and queued runs, from the store."),
    ] = True,
    backend: BackendOpt = None,
) -> None:
    """Serve the planner as an OpenAI-compatible chat API (Open WebUI, LibreChat, the openai client).

    Steps that need a person ask in the chat; the user's next message answers."""
    # Only the launcher here: FastAPI, the planner and its tools are imported by `build`, on the
    # server's start-up thread, so `/health` answers before they are (planweave.planner.serve._launch).
    from planweave.planner.errors import ConfigError
    from planweave.planner.serve._guard import check_allowed_hosts, check_api_key, check_cors_origins
    from planweave.planner.serve._launch import run_server

    hosts = [h.strip() for value in allowed_host or [] for h in value.split(",") if h.strip()]
    try:
        api_key = check_api_key(api_key)
        check_cors_origins(list(cors_origin or []))
        check_allowed_hosts(hosts)
    except ConfigError as exc:
        fail_usage(str(exc))
    if reasoning not in ("think", "field", "off"):
        fail_usage(f"unknown reasoning format `{reasoning}`; use think, field or off.")
    if backend is not None:
        _backend_spec_check(backend)  # before serving: a bad value is bad input (exit 2)
    for option, value in (("--max-body-bytes", max_body_bytes), ("--max-messages", max_messages),
                          ("--max-chars", max_chars), ("--max-concurrent-runs", max_concurrent_runs)):
        if value <= 0:
            fail_usage(f"`{option}` must be a positive number, not {value}.")
    servers = _mcp_servers(mcp, mcp_config)

    def build() -> Any:
        from planweave.planner.serve.app import ServerConfig, start_app

        budget = _budget(
            max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
            max_replans=max_replans, max_seconds=max_seconds,
        )
        planner = _planner(
            model=model, api_base=api_base, tools=tools, workspace=workspace, allow_private_hosts=allow_private_hosts,
            http_timeout=http_timeout, budget=budget, name=name, record=record, mcp=servers,
            approve=_approve_list(approve), backend=backend,
        )
        config = ServerConfig(
            api_key=api_key or None, reasoning=reasoning, model_id=model_id, max_body_bytes=max_body_bytes,
            max_messages=max_messages, max_chars=max_chars, max_concurrent_runs=max_concurrent_runs,
            cors_origins=list(cors_origin or []), allowed_hosts=hosts, shutdown_grace_s=shutdown_grace,
            takeover=takeover,
        )
        return start_app(planner, config)

    # As the planner resolves it (`LLMConfig.resolved_model`), without importing the planner to ask.
    planning_model = model or os.environ.get("PLANWEAVE_MODEL") or "planweave/offline"

    def announce(url: str) -> None:
        typer.echo(f"planweave: serving model `{model_id}` (planning with `{planning_model}`) at {url}", err=True)

    run_server(build, host=host, port=port, api_key=api_key or None, log_level=log_level, on_start=announce,
               shutdown_grace_s=shutdown_grace)


@app.command("worker")
def worker_(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Runs to execute at once.")] = 4,
    store: Annotated[
        Optional[str],
        typer.Option("--store", metavar="URL", help="The run store to take runs from: a postgresql:// URL or a "
                     "SQLite file (default: $PLANWEAVE_STORE_URL, else $PLANWEAVE_HOME/runs.db)."),
    ] = None,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0.0, help="On SIGINT/SIGTERM, seconds runs in flight get to finish before they "
                     "are stopped and recorded `interrupted` (another worker finishes them)."),
    ] = 5.0,
    max_takeovers: Annotated[
        Optional[int],
        typer.Option("--max-takeovers", min=0, help="How many times a run whose process died may be taken over "
                     "before it is recorded `failed` (default: $PLANWEAVE_MAX_TAKEOVERS, else 3)."),
    ] = None,
) -> None:
    """Run queued runs (`exec --detach`, the API) and finish service runs whose owner died, until SIGINT/SIGTERM.

    Several workers (and `serve` replicas) can share one store: each run is taken by exactly one."""
    import asyncio
    import signal

    from planweave.planner.cli.worker_log import WorkerLog
    from planweave.planner.worker import Worker

    if store:
        from planweave.executor.store import STORE_URL_ENV

        os.environ[STORE_URL_ENV] = store  # as `planweave --store URL worker`: what its runs open uses it too
    run_store = open_run_store()
    log = WorkerLog(console())
    worker = Worker(run_store, concurrency=concurrency, grace_s=grace, on_event=log, max_takeovers=max_takeovers)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.started(run_store.path, concurrency)
        waiter = asyncio.ensure_future(stop.wait())
        runner = asyncio.ensure_future(worker.run(stop))
        await asyncio.wait([waiter, runner], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            log.stopping(len(worker.tasks), grace)
        await runner

    asyncio.run(serve())
    log.stopped(worker.stats)
    raise typer.Exit(EXIT_OK)


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="A workflow or saved plan file.")],
    tools: ToolsOpt = None,
    trust_module: TrustModuleOpt = None,
    trust_all_handlers: TrustAllHandlersOpt = False,
) -> None:
    """Check a workflow or plan file against the tools (`exec`'s) without running it."""
    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import load_workflow

    workflow = load_workflow(file, trusted_modules=trust_module or (), trust_all_handlers=trust_all_handlers)
    selected = _tools(tools, workspace=Path("."), allow_private_hosts=False, http_timeout=DEFAULT_HTTP_TIMEOUT,
                      llm=_llm_tool(None, None))
    if workflow.mcp:  # the steps may call its MCP servers' tools: list them first
        import asyncio

        from planweave.tools.base import ToolRegistry
        from planweave.tools.mcp import mcp_tools_into

        registry = ToolRegistry(selected)

        async def check() -> None:
            async with mcp_tools_into(registry, workflow.mcp):
                validate_plan(workflow, registry)

        asyncio.run(check())
    else:
        validate_plan(workflow, selected)
    typer.echo(f"{file}: valid ({plural(len(workflow.plan.steps), 'step')})")


@app.command("tools")
def tools_(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
    mcp: McpOpt = None,
    mcp_config: McpConfigOpt = None,
) -> None:
    """List the tools plans and workflows can use (the built-in ones, `llm` and any MCP server's), with their arguments."""
    from planweave.tools.base import ToolRegistry
    from planweave.tools.builtin import builtin_tools

    from planweave.tools.ask import ask_user

    registry = ToolRegistry([*builtin_tools(), _llm_tool(None, None), ask_user])
    servers = _mcp_servers(mcp, mcp_config)
    if servers:
        import asyncio

        from planweave.tools.mcp import mcp_tools_into

        async def connect() -> None:
            async with mcp_tools_into(registry, servers):
                pass  # the tools stay listed; calling them would need the servers running

        asyncio.run(connect())
    if as_json:
        typer.echo(json.dumps(registry.catalogue(), indent=2))
        return
    print_tools(registry)


@app.command("mcp")
def mcp_(
    http: Annotated[bool, typer.Option("--http", help="Serve Streamable HTTP at /mcp instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="With --http: address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --http: port to listen on.")] = 8765,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar="PLANWEAVE_API_KEY", show_default=False, help="With --http: clients must send `Authorization: Bearer KEY`."),
    ] = None,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    tools: ToolsOpt = None,
    workspace: WorkspaceOpt = Path("."),
    allow_private_hosts: PrivateHostsOpt = False,
    http_timeout: HttpTimeoutOpt = DEFAULT_HTTP_TIMEOUT,
    max_cost: MaxCostOpt = None,
    max_steps: MaxStepsOpt = None,
    max_seconds: MaxSecondsOpt = None,
    mcp: McpOpt = None,
    mcp_config: McpConfigOpt = None,
) -> None:
    """Serve planweave to MCP clients (desktop assistants, editors): run_goal, run_workflow, get_run, list_runs."""
    from planweave.planner.mcp_server import MCPSettings, serve_http, serve_stdio

    budget = {k: v for k, v in (("max_cost_usd", max_cost), ("max_steps", max_steps), ("max_seconds", max_seconds))
              if v is not None}
    settings = MCPSettings(
        model=model, api_base=api_base, tools=list(tools or []), workspace=workspace,
        allow_private_hosts=allow_private_hosts, http_timeout_s=http_timeout, budget=budget,
        mcp=_mcp_servers(mcp, mcp_config),
    )
    if not http:
        serve_stdio(settings)
        return

    def announce(url: str) -> None:
        typer.echo(f"planweave: serving MCP at {url}", err=True)

    serve_http(settings, host=host, port=port, api_key=api_key or None, on_start=announce)


register(app)  # runs, show, stats, prune, delete, graph
app.add_typer(cache_app, name="cache")
app.add_typer(store_app, name="store")


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
