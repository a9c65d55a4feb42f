"""Store fixtures: every store-level test runs against SQLite and against PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from planweave.executor.store import RunStore


@dataclass
class Backend:
    """One store's database, for tests: open stores on it, run raw SQL on it (`?` placeholders)."""

    name: str
    """`sqlite` or `postgres`."""
    target: str
    """The SQLite file or the PostgreSQL URL."""
    opened: list[RunStore] = field(default_factory=list)

    def open(self, **options: Any) -> Any:
        if self.name == "sqlite":
            from planweave.executor.sqlite_store import SQLiteRunStore

            store: RunStore = SQLiteRunStore(self.target, **options)
        else:
            from planweave.executor.postgres_store import PostgresRunStore

            store = PostgresRunStore(self.target, **options)
        self.opened.append(store)
        return store

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement from another connection (as another process would), committed."""
        if self.name == "sqlite":
            db = sqlite3.connect(self.target, isolation_level=None)
            try:
                return db.execute(statement, params).fetchall()
            finally:
                db.close()
        import psycopg

        with psycopg.connect(self.target, autocommit=True) as conn:
            cur = conn.execute(statement.replace("?", "%s").encode(), params)
            return cur.fetchall() if cur.description else []

    def lock_writes(self) -> Callable[[], None]:
        """Take the store's write lock from another connection (as another process would) and keep
        it; returns the function that gives it back. Reading still works meanwhile."""
        if self.name == "sqlite":
            db = sqlite3.connect(self.target, isolation_level=None, check_same_thread=False)
            db.execute("BEGIN IMMEDIATE")

            def release_sqlite() -> None:
                db.execute("ROLLBACK")
                db.close()

            return release_sqlite
        import psycopg

        conn = psycopg.connect(self.target)  # a transaction is open until `rollback`
        conn.execute("LOCK TABLE runs, events, blobs IN EXCLUSIVE MODE")  # every table a write touches

        def release_postgres() -> None:
            conn.rollback()
            conn.close()

        return release_postgres

    def close(self) -> None:
        for store in self.opened:
            try:
                store.close()
            except Exception:
                pass


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty database of each kind (PostgreSQL: a new schema, alone on the search path,
    in the session's database)."""
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "runs.db"))
    else:
        b = Backend("postgres", request.getfixturevalue("pg_fresh_schema_url"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def store(backend: Backend) -> Any:
    """A store on `backend`'s database."""
    return backend.open()
