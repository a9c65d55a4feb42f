"""`planweave store migrate|export|import`: the run store's schema, and moving runs between stores.

The work is done in `planweave.executor._transfer`; this module parses arguments and prints.
Every command takes `--store URL` (a `postgresql://` URL or a SQLite file or directory), else
the global `planweave --store URL`, else `$PLANWEAVE_STORE_URL`, else `<home>/runs.db`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from planweave.planner.cli.output import fail_usage, plural

__all__ = ["store_app"]

store_app = typer.Typer(
    help="The run store: bring its schema up to date, export runs to JSON lines, import them.", no_args_is_help=True
)

StoreOption = Annotated[
    Optional[str],
    typer.Option("--store", help="The run store: a postgresql:// URL or a SQLite file (default: the global --store)."),
]


def _target(store: str | None) -> str | None:
    import os

    from planweave.executor.store import STORE_URL_ENV

    return store or os.environ.get(STORE_URL_ENV) or None


@store_app.command("migrate")
def migrate(store: StoreOption = None) -> None:
    """Apply the store's schema migrations now (opening a store applies them too); print the versions."""
    from planweave.executor._transfer import migrate as migrate_store
    from planweave.executor.store import StoreError

    try:
        where, before, after = migrate_store(_target(store))
    except StoreError as exc:
        fail_usage(str(exc))
    if before == after:
        typer.echo(f"{where}: schema {after}, up to date")
    else:
        typer.echo(f"{where}: migrated schema {before} -> {after}")


@store_app.command("export")
def export(
    file: Annotated[str, typer.Argument(help="Where to write the JSON lines (one run a line), or - for stdout.")],
    store: StoreOption = None,
    run_ids: Annotated[
        Optional[list[str]], typer.Option("--run", help="Only this run (repeatable; default: every run).")
    ] = None,
) -> None:
    """Write every run (summary and events, large values resolved) as JSON lines."""
    from planweave.executor._transfer import export_runs
    from planweave.executor.store import StoreError, open_store

    try:
        source = open_store(_target(store))
    except StoreError as exc:
        fail_usage(str(exc))
    try:
        if file == "-":
            count = export_runs(source, sys.stdout, run_ids or None)
        else:
            path = Path(file)
            partial = path.with_name(path.name + ".partial")
            try:
                with partial.open("w", encoding="utf-8") as out:
                    count = export_runs(source, out, run_ids or None)
                partial.replace(path)  # a failed export leaves no half-written file behind
            except OSError as exc:
                partial.unlink(missing_ok=True)
                fail_usage(f"cannot write `{file}`: {exc.strerror}; give a writable path, or - for stdout.")
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    except StoreError as exc:
        fail_usage(str(exc))
    finally:
        source.close()
    typer.echo(f"exported {plural(count, 'run')} from {source.path}", err=True)


@store_app.command("import")
def import_(
    file: Annotated[str, typer.Argument(help="JSON lines written by `planweave store export`, or - for stdin.")],
    store: StoreOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite runs the store already has.")] = False,
) -> None:
    """Add exported runs to the store, as they were; refuses run ids it has unless `--replace`."""
    from planweave.executor._transfer import import_runs, read_runs
    from planweave.executor.store import StoreError, open_store

    try:
        if file == "-":
            runs = read_runs(sys.stdin, "standard input")
        else:
            try:
                with open(file, encoding="utf-8") as lines:
                    runs = read_runs(lines, f"`{file}`")
            except OSError as exc:
                fail_usage(f"cannot read `{file}`: {exc.strerror}; give a file written by `planweave store export`.")
        target = open_store(_target(store))
        try:
            ids = import_runs(target, runs, replace=replace)
        finally:
            target.close()
    except StoreError as exc:
        fail_usage(str(exc))
    typer.echo(f"imported {plural(len(ids), 'run')} into {target.path}", err=True)
