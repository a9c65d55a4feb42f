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
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; use the exit code.")] = False,
) -> None:
    """Run a workflow or saved plan file with the built-in tools."""
    import asyncio

    from executor.workflow import load_workflow
    from tools.builtin import builtin_tools

    inputs = _parse_inputs(input_ or [])
    workflow = load_workflow(file)
    tools = builtin_tools(workspace=workspace, allow_private_hosts=allow_private_hosts)
    workflow.validate_with(tools)
    unknown = set(inputs) - set(workflow.inputs)
    if workflow.inputs and unknown:
        _fail_usage(
            f"unknown input {', '.join(f'`{k}`' for k in sorted(unknown))} for workflow `{workflow.name}`; "
            f"its inputs are {', '.join(f'`{k}`' for k in workflow.inputs)}."
        )
    result = asyncio.run(workflow.run(tools, inputs=inputs))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    elif not quiet:
        _render_result(result, title=f"workflow {workflow.name}")
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


@app.command("run")
def run_(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: Annotated[
        Optional[str], typer.Option(help="litellm model, e.g. openai/gpt-4o-mini (default: PLANWEAVE_MODEL, else offline).")
    ] = None,
    api_base: Annotated[Optional[str], typer.Option(help="OpenAI-compatible API base URL.")] = None,
    workspace: Annotated[Path, typer.Option(help="Root directory for the file tools.")] = Path("."),
    max_cost: Annotated[Optional[float], typer.Option(help="Budget: most USD to spend.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option(help="Budget: wall-clock seconds.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, nothing else.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the answer.")] = False,
) -> None:
    """Plan GOAL with an LLM and run it; print the answer and what it cost."""
    import asyncio

    from planner.core import Budget, Planner

    if not goal.strip():
        _fail_usage("the goal is empty; say what you want done, e.g. planweave run \"what is 17 * 23\".")
    budget = Budget(max_cost_usd=max_cost, max_seconds=max_seconds)
    planner = Planner(model=model, api_base=api_base, workspace=workspace, budget=budget)
    result = asyncio.run(planner.run(goal))
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        if not quiet:
            from executor.result import RunResult

            _render_result(
                RunResult(
                    run_id=result.run_id, status="succeeded" if result.ok else "failed", goal=goal,
                    steps=result.steps, error=result.error, started_at=result.started_at,
                    finished_at=result.finished_at,
                ),
                title=f"plan for: {goal}",
            )
        typer.echo(result.answer or "")
        if not quiet:
            u = result.usage
            cost = "unknown" if u.cost_usd is None else f"${u.cost_usd:.4f}"
            typer.echo(
                f"{result.status} in {result.duration_s:.2f}s | model {planner.model} | {u.llm_calls} LLM calls, "
                f"{u.total_tokens} tokens, cost {cost} | run {result.run_id}"
            )
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


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
