"""The run-store commands of `planweave`: runs, show, stats, prune, delete, graph.

They read and tidy the runs that `run`, `exec` and `resume` record. `planweave.planner.cli.app` adds
them to its app with `register(app)`; this module does not import `planweave.planner.cli.app`, so
`python -m planweave` loads the CLI once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from planweave.planner.cli.output import EXIT_OK, console, fail_usage, plural, print_runs, print_stats

__all__ = ["open_run_store", "register"]


def register(app: typer.Typer) -> None:
    """Add the run-store commands to `app`."""
    app.command("runs")(runs_)
    app.command("show")(show)
    app.command("stats")(stats)
    app.command("prune")(prune)
    app.command("delete")(delete)
    app.command("graph")(graph)


def open_run_store() -> Any:
    from planweave.executor.store import open_store

    return open_store()


def _age(text: str) -> float:
    """`90s`, `15m`, `12h`, `7d`, `2w` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        fail_usage(f"`{text}` is not an age; use a number with a unit, e.g. `30m`, `12h`, `7d`.")


def runs_(
    status: Annotated[
        Optional[str], typer.Option(help="Only runs with this status (succeeded, failed, interrupted, ...).")
    ] = None,
    contains: Annotated[Optional[str], typer.Option("--grep", help="Only runs whose goal or name contains this.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only runs newer than this age, e.g. 12h or 7d.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    session: Annotated[
        Optional[str], typer.Option(help="Only the runs of this session (one chat conversation's runs share one).")
    ] = None,
) -> None:
    """List recorded runs, newest first (`--status waiting`: the runs waiting for a person)."""
    import time

    runs = open_run_store().list_runs(
        status=status, contains=contains, since=None if since is None else time.time() - _age(since),
        limit=None if session else limit,
    )
    if session:
        runs = [r for r in runs if r.meta.get("session_id") == session][:limit]
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return
    print_runs(runs)


def show(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix), from `planweave runs`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Export the whole run (summary, steps, events) as JSON.")] = False,
) -> None:
    """Show one run as a tree: rounds, steps with timings, LLM calls with tokens and cost."""
    store = open_run_store()
    if as_json:
        typer.echo(json.dumps(store.export(run_id), indent=2, ensure_ascii=False, default=str))
        return
    from planweave.planner.cli.render import run_tree

    record = store.get_run(run_id)
    console().print(run_tree(record))


def stats(
    since: Annotated[Optional[str], typer.Option(help="Only runs newer than this age, e.g. 24h or 7d.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Only this workflow or goal label.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Monitoring: per workflow or goal kind, success rate, p50/p95 latency, tokens, cost, slowest steps."""
    import time

    report = open_run_store().stats(since=None if since is None else time.time() - _age(since), name=name)
    if as_json:
        typer.echo(json.dumps([g.model_dump(mode="json") for g in report], indent=2))
        return
    print_stats(report)


YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed when stdin is not a terminal).")
]


def _confirm(question: str, *, yes: bool, command: str) -> None:
    """Ask before deleting, on a terminal; elsewhere (a script, CI) refuse unless `--yes` was given.

    Refusing rather than proceeding: a deletion cannot be undone, and a script that means it
    says so with `--yes`, once.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        fail_usage(f"`planweave {command}` deletes runs for good and stdin is not a terminal to confirm; "
                   "pass `--yes` to delete without asking.")
    if not typer.confirm(question, default=False, err=True):
        typer.echo("nothing deleted", err=True)
        raise typer.Exit(EXIT_OK)


def prune(
    older_than: Annotated[str, typer.Option(help="Delete finished runs older than this age, e.g. 30d.")],
    yes: YesOpt = False,
) -> None:
    """Delete recorded runs older than a given age (running runs are kept). Asks first, unless --yes."""
    age = _age(older_than)
    store = open_run_store()
    _confirm(f"delete every finished run older than {older_than}?", yes=yes, command="prune")
    n = store.prune(age)
    typer.echo(f"deleted {plural(n, 'run')}")


def delete(
    run_id: Annotated[str, typer.Argument(help="The run to delete.")],
    yes: YesOpt = False,
) -> None:
    """Delete one recorded run. Asks first, unless --yes."""
    store = open_run_store()
    summary = store.summary(run_id)
    what = summary.goal.splitlines()[0] if summary.kind == "planner" and summary.goal else summary.name
    _confirm(f"delete run {summary.id} ({summary.status}: {what})?", yes=yes, command="delete")
    store.delete(summary.id)
    typer.echo(f"deleted run {summary.id}")


def graph(
    source: Annotated[str, typer.Argument(help="A workflow/plan file, or a recorded run's id.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="mermaid, dot or png.")] = "mermaid",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write (required for png).")] = None,
) -> None:
    """The graph of a workflow file or a run, as Mermaid, DOT or a PNG (step states coloured for runs)."""
    from planweave.planner.cli.render import render_plan

    if format_ not in ("mermaid", "dot", "png", "tree"):
        fail_usage(f"unknown format `{format_}`; use mermaid, dot, png or tree.")
    path = Path(source)
    states: dict[str, Any] | None = None
    if path.suffix in (".yaml", ".yml", ".json", ".py") or path.exists():
        from planweave.executor.workflow import load_workflow

        steps = load_workflow(path).plan.steps
    else:
        record = open_run_store().get_run(source)
        steps = record.resume_state().steps
        states = {sid: _state(s) for sid, s in record.steps().items()}
    drawn = render_plan(steps, format_, states)  # type: ignore[arg-type]
    if isinstance(drawn, bytes):
        if output is None:
            fail_usage("--format png needs --output FILE.png")
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
