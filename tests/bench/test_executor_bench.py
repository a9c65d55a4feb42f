"""Smoke test for bench/executor_overhead.py: it runs (quick, planweave only) and writes sane JSON.

Not a timed assertion: the numbers depend on the machine and its load; only their
presence and sign are checked. LangGraph is left out (it is only installed with `.[bench]`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "executor_overhead.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_executor_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses / typing resolve the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def assert_stat(stat: dict[str, Any]) -> None:
    assert set(stat) >= {"min", "median", "samples"}
    assert stat["samples"] and all(v > 0 for v in stat["samples"])
    assert 0 < stat["min"] <= stat["median"]


# A whole (quick) benchmark: well over a minute when three test sessions share two cores.
@pytest.mark.timeout(240)
def test_quick_run_writes_expected_json(tmp_path: Path, capsys: Any) -> None:
    bench = load_script()
    out = tmp_path / "executor_overhead.json"

    returned = bench.main(["--quick", "--no-langgraph", "--out", str(out)])

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(returned))
    assert set(data) >= {"timestamp", "machine", "versions", "git", "settings", "planweave", "parallel", "targets"}
    assert "langgraph" not in data and "ratios" not in data
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["python"] and data["machine"]["platform"]
    assert data["versions"]["pydantic"]
    assert data["settings"]["quick"] is True

    assert set(data["planweave"]) == {"chain", "fanout", "layered"}
    assert data["planweave"]["fanout"]["steps"] == data["planweave"]["chain"]["steps"] + 1  # the root counts
    for graph in data["planweave"].values():
        assert graph["steps"] > 0 and graph["edges"] > 0
        assert set(graph["configs"]) == set(bench.CONFIGS)
        for config in graph["configs"].values():
            for key in ("validate_us_per_step", "execute_us_per_step", "total_us_per_step", "total_s"):
                assert_stat(config[key])
            assert all(g >= 0 for g in config["gc_us_per_step"]["samples"])  # 0 when no collection ran

    assert set(data["parallel"]) == {"asyncio.sleep", "time.sleep (threads)"}
    for p in data["parallel"].values():
        assert p["critical_path_s"] > 0
        for key in ("wall_s", "execute_s", "efficiency", "execute_only_efficiency", "bare_asyncio_efficiency"):
            assert_stat(p[key])
        # A layer of sleeps cannot finish before its sleeps do (not a performance bound).
        assert p["wall_s"]["min"] >= p["critical_path_s"]
        assert p["vs_floor"] > 0

    parallel_targets = [t for t in data["targets"] if t["name"].startswith("parallel efficiency")]
    assert len(parallel_targets) == 2 and all(t["floor"] >= 1 for t in parallel_targets)

    assert data["targets"] and all(isinstance(t["pass"], bool) and t["value"] > 0 for t in data["targets"])
    printed = capsys.readouterr().out
    assert "planweave" in printed and "Parallel efficiency" in printed
