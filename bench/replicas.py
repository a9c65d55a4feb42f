"""Chat throughput of `planweave serve`: one replica against two replicas sharing one run store.

    python bench/replicas.py                 # 200 concurrent chat runs per setup; about a minute
    python bench/replicas.py --runs 50       # a quick look
    python bench/replicas.py --store sqlite  # force the store (default: PostgreSQL when a server can
                                             # be started here or PLANWEAVE_TEST_PG_URL names one)

Each run is a real chat request (`POST /v1/chat/completions`, not streamed) that plans one step
(a no-op tool), runs it, and joins: two model calls to a fake OpenAI-compatible server with
realistic small delays (first token after 30 ms, then 400 tokens/s), and every event recorded
in the store. All runs are sent at once, spread round-robin over the replicas; a load balancer
needs no sticky sessions (any replica serves any conversation). The peer is one replica on the
same kind of store, in the same run. Prints runs/s and p50/p95 latency per setup and the ratio;
writes `bench/results/replicas.json`.

On this machine (2 cores, shared with the fake model server and the client in this process)
two replicas share the same two cores, so the ratio shows how much of one replica's time is
spent waiting (on the model, the store, its one event loop) rather than its ceiling elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, git_info, table, version  # noqa: E402

from planweave.planner.testing import FakeModelServer, RecordedRequest, Reply  # noqa: E402

TOOLS = textwrap.dedent(
    '''
    from planweave.tools import tool

    @tool
    def note(text: str) -> str:
        """Note something down."""
        return text
    '''
)
PLAN = Reply.json_obj({"rationale": "note it", "steps": [{"id": "n", "tool": "note", "args": {"text": "noted"}}],
                       "answer": None})
EXTRA = os.environ.get("BENCH_SERVE_ARGS", "").split()
FINISH = Reply.json_obj({"action": "finish", "answer": "Noted.", "reason": ""})


def model_reply(request: RecordedRequest) -> Reply:
    """The plan, or (for the join prompt) the answer: any replica may ask either, in any order."""
    join = "Decide whether the goal is answered by the results" in json.dumps(request.body)
    return FINISH if join else PLAN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def postgres() -> Iterator[str | None]:
    """A PostgreSQL URL (PLANWEAVE_TEST_PG_URL, else a throwaway cluster), or None when there is none."""
    if os.environ.get("PLANWEAVE_TEST_PG_URL"):
        yield os.environ["PLANWEAVE_TEST_PG_URL"]
        return
    try:
        from planweave.planner.testing.postgres import PostgresCluster, PostgresUnavailableError
    except ImportError:  # a planweave without the PostgreSQL store
        yield None
        return
    # Not inside the work directory: as root, PostgreSQL runs as `postgres`, which cannot enter it.
    cluster = PostgresCluster(tempfile.mkdtemp(prefix="planweave-bench-pg-"))
    try:
        try:
            cluster.start()
        except PostgresUnavailableError as exc:
            print(f"(no PostgreSQL here: {exc})", file=sys.stderr)
            yield None
            return
        try:
            yield cluster.url
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(cluster.directory, ignore_errors=True)


class Replicas:
    """`count` `planweave serve` processes on one store, planning with the fake model."""

    def __init__(self, count: int, store: str, model: FakeModelServer, workdir: Path, runs: int) -> None:
        self.roots: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {k: v for k, v in os.environ.items() if k not in ("PLANWEAVE_MODEL", "PLANWEAVE_API_KEY")}
        env.update(OPENAI_API_KEY="sk-fake", LITELLM_LOCAL_MODEL_COST_MAP="True")
        if store.startswith("postgresql://"):
            env["PLANWEAVE_STORE_URL"] = store
        else:
            env["PLANWEAVE_HOME"] = store
        for _ in range(count):
            port = free_port()
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--model", "openai/fake",
                 "--api-base", model.base_url, "--tools", str(workdir / "tools.py"), "--workspace", str(workdir),
                 "--max-concurrent-runs", str(runs), "--log-level", "warning", *EXTRA],
                env=env, stdout=subprocess.DEVNULL, stderr=(workdir / f"serve-{port}.log").open("w"), cwd=ROOT,
            ))  # fmt: skip
            self.roots.append(f"http://127.0.0.1:{port}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 180
        for root, proc in zip(self.roots, self.procs):
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the replica at {root} did not start; see its log in the work directory")
                try:
                    if httpx.get(root + "/ready", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


async def one_chat(client: httpx.AsyncClient, root: str, number: int) -> float:
    body = {"model": "planweave", "messages": [{"role": "user", "content": f"note run {number}"}]}
    started = time.perf_counter()
    response = await client.post(root + "/v1/chat/completions", json=body)
    took = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"run {number} failed: {response.status_code} {response.text[:300]}")
    text = response.json()["choices"][0]["message"]["content"]
    if not text.rstrip().endswith("Noted."):
        raise SystemExit(f"run {number} answered something else: {text[-300:]!r}")
    return took


async def burst(roots: list[str], runs: int, offset: int) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=runs + 10, max_keepalive_connections=runs + 10)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        started = time.perf_counter()
        latencies = await asyncio.gather(*(one_chat(client, roots[i % len(roots)], offset + i) for i in range(runs)))
        return time.perf_counter() - started, list(latencies)


def measure(count: int, store_kind: str, runs: int, model: FakeModelServer, workdir: Path, pg: str | None) -> dict[str, Any]:
    with ExitStack() as stack:
        if store_kind == "postgresql":
            assert pg is not None
            store = pg
            _reset_postgres(pg)
        else:
            store = str(workdir / f"home-{count}")
        replicas = Replicas(count, store, model, workdir, runs)
        stack.callback(replicas.stop)
        replicas.wait_ready()
        asyncio.run(burst(replicas.roots, 4 * count, 0))  # warm: each replica's first runs import the rest
        wall, latencies = asyncio.run(burst(replicas.roots, runs, 1000))
    latencies.sort()
    return {
        "replicas": count,
        "runs": runs,
        "wall_s": wall,
        "runs_per_s": runs / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[max(0, int(round(0.95 * len(latencies))) - 1)],
    }


def _reset_postgres(url: str) -> None:
    """An empty store for each setup (the runs of the last setup would slow its listing)."""
    from planweave.executor.store import open_store

    store = open_store(url)
    try:
        for summary in store.list_runs(limit=None):
            store.delete(summary.id)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="concurrent chat runs per setup")
    parser.add_argument("--store", choices=["auto", "postgresql", "sqlite"], default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "replicas.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="planweave-bench-replicas-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        (workdir / "tools.py").write_text(TOOLS)
        pg = stack.enter_context(postgres()) if args.store != "sqlite" else None
        if args.store == "postgresql" and pg is None:
            raise SystemExit("no PostgreSQL could be started here; install it or use `--store sqlite`.")
        store_kind = "postgresql" if pg is not None else "sqlite"
        print(f"store: {store_kind} ({'one database' if pg else 'one SQLite file'} shared by the replicas); "
              f"{args.runs} concurrent chat runs per setup; {os.cpu_count()} cores\n")
        model = stack.enter_context(FakeModelServer(handler=model_reply, ttft_s=0.03, tokens_per_s=400))
        results = [measure(count, store_kind, args.runs, model, workdir, pg) for count in (1, 2)]

    one, two = results
    rows = [[f"{r['replicas']} replica{'s' if r['replicas'] > 1 else ''}", f"{r['runs_per_s']:.1f}",
             f"{r['p50_s'] * 1000:.0f}", f"{r['p95_s'] * 1000:.0f}", f"{r['wall_s']:.1f}"] for r in results]
    print(table(["setup", "runs/s", "p50 ms", "p95 ms", "wall s"], rows))
    ratio = two["runs_per_s"] / one["runs_per_s"]
    print(f"\ntwo replicas / one: {ratio:.2f}x the throughput")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "store": store_kind,
        "results": results,
        "ratio_two_over_one": ratio,
        "model": {"ttft_s": 0.03, "tokens_per_s": 400, "calls_per_run": 2},
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {"uvicorn": version("uvicorn"), "fastapi": version("fastapi"), "psycopg": version("psycopg")},
        **git_info(("planner/serve", "executor")),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2))
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
