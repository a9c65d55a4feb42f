"""What does sending a step to Ray cost, and what does it buy on this machine?

    python bench/ray_backend.py            # full run (about a minute on 2 cores, Ray's start included)
    python bench/ray_backend.py --quick    # smoke test: few steps, 1 repeat
    python bench/ray_backend.py --address HOST:PORT   # on an existing cluster

Needs Ray (`pip install -e '.[ray]'`). The peer is planweave's own default: the same tool run
by the `LocalBackend` (sync tools in worker threads, in this process). Both sides run the same
function; only `backend="ray"` differs.

1. Per-step overhead: a chain of steps (each waits for the previous one, so one call is in
   flight at a time); wall time per step on each backend, and Ray's minus local's (the
   overhead of the Ray backend against local threads):
   - no-op: a sync tool that returns at once;
   - cpu 50 ms: pure-Python arithmetic calibrated to take 50 ms here.
2. Fan-out: 200 independent 50 ms CPU-bound steps. Local threads share one interpreter lock,
   so they take about 200 x 50 ms whatever the thread count; Ray runs one worker process per
   CPU. Speedup = local wall time / Ray wall time.

Ray starts once (not timed; `ray.init(num_cpus=os.cpu_count())` unless Ray is already up or
`--address` is given) and its workers are warmed up with a few calls first. Timings are
best-of-N with the median; results go to bench/results/ray_backend.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/ray_backend.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table, version  # noqa: E402
from planweave.executor.plan import Step  # noqa: E402
from planweave.executor.ray_backend import RayBackend  # noqa: E402
from planweave.executor.scheduler import Executor  # noqa: E402
from planweave.tools.base import Tool  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "ray_backend.json"
CPU_MS = 50.0


def noop() -> int:
    """Return at once."""
    return 0


def burn(n: int) -> int:
    """Pure-Python arithmetic: holds the interpreter lock for its whole run."""
    x = 0
    for i in range(n):
        x += i * i % 7
    return x


def calibrate(target_ms: float) -> tuple[int, float]:
    """Iterations of `burn` taking about `target_ms` here, and the best time of that many (ms).

    Best of 3 per try and a few rounds of rescaling: on a shared machine a single timing can be
    several times too long."""

    def best_ms(n: int) -> float:
        samples = []
        for _ in range(3):
            t = time.perf_counter()
            burn(n)
            samples.append((time.perf_counter() - t) * 1000)
        return min(samples)

    n = 100_000
    took = best_ms(n)
    for _ in range(4):
        n = max(1, int(n * target_ms / took))
        took = best_ms(n)
        if abs(took - target_ms) < 0.1 * target_ms:
            break
    return n, took


def stat(samples: list[float]) -> dict[str, Any]:
    return {"min": min(samples), "median": statistics.median(samples), "samples": samples}


async def timed(executor: Executor, steps: list[Step]) -> float:
    gc.collect()
    t = time.perf_counter()
    result = await executor.run(steps)
    took = time.perf_counter() - t
    if result.status != "succeeded":
        raise RuntimeError(f"benchmark run {result.status}: {result.error}")
    return took


def chain(tool: str, n: int, args: dict[str, Any]) -> list[Step]:
    return [
        Step(id=f"s{i}", tool=tool, args=args, depends_on=[f"s{i - 1}"] if i else []) for i in range(n)
    ]


def fanout(tool: str, n: int, args: dict[str, Any]) -> list[Step]:
    return [Step(id=f"s{i}", tool=tool, args=args) for i in range(n)]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    if args.address is None and not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    backend = RayBackend(args.address)
    backend.connect()
    quick = args.quick
    repeats = 1 if quick else args.repeats
    n_noop, n_cpu, n_fan = (20, 4, 8) if quick else (200, 20, 200)
    iterations, cpu_ms = calibrate(CPU_MS)

    tools: dict[str, Callable[..., Any]] = {"noop": noop, "burn": burn}
    local = Executor([Tool.from_function(fn, name=name) for name, fn in tools.items()])
    remote = Executor([Tool.from_function(fn, name=name, backend="ray") for name, fn in tools.items()], backend=backend)
    # Warm-up: Ray starts a worker process per CPU on first use; the local pool starts its threads.
    for ex in (local, remote):
        await ex.run(fanout("burn", 2 * (os.cpu_count() or 1), {"n": iterations // 10}))
        await ex.run(chain("noop", 5, {}))

    out: dict[str, Any] = {"cpu_tool_ms": cpu_ms, "burn_iterations": iterations}
    cases = [
        ("noop", "noop", n_noop, {}, 0.0),
        ("cpu 50 ms", "burn", n_cpu, {"n": iterations}, cpu_ms),
    ]
    per_step: dict[str, Any] = {}
    for label, tool, n, tool_args, own_ms in cases:
        row: dict[str, Any] = {"steps": n, "tool_ms": own_ms}
        for side, ex in (("local", local), ("ray", remote)):
            walls = [await timed(ex, chain(tool, n, tool_args)) for _ in range(repeats)]
            row[side] = {"wall_s": stat(walls), "ms_per_step": stat([w / n * 1000 for w in walls])}
        # What a step costs on Ray beyond the same step on a local thread: the Ray backend's overhead.
        row["ray_minus_local_ms_per_step"] = row["ray"]["ms_per_step"]["min"] - row["local"]["ms_per_step"]["min"]
        row["ray_over_local_wall"] = row["ray"]["wall_s"]["min"] / row["local"]["wall_s"]["min"]
        per_step[label] = row
    out["per_step"] = per_step

    fan: dict[str, Any] = {"steps": n_fan, "tool_ms": cpu_ms, "cpus": os.cpu_count()}
    for side, ex in (("local", local), ("ray", remote)):
        fan[side] = {"wall_s": stat([await timed(ex, fanout("burn", n_fan, {"n": iterations})) for _ in range(repeats)])}
    fan["speedup"] = fan["local"]["wall_s"]["min"] / fan["ray"]["wall_s"]["min"]
    fan["serial_s"] = n_fan * cpu_ms / 1000
    out["fanout"] = fan
    await local.aclose()
    await remote.aclose()
    return out


def report(data: dict[str, Any]) -> str:
    rows = []
    for label, row in data["per_step"].items():
        rows.append([
            label, str(row["steps"]),
            f"{row['local']['ms_per_step']['min']:.3f}",
            f"{row['ray']['ms_per_step']['min']:.3f}",
            f"{row['ray']['ms_per_step']['median']:.3f}",
            f"{row['ray_minus_local_ms_per_step']:+.3f}",
            f"{row['ray_over_local_wall']:.2f}x",
        ])
    fan = data["fanout"]
    lines = [
        f"Per-step cost (chain, ms per step; the cpu tool takes {data['cpu_tool_ms']:.1f} ms alone here)",
        table(["tool", "steps", "local min", "ray min", "ray median", "ray - local", "ray / local"], rows),
        "",
        f"Fan-out: {fan['steps']} independent {fan['tool_ms']:.0f} ms CPU-bound steps on {fan['cpus']} CPUs",
        table(
            ["backend", "wall min s", "wall median s"],
            [[side, f"{fan[side]['wall_s']['min']:.2f}", f"{fan[side]['wall_s']['median']:.2f}"] for side in ("local", "ray")],
        ),
        f"speedup ray / local threads: {fan['speedup']:.2f}x (serial time {fan['serial_s']:.1f} s)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--address", default=None, help="a Ray cluster to use instead of a local one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    measured = asyncio.run(measure(args))
    data = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        "versions": {"planweave": version("planweave"), "ray": version("ray"), "pydantic": version("pydantic")},
        "git": git_info(("executor", "tools", "bench")),
        "settings": {"quick": args.quick, "repeats": 1 if args.quick else args.repeats, "address": args.address},
        **measured,
    }
    print(report(data))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


if __name__ == "__main__":
    main()
