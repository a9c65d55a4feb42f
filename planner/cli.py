"""The `planweave` command line. Thin: parse, call the library, render.

Heavy modules (litellm, the executor, networkx) are imported inside the commands,
so `planweave --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from executor.result import RunResult

app = typer.Typer(
    name="planweave",
    help="Plan a graph of tool calls with an LLM and run it in parallel; or run a hand-written workflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_debug = False


def _fail_usage(message: str) -> NoReturn:
    typer.echo(f"planweave: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail_usage(f"--input `{pair}` is not KEY=VALUE; for example `--input nights=5`.")
        try:
            inputs[key] = json.loads(raw)  # numbers, booleans, lists stay typed
        except json.JSONDecodeError:
            inputs[key] = raw
    return inputs


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _render_result(result: RunResult, *, title: str) -> None:
    from rich.table import Table

    colours = {"succeeded": "green", "failed": "red", "skipped": "yellow", "cancelled": "magenta"}
    table = Table(title=title, title_justify="left")
    for col in ("step", "tool", "state", "attempts", "time", "output / error"):
        table.add_column(col, overflow="fold")
    for sid, s in result.steps.items():
        shown = s.error if s.status != "succeeded" else json.dumps(s.output, ensure_ascii=False, default=str)
        if shown and len(shown) > 120:
            shown = shown[:117] + "..."
        duration = f"{s.duration_s:.2f}s" if s.duration_s is not None else "-"
        colour = colours.get(s.status, "white")
        table.add_row(sid, s.tool, f"[{colour}]{s.status}[/]", str(s.attempts), duration, shown or "")
    console = _console()
    console.print(table)
    colour = "green" if result.ok else "red"
    line = f"[{colour}]{result.status}[/] in {result.duration_s:.2f}s, run {result.run_id}"
    if result.error:
        line += f": {result.error}"
    console.print(line)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


def _store() -> Any:
    from executor.store import open_store

    return open_store()


def _age(text: str) -> float:
    """`90s`, `15m`, `12h`, `7d`, `2w` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        _fail_usage(f"`{text}` is not an age; use a number with a unit, e.g. `30m`, `12h`, `7d`.")


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

    from executor.workflow import load_workflow
    from tools.builtin import builtin_tools

    workflow = load_workflow(file)
    tools = builtin_tools(workspace=workspace, allow_private_hosts=allow_private_hosts)
    workflow.validate_with(tools)
    unknown = set(inputs) - set(workflow.inputs)
    if workflow.inputs and unknown:
        _fail_usage(
            f"unknown input {', '.join(f'`{k}`' for k in sorted(unknown))} for workflow `{workflow.name}`; "
            f"its inputs are {', '.join(f'`{k}`' for k in workflow.inputs)}."
        )
    run_id = run_id or uuid.uuid4().hex[:16]
    store = _store() if record else None
    subscribers = []
    if store is not None:
        meta = {
            "file": str(file.resolve()),
            "inputs": inputs,
            "workspace": str(workspace.resolve()),
            "allow_private_hosts": allow_private_hosts,
        }
        subscribers.append(store.recorder(kind="workflow", name=workflow.name, meta=meta))
    from planner.tracing import create_tracer

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
) -> None:
    """Run a workflow or saved plan file with the built-in tools."""
    workflow, result = _run_workflow(
        file, _parse_inputs(input_ or []), workspace=workspace, allow_private_hosts=allow_private_hosts, record=record
    )
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    elif not quiet:
        _render_result(result, title=f"workflow {workflow.name}")
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _budget(**limits: Any) -> Any:
    from planner.core import Budget

    return Budget(**{k: v for k, v in limits.items() if v is not None})


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
    from planner.core import Planner
    from tools.builtin import select_tools

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


def _finish_planner_run(planner: Any, run: Any, *, run_id: str, as_json: bool, quiet: bool) -> None:
    """Run a planner coroutine with the live view; print the result; exit with its code."""
    import asyncio

    from planner.live import LiveView

    view = LiveView(console=_console(), quiet=quiet or as_json)
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
        else:
            view.print_answer(result.answer or "")
            _console().print(view.summary_line(result, model=planner.model, trace_url=result.trace_url), soft_wrap=True)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


@app.command("run")
def run_(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: Annotated[
        Optional[str], typer.Option(help="litellm model, e.g. openai/gpt-4o-mini (default: PLANWEAVE_MODEL, else offline).")
    ] = None,
    api_base: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")] = None,
    tools: ToolsOpt = None,
    workspace: Annotated[Path, typer.Option(help="Root directory for the file tools.")] = Path("."),
    allow_private_hosts: Annotated[bool, typer.Option(help="Let http_get reach private addresses.")] = False,
    max_cost: Annotated[Optional[float], typer.Option(help="Budget: most USD to spend.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Budget: most tokens.")] = None,
    max_llm_calls: Annotated[Optional[int], typer.Option(help="Budget: most LLM calls.")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Budget: most steps.")] = None,
    max_replans: Annotated[Optional[int], typer.Option(help="Budget: most replans.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option(help="Budget: wall-clock seconds.")] = None,
    name: Annotated[str, typer.Option(help="A label grouping this kind of goal in `planweave stats`.")] = "",
    session_id: Annotated[Optional[str], typer.Option(help="Langfuse session id for the trace.")] = None,
    user_id: Annotated[Optional[str], typer.Option(help="Langfuse user id for the trace.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option(help="A Langfuse tag for the trace. Repeatable.")] = None,
    record: Annotated[bool, typer.Option(help="Record the run in the run store.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer.")] = False,
) -> None:
    """Plan GOAL with an LLM and run it, showing the graph live; print the answer and what it cost."""
    import uuid

    if not goal.strip():
        _fail_usage("the goal is empty; say what you want done, e.g. planweave run \"what is 17 * 23\".")
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
    )


@app.command("plan")
def plan_(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: Annotated[Optional[str], typer.Option(help="litellm model (default: PLANWEAVE_MODEL, else offline).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")] = None,
    tools: ToolsOpt = None,
    workspace: Annotated[Path, typer.Option(help="Root directory for the file tools.")] = Path("."),
    format_: Annotated[
        str, typer.Option("--format", "-f", help="tree, mermaid, json or yaml (json/yaml run with `planweave exec`).")
    ] = "tree",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Plan GOAL without running it, and print the graph."""
    import asyncio

    from planner.render import render_plan

    if format_ not in ("tree", "mermaid", "json", "yaml", "dot"):
        _fail_usage(f"unknown format `{format_}`; use tree, mermaid, dot, json or yaml.")
    if not goal.strip():
        _fail_usage("the goal is empty; say what you want done.")
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


@app.command("runs")
def runs_(
    status: Annotated[
        Optional[str], typer.Option(help="Only runs with this status (succeeded, failed, interrupted, ...).")
    ] = None,
    contains: Annotated[Optional[str], typer.Option("--grep", help="Only runs whose goal or name contains this.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only runs newer than this age, e.g. 12h or 7d.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List recorded runs, newest first."""
    import time

    runs = _store().list_runs(
        status=status, contains=contains, since=None if since is None else time.time() - _age(since), limit=limit
    )
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return
    from rich import box
    from rich.table import Table

    table = Table(title=f"runs ({len(runs)} shown)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run", "status", "started", "took", "cost"):
        table.add_column(col, no_wrap=True)
    table.add_column("goal / workflow", overflow="fold", ratio=1, min_width=16)
    for r in runs:
        goal = r.goal.splitlines()[0] if r.kind == "planner" and r.goal else r.name
        table.add_row(r.id, _status(r.status), _when(r.created_at), _secs(r.duration_s), _cost(r.cost_usd), goal)
    _console().print(table)


def _status(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}.get(status, "magenta")
    return f"[{colour}]{status}[/]"


def _when(ts: float | None) -> str:
    import datetime

    return "-" if ts is None else datetime.datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix), from `planweave runs`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Export the whole run (summary, steps, events) as JSON.")] = False,
) -> None:
    """Show one run as a tree: rounds, steps with timings, LLM calls with tokens and cost."""
    store = _store()
    if as_json:
        typer.echo(json.dumps(store.export(run_id), indent=2, ensure_ascii=False, default=str))
        return
    from planner.render import run_tree

    record = store.get_run(run_id)
    _console().print(run_tree(record))


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="An interrupted run's id (or a unique prefix).")],
    model: Annotated[Optional[str], typer.Option(help="litellm model (default: the run's model).")] = None,
    api_base: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")] = None,
    tools: ToolsOpt = None,
    workspace: Annotated[Optional[Path], typer.Option(help="Root directory for the file tools.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer.")] = False,
) -> None:
    """Continue an interrupted run: succeeded steps are reused, the rest run again."""
    from executor.store import FINAL_STATUSES

    store = _store()
    summary = store.summary(run_id)
    if summary.status in FINAL_STATUSES:
        _fail_usage(f"run `{summary.id}` already ended ({summary.status}); nothing to resume.")
    if summary.status == "running":
        _fail_usage(f"run `{summary.id}` is still running in another process; wait for it, or stop it first.")
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
        if as_json:
            typer.echo(result.model_dump_json(indent=2))
        elif not quiet:
            _render_result(result, title=f"workflow {workflow.name} (resumed)")
        raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)
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
    )


@app.command("stats")
def stats(
    since: Annotated[Optional[str], typer.Option(help="Only runs newer than this age, e.g. 24h or 7d.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Only this workflow or goal label.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Monitoring: per workflow or goal kind, success rate, p50/p95 latency, tokens, cost, slowest steps."""
    import time

    report = _store().stats(since=None if since is None else time.time() - _age(since), name=name)
    if as_json:
        typer.echo(json.dumps([g.model_dump(mode="json") for g in report], indent=2))
        return
    from rich.table import Table

    from rich import box

    table = Table(title="runs by workflow / goal", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", overflow="fold", ratio=1, min_width=16)
    for col in ("runs", "success", "p50", "p95", "tokens/run", "cost"):
        table.add_column(col, no_wrap=True)
    slow = Table(title="slowest steps", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    slow.add_column("name", overflow="fold", ratio=1, min_width=16)
    for col in ("step", "tool", "runs", "p50", "p95", "max"):
        slow.add_column(col, overflow="fold")
    for g in report:
        table.add_row(
            g.name, str(g.runs), f"{g.success_rate:.0%}", _secs(g.p50_s), _secs(g.p95_s),
            f"{g.tokens_per_run:.0f}", _cost(g.cost_usd),
        )
        for st in g.slowest_steps:
            slow.add_row(g.name, st.step, st.tool, str(st.runs), _secs(st.p50_s), _secs(st.p95_s), _secs(st.max_s))
    console = _console()
    console.print(table)
    if slow.row_count:
        console.print(slow)


@app.command("serve")
def serve_(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option(envvar="PLANWEAVE_API_KEY", show_default=False, help="Clients must send `Authorization: Bearer KEY`."),
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help="litellm model, e.g. openai/gpt-4o-mini (default: PLANWEAVE_MODEL, else offline).")
    ] = None,
    api_base: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")] = None,
    tools: ToolsOpt = None,
    workspace: Annotated[Path, typer.Option(help="Root directory for the file tools.")] = Path("."),
    allow_private_hosts: Annotated[bool, typer.Option(help="Let http_get reach private addresses.")] = False,
    max_cost: Annotated[Optional[float], typer.Option(help="Budget of each run: most USD to spend.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Budget of each run: most tokens.")] = None,
    max_llm_calls: Annotated[Optional[int], typer.Option(help="Budget of each run: most LLM calls.")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Budget of each run: most steps.")] = None,
    max_replans: Annotated[Optional[int], typer.Option(help="Budget of each run: most replans.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option(help="Budget of each run: wall-clock seconds.")] = None,
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
    from planner.server import ServerConfig, serve

    if reasoning not in ("think", "field", "off"):
        _fail_usage(f"unknown reasoning format `{reasoning}`; use think, field or off.")
    for option, value in (("--max-body-bytes", max_body_bytes), ("--max-messages", max_messages),
                          ("--max-chars", max_chars), ("--max-concurrent-runs", max_concurrent_runs)):
        if value <= 0:
            _fail_usage(f"`{option}` must be a positive number, not {value}.")
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
    serve(planner, host=host, port=port, config=config, log_level=log_level)


@app.command("prune")
def prune(
    older_than: Annotated[str, typer.Option(help="Delete finished runs older than this age, e.g. 30d.")],
) -> None:
    """Delete recorded runs older than a given age (running runs are kept)."""
    n = _store().prune(_age(older_than))
    typer.echo(f"deleted {n} run{'s' if n != 1 else ''}")


@app.command("delete")
def delete(run_id: Annotated[str, typer.Argument(help="The run to delete.")]) -> None:
    """Delete one recorded run."""
    store = _store()
    rid = store.summary(run_id).id
    store.delete(rid)
    typer.echo(f"deleted run {rid}")


@app.command("graph")
def graph(
    source: Annotated[str, typer.Argument(help="A workflow/plan file, or a recorded run's id.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="mermaid, dot or png.")] = "mermaid",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write (required for png).")] = None,
) -> None:
    """The graph of a workflow file or a run, as Mermaid, DOT or a PNG (step states coloured for runs)."""
    from planner.render import render_plan

    if format_ not in ("mermaid", "dot", "png", "tree"):
        _fail_usage(f"unknown format `{format_}`; use mermaid, dot, png or tree.")
    path = Path(source)
    states: dict[str, Any] | None = None
    if path.suffix in (".yaml", ".yml", ".json", ".py") or path.exists():
        from executor.workflow import load_workflow

        steps = load_workflow(path).flat_steps()
    else:
        record = _store().get_run(source)
        steps = record.resume_state().steps
        states = {sid: _state(s) for sid, s in record.steps().items()}
    drawn = render_plan(steps, format_, states)  # type: ignore[arg-type]
    if isinstance(drawn, bytes):
        if output is None:
            _fail_usage("--format png needs --output FILE.png")
        output.write_bytes(drawn)
        typer.echo(f"wrote {output}", err=True)
    elif output is not None:
        output.write_text(drawn + "\n")
    else:
        typer.echo(drawn)


def _state(step: dict[str, Any]) -> dict[str, Any]:
    started, finished = step.get("started_at"), step.get("finished_at")
    duration = finished - started if started is not None and finished is not None else None
    return {"status": step["status"], "attempts": step.get("attempts", 0), "duration_s": duration}


@app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="A workflow or saved plan file.")],
) -> None:
    """Check a workflow or plan file against the built-in tools without running it."""
    from executor.workflow import load_workflow
    from tools.builtin import builtin_tools

    workflow = load_workflow(file)
    workflow.validate_with(builtin_tools())
    typer.echo(f"{file}: valid ({len(workflow.flat_steps())} steps)")


@app.command("tools")
def tools_(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List the built-in tools with their argument schemas."""
    from tools.base import ToolRegistry
    from tools.builtin import builtin_tools

    registry = ToolRegistry(builtin_tools())
    if as_json:
        typer.echo(json.dumps(registry.catalogue(), indent=2))
        return
    from rich.table import Table

    table = Table(title="tools")
    table.add_column("name")
    table.add_column("description", overflow="fold")
    table.add_column("arguments", overflow="fold")
    for t in registry:
        props = t.json_schema.get("properties", {})
        required = set(t.json_schema.get("required", []))
        args = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in props.items())
        table.add_row(t.name, t.description.splitlines()[0] if t.description else "", args)
    _console().print(table)


def main() -> None:
    """Console entry point: maps errors to exit codes (2 bad input, 1 failed run, 130 Ctrl-C)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from tools.errors import PlanweaveError, SetupError

    try:
        app()  # standalone: usage errors exit 2 with click's message, `typer.Exit` exits with its code
    except KeyboardInterrupt:
        typer.echo("planweave: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SetupError as exc:
        if _debug:
            raise
        typer.echo(f"planweave: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except PlanweaveError as exc:
        if _debug:
            raise
        typer.echo(f"planweave: error: {exc}", err=True)
        sys.exit(EXIT_FAILED)

if __name__ == "__main__":
    main()
