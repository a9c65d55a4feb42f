"""`planweave cache stats` and `planweave cache clear`: the step cache (`planweave.executor.cache`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from planweave.planner.cli.output import fail_usage, plural

__all__ = ["cache_app"]

cache_app = typer.Typer(help="The step cache: results of cached steps, reused by identical calls.", no_args_is_help=True)


def _open() -> object:
    from planweave.executor.cache import open_cache
    from planweave.executor.store import StoreError

    try:
        return open_cache()
    except StoreError as exc:
        fail_usage(str(exc))


@cache_app.command("stats")
def stats(as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False) -> None:
    """How many results the cache keeps, how often they were reused, and for which tools."""
    from planweave.executor.cache import StepCache

    cache = _open()
    assert isinstance(cache, StepCache)
    numbers = cache.stats()
    cache.close()
    if as_json:
        typer.echo(numbers.model_dump_json(indent=2))
        return
    typer.echo(f"{numbers.path}: {plural(numbers.entries, 'result')}, {plural(numbers.hits, 'hit')}, "
               f"{numbers.bytes:,} bytes")
    for tool, n in numbers.by_tool.items():
        typer.echo(f"  {tool}: {plural(n, 'result')}")


@cache_app.command("clear")
def clear(
    tool: Annotated[Optional[str], typer.Option("--tool", help="Forget only this tool's results.")] = None,
) -> None:
    """Forget cached results (every tool's, or one tool's): the next identical calls run again."""
    from planweave.executor.cache import StepCache

    cache = _open()
    assert isinstance(cache, StepCache)
    removed = cache.clear(tool)
    cache.close()
    typer.echo(f"removed {plural(removed, 'cached result')}" + (f" of `{tool}`" if tool else ""))
