"""How fast does the `planweave` command start, next to `python -c "import litellm"`?

    python bench/startup.py              # 7 interleaved rounds after one warm-up round
    python bench/startup.py --quick      # smoke test: one round, no warm-up
    python bench/startup.py --repeats 15

Each round starts, as fresh processes, one after another (the order rotates every round,
so no command always runs right after another):

- `import litellm`: `python -c "import litellm"`, the floor: planweave plans through litellm,
  so a run can never start faster than litellm imports;
- `import litellm (run's gc)`: the same import with the garbage-collector handling the
  `planweave` command gives its own process (collector paused while litellm imports, then
  the imported heap frozen with `gc.freeze()`: `planweave.planner.cli.app._collect_after_loading`).
  It saves about 40% of `import litellm`'s CPU time (collections of a heap that lives as
  long as the process, the last one at exit), so
  `run / import litellm (run's gc)` is what planweave adds on top of litellm, like for like;
- `run`: `python -m planweave run "what is 17 * 23" --quiet` with the offline model (no key,
  no network), a whole run: plan, execute, record, answer;
- `--help`: `python -m planweave --help`;
- `runs`: `python -m planweave runs` (reads the run store the `run`s above write);
- `serve /health`: `python -m planweave serve --port P`, the time from starting the process
  to the first `200` from `GET /health` (then the server is stopped).

The table gives the median and minimum wall time of each, the median CPU time (user +
system; steadier than wall time on a shared machine), and the ratio `run / import litellm`
(of the wall medians, the median of each round's own ratio, and of the CPU medians), and the
same against `import litellm (run's gc)`. Targets: run within 1.10x of importing litellm;
`--help`, `runs` and `/health` under 0.5 s.

Every process gets a fresh `PLANWEAVE_HOME` (a temporary directory), no model or Langfuse
settings (offline, untraced) and `LITELLM_LOCAL_MODEL_COST_MAP=True`.
`PYTHONDONTWRITEBYTECODE` is removed from their environment: an installed package has its
bytecode compiled, and the warm-up round writes it for an editable checkout (without it every
run would compile planweave's modules from source, which no user's install does).
Results go to bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/startup.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table, version  # noqa: E402

GOAL = "what is 17 * 23"
PEER, LIKE_FOR_LIKE = "import litellm", "import litellm (run's gc)"
COMMANDS = (PEER, LIKE_FOR_LIKE, "run", "--help", "runs", "serve /health")
TARGETS = {"run / import litellm": 1.10, "--help": 0.5, "runs": 0.5, "serve /health": 0.5}
SERVE_TIMEOUT_S = 120.0


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLANWEAVE_", "LANGFUSE_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PLANWEAVE_HOME=str(home), LITELLM_LOCAL_MODEL_COST_MAP="True", COLUMNS="100")
    return env


def argv(name: str) -> list[str]:
    py = [sys.executable]
    return {
        PEER: [*py, "-c", "import litellm"],
        LIKE_FOR_LIKE: [*py, "-c", "import gc; gc.disable(); import litellm; gc.freeze(); gc.enable()"],
        "run": [*py, "-m", "planweave", "run", GOAL, "--quiet"],
        "--help": [*py, "-m", "planweave", "--help"],
        "runs": [*py, "-m", "planweave", "runs"],
    }[name]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `cmd`."""
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[1:])}` exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return took, children_cpu() - cpu


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_health(env: dict[str, str]) -> float:
    """Start `planweave serve`, poll `/health` until it answers 200; the seconds that took."""
    port = free_port()
    cmd = [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--no-record", "--log-level", "warning"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise RuntimeError(f"`planweave serve` exited {proc.returncode} before answering: {err}")
            if time.perf_counter() - started > SERVE_TIMEOUT_S:
                raise RuntimeError(f"`planweave serve` did not answer /health within {SERVE_TIMEOUT_S:.0f}s")
            time.sleep(0.01)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def measure(name: str, env: dict[str, str]) -> tuple[float, float | None]:
    """Wall seconds, and CPU seconds (None for serve: it runs on after answering)."""
    return (time_to_health(env), None) if name == "serve /health" else timed(argv(name), env)


def stat(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "samples": samples}


def main(args: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--quick", action="store_true", help="one round, no warm-up (a smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    opts = parser.parse_args(args)
    repeats, warmup = (1, 0) if opts.quick else (opts.repeats, 1)

    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="planweave-startup-") as home:
        env = child_env(Path(home))
        for round_ in range(warmup + repeats):
            shift = round_ % len(COMMANDS)
            for name in COMMANDS[shift:] + COMMANDS[:shift]:
                took, used = measure(name, env)
                if round_ >= warmup:
                    samples[name].append(took)
                    if used is not None:
                        cpu[name].append(used)
            print(f"round {round_ + 1}/{warmup + repeats}{' (warm-up)' if round_ < warmup else ''} done", file=sys.stderr)

    stats = {name: stat(s) for name, s in samples.items()}
    per_round = [r / i for r, i in zip(samples["run"], samples[PEER])]
    ratio = stats["run"]["median"] / stats[PEER]["median"]
    cpu_stats = {name: stat(c) if c else None for name, c in cpu.items()}
    cpu_ratio = statistics.median(cpu["run"]) / statistics.median(cpu[PEER])
    like_ratio = stats["run"]["median"] / stats[LIKE_FOR_LIKE]["median"]
    like_cpu_ratio = statistics.median(cpu["run"]) / statistics.median(cpu[LIKE_FOR_LIKE])
    values = {"run / import litellm": ratio, **{k: stats[k]["median"] for k in ("--help", "runs", "serve /health")}}
    targets = [
        {"name": name, "value": values[name], "target": limit, "pass": values[name] <= limit}
        for name, limit in TARGETS.items()
    ]
    data: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "versions": {d: version(d) for d in ("planweave", "litellm", "typer", "rich", "pydantic", "fastapi")},
        "git": git_info(("planner", "executor", "tools", "planweave")),
        "settings": {"quick": opts.quick, "repeats": repeats, "warmup": warmup, "goal": GOAL},
        "commands": {name: {"argv": argv(name)[1:] if name != "serve /health" else ["-m", "planweave", "serve"],
                            **stats[name], "cpu": cpu_stats[name]} for name in COMMANDS},
        "ratios": {"run / import litellm (medians)": ratio, "run / import litellm (median per round)":
                   statistics.median(per_round), "per_round": per_round, "run / import litellm (CPU medians)": cpu_ratio,
                   f"run / {LIKE_FOR_LIKE} (medians)": like_ratio, f"run / {LIKE_FOR_LIKE} (CPU medians)": like_cpu_ratio},
        "targets": targets,
    }
    rows = [
        [name, f"{stats[name]['median']:.3f}", f"{stats[name]['min']:.3f}",
         f"{statistics.median(cpu[name]):.3f}" if cpu[name] else "-", str(len(samples[name]))]
        for name in COMMANDS
    ]
    print(table(["command", "median s", "min s", "CPU median s", "n"], rows))
    print()
    print(f"run / import litellm: {ratio:.2f}x (wall medians), {statistics.median(per_round):.2f}x (median per round), "
          f"{cpu_ratio:.2f}x (CPU medians)")
    print(f"run / {LIKE_FOR_LIKE}: {like_ratio:.2f}x (wall medians), {like_cpu_ratio:.2f}x (CPU medians): "
          "what planweave adds to litellm, like for like")
    print(table(["target", "value", "limit", "pass"],
                [[t["name"], f"{t['value']:.3f}", f"{t['target']:.2f}", "yes" if t["pass"] else "NO"] for t in targets]))
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {opts.out}")
    return data


if __name__ == "__main__":
    main()
