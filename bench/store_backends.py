"""What does recording a run cost on PostgreSQL, against the embedded SQLite store?

    python bench/store_backends.py             # 2,000-step chain and fan-out, 3 repeats
    python bench/store_backends.py --quick     # smoke test: 100 steps, 1 repeat
    python bench/store_backends.py --url postgresql://...   # an existing server (else a throwaway one)

The graphs and the timing are bench/recording.py's (no-op async tools; the run returns once its
last event is durable): `SQLiteRunStore` in a temporary directory against `PostgresRunStore` on
a fresh database of a local PostgreSQL 127.0.0.1 server (started here with PostgreSQL's defaults,
`fsync` and `synchronous_commit` on, unless `--url`). Masking is on for both, as `open_store`
sets it up. Reported: microseconds per step (best and median), and PostgreSQL / SQLite.
Results go to bench/results/store_backends.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/store_backends.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table, version  # noqa: E402
from bench.recording import GRAPHS, measure, noop  # noqa: E402
from planweave.executor.masking import Masker  # noqa: E402
from planweave.executor.plan import Step  # noqa: E402
from planweave.executor.scheduler import Executor  # noqa: E402
from planweave.executor.store import RunStore  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "store_backends.json"
CONFIGS = ("sqlite", "postgres", "postgres async commit")
"""`postgres async commit`: the same server, the database set to `synchronous_commit = off` (a
commit survives the process and the server's crash, perhaps not a power loss: SQLite's
`synchronous=NORMAL` guarantee), which takes the disk flush out of each commit."""


async def time_store(graph: dict[str, list[str]], open_one: Callable[[], RunStore]) -> tuple[float, int]:
    steps = [Step(id=sid, tool="noop", depends_on=deps) for sid, deps in graph.items()]
    store = open_one()
    try:
        t0 = time.perf_counter()
        result = await Executor([noop]).run(steps, subscribers=[store.recorder(kind="workflow", name="bench")])
        elapsed = time.perf_counter() - t0
        assert result.status == "succeeded", result.error
        assert store.summary(result.run_id).status == "succeeded"
    finally:
        store.close()
    return elapsed, 0


class Databases:
    """A fresh PostgreSQL database per run, dropped afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []

    def new(self, *, async_commit: bool = False) -> str:
        import psycopg

        name = f"bench_{secrets.token_hex(4)}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}".encode())
            if async_commit:
                admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off".encode())
        self.made.append(name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as admin:
            for name in self.made:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


async def amain(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from planweave.executor.postgres_store import PostgresRunStore
    from planweave.executor.sqlite_store import SQLiteRunStore

    n = args.n or (100 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    databases = Databases(url)
    import psycopg

    with psycopg.connect(url) as conn:
        settings = {k: conn.execute(f"SHOW {k}".encode()).fetchone()[0]  # type: ignore[index]
                    for k in ("server_version", "fsync", "synchronous_commit")}
    results: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "versions": {"planweave": version("planweave"), "psycopg": version("psycopg"), "postgresql": settings},
        "git": git_info(("executor", "bench")),
        "settings": {"n": n, "repeats": repeats, "quick": args.quick},
        "graphs": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="planweave-bench-"))

    def sqlite() -> RunStore:
        return SQLiteRunStore(folder / f"{secrets.token_hex(4)}.db", mask=Masker.from_env())

    def postgres() -> RunStore:
        return PostgresRunStore(databases.new(), mask=Masker.from_env())

    def postgres_async() -> RunStore:
        return PostgresRunStore(databases.new(async_commit=True), mask=Masker.from_env())

    try:
        for make in (sqlite, postgres, postgres_async):  # warm-up: imports, first connections, prepared statements
            await time_store(GRAPHS["chain"](10), make)
        for name, make_graph in GRAPHS.items():
            graph = make_graph(n)
            steps = len(graph)
            entry: dict[str, Any] = {"steps": steps, "configs": {}}
            for config, opener in zip(CONFIGS, (sqlite, postgres, postgres_async)):
                print(f"{name}: {config} ...", flush=True)
                run_once: Callable[[Path], Awaitable[tuple[float, int]]] = (
                    lambda _f, g=graph, o=opener: time_store(g, o))
                entry["configs"][config] = await measure(run_once, steps, repeats)
            us = {c: entry["configs"][c]["us_per_step"]["min"] for c in CONFIGS}
            entry["postgres_over_sqlite"] = us["postgres"] / us["sqlite"]
            entry["postgres_async_commit_over_sqlite"] = us["postgres async commit"] / us["sqlite"]
            results["graphs"][name] = entry
    finally:
        databases.drop_all()
        shutil.rmtree(folder, ignore_errors=True)
    return results


def render(results: dict[str, Any]) -> str:
    s, pg = results["settings"], results["versions"]["postgresql"]
    lines = [f"Recorded run, per step: {s['n']}-step graphs of no-op tools, best of {s['repeats']} "
             f"(PostgreSQL {pg['server_version']}, fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']})", ""]
    rows = []
    for name, entry in results["graphs"].items():
        c = entry["configs"]
        rows.append([name, f"{c['sqlite']['us_per_step']['min']:.1f}", f"{c['postgres']['us_per_step']['min']:.1f}",
                     f"{entry['postgres_over_sqlite']:.2f}x", f"{c['postgres async commit']['us_per_step']['min']:.1f}",
                     f"{entry['postgres_async_commit_over_sqlite']:.2f}x"])
    lines.append(table(["graph", "SQLite us/step", "PostgreSQL us/step", "PG / SQLite", "PG async commit us/step",
                        "PG async / SQLite"], rows))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test")
    p.add_argument("-n", type=int, default=None, help="steps in the chain and the fan-out (default 2000; quick 100)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per configuration (default 3)")
    p.add_argument("--url", default=None, help="a PostgreSQL server's URL (default: start a throwaway cluster)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT.relative_to(ROOT)})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; returns the results."""
    from planweave.planner.testing.postgres import PostgresCluster

    args = parse_args(argv)
    cluster = None
    url = args.url
    if url is None:
        cluster = PostgresCluster(tempfile.mkdtemp(prefix="planweave-bench-pg-"), durable=True)
        url = cluster.start()
    try:
        results = asyncio.run(amain(args, url))
    finally:
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.directory, ignore_errors=True)
    print()
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
