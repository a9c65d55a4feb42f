"""The step cache: results of pure tool calls, reused by identical later calls.

A step is cached when it says so (`cache: true`, or a number of seconds) or its tool does
(`@tool(cache=...)`), and never when its tool has side effects (`pure=False`). A call's key is
the hash of its tool's name, the tool's `version` (by default a hash of its source: editing a
tool makes its old results misses) and its arguments with every reference resolved, so two
runs asking the same thing make one call (LangGraph's node `CachePolicy`).

`StepCache` keeps the results in SQLite beside the run store (`<home>/cache.db`); a hit is a
`StepCacheHit` event (recorded and traced; an `llm` step answered from the cache reports no
LLM call, so it costs nothing). `planweave cache stats` and `planweave cache clear` read and
empty it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from planweave.executor.store import StoreError, default_home
from planweave.tools.base import Tool

__all__ = ["CacheStats", "StepCache", "cache_key", "open_cache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    version TEXT NOT NULL,
    output TEXT NOT NULL,
    created REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_tool ON entries (tool);
"""


def cache_key(tool: Tool, args: Mapping[str, Any], model: str | None = None) -> str:
    """The key of one call: tool name, tool version and resolved arguments, hashed; and the
    workflow's `model` for a tool that sees it in its context (an `llm` step)."""
    seen = [tool.name, tool.version, args]
    if tool.context_param is not None and model is not None:
        seen.append(model)
    text = json.dumps(seen, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


class CacheStats(BaseModel):
    """What `planweave cache stats` shows."""

    path: str
    entries: int
    hits: int
    """Times an entry was reused, over the entries still kept."""
    bytes: int
    """Size of the stored outputs."""
    by_tool: dict[str, int]
    """Entries per tool name."""


class StepCache:
    """Cached tool results in one SQLite file. Thread-safe; each method is one short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the step cache `{self.path}`: {exc}; delete the file to start an empty cache."
            ) from exc
        self._lock = threading.Lock()

    def get(self, key: str, max_age_s: float | None = None) -> tuple[bool, Any, float]:
        """`(found, output, age in seconds)`; an entry older than `max_age_s` is not found."""
        with self._lock:
            row = self._db.execute("SELECT output, created FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False, None, 0.0
            age = max(0.0, time.time() - float(row[1]))
            if max_age_s is not None and age > max_age_s:
                return False, None, age
            self._db.execute("UPDATE entries SET hits = hits + 1 WHERE key = ?", (key,))
        return True, json.loads(row[0]), age

    def put(self, key: str, tool: Tool, output: Any) -> None:
        """Keep `output` (JSON data) as the result of the call `key`, replacing an older one."""
        text = json.dumps(output, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO entries (key, tool, version, output, created, hits) VALUES (?, ?, ?, ?, ?, 0)",
                (key, tool.name, tool.version, text, time.time()),
            )

    def clear(self, tool: str | None = None) -> int:
        """Forget every entry (or one tool's); returns how many."""
        with self._lock:
            if tool is None:
                cursor = self._db.execute("DELETE FROM entries")
            else:
                cursor = self._db.execute("DELETE FROM entries WHERE tool = ?", (tool,))
        return cursor.rowcount

    def stats(self) -> CacheStats:
        with self._lock:
            entries, hits, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(hits), 0), COALESCE(SUM(LENGTH(output)), 0) FROM entries"
            ).fetchone()
            rows = self._db.execute("SELECT tool, COUNT(*) FROM entries GROUP BY tool ORDER BY tool").fetchall()
        return CacheStats(
            path=str(self.path), entries=entries, hits=hits, bytes=size, by_tool={tool: n for tool, n in rows}
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_cache(path: str | Path | None = None) -> StepCache:
    """The default step cache: `path` (a file or directory), else `<home>/cache.db` beside the runs."""
    target = Path(path).expanduser() if path is not None else default_home()
    if target.suffix != ".db":
        target = target / "cache.db"
    return StepCache(target)
