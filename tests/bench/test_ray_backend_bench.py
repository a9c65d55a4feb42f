"""Smoke test for bench/ray_backend.py: it runs (quick, on the session's Ray) and writes sane JSON.

Not a timed assertion: the numbers depend on the machine and its load; only their presence
and sign are checked.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "ray_backend.py"

pytestmark = pytest.mark.timeout(240)  # may be the test that waits for the session's Ray to start


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_ray_backend", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def test_quick_run_writes_expected_json(ray_cluster: str, tmp_path: Path, capsys: Any) -> None:
    bench = load_script()
    out = tmp_path / "ray_backend.json"

    returned = bench.main(["--quick", "--out", str(out)])

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(returned))
    assert set(data) >= {"timestamp", "machine", "versions", "git", "settings", "per_step", "fanout", "cpu_tool_ms"}
    assert data["versions"]["ray"] and data["settings"]["quick"] is True
    assert data["cpu_tool_ms"] > 0 and data["burn_iterations"] > 0
    assert set(data["per_step"]) == {"noop", "cpu 50 ms"}
    for row in data["per_step"].values():
        assert row["steps"] > 0 and row["ray_over_local_wall"] > 0 and "ray_minus_local_ms_per_step" in row
        for side in ("local", "ray"):
            assert row[side]["wall_s"]["min"] > 0 and row[side]["ms_per_step"]["min"] > 0
    fan = data["fanout"]
    assert fan["steps"] > 0 and fan["speedup"] > 0
    # A chain of CPU-bound steps cannot finish before its tools do (not a performance bound).
    cpu = data["per_step"]["cpu 50 ms"]
    assert cpu["ray"]["wall_s"]["min"] >= 0.5 * cpu["steps"] * data["cpu_tool_ms"] / 1000
    printed = capsys.readouterr().out
    assert "Per-step cost" in printed and "speedup ray / local threads" in printed
