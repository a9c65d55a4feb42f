"""The `planweave` command line. Thin: parse, call the library, render.

Heavy modules (litellm, the executor, networkx) are imported inside the commands,
so `planweave --help` stays fast. What is printed lives in `planweave.planner.cli.output`; the
run-store commands (runs, show, stats, prune, delete, graph) in `planweave.planner.cli.runs`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from planweave.planner.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    console,
    exit_code,
    fail_usage,
    failed_steps_note,
    print_tools,
    print_workflow_result,
    quiet_line,
)
from planweave.planner.cli.runs import open_run_store, register

if TYPE_CHECKING:
    from planweave.executor.result import RunResult

app = typer.Typer(
    name="planweave",
    help="Plan a graph of tool calls with an LLM and run it in parallel; or run a hand-written workflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_debug = False


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


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


def _run_workflow(
    file: Path,
    inputs: dict[str, Any],
    *,
    workspace: Path,
    allow_private_hosts: bool,
    run_id: str | None = None,
    completed: dict[str, Any] | None = None,
    record: bool = True,
) -> tuple[Any, RunResult]:
    """Load, validate, record and run a workflow file (shared by `exec` and `resume`)."""
    import asyncio
    import uuid

    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import load_workflow
    from planweave.tools.builtin import builtin_tools

    workflow = load_workflow(file)
    tools = builtin_tools(workspace=workspace, allow_private_hosts=allow_private_hosts)
    validate_plan(workflow, tools)
    unknown = set(inputs) - set(workflow.inputs)
    if workflow.inputs and unknown:
        fail_usage(
            f"unknown input {', '.join(f'`{k}`' for k in sorted(unknown))} for workflow `{workflow.name}`; "
            f"its inputs are {', '.join(f'`{k}`' for k in workflow.inputs)}."
        )
    run_id = run_id or uuid.uuid4().hex[:16]
    store = open_run_store() if record else None
    subscribers = []
    if store is not None:
        meta = {
            "file": str(file.resolve()),
            "inputs": inputs,
            "workspace": str(workspace.resolve()),
            "allow_private_hosts": allow_private_hosts,
        }
        subscribers.append(store.recorder(kind="workflow", name=workflow.name, meta=meta))
    from planweave.planner.tracing.subscriber import create_tracer

    tracer = create_tracer(name=workflow.name, planner=False, tags=["workflow"])
    if tracer is not None:
        subscribers.append(tracer)

    async def go() -> RunResult:
        try:
            return await workflow.run(tools, inputs=inputs, run_id=run_id, completed=completed, subscribers=subscribers)
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


@app.command("exec")
def exec_(
    file: Annotated[Path, typer.Argument(help="A workflow or saved plan: .yaml, .yml, .json or .py.")],
    input_: Annotated[
        Optional[list[str]], typer.Option("--input", "-i", help="An input as KEY=VALUE (JSON values allowed). Repeatable.")
    ] = None,
    workspace: Annotated[
        Path, typer.Option(help="Root directory for the file tools (read_file, write_file, list_files).")
    ] = Path("."),
    allow_private_hosts: Annotated[
        bool, typer.Option(help="Let http_get reach private and loopback addresses.")
    ] = False,
    record: Annotated[bool, typer.Option(help="Record the run in the run store (for show/resume/stats).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; use the exit code.")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
) -> None:
    """Run a workflow or saved plan file with the built-in tools."""
    workflow, result = _run_workflow(
        file, _parse_inputs(input_ or []), workspace=workspace, allow_private_hosts=allow_private_hosts, record=record
    )
    print_workflow_result(result, title=f"workflow {workflow.name}", as_json=as_json, quiet=quiet)
    raise typer.Exit(exit_code(result, allow_failed_steps=allow_failed_steps))


def _budget(**limits: Any) -> Any:
    from planweave.planner.budget import Budget

    return Budget(**{k: v for k, v in limits.items() if v is not None})


ModelOpt = Annotated[
    Optional[str], typer.Option(help="litellm model, e.g. openai/gpt-4o-mini (default: PLANWEAVE_MODEL, else offline).")
]
ApiBaseOpt = Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")]
WorkspaceOpt = Annotated[Path, typer.Option(help="Root directory for the file tools.")]
PrivateHostsOpt = Annotated[bool, typer.Option(help="Let http_get reach private addresses.")]
MaxCostOpt = Annotated[Optional[float], typer.Option(help="Budget of each run: most USD to spend.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most tokens.")]
MaxLLMCallsOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most LLM calls.")]
MaxStepsOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most steps.")]
MaxReplansOpt = Annotated[Optional[int], typer.Option(help="Budget of each run: most replans.")]
MaxSecondsOpt = Annotated[Optional[float], typer.Option(help="Budget of each run: wall-clock seconds.")]


ToolsOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--tools",
        "-t",
        help="Tools to enable: built-in names (calculator,http_get,...), a module, a .py file or module:attr. "
        "Repeatable; default all built-in tools.",
    ),
]


def _planner(
    *,
    model: str | None,
    api_base: str | None,
    tools: list[str] | None,
    workspace: Path,
    allow_private_hosts: bool,
    budget: Any,
    name: str = "",
    record: bool = True,
) -> Any:
    from planweave.planner.core import Planner
    from planweave.tools.builtin import select_tools

    selected = select_tools(tools or [], workspace=workspace, allow_private_hosts=allow_private_hosts)
    meta = {
        "tool_specs": list(tools or []),
        "workspace": str(workspace.resolve()),
        "allow_private_hosts": allow_private_hosts,
    }
    return Planner(
        model=model,
        api_base=api_base,
        tools=selected,
        budget=budget,
        name=name,
        store=None if record else False,
        meta=meta,
    )


def _finish_planner_run(
    planner: Any, run: Any, *, run_id: str, as_json: bool, quiet: bool, allow_failed_steps: bool = False
) -> None:
    """Run a planner coroutine with the live view; print the result; exit with its code."""
    import asyncio

    from planweave.planner.cli.live import LiveView

    view = LiveView(console=console(), quiet=quiet or as_json)
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
            typer.echo(result.answer or "")
            if line := quiet_line(result):
                typer.echo(line, err=True)
        else:
            view.print_answer(result.answer or "")
            summary = view.summary_line(result, model=planner.model, trace_url=result.trace_url)
            if note := failed_steps_note(result):
                summary += f" | {note}"
            console().print(summary, soft_wrap=True)
        if result.status == "failed" and result.error:
            typer.echo(f"planweave: error: {result.error}", err=True)  # why, in one line, in every mode
    from planweave.planner.llm import OFFLINE_HINT, OFFLINE_MODEL

    if planner.model == OFFLINE_MODEL and not quiet and not as_json:
        typer.secho(OFFLINE_HINT, err=True, dim=True)  # once per run, never in the answer
    raise typer.Exit(exit_code(result, allow_failed_steps=allow_failed_steps))


@app.command("run")
def run_(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    tools: ToolsOpt = None,
    workspace: WorkspaceOpt = Path("."),
    allow_private_hosts: PrivateHostsOpt = False,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer.")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
) -> None:
    """Plan GOAL with an LLM and run it, showing the graph live; print the answer and what it cost."""
    import uuid

    if not goal.strip():
        fail_usage("the goal is empty; say what you want done, e.g. planweave run \"what is 17 * 23\".")
    budget = _budget(
        max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
        max_replans=max_replans, max_seconds=max_seconds,
    )
    planner = _planner(
        model=model, api_base=api_base, tools=tools, workspace=workspace,
        allow_private_hosts=allow_private_hosts, budget=budget, name=name, record=record,
    )
    if record:
        planner.store  # open it now: a broken store is bad input (exit 2) before anything runs
    run_id = uuid.uuid4().hex[:16]
    _finish_planner_run(
        planner,
        lambda view: planner.run(
            goal, run_id=run_id, subscribers=[view], session_id=session_id, user_id=user_id, tags=tag or ()
        ),
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
        str, typer.Option("--format", "-f", help="tree, mermaid, json or yaml (json/yaml run with `planweave exec`).")
    ] = "tree",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Plan GOAL without running it, and print the graph."""
    import asyncio

    from planweave.planner.cli.render import render_plan

    if format_ not in ("tree", "mermaid", "json", "yaml", "dot"):
        fail_usage(f"unknown format `{format_}`; use tree, mermaid, dot, json or yaml.")
    if not goal.strip():
        fail_usage("the goal is empty; say what you want done.")
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
        typer.echo(f"wrote {output} ({len(plan.steps)} steps)", err=True)
    else:
        typer.echo(text)


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="An interrupted run's id (or a unique prefix).")],
    model: Annotated[Optional[str], typer.Option(help="litellm model (default: the run's model).")] = None,
    api_base: ApiBaseOpt = None,
    tools: ToolsOpt = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Root directory for the file tools.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer.")] = False,
    allow_failed_steps: AllowFailedStepsOpt = False,
) -> None:
    """Continue an interrupted run: succeeded steps are reused, the rest run again."""
    from planweave.executor.store import FINAL_STATUSES

    store = open_run_store()
    summary = store.summary(run_id)
    if summary.status in FINAL_STATUSES:
        fail_usage(f"run `{summary.id}` already ended ({summary.status}); nothing to resume.")
    if summary.status == "running":
        fail_usage(f"run `{summary.id}` is still running in another process; wait for it, or stop it first.")
    meta = summary.meta
    if summary.kind == "workflow":
        state = store.get_run(summary.id).resume_state()
        workflow, result = _run_workflow(
            Path(meta["file"]),
            dict(meta.get("inputs") or {}),
            workspace=workspace or Path(meta.get("workspace", ".")),
            allow_private_hosts=bool(meta.get("allow_private_hosts")),
            run_id=summary.id,
            completed=state.completed,
        )
        print_workflow_result(result, title=f"workflow {workflow.name} (resumed)", as_json=as_json, quiet=quiet)
        raise typer.Exit(exit_code(result, allow_failed_steps=allow_failed_steps))
    planner = _planner(
        model=model or meta.get("model") or None,
        api_base=api_base or meta.get("api_base"),
        tools=tools or meta.get("tool_specs"),
        workspace=workspace or Path(meta.get("workspace", ".")),
        allow_private_hosts=bool(meta.get("allow_private_hosts")),
        budget=_budget(),
        name=summary.name,
    )
    _finish_planner_run(
        planner,
        lambda view: planner.resume(summary.id, subscribers=[view]),
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
    from planweave.planner.serve.app import ServerConfig, serve

    if reasoning not in ("think", "field", "off"):
        fail_usage(f"unknown reasoning format `{reasoning}`; use think, field or off.")
    for option, value in (("--max-body-bytes", max_body_bytes), ("--max-messages", max_messages),
                          ("--max-chars", max_chars), ("--max-concurrent-runs", max_concurrent_runs)):
        if value <= 0:
            fail_usage(f"`{option}` must be a positive number, not {value}.")
    budget = _budget(
        max_cost_usd=max_cost, max_tokens=max_tokens, max_llm_calls=max_llm_calls, max_steps=max_steps,
        max_replans=max_replans, max_seconds=max_seconds,
    )
    planner = _planner(
        model=model, api_base=api_base, tools=tools, workspace=workspace,
        allow_private_hosts=allow_private_hosts, budget=budget, name=name, record=record,
    )
    config = ServerConfig(
        api_key=api_key or None, reasoning=reasoning, model_id=model_id, max_body_bytes=max_body_bytes,
        max_messages=max_messages, max_chars=max_chars, max_concurrent_runs=max_concurrent_runs,
        cors_origins=list(cors_origin or []),
    )

    def announce(url: str) -> None:
        typer.echo(f"planweave: serving model `{model_id}` (planning with `{planner.model}`) at {url}", err=True)

    serve(planner, host=host, port=port, config=config, log_level=log_level, on_start=announce)


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="A workflow or saved plan file.")],
) -> None:
    """Check a workflow or plan file against the built-in tools without running it."""
    from planweave.executor.graph import validate_plan
    from planweave.executor.workflow import load_workflow
    from planweave.tools.builtin import builtin_tools

    workflow = load_workflow(file)
    validate_plan(workflow, builtin_tools())
    typer.echo(f"{file}: valid ({len(workflow.plan.steps)} steps)")


@app.command("tools")
def tools_(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List the built-in tools with their argument schemas."""
    from planweave.tools.base import ToolRegistry
    from planweave.tools.builtin import builtin_tools

    registry = ToolRegistry(builtin_tools())
    if as_json:
        typer.echo(json.dumps(registry.catalogue(), indent=2))
        return
    print_tools(registry)


register(app)  # runs, show, stats, prune, delete, graph


def main() -> None:
    """Console entry point: maps errors to exit codes (2 bad input, 1 failed run, 130 Ctrl-C)."""
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
