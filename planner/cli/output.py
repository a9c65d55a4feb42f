"""What the `planweave` command line prints, and the exit codes it ends with.

rich is imported inside the functions, so `planweave --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from planweave.planner.cli.terminal import clean

if TYPE_CHECKING:
    from planweave.executor.result import BaseResult, RunResult
    from planweave.executor.store import GroupStats, RunSummary
    from planweave.tools.base import ToolRegistry

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "EXIT_WAITING",
    "console", "exit_code", "failure_reason", "fail_usage", "plural", "print_failure", "print_result", "print_runs",
    "print_stats", "print_tools",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_WAITING = 3
"""The run waits for a person (no terminal to ask on): `planweave respond` continues it."""


def fail_usage(message: str) -> NoReturn:
    typer.echo(f"planweave: error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def plural(n: int, word: str) -> str:
    """`1 step`, `2 steps`, `0 steps`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def exit_code(result: BaseResult, *, allow_failed_steps: bool = False) -> int:
    """How `run`, `exec` and `resume` exit for a run that ended: 0 only when it succeeded, or
    ended `partial` (a step failed, the run went on) and the user allowed that."""
    if result.ok or (allow_failed_steps and result.status == "partial"):
        return EXIT_OK
    return EXIT_WAITING if result.status == "waiting" else EXIT_FAILED


def failure_reason(result: BaseResult) -> str | None:
    """Why a run (a `RunResult` or a `PlannerResult`) did not succeed, in one line; None when it did.

    The run's own error when it has one (a missing key, a budget, a success criterion; a
    `partial` run's error names its failed steps), then the failed steps it does not name.
    """
    if result.ok:
        return None
    failed = result.failed_steps
    reason = " ".join(str(result.error).split()) if result.error else ""
    unnamed = [sid for sid in failed if f"`{sid}`" not in reason]
    if not reason and unnamed:
        step = result.steps[unnamed[0]]
        more = f" (and {plural(len(unnamed) - 1, 'more failed step')})" if len(unnamed) > 1 else ""
        return f"step `{unnamed[0]}` failed: {' '.join(str(step.error or 'no detail').split())}{more}"
    if unnamed:
        reason += f" | failed step{'s' if len(unnamed) > 1 else ''}: " + ", ".join(f"`{sid}`" for sid in unnamed)
    return reason or None


def print_failure(result: Any) -> None:
    """Say on stderr, in one line, why the run did not succeed (nothing when it did).

    Every output mode but `--json` (whose `error` field says it) prints this line, and only
    this line says it: the run's status line and the live view leave the reason out.
    """
    if result.status == "waiting":
        asks = "; ".join(f"{r.describe()}: answer with {r.how_to_answer()}" for r in result.requests)
        typer.echo(f"planweave: waiting: {asks or result.error}", err=True)
        return
    reason = failure_reason(result)
    if reason is not None:
        typer.echo(f"planweave: {str(result.status).replace('_', ' ')}: {clean(reason)}", err=True)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_result(result: RunResult, *, title: str) -> None:
    """A workflow run: one row per step, then its status line."""
    from rich.table import Table
    from rich.text import Text

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
        # Tool text as `Text`: not parsed as rich markup (`[link=...]`), and cleaned of escapes.
        table.add_row(sid, s.tool, f"[{colour}]{s.status}[/]", str(s.attempts), duration, Text(clean(shown or "")))
    out = console()
    out.print(table)
    colour = "green" if result.ok else "yellow" if result.status == "partial" else "red"
    out.print(f"[{colour}]{result.status}[/] in {result.duration_s:.2f}s, run {result.run_id}")  # why: `print_failure`


def print_runs(runs: list[RunSummary]) -> None:
    """`planweave runs`: one row per recorded run."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Fits 80 columns without cutting a character: the fixed columns take at most 62 (16 + 11
    # + 11 + 8 + 9 and one space between columns), the goal folds onto more lines in the rest.
    table = Table(
        title=f"runs ({len(runs)} shown)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0)
    )
    for col in ("run", "status", "started", "took", "cost"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    table.add_column("goal / workflow", overflow="fold", ratio=1, min_width=12)
    for r in runs:
        goal = r.goal.splitlines()[0] if r.kind == "planner" and r.goal else r.name
        table.add_row(
            r.id, _status(r.status), _when(r.created_at), _secs(r.duration_s), _cost(r.cost_usd), Text(clean(goal))
        )
    console().print(table)


def print_stats(report: Iterable[GroupStats]) -> None:
    """`planweave stats`: runs per workflow or goal label, then the slowest steps."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="runs by workflow / goal", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", overflow="fold", ratio=1, min_width=16)
    for col in ("runs", "success", "p50", "p95", "tokens/run", "cached", "cost"):
        table.add_column(col, no_wrap=True)
    slow = Table(title="slowest steps", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    slow.add_column("name", overflow="fold", ratio=1, min_width=16)
    for col in ("step", "tool", "runs", "p50", "p95", "max"):
        slow.add_column(col, overflow="fold")
    for g in report:
        table.add_row(
            Text(clean(g.name)), str(g.runs), f"{g.success_rate:.0%}", _secs(g.p50_s), _secs(g.p95_s),
            f"{g.tokens_per_run:.0f}", str(g.cached_input_tokens), _cost(g.cost_usd),
        )
        for st in g.slowest_steps:
            slow.add_row(Text(clean(g.name)), st.step, st.tool, str(st.runs), _secs(st.p50_s), _secs(st.p95_s), _secs(st.max_s))
    out = console()
    out.print(table)
    if slow.row_count:
        out.print(slow)


def print_tools(registry: ToolRegistry) -> None:
    """`planweave tools`: each tool with its description and arguments."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="tools")
    table.add_column("name")
    table.add_column("description", overflow="fold")
    table.add_column("arguments", overflow="fold")
    for t in registry:
        props = t.json_schema.get("properties", {})
        required = set(t.json_schema.get("required", []))
        args = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in props.items())
        # Descriptions can come from elsewhere (an MCP server): plain text, cleaned.
        table.add_row(t.name, Text(clean(t.description.splitlines()[0] if t.description else "")), args)
    console().print(table)


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

