"""What the `planweave` command line prints, and the exit codes it ends with.

rich is imported inside the functions, so `planweave --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from planweave.executor.result import BaseResult, RunResult
    from planweave.executor.store import GroupStats, RunSummary
    from planweave.tools.base import ToolRegistry

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
    "console", "exit_code", "fail_usage", "failed_steps_note", "print_result", "print_runs", "print_stats",
    "print_tools", "print_workflow_result", "quiet_line",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""The exit codes, as README's status table gives them: 0 `succeeded` (and `partial` with
`--allow-failed-steps`), 1 any other end of a run, 2 bad input, 130 Ctrl-C."""


def exit_code(result: BaseResult, *, allow_failed_steps: bool = False) -> int:
    """How `run`, `exec` and `resume` exit for a run that ended: 0 only when it succeeded, or
    ended `partial` (a step failed, the run went on) and the user allowed that."""
    if result.ok or (allow_failed_steps and result.status == "partial"):
        return EXIT_OK
    return EXIT_FAILED


def failed_steps_note(result: BaseResult) -> str:
    """What a run's closing line says about its failed steps (empty when none failed): a `partial`
    run's `error` (it names them and what the first said), else `failed steps: `a`, `b``."""
    if not result.failed_steps:
        return ""
    if result.status == "partial" and result.error:
        return result.error
    return f"failed step{'s' if len(result.failed_steps) > 1 else ''}: " + ", ".join(
        f"`{sid}`" for sid in result.failed_steps
    )


def quiet_line(result: BaseResult) -> str | None:
    """The one stderr line `--quiet` prints for a run whose steps failed, or None."""
    if result.ok or not result.failed_steps:
        return None
    note = failed_steps_note(result)
    if result.status == "partial" or not result.error:
        return f"planweave: {result.status}: {note}"
    return f"planweave: {result.status}: {result.error} | {note}"


def fail_usage(message: str) -> NoReturn:
    typer.echo(f"planweave: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_result(result: RunResult, *, title: str) -> None:
    """A workflow run: one row per step, then its status line."""
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
    out = console()
    out.print(table)
    colour = "green" if result.ok else "yellow" if result.status == "partial" else "red"
    line = f"[{colour}]{result.status}[/] in {result.duration_s:.2f}s, run {result.run_id}"
    if result.error:
        line += f": {result.error}"
    if result.failed_steps and result.status != "partial":  # a `partial` run's `error` names them already
        line += f" | {failed_steps_note(result)}"
    out.print(line, soft_wrap=True)


def print_workflow_result(result: RunResult, *, title: str, as_json: bool, quiet: bool) -> None:
    """A workflow run as `exec` and `resume` print it: JSON, the table, or (`--quiet`) one stderr
    line when steps failed."""
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    elif not quiet:
        print_result(result, title=title)
    elif line := quiet_line(result):
        typer.echo(line, err=True)


def print_runs(runs: list[RunSummary]) -> None:
    """`planweave runs`: one row per recorded run."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"runs ({len(runs)} shown)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run", "status", "started", "took", "cost"):
        table.add_column(col, no_wrap=True)
    table.add_column("goal / workflow", overflow="fold", ratio=1, min_width=16)
    for r in runs:
        goal = r.goal.splitlines()[0] if r.kind == "planner" and r.goal else r.name
        table.add_row(r.id, _status(r.status), _when(r.created_at), _secs(r.duration_s), _cost(r.cost_usd), goal)
    console().print(table)


def print_stats(report: Iterable[GroupStats]) -> None:
    """`planweave stats`: runs per workflow or goal label, then the slowest steps."""
    from rich import box
    from rich.table import Table

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
    out = console()
    out.print(table)
    if slow.row_count:
        out.print(slow)


def print_tools(registry: ToolRegistry) -> None:
    """`planweave tools`: each tool with its description and arguments."""
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
    console().print(table)


def _status(status: str) -> str:
    colour = {"succeeded": "green", "partial": "yellow", "failed": "red", "interrupted": "yellow", "running": "cyan"}.get(
        status, "magenta"
    )
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

