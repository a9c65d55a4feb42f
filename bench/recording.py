"""What does recording a run cost, and how does it compare with LangGraph's SQLite checkpointer?

    python bench/recording.py                  # full run: 2,000-step chain and fan-out (about a minute)
    python bench/recording.py --quick          # smoke test: 100 steps, 1 repeat
    python bench/recording.py --no-langgraph   # planweave only (LangGraph: pip install -e '.[bench]')

Side by side in one run, on the same graphs of no-op async tools (see bench/README.md):

1. planweave unrecorded: `await executor.run(steps)`.
2. planweave recorded: the same with `subscribers=[store.recorder()]` on a `SQLiteRunStore`
   in a temporary directory (masking on, as `open_store` sets it up). The run returns once its
   last event is durable, so the time includes writing every event.
3. LangGraph with `AsyncSqliteSaver` (langgraph-checkpoint-sqlite): a `StateGraph` of the
   same shape with no-op async nodes, compiled with the checkpointer and invoked with a
   thread id: LangGraph's durable execution, writing a checkpoint per superstep.

Graphs: `chain` (N steps, each depending on the previous one) and `fanout` (one root and N
dependents; per-step numbers divide by N + 1). Opening the store or the saver is not timed;
building the `Step`s and the `StateGraph` is not timed either.

Each configuration of each graph is measured in a fresh Python process of its own (this
script with `--worker`), after a warm-up run there: what one configuration leaves behind
(LangGraph's chain keeps hundreds of megabytes of objects and pages) does not slow the next.

Reported: microseconds per step (best and median of the repeats, `gc.collect()` between
them), recorded / unrecorded, LangGraph / planweave recorded, and bytes stored per step
(the database file, WAL included, after the store is closed, divided by the steps).
Results go to bench/results/recording.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/recording.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table, version  # noqa: E402
from planweave.executor.masking import Masker  # noqa: E402
from planweave.executor.plan import Step  # noqa: E402
from planweave.executor.scheduler import Executor  # noqa: E402
from planweave.executor.sqlite_store import SQLiteRunStore  # noqa: E402
from planweave.tools.base import tool  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "recording.json"

# Targets (printed as PASS/FAIL next to the numbers).
TARGET_RECORDED_US = 50.0  # planweave recorded, per step, chain and fan-out
TARGET_RATIO = 40.0  # LangGraph with AsyncSqliteSaver / planweave recorded, per step

CONFIGS = ("planweave unrecorded", "planweave recorded", "langgraph + AsyncSqliteSaver")


@tool
async def noop() -> None:
    """Do nothing (measures the executor and its recording)."""
    return None


def chain_graph(n: int) -> dict[str, list[str]]:
    return {f"s{i}": ([f"s{i - 1}"] if i else []) for i in range(n)}


def fanout_graph(n: int) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {"root": []}
    graph.update({f"s{i}": ["root"] for i in range(n)})
    return graph


GRAPHS: dict[str, Callable[[int], dict[str, list[str]]]] = {"chain": chain_graph, "fanout": fanout_graph}


def db_bytes(path: Path) -> int:
    """The database file and its WAL, as they lie on disk."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


# --- planweave ---------------------------------------------------------------------------------


async def time_planweave(graph: dict[str, list[str]], recorded: bool, folder: Path) -> tuple[float, int]:
    """One run: (seconds, bytes stored)."""
    steps = [Step(id=sid, tool="noop", depends_on=deps) for sid, deps in graph.items()]
    executor = Executor([noop])
    if not recorded:
        t0 = time.perf_counter()
        result = await executor.run(steps)
        elapsed = time.perf_counter() - t0
        assert result.status == "succeeded", result.error
        return elapsed, 0
    path = folder / "runs.db"
    store = SQLiteRunStore(path, mask=Masker.from_env())
    try:
        t0 = time.perf_counter()
        result = await executor.run(steps, subscribers=[store.recorder(kind="workflow", name="bench")])
        elapsed = time.perf_counter() - t0
        assert result.status == "succeeded", result.error
        assert store.summary(result.run_id).status == "succeeded"
    finally:
        store.close()
    return elapsed, db_bytes(path)


def time_commit_floor(steps: int, folder: Path) -> tuple[float, int]:
    """The floor under the chain's recording: a bare Python loop making one SQLite commit per
    step, as the store does (the store's schema, WAL, `synchronous=NORMAL`, `BEGIN IMMEDIATE`,
    the step's two rows), with nothing else: (seconds, bytes stored)."""
    import sqlite3

    from planweave.executor.sqlite_store import _SCHEMA

    path = folder / "floor.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO runs (id, kind, status, created_at) VALUES ('r', 'workflow', 'running', 0)")
        insert = "INSERT INTO events (run_id, seq, kind, at, step_id, data) VALUES (?, ?, ?, ?, ?, ?)"
        started, succeeded = '{"tool":"noop","attempt":1,"args":{}}', '{"output":null,"attempts":1,"duration_s":0.0001}'
        t0 = time.perf_counter()
        for i in range(steps):
            at = time.time()
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, (("r", 2 * i + 1, "step_started", at, f"s{i}", started),
                                    ("r", 2 * i + 2, "step_succeeded", at, f"s{i}", succeeded)))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    return elapsed, db_bytes(path)


# --- LangGraph ---------------------------------------------------------------------------------


class LGState(TypedDict):
    """Minimal state: one counter with a reducer; the no-op nodes never update it."""

    n: Annotated[int, operator.add]


async def lg_noop(state: LGState) -> dict[str, Any]:
    return {}


def langgraph_graph(graph: dict[str, list[str]]) -> Any:
    """A `StateGraph` of the same shape (as in bench/executor_overhead.py)."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(LGState)
    has_dependents: set[str] = set()
    for sid in graph:
        g.add_node(sid, lg_noop)
    for sid, deps in graph.items():
        if not deps:
            g.add_edge(START, sid)
        elif len(deps) == 1:
            g.add_edge(deps[0], sid)
        else:
            g.add_edge(list(deps), sid)
        has_dependents.update(deps)
    for sid in graph:
        if sid not in has_dependents:
            g.add_edge(sid, END)
    return g


async def time_langgraph(graph: dict[str, list[str]], folder: Path) -> tuple[float, int]:
    """One checkpointed run: (seconds, bytes stored)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    builder = langgraph_graph(graph)
    path = folder / "checkpoints.db"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        config = {"configurable": {"thread_id": "bench"}, "recursion_limit": len(graph) + 10}
        t0 = time.perf_counter()
        compiled = builder.compile(checkpointer=saver)
        await compiled.ainvoke({"n": 0}, config)
        elapsed = time.perf_counter() - t0
    return elapsed, db_bytes(path)


# --- measuring ---------------------------------------------------------------------------------


async def measure(
    run_once: Callable[[Path], Awaitable[tuple[float, int]]], steps: int, repeats: int
) -> dict[str, Any]:
    seconds: list[float] = []
    stored: list[int] = []
    for _ in range(repeats):
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="planweave-bench-") as folder:
            elapsed, size = await run_once(Path(folder))
        seconds.append(elapsed)
        stored.append(size)
    per_step = [s / steps * 1e6 for s in seconds]
    return {
        "us_per_step": {"min": min(per_step), "median": statistics.median(per_step), "samples": per_step},
        "bytes_per_step": min(stored) / steps,
        "total_s": min(seconds),
    }


FLOOR = "floor: one bare SQLite commit per step"


async def measure_config(graph_name: str, config: str, n: int, repeats: int) -> dict[str, Any]:
    """Measure one configuration of one graph in this process, after a warm-up run of it."""
    graph = GRAPHS[graph_name](n)
    steps = len(graph)
    if config == FLOOR:
        async def run_once(folder: Path) -> tuple[float, int]:
            return time_commit_floor(n, folder)
    elif config.startswith("langgraph"):
        async def run_once(folder: Path) -> tuple[float, int]:
            return await time_langgraph(graph, folder)
        warm: Callable[[Path], Awaitable[tuple[float, int]]] = lambda f: time_langgraph(chain_graph(10), f)
    else:
        recorded = config == "planweave recorded"

        async def run_once(folder: Path) -> tuple[float, int]:
            return await time_planweave(graph, recorded, folder)
        warm = lambda f: time_planweave(chain_graph(10), recorded, f)
    if config != FLOOR:  # imports, the first store or saver, the first compile
        with tempfile.TemporaryDirectory() as folder:
            await warm(Path(folder))
    return await measure(run_once, steps, repeats)


def measure_in_worker(graph_name: str, config: str, n: int, repeats: int) -> dict[str, Any]:
    """`measure_config` in a fresh Python process (this script, `--worker`)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", graph_name, config, "-n", str(n),
               "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark worker for {graph_name} / {config} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n or (100 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 10)
    lg_repeats = args.lg_repeats or (1 if args.quick else 2)
    use_langgraph = not args.no_langgraph and version("langgraph-checkpoint-sqlite") is not None
    results: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "versions": {
            "planweave": version("planweave"),
            "langgraph": version("langgraph") if use_langgraph else None,
            "langgraph-checkpoint-sqlite": version("langgraph-checkpoint-sqlite") if use_langgraph else None,
            "aiosqlite": version("aiosqlite") if use_langgraph else None,
        },
        "git": git_info(("executor", "bench")),
        "settings": {"n": n, "repeats": repeats, "lg_repeats": lg_repeats if use_langgraph else None,
                     "quick": args.quick, "langgraph": use_langgraph},
        "graphs": {},
    }
    for name, make in GRAPHS.items():
        entry: dict[str, Any] = {"steps": len(make(n)), "configs": {}}
        for config in CONFIGS:
            if config.startswith("langgraph") and not use_langgraph:
                continue
            count = lg_repeats if config.startswith("langgraph") else repeats
            print(f"{name}: {config} ...", flush=True)
            entry["configs"][config] = measure_in_worker(name, config, n, count)
        configs = entry["configs"]
        recorded_us = configs["planweave recorded"]["us_per_step"]["min"]
        entry["recorded_over_unrecorded"] = recorded_us / configs["planweave unrecorded"]["us_per_step"]["min"]
        if use_langgraph:
            entry["langgraph_over_recorded"] = configs[CONFIGS[2]]["us_per_step"]["min"] / recorded_us
        results["graphs"][name] = entry
    # What no recording of the chain can go below on this machine, measured in the same run.
    print(f"{FLOOR} ...", flush=True)
    commit = measure_in_worker("chain", FLOOR, n, repeats)
    unrecorded = results["graphs"]["chain"]["configs"]["planweave unrecorded"]["us_per_step"]["min"]
    results["floor"] = {
        "commit_us": commit["us_per_step"],
        "chain_us": unrecorded + commit["us_per_step"]["min"],
        "note": "chain floor = planweave unrecorded + one bare WAL commit (synchronous=NORMAL) per step",
    }
    results["targets"] = targets(results)
    results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return results


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, entry in results["graphs"].items():
        value = entry["configs"]["planweave recorded"]["us_per_step"]["min"]
        out.append({"name": f"{name}: planweave recorded us/step <= {TARGET_RECORDED_US:g}", "value": value,
                    "pass": value <= TARGET_RECORDED_US})
        if "langgraph_over_recorded" in entry:
            ratio = entry["langgraph_over_recorded"]
            out.append({"name": f"{name}: LangGraph+AsyncSqliteSaver / planweave recorded >= {TARGET_RATIO:g}",
                        "value": ratio, "pass": ratio >= TARGET_RATIO})
    return out


def render(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        f"Recording cost: {s['n']}-step graphs of no-op async tools, best of {s['repeats']} "
        f"(LangGraph best of {s['lg_repeats']})" if s["langgraph"] else
        f"Recording cost: {s['n']}-step graphs of no-op async tools, best of {s['repeats']} (LangGraph skipped)",
        "",
    ]
    rows = []
    for name, entry in results["graphs"].items():
        for config, r in entry["configs"].items():
            rows.append([f"{name} / {config}", f"{r['us_per_step']['min']:.1f}", f"{r['us_per_step']['median']:.1f}",
                         f"{r['bytes_per_step']:.0f}" if r["bytes_per_step"] else "-"])
    lines.append(table(["graph / configuration", "us/step", "median", "bytes/step"], rows))
    lines.append("")
    ratio_rows = [
        [name, f"{e['recorded_over_unrecorded']:.1f}x",
         f"{e['langgraph_over_recorded']:.1f}x" if "langgraph_over_recorded" in e else "-"]
        for name, e in results["graphs"].items()
    ]
    lines.append(table(["graph", "recorded / unrecorded", "LangGraph+saver / recorded"], ratio_rows))
    lines.append("")
    floor = results.get("floor")
    if floor is not None:
        lines.append(
            f"Floor on this machine now: a bare SQLite WAL commit (synchronous=NORMAL, the step's two rows) "
            f"costs {floor['commit_us']['min']:.1f} us (median {floor['commit_us']['median']:.1f}); "
            f"with the unrecorded executor, the chain cannot go below {floor['chain_us']:.1f} us/step."
        )
        lines.append("")
    load = results["machine"]["load_average"]
    if load:
        end = results["machine"].get("load_average_end") or load
        lines.append(f"Load average (1 min): {load[0]:.2f} at the start, {end[0]:.2f} at the end, "
                     f"on {results['machine']['cpu_count']} CPUs.")
        lines.append("")
    lines += [f"{'PASS' if t['pass'] else 'FAIL'}  {t['name']}: {t['value']:.1f}" for t in results["targets"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test")
    p.add_argument("--no-langgraph", action="store_true", help="planweave only")
    p.add_argument("-n", type=int, default=None, help="steps in the chain and the fan-out (default 2000; quick 100)")
    p.add_argument("--repeats", type=int, default=None, help="planweave repeats (default 10)")
    p.add_argument("--lg-repeats", type=int, default=None, help="LangGraph repeats (default 2: its runs take seconds)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--worker", nargs=2, metavar=("GRAPH", "CONFIG"), help=argparse.SUPPRESS)  # one measurement, as JSON
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, write the JSON; returns the results."""
    args = parse_args(argv)
    if args.worker:
        graph_name, config = args.worker
        result = asyncio.run(measure_config(graph_name, config, args.n, args.repeats))
        print(json.dumps(result))
        return result
    results = asyncio.run(amain(args))
    print()
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
