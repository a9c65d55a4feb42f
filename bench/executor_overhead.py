"""How much does planweave's executor cost per step, and how does it compare with LangGraph?

    python bench/executor_overhead.py                 # full run (about 3 minutes on 2 cores)
    python bench/executor_overhead.py --quick         # smoke test: 500 steps, 1 repeat
    python bench/executor_overhead.py --no-langgraph  # planweave only (langgraph: pip install -e '.[bench]')
    python bench/executor_overhead.py --profile fanout  # cProfile one planweave run, print where time goes

What it measures, all in one process on one machine (see bench/README.md):

1. planweave per-step overhead with no-op async tools on three graphs:
   - chain:   N steps, each depending on the previous one;
   - fanout:  one root and N dependents (N + 1 steps; per-step numbers divide by N + 1);
   - layered: L layers x W steps, each step `depends_on` every step of the previous layer.
   The `Step` objects are built before timing (that is the planner's / user's part).
   `validate` is `Executor.start(steps)` (compiling and checking the plan graph),
   `execute` is `async with run: run.close()` (running every step and building the
   `RunResult`), and `total` is both: exactly what `await executor.run(steps)` does.
   Three configurations: `keep_events=True` (the default), `keep_events=False`, and the
   default plus one subscriber (`subscribers=[events.append]`), as the run store and
   tracing always subscribe.
2. The same graphs on LangGraph: a `StateGraph` with no-op async nodes, timed as
   compile, `await graph.ainvoke(...)`, and both. Building the `StateGraph` (add_node /
   add_edge) is reported but, like building the `Step`s, not counted.
3. Ratios LangGraph / planweave of per-step totals (planweave default configuration).
4. Parallel efficiency: L x W steps (each needing the whole previous layer) whose tool
   sleeps 50 ms, with an async tool (`asyncio.sleep`) and a sync one (`time.sleep`, in
   worker threads). Efficiency = wall time of `await executor.run(steps)` / critical
   path (L x 50 ms); 1.00 is perfect.

Timings are best-of-N: each measurement is repeated, `gc.collect()` runs between
repeats (the garbage collector stays enabled while timing, as in real runs), and the
minimum and the median are reported. Results go to bench/results/executor_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import operator
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/executor_overhead.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table, version  # noqa: E402
from planweave.executor.backends import LocalBackend  # noqa: E402
from planweave.executor.plan import Step  # noqa: E402
from planweave.executor.scheduler import Executor  # noqa: E402
from planweave.tools.base import tool  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "executor_overhead.json"

# Targets (printed as PASS/FAIL next to the numbers).
TARGET_STEP_US = 25.0  # planweave per-step total on chain and fan-out, default configuration
TARGET_RATIO = 10.0  # LangGraph / planweave per-step total, every graph
TARGET_EFFICIENCY = 1.05  # wall time / critical path on the sleep graph

SLEEP_S = 0.05


# --- tools -------------------------------------------------------------------------------------


@tool
async def noop() -> None:
    """Do nothing (measures pure executor overhead)."""
    return None


@tool
async def nap() -> None:
    """Sleep 50 ms on the event loop."""
    await asyncio.sleep(SLEEP_S)


@tool
def nap_sync() -> None:
    """Sleep 50 ms in a worker thread."""
    time.sleep(SLEEP_S)


# --- graphs ------------------------------------------------------------------------------------
# Each graph is described once as {step id: [ids it depends on]} and then turned into
# planweave `Step`s or a LangGraph `StateGraph`, so both libraries run the same shape.


def chain_graph(n: int) -> dict[str, list[str]]:
    return {f"s{i}": ([f"s{i - 1}"] if i else []) for i in range(n)}


def fanout_graph(n: int) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {"root": []}
    graph.update({f"s{i}": ["root"] for i in range(n)})
    return graph


def layered_graph(layers: int, width: int) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {}
    for k in range(layers):
        previous = [f"l{k - 1}_{j}" for j in range(width)] if k else []
        for j in range(width):
            graph[f"l{k}_{j}"] = previous
    return graph


def edge_count(graph: dict[str, list[str]]) -> int:
    return sum(len(deps) for deps in graph.values())


def planweave_steps(graph: dict[str, list[str]], tool_name: str = "noop") -> list[Step]:
    return [Step(id=sid, tool=tool_name, depends_on=list(deps)) for sid, deps in graph.items()]


# --- statistics --------------------------------------------------------------------------------


def summary(samples: list[float], scale: float = 1.0) -> dict[str, Any]:
    """min / median / every sample, each multiplied by `scale`."""
    values = [s * scale for s in samples]
    return {"min": min(values), "median": statistics.median(values), "samples": values}


class GCTimer:
    """Time spent in the cyclic garbage collector (via `gc.callbacks`), by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._t
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


# --- 1. planweave ------------------------------------------------------------------------------

CONFIGS: dict[str, dict[str, Any]] = {
    "keep_events=True": {"keep_events": True},
    "keep_events=False": {"keep_events": False},
    "keep_events=True+1 subscriber": {"keep_events": True, "subscriber": True},
}


async def time_planweave_once(
    executor: Executor, steps: list[Step], config: dict[str, Any]
) -> tuple[float, float, GCTimer]:
    """(validate seconds, execute seconds, garbage-collector pauses during them) of one run.

    validate + execute is exactly `await executor.run(steps)`, split in its two halves.
    """
    events: list[Any] = []
    subscribers = [events.append] if config.get("subscriber") else []
    with GCTimer() as gc_timer:
        t0 = time.perf_counter()
        run = executor.start(steps, keep_events=config["keep_events"], subscribers=subscribers)
        t1 = time.perf_counter()
        async with run:
            run.close()
        t2 = time.perf_counter()
    if run.result.status != "succeeded":
        raise RuntimeError(f"benchmark run failed: {run.result.error}")
    return t1 - t0, t2 - t1, gc_timer


async def bench_planweave_graph(graph: dict[str, list[str]], repeats: int) -> dict[str, Any]:
    steps = planweave_steps(graph)
    n = len(steps)
    executor = Executor([noop])
    await time_planweave_once(executor, planweave_steps(chain_graph(100)), CONFIGS["keep_events=True"])  # warm-up
    out: dict[str, Any] = {"steps": n, "edges": edge_count(graph), "configs": {}}
    for name, config in CONFIGS.items():
        validate, execute, total, in_gc, collections = [], [], [], [], []
        for _ in range(repeats):
            gc.collect()
            v, e, g = await time_planweave_once(executor, steps, config)
            validate.append(v)
            execute.append(e)
            total.append(v + e)
            in_gc.append(sum(g.seconds))
            collections.append(g.collections)
        us = 1e6 / n
        best = total.index(min(total))
        out["configs"][name] = {
            "validate_us_per_step": summary(validate, us),
            "execute_us_per_step": summary(execute, us),
            "total_us_per_step": summary(total, us),
            "total_s": summary(total),
            # Included in the times above: cyclic-GC pauses during the run (0 when none ran).
            "gc_us_per_step": {
                "in_best_run": in_gc[best] * us,
                "median": statistics.median(in_gc) * us,
                "samples": [g * us for g in in_gc],
            },
            "gc_collections_by_generation": {"in_best_run": collections[best], "samples": collections},
        }
    await executor.aclose()
    return out


# --- 2. LangGraph ------------------------------------------------------------------------------


class LGState(TypedDict):
    """Minimal state: one counter with a reducer; the no-op nodes never update it."""

    n: Annotated[int, operator.add]


async def lg_noop(state: LGState) -> dict[str, Any]:
    return {}


def langgraph_graph(graph: dict[str, list[str]]) -> Any:
    """A `StateGraph` of the same shape. A node with several dependencies gets them as one
    `add_edge([...], node)`, so LangGraph waits for all of them (like `depends_on`)."""
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


async def time_langgraph_once(graph: dict[str, list[str]], timeout_s: float) -> dict[str, float]:
    t0 = time.perf_counter()
    builder = langgraph_graph(graph)
    t1 = time.perf_counter()
    compiled = builder.compile()
    t2 = time.perf_counter()
    config = {"recursion_limit": len(graph) + 10}  # a chain takes one superstep per node
    await asyncio.wait_for(compiled.ainvoke({"n": 0}, config), timeout=max(1.0, timeout_s - (t2 - t0)))
    t3 = time.perf_counter()
    return {"build": t1 - t0, "compile": t2 - t1, "invoke": t3 - t2}


async def bench_langgraph_graph(
    make: Callable[[int], dict[str, list[str]]], size: int, repeats: int, budget_s: float
) -> dict[str, Any]:
    """Time `make(size)` on LangGraph; if one run exceeds `budget_s`, halve the size and start over."""
    requested = size
    while True:
        graph = make(size)
        samples: list[dict[str, float]] = []
        try:
            for _ in range(repeats):
                gc.collect()
                samples.append(await time_langgraph_once(graph, budget_s))
        except TimeoutError:
            print(f"  LangGraph: size {size} took longer than {budget_s:.0f}s; retrying with {size // 2}", flush=True)
            size //= 2
            continue
        break
    nodes = len(graph)
    us = 1e6 / nodes
    return {
        "nodes": nodes,
        "edges": edge_count(graph),
        "size_requested": requested,
        "size": size,
        "reduced": size != requested,
        "build_us_per_node": summary([s["build"] for s in samples], us),
        "compile_us_per_node": summary([s["compile"] for s in samples], us),
        "invoke_us_per_node": summary([s["invoke"] for s in samples], us),
        "total_us_per_node": summary([s["compile"] + s["invoke"] for s in samples], us),
        "total_s": summary([s["compile"] + s["invoke"] for s in samples]),
    }


# --- 4. parallel efficiency --------------------------------------------------------------------


async def bare_layers(layers: int, width: int, sync: bool, pool: Any) -> float:
    """The floor without any executor: the same layers as plain `asyncio.gather` (or thread-pool) calls."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    for _ in range(layers):
        if sync:
            await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, SLEEP_S) for _ in range(width)))
        else:
            await asyncio.gather(*(asyncio.sleep(SLEEP_S) for _ in range(width)))
    return time.perf_counter() - t0


async def bench_parallel(layers: int, width: int, repeats: int, sync: bool) -> dict[str, Any]:
    tool_obj = nap_sync if sync else nap
    steps = planweave_steps(layered_graph(layers, width), tool_obj.name)
    backend = LocalBackend(max_threads=max(256, width)) if sync else None
    executor = Executor([tool_obj], backend=backend)
    critical = layers * SLEEP_S
    walls, executes, floors = [], [], []
    # Each planweave run is followed by the same shape with no executor at all (what asyncio
    # timers / the thread pool cost by themselves), so both see the same machine load.
    with ThreadPoolExecutor(max(256, width)) as pool:
        for _ in range(repeats):
            gc.collect()
            v, e, _ = await time_planweave_once(executor, steps, CONFIGS["keep_events=True"])
            walls.append(v + e)
            executes.append(e)
            gc.collect()
            floors.append(await bare_layers(layers, width, sync, pool))
    await executor.aclose()
    return {
        "tool": "time.sleep in worker threads (LocalBackend(max_threads=256))" if sync else "asyncio.sleep",
        "layers": layers,
        "width": width,
        "steps": len(steps),
        "critical_path_s": critical,
        "wall_s": summary(walls),
        "execute_s": summary(executes),
        "efficiency": summary(walls, 1 / critical),
        "execute_only_efficiency": summary(executes, 1 / critical),
        "bare_asyncio_wall_s": summary(floors),
        "bare_asyncio_efficiency": summary(floors, 1 / critical),
        # planweave's best wall time over the floor's best: the executor's own share.
        "vs_floor": min(walls) / min(floors),
    }


# --- machine / versions ------------------------------------------------------------------------




def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def build_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    pw = results["planweave"]
    for g in ("chain", "fanout"):
        for cfg in CONFIGS:
            value = pw[g]["configs"][cfg]["total_us_per_step"]["min"]
            targets.append(
                {
                    "name": f"planweave {g} per-step total [{cfg}]",
                    "value": value,
                    "unit": "us/step",
                    "target": f"<= {TARGET_STEP_US:g}",
                    # The target is defined on the default configuration; the others are informative.
                    "binding": cfg == "keep_events=True",
                    "pass": value <= TARGET_STEP_US,
                }
            )
    for g, r in results.get("ratios", {}).items():
        targets.append(
            {
                "name": f"LangGraph/planweave {g}",
                "value": r["min"],
                "unit": "x",
                "target": f">= {TARGET_RATIO:g}",
                "binding": True,
                "pass": r["min"] >= TARGET_RATIO,
            }
        )
    for kind, p in results["parallel"].items():
        value = p["efficiency"]["min"]
        floor = p["bare_asyncio_efficiency"]["min"]
        targets.append(
            {
                "name": f"parallel efficiency, {kind}",
                "value": value,
                "unit": "x critical path",
                "target": f"<= {TARGET_EFFICIENCY:g}",
                "binding": True,
                "pass": value <= TARGET_EFFICIENCY,
                # The same layers with no executor: if this misses the target too, the machine does.
                "floor": floor,
                "floor_passes": floor <= TARGET_EFFICIENCY,
            }
        )
    return targets



def mm(s: dict[str, Any], fmt: str = "{:.1f}") -> str:
    """`min (median)`."""
    return f"{fmt.format(s['min'])} ({fmt.format(s['median'])})"


def render(results: dict[str, Any]) -> str:
    m, v, c = results["machine"], results["versions"], results["settings"]
    out = [
        f"planweave executor overhead -- {results['timestamp']}",
        f"Python {m['python']} on {m['platform']}, {m['cpu_count']} CPUs, load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'] or [])}",
        f"planweave {v['planweave']} (commit {str(results['git']['commit'])[:12]}"
        f"{', uncommitted changes in ' + ', '.join(results['git']['dirty_files']) if results['git']['dirty_files'] else ''})"
        f", langgraph {v['langgraph']}, pydantic {v['pydantic']}",
        f"planweave: best of {c['repeats']} (median in parentheses); LangGraph: best of {c['lg_repeats']}; "
        "gc.collect() between repeats. Times in microseconds per step.",
        "",
        "1. planweave, no-op async tool. validate = Executor.start(steps); execute = running it; "
        "total = await executor.run(steps). Step objects built before timing.",
    ]
    rows = []
    pw = results["planweave"]
    for g, r in pw.items():
        for cfg, x in r["configs"].items():
            target = ""
            if g in ("chain", "fanout"):
                target = f"{verdict(x['total_us_per_step']['min'] <= TARGET_STEP_US)} (<= {TARGET_STEP_US:g})"
            rows.append(
                [
                    f"{g} ({r['steps']} steps)",
                    cfg,
                    mm(x["validate_us_per_step"]),
                    mm(x["execute_us_per_step"]),
                    mm(x["total_us_per_step"]),
                    f"{x['gc_us_per_step']['in_best_run']:.1f} ({x['gc_us_per_step']['median']:.1f}) "
                    f"gen2 x{x['gc_collections_by_generation']['in_best_run'][2]}",
                    target,
                ]
            )
    out.append(table(["graph", "config", "validate", "execute", "total", "of which GC", "target"], rows))
    out.append(
        "   fanout counts the root: per-step = time / (N + 1). 'of which GC': cyclic garbage-collector pauses\n"
        "   during the run (gc.callbacks), included in total; first number and the count of full\n"
        "   (gen2) collections for the best run."
    )

    lg = results.get("langgraph")
    if lg:
        out += [
            "",
            "2. LangGraph, no-op async nodes. total = compile + await ainvoke(); "
            "build (StateGraph add_node/add_edge) is not counted.",
        ]
        rows = []
        for g, r in lg.items():
            rows.append(
                [
                    f"{g} ({r['nodes']} nodes{', REDUCED from size ' + str(r['size_requested']) if r['reduced'] else ''})",
                    mm(r["build_us_per_node"]),
                    mm(r["compile_us_per_node"]),
                    mm(r["invoke_us_per_node"]),
                    mm(r["total_us_per_node"]),
                    mm(r["total_s"], "{:.2f}"),
                ]
            )
        out.append(table(["graph", "build", "compile", "invoke", "total", "total s"], rows))

        out += ["", "3. LangGraph / planweave, per-step totals (planweave keep_events=True; min-to-min, median-to-median)."]
        rows = []
        for g, r in results["ratios"].items():
            rows.append(
                [
                    g,
                    f"{r['langgraph_us']:.1f}",
                    f"{r['planweave_us']:.1f}",
                    f"{r['min']:.1f}x ({r['median']:.1f}x)",
                    f"{r['min_vs_keep_events_false']:.1f}x",
                    f"{verdict(r['min'] >= TARGET_RATIO)} (>= {TARGET_RATIO:g})",
                ]
            )
        out.append(table(["graph", "LangGraph us", "planweave us", "ratio", "vs keep_events=False", "target"], rows))
    else:
        out += ["", "2-3. LangGraph skipped (--no-langgraph, or langgraph is not installed)."]

    out += ["", "4. Parallel efficiency = wall time of await executor.run(steps) / critical path."]
    rows = []
    for kind, p in results["parallel"].items():
        rows.append(
            [
                f"{kind} ({p['layers']}x{p['width']})",
                f"{p['critical_path_s']:.2f}",
                mm(p["wall_s"], "{:.3f}"),
                mm(p["efficiency"], "{:.3f}"),
                mm(p["execute_only_efficiency"], "{:.3f}"),
                mm(p["bare_asyncio_efficiency"], "{:.3f}"),
                f"{p['vs_floor']:.3f}",
                f"{verdict(p['efficiency']['min'] <= TARGET_EFFICIENCY)} (<= {TARGET_EFFICIENCY:g})",
            ]
        )
    out.append(
        table(["graph", "critical s", "wall s", "efficiency", "execute only", "no executor", "/ floor", "target"], rows)
    )
    out.append(
        "   execute only: without Executor.start (validation); no executor: the same layers as bare\n"
        "   asyncio.gather / ThreadPoolExecutor calls, run right after each planweave run: the floor on this\n"
        "   machine; / floor: planweave's best wall time / the floor's best."
    )

    out += ["", "Targets (binding ones; the keep_events=False and subscriber rows above are informative):"]
    for t in results["targets"]:
        if t["binding"]:
            floor = ""
            if "floor" in t:
                floor = f"; no executor at all: {t['floor']:.3f}" + ("" if t["floor_passes"] else ", also above the target")
            out.append(f"  {verdict(t['pass'])}  {t['name']}: {t['value']:.{3 if floor else 2}f} {t['unit']} (target {t['target']}{floor})")
    return "\n".join(out)


# --- profiling ---------------------------------------------------------------------------------


async def profile_planweave(graph: dict[str, list[str]], tool_obj: Any, config: dict[str, Any], top: int) -> str:
    """Where one run's time goes: GC time measured directly, then cProfile with GC disabled.

    cProfile inflates every call (roughly 2-3x overall, more for tiny functions), so read its
    columns as shares; the unprofiled times above them are the real ones.
    """
    steps = planweave_steps(graph, tool_obj.name)
    n = len(steps)
    backend = LocalBackend(max_threads=256) if not tool_obj.is_async else None
    executor = Executor([tool_obj], backend=backend)
    await time_planweave_once(executor, steps, config)  # warm-up
    stream = io.StringIO()
    for label, gc_on in (("gc enabled", True), ("gc disabled", False)):
        gc.collect()
        with GCTimer() as gct:
            if not gc_on:
                gc.disable()
            try:
                v, e, _ = await time_planweave_once(executor, steps, config)
            finally:
                gc.enable()
        stream.write(
            f"{n} steps, {label}: validate {v / n * 1e6:.1f} + execute {e / n * 1e6:.1f} = {(v + e) / n * 1e6:.1f} us/step"
            + (
                f"; of which in the garbage collector {sum(gct.seconds) / n * 1e6:.1f} us/step "
                f"(collections gen0/1/2: {gct.collections}, us/step by generation: "
                f"{', '.join(f'{x / n * 1e6:.1f}' for x in gct.seconds)})"
                if gc_on
                else ""
            )
            + "\n"
        )
    gc.collect()
    gc.disable()  # keep collector pauses out of the function times below
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        v, e, _ = await time_planweave_once(executor, steps, config)
        profiler.disable()
    finally:
        gc.enable()
    stream.write(f"under cProfile (gc disabled): validate {v / n * 1e6:.1f} + execute {e / n * 1e6:.1f} us/step\n")
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda kv: kv[1][2], reverse=True  # type: ignore[attr-defined]
    )[:top]:
        where = f"{os.path.relpath(file, ROOT) if file.startswith(str(ROOT)) else os.path.basename(file)}:{line}"
        rows.append([f"{func} ({where})", f"{ncalls / n:.2f}", f"{tottime / n * 1e6:.2f}", f"{cumtime / n * 1e6:.2f}"])
    stream.write(table(["function", "calls/step", "self us/step", "cumulative us/step"], rows))
    await executor.aclose()
    return stream.getvalue()


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test")
    p.add_argument("--no-langgraph", action="store_true", help="planweave only")
    p.add_argument("-n", type=int, default=None, help="steps in the chain and the fan-out (default 10000; quick 500)")
    p.add_argument("--repeats", type=int, default=None, help="planweave repeats (default 5)")
    p.add_argument("--lg-repeats", type=int, default=None, help="LangGraph repeats (default 3: its runs take seconds)")
    p.add_argument("--lg-budget-s", type=float, default=120.0, help="halve LangGraph's n if one run takes longer")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument(
        "--profile",
        choices=["chain", "fanout", "layered", "parallel", "parallel-threads"],
        default=None,
        help="instead of benchmarking, cProfile one planweave run of this graph and print the hot spots",
    )
    p.add_argument("--profile-config", choices=list(CONFIGS), default="keep_events=True")
    p.add_argument("--profile-top", type=int, default=30, help="functions to list when profiling")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n or (500 if args.quick else 10_000)
    repeats = args.repeats or (1 if args.quick else 5)
    lg_repeats = args.lg_repeats or (1 if args.quick else 3)
    layers, width = 10, (50 if args.quick else 100)
    par_layers, par_width = 3, (50 if args.quick else 200)
    # name -> (graph of a given size, size); LangGraph may halve the size if it is too slow.
    graphs: dict[str, tuple[Callable[[int], dict[str, list[str]]], int]] = {
        "chain": (chain_graph, n),
        "fanout": (fanout_graph, n),
        "layered": (lambda w: layered_graph(layers, w), width),
    }

    langgraph_version = version("langgraph")
    use_langgraph = not args.no_langgraph and langgraph_version is not None
    results: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": {
            "python": platform.python_version(),
            "planweave": version("planweave"),
            "langgraph": langgraph_version if use_langgraph else None,
            "langchain-core": version("langchain-core") if use_langgraph else None,
            "pydantic": version("pydantic"),
            "pydantic-core": version("pydantic-core"),
            "networkx": version("networkx"),
        },
        "git": git_info(("executor", "tools")),
        "settings": {
            "quick": args.quick,
            "n": n,
            "layered": {"layers": layers, "width": width},
            "repeats": repeats,
            "lg_repeats": lg_repeats if use_langgraph else None,
            "lg_budget_s": args.lg_budget_s,
            "parallel": {"layers": par_layers, "width": par_width, "sleep_s": SLEEP_S},
            "fanout_counts_root": True,
            "step_objects_built_before_timing": True,
            "gc": "enabled while timing; gc.collect() between repeats",
        },
    }

    results["planweave"] = {}
    for name, (make, size) in graphs.items():
        print(f"planweave {name} ...", flush=True)
        results["planweave"][name] = await bench_planweave_graph(make(size), repeats)

    if use_langgraph:
        results["langgraph"] = {}
        results["ratios"] = {}
        await time_langgraph_once(chain_graph(10), args.lg_budget_s)  # warm-up: imports, first compile
        for name, (make, size) in graphs.items():
            print(f"LangGraph {name} ...", flush=True)
            lg = results["langgraph"][name] = await bench_langgraph_graph(make, size, lg_repeats, args.lg_budget_s)
            pw = results["planweave"][name]["configs"]
            lg_total = lg["total_us_per_node"]
            results["ratios"][name] = {
                "langgraph_us": lg_total["min"],
                "planweave_us": pw["keep_events=True"]["total_us_per_step"]["min"],
                "min": lg_total["min"] / pw["keep_events=True"]["total_us_per_step"]["min"],
                "median": lg_total["median"] / pw["keep_events=True"]["total_us_per_step"]["median"],
                "min_vs_keep_events_false": lg_total["min"] / pw["keep_events=False"]["total_us_per_step"]["min"],
                "note": f"per-step (per-node) totals; LangGraph at size {lg['size']} vs planweave at size {size}",
            }

    results["parallel"] = {}
    for kind, sync in (("asyncio.sleep", False), ("time.sleep (threads)", True)):
        print(f"parallel efficiency, {kind} ...", flush=True)
        results["parallel"][kind] = await bench_parallel(par_layers, par_width, max(repeats, 3), sync)

    results["targets"] = build_targets(results)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; returns the results."""
    args = parse_args(argv)
    if args.profile:
        n = args.n or (500 if args.quick else 10_000)
        graph, tool_obj = {
            "chain": lambda: (chain_graph(n), noop),
            "fanout": lambda: (fanout_graph(n), noop),
            "layered": lambda: (layered_graph(10, 50 if args.quick else 100), noop),
            "parallel": lambda: (layered_graph(3, 200), nap),
            "parallel-threads": lambda: (layered_graph(3, 200), nap_sync),
        }[args.profile]()
        print(asyncio.run(profile_planweave(graph, tool_obj, CONFIGS[args.profile_config], top=args.profile_top)))
        return {}
    results = asyncio.run(amain(args))
    print()
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
