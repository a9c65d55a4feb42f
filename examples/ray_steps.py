"""Heavy steps on Ray, quick ones here: `python examples/ray_steps.py` (needs `pip install -e '.[ray]'`).

Starts a local Ray for the run (or joins the one this process already has) and stops it after.
"""

import os

from planweave.executor import Executor, RayBackend, Step
from planweave.tools import tool


@tool(num_cpus=1)  # or num_gpus=1, memory=2**30, resources={"name": 1}, backend="ray"
def crunch(n: int) -> dict[str, int]:
    """CPU-heavy Python: runs in a Ray worker process, one per CPU, side by side."""
    return {"sum": sum(i * i % 7 for i in range(n)), "pid": os.getpid()}


@tool
def total(parts: list[dict[str, int]]) -> dict[str, int]:
    """Quick: runs here, in the planweave process."""
    return {"sum": sum(p["sum"] for p in parts), "pid": os.getpid()}


steps = [Step(id=f"c{i}", tool="crunch", args={"n": 200_000 + i}) for i in range(4)]
steps.append(Step(id="total", tool="total", args={"parts": [f"${{c{i}}}" for i in range(4)]}))

if __name__ == "__main__":
    result = Executor([crunch, total], backend=RayBackend()).run_sync(steps)
    workers = {result.steps[f"c{i}"].output["pid"] for i in range(4)} - {os.getpid()}
    print(result.status, result.steps["total"].output["sum"], f"({len(workers)} Ray worker processes)")
