"""What only the PostgreSQL store does: URLs and their masking, schema migrations under an
advisory lock, row locks and read-only servers mapped onto the error tree, and `wait_changed`
woken by another process's commit (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psycopg
import pytest

from planweave.executor import Executor, Step
from planweave.executor.postgres_store import SCHEMA_VERSION, PostgresRunStore
from planweave.executor.store import (
    StoreError,
    StoreLockedError,
    StoreReadOnlyError,
    mask_url,
    open_store,
)
from planweave.planner.testing import ChildProcesses
from planweave.tools import tool

ROOT = Path(__file__).resolve().parents[2]


@tool
def echo(text: str) -> str:
    """The text."""
    return text


def test_open_store_picks_postgres_by_url_and_env(pg_fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(pg_fresh_url), PostgresRunStore)
    assert isinstance(open_store(pg_fresh_url.replace("postgresql://", "postgres://", 1)), PostgresRunStore)
    monkeypatch.setenv("PLANWEAVE_STORE_URL", pg_fresh_url)
    store = open_store()
    assert isinstance(store, PostgresRunStore) and store.path == pg_fresh_url
    store.close()


def test_passwords_are_masked_in_the_url() -> None:
    assert mask_url("postgresql://app:s3cret@db:5432/runs") == "postgresql://app:***@db:5432/runs"
    assert mask_url("postgres://db/runs?password=s3cret&sslmode=require") == "postgres://db/runs?password=***&sslmode=require"
    assert mask_url("postgresql://app@db/runs") == "postgresql://app@db/runs"


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as err:
        PostgresRunStore("postgresql://app:s3cret@127.0.0.1:1/runs", connect_timeout_s=2)
    message = str(err.value)
    assert message.startswith("cannot reach the run store `postgresql://app:***@127.0.0.1:1/runs`: ")
    assert "check that the PostgreSQL server is running" in message and "s3cret" not in message


def test_two_processes_opening_a_new_database_migrate_it_once(pg_fresh_url: str, children: ChildProcesses) -> None:
    script = textwrap.dedent(
        """
        import sys
        from planweave.executor.postgres_store import PostgresRunStore
        store = PostgresRunStore(sys.argv[1])
        print(store.schema_before, store.schema_version)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [children.spawn([sys.executable, "-c", script, pg_fresh_url], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(o[1] == str(SCHEMA_VERSION) for o in outs), outs
    with psycopg.connect(pg_fresh_url) as conn:
        assert conn.execute("SELECT version FROM planweave_schema").fetchall() == [(SCHEMA_VERSION,)]  # one row
    # Opened again: nothing to do.
    again = PostgresRunStore(pg_fresh_url)
    assert (again.schema_before, again.schema_version) == (SCHEMA_VERSION, SCHEMA_VERSION)
    again.close()


def test_a_newer_schema_is_refused(pg_fresh_url: str) -> None:
    PostgresRunStore(pg_fresh_url).close()
    with psycopg.connect(pg_fresh_url, autocommit=True) as conn:
        conn.execute("UPDATE planweave_schema SET version = 99")
    with pytest.raises(StoreError, match="written by a newer planweave \\(schema 99"):
        PostgresRunStore(pg_fresh_url)


def test_a_held_row_lock_is_a_locked_error_and_the_run_does_not_start(pg_fresh_url: str) -> None:
    store = PostgresRunStore(pg_fresh_url, busy_timeout_s=0.1)
    calls: list[str] = []

    @tool
    def note(text: str) -> str:
        """Remember the call."""
        calls.append(text)
        return text

    with psycopg.connect(pg_fresh_url) as holder:
        holder.execute("LOCK TABLE runs IN EXCLUSIVE MODE")
        with pytest.raises(StoreLockedError) as err:
            Executor([note]).run_sync([Step(id="a", tool="note", args={"text": "1"})], subscribers=[store.recorder()])
        holder.rollback()
    assert calls == []
    assert f"the run store `{store.path}` is locked by another process" in str(err.value)
    store.close()


def test_a_read_only_server_reads_and_refuses_to_record(pg_fresh_url: str) -> None:
    writable = PostgresRunStore(pg_fresh_url)
    done = Executor([echo]).run_sync([Step(id="a", tool="echo", args={"text": "hi"})], subscribers=[writable.recorder()])
    writable.close()
    name = pg_fresh_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_fresh_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    store = PostgresRunStore(pg_fresh_url)
    assert store.summary(done.run_id).status == "succeeded"
    assert store.export(done.run_id)["steps"][0]["output"] == "hi"
    with pytest.raises(StoreReadOnlyError) as err:
        Executor([echo]).run_sync([Step(id="a", tool="echo", args={"text": "x"})], subscribers=[store.recorder()])
    assert f"the run store `{store.path}` is read-only" in str(err.value) and "--no-record" in str(err.value)
    store.close()


WRITE_ON_CUE = textwrap.dedent(
    """
    import sys
    from planweave.executor.postgres_store import PostgresRunStore
    store = PostgresRunStore(sys.argv[1])
    sys.stdin.readline()  # the test is waiting: write now
    store.claim(sys.argv[2], force=True)
    print("written", flush=True)
    """
)


async def test_wait_changed_is_woken_by_another_process_commit(pg_fresh_url: str, children: ChildProcesses) -> None:
    store = PostgresRunStore(pg_fresh_url)
    store.begin("r1", kind="workflow", name="", goal="g", meta={})
    run_marker, any_marker = store.change_marker("r1"), store.change_marker()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = children.spawn([sys.executable, "-c", WRITE_ON_CUE, pg_fresh_url, "r1"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    waiting = asyncio.create_task(store.wait_changed(run_marker, "r1", timeout_s=120))
    await asyncio.sleep(0)
    assert writer.stdin is not None
    writer.stdin.write("go\n")
    writer.stdin.flush()
    changed = await asyncio.wait_for(waiting, 120)
    assert changed != run_marker  # woken by the commit: a timeout would return the same marker
    assert changed == store.change_marker("r1") and changed[1] != store.owner  # type: ignore[index]
    assert store.change_marker() != any_marker
    assert await store.wait_changed(store.change_marker(), None, timeout_s=0.2) == store.change_marker()
    writer.communicate(timeout=60)
    store.close()


async def test_wait_changed_polls_while_the_listener_is_down(pg_fresh_url: str) -> None:
    store = PostgresRunStore(pg_fresh_url)
    other = PostgresRunStore(pg_fresh_url)
    store.begin("r1", kind="workflow", name="", goal="g", meta={})
    await store.wait_changed(store.change_marker("r1"), "r1", timeout_s=0.05)  # starts the listener
    with psycopg.connect(pg_fresh_url, autocommit=True) as admin:  # cut the listening connection
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'planweave-listener' AND datname = current_database()")
    marker = store.change_marker("r1")
    threading.Timer(0.2, lambda: other.claim("r1", force=True)).start()
    assert await store.wait_changed(marker, "r1", timeout_s=60) != marker
    other.close()
    store.close()


def test_without_the_driver_a_postgres_url_says_what_to_install(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = None  # as if planweave[postgres] were not installed
        from planweave.executor.store import StoreError, open_store
        try:
            open_store("postgresql://app:s3cret@db.internal/runs")
        except StoreError as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "the run store `postgresql://app:***@db.internal/runs` is a PostgreSQL database, and the PostgreSQL driver "
        "is not installed; install planweave[postgres] (`pip install 'planweave[postgres]'`)."
    )
