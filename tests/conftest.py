"""Shared fixtures. Tests never reach the internet and never need an API key."""

from __future__ import annotations

import os

# Must be set before litellm is first imported anywhere in the test session.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _key in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "PLANWEAVE_MODEL"):
    os.environ.pop(_key, None)


import signal
import threading
from collections.abc import Iterator

import pytest

from planweave.planner.testing import ChildProcesses, wait_until


# A shell that starts pytest in the background without job control (`nohup`, `cmd &` in a
# script) makes it ignore SIGINT, and children inherit that: a test sending Ctrl-C to a
# `planweave` child would then wait for nothing. An installed handler resets to the default in
# a child at exec, so take SIGINT back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _planweave_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs recorded by a test go to a fresh directory, never to the user's ~/.planweave."""
    monkeypatch.setenv("PLANWEAVE_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def _tracing_finished_within_the_test() -> Iterator[None]:
    """A tracer closed without waiting sends its spans from a background thread; a warning it
    logs after the test would land in the next test's `caplog` (seen in a random order). So
    each test waits here for the background shutdowns it started."""
    yield
    wait_until(
        lambda: not any(t.name == "planweave-trace-shutdown" for t in threading.enumerate()),
        "the tracers' background shutdowns finished",
    )


@pytest.fixture
def children() -> Iterator[ChildProcesses]:
    """Long-lived subprocesses: `children.spawn(...)` or `with children.running(...)`.

    Each child runs in its own process group, killed with everything it started at
    teardown: after a failure too, and after pytest-timeout fails the test (its default
    "signal" method raises inside the test, so teardown runs). A test may still stop a
    child gracefully first and assert on how it exited.
    """
    started = ChildProcesses()
    try:
        yield started
    finally:
        started.kill_all()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`, the default addopts) every test that uses the
    session's Ray runs on one worker, so the session starts one local Ray, not one per worker
    (each takes ~20 s and 2 CPUs). Runs before xdist reads the marks (tryfirst)."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One local Ray (2 CPUs) for the whole session, started by the first test that asks for it
    (about 20 s on this machine) and shut down at the end; yields its address for child processes."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database for this test session (this xdist worker's own): on the server
    `PLANWEAVE_TEST_PG_URL` names (`.ci/run` starts one), else on a throwaway cluster started
    here with `planweave.planner.testing.postgres`. Fails (never skips) when neither works."""
    import psycopg

    from planweave.planner.testing.postgres import PostgresCluster, PostgresUnavailableError

    import shutil
    import tempfile

    cluster: PostgresCluster | None = None
    base = os.environ.get("PLANWEAVE_TEST_PG_URL")
    if not base:
        # Not under pytest's temporary directory: as root, the server runs as `postgres`, which
        # cannot enter root's private /tmp/pytest-of-root.
        cluster = PostgresCluster(tempfile.mkdtemp(prefix="planweave-test-pg-"), durable=False)
        try:
            base = cluster.start()
        except PostgresUnavailableError as exc:
            pytest.fail(f"PostgreSQL is needed by this test and could not be started: {exc}", pytrace=False)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"planweave_test_{worker}_{os.getpid()}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at PLANWEAVE_TEST_PG_URL is unusable: {exc}", pytrace=False)
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        try:
            with psycopg.connect(base, autocommit=True, connect_timeout=10) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            if cluster is not None:
                cluster.stop()
                shutil.rmtree(cluster.directory, ignore_errors=True)


@pytest.fixture
def pg_fresh_url(pg_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped after it), on `pg_url`'s server."""
    import secrets

    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
    try:
        yield pg_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_fresh_schema_url(pg_url: str) -> Iterator[str]:
    """A new, empty schema for one test in `pg_url`'s database (dropped after it): the URL puts it
    alone on the search path of every connection opened with it, so a store on it starts empty.

    For tests of what a store does inside its database; `pg_fresh_url` (a whole database) for
    those that change the database itself (read-only, connections refused). A schema costs a few
    milliseconds; `CREATE DATABASE` a checkpoint (up to a second on a loaded machine)."""
    import secrets

    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{pg_url}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SET lock_timeout = '30s'")
            try:
                admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            except psycopg.errors.LockNotAvailable:
                pass  # a connection of the test still holds a lock; the database goes at the session's end
