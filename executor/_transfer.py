"""Moving runs between stores, and bringing a store's schema up to date.

`export_runs` writes JSON lines, one run a line: `{"format": ..., "run": <summary>, "events":
[...]}` with every large value resolved (a line stands alone). `import_runs` reads them back
into any store, each run in one transaction, exactly as it was (summary and events); it
refuses a run id the store already has unless `replace`, checking every line before writing
anything. SQLite -> PostgreSQL -> SQLite keeps every run as it was.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from planweave.executor._encoding import BLOB_FIELDS, BLOB_THRESHOLD, dumps
from planweave.executor.store import RunStore, RunSummary, StoreError, StoreReadOnlyError, default_home, is_postgres_url, open_store

__all__ = ["FORMAT", "ExportedRun", "export_runs", "import_runs", "migrate", "read_runs"]

FORMAT = "planweave-run/1"
"""The `format` of each exported line."""

Row = tuple[str, int, str, float, "str | None", str]


class ExportedRun:
    """One line of an export: a run's summary and its events (values resolved)."""

    __slots__ = ("events", "summary")

    def __init__(self, summary: RunSummary, events: list[dict[str, Any]]) -> None:
        self.summary = summary
        self.events = events


def export_runs(store: RunStore, out: TextIO, run_ids: Iterable[str] | None = None) -> int:
    """Write the runs (all of them, oldest first, or `run_ids`) to `out` as JSON lines; returns how many."""
    ids = [s.id for s in reversed(store.list_runs(limit=None))] if run_ids is None else list(run_ids)
    count = 0
    for run_id in ids:
        summary = store.summary(run_id)
        line = {"format": FORMAT, "run": summary.model_dump(mode="json"), "events": store.events(summary.id)}
        out.write(dumps(line) + "\n")
        count += 1
    return count


def read_runs(lines: Iterable[str], source: str = "the input") -> list[ExportedRun]:
    """Parse exported lines (blank lines are skipped); `StoreError` naming the first bad line."""
    runs: list[ExportedRun] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a `{FORMAT}` line")
            events = doc.get("events")
            if not isinstance(events, list) or not all(isinstance(e, dict) and "kind" in e and "at" in e for e in events):
                raise ValueError("`events` is not a list of events")
            runs.append(ExportedRun(RunSummary.model_validate(doc["run"]), events))
        except (ValueError, KeyError, ValidationError) as exc:
            detail = str(exc).splitlines()[0]
            raise StoreError(
                f"line {number} of {source} is not an exported run ({detail}); "
                "give a file written by `planweave store export`."
            ) from None
    return runs


def import_runs(store: RunStore, runs: list[ExportedRun], *, replace: bool = False) -> list[str]:
    """Add `runs` to `store` as they were; returns their ids. Without `replace`, nothing is written
    when any of them is already there."""
    if not replace:
        taken = [r.summary.id for r in runs if _has(store, r.summary.id)]
        if taken:
            raise StoreError(
                f"the store `{store.path}` already has run(s) {', '.join(f'`{t}`' for t in taken)}; "
                "nothing was imported. Pass `--replace` to overwrite them, or delete them first."
            )
    for run in runs:
        rows, blobs = _rows(run.summary.id, run.events)
        store.import_run(run.summary, rows, blobs, replace=replace)
    return [r.summary.id for r in runs]


def _has(store: RunStore, run_id: str) -> bool:
    try:
        return store.summary(run_id).id == run_id
    except StoreError:
        return False


def _rows(run_id: str, events: list[dict[str, Any]]) -> tuple[list[Row], dict[str, str]]:
    """Event dicts as `events` rows, large values stored once as blobs (as the stores' own encoder
    does: `{"$blob": sha256}` pointing at the value's JSON)."""
    rows: list[Row] = []
    blobs: dict[str, str] = {}
    for seq, event in enumerate(events, 1):
        data = {k: v for k, v in event.items() if k not in ("run_id", "at", "kind")}
        step_id = data.get("step_id")
        if isinstance(step_id, str):
            del data["step_id"]
        else:
            step_id = None
        for key in BLOB_FIELDS:
            value = data.get(key)
            if value is None or type(value) in (int, float, bool):
                continue
            text = dumps(value)
            if len(text) > BLOB_THRESHOLD:
                digest = hashlib.sha256(text.encode()).hexdigest()
                blobs[digest] = text
                data[key] = {"$blob": digest}
        rows.append((run_id, seq, str(event["kind"]), float(event["at"]), step_id, dumps(data) if data else "{}"))
    return rows, blobs


def migrate(target: str | Path | None = None) -> tuple[str, int, int]:
    """Bring the store at `target` (as `open_store` takes it) to this planweave's schema;
    returns (where, schema before, schema after)."""
    if target is None:
        import os

        from planweave.executor.store import STORE_URL_ENV

        target = os.environ.get(STORE_URL_ENV) or None
    if isinstance(target, str) and is_postgres_url(target):
        store = open_store(target)
        try:
            return store.path, int(getattr(store, "schema_before")), int(getattr(store, "schema_version"))
        finally:
            store.close()
    path = Path(target).expanduser() if target is not None else default_home()
    if path.suffix != ".db":
        path = path / "runs.db"
    from planweave.executor.sqlite_store import _SCHEMA_VERSION as SQLITE_SCHEMA

    before = _sqlite_version(path)
    store = open_store(path)  # opening a writable file migrates it
    try:
        after = _sqlite_version(path)
        if after < SQLITE_SCHEMA:
            raise StoreReadOnlyError(
                f"the run store `{store.path}` is read-only (schema {after}): it cannot be migrated to schema "
                f"{SQLITE_SCHEMA}; make the file and its directory writable (`chmod u+w`)."
            )
        return store.path, before, after
    finally:
        store.close()


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()
