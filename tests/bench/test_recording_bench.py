"""Smoke test for bench/recording.py: it runs (quick, planweave only) and writes sane JSON.

Not a timed assertion: the numbers depend on the machine and its load; only their presence
and sign are checked. LangGraph is left out (it is only installed with `.[bench]`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "recording.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_recording", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses / typing resolve the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def test_quick_run_writes_expected_json(tmp_path: Path, capsys: Any) -> None:
    bench = load_script()
    out = tmp_path / "recording.json"

    returned = bench.main(["--quick", "--no-langgraph", "-n", "50", "--out", str(out)])

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(returned))
    assert set(data) >= {"timestamp", "machine", "versions", "git", "settings", "graphs", "targets"}
    assert data["settings"] == {"n": 50, "repeats": 1, "lg_repeats": None, "quick": True, "langgraph": False}
    assert set(data["graphs"]) == {"chain", "fanout"}
    assert data["graphs"]["chain"]["steps"] == 50 and data["graphs"]["fanout"]["steps"] == 51  # the root counts
    for graph in data["graphs"].values():
        assert set(graph["configs"]) == {"planweave unrecorded", "planweave recorded"}
        for config in graph["configs"].values():
            stat = config["us_per_step"]
            assert stat["samples"] and all(v > 0 for v in stat["samples"]) and 0 < stat["min"] <= stat["median"]
        assert graph["configs"]["planweave unrecorded"]["bytes_per_step"] == 0
        assert graph["configs"]["planweave recorded"]["bytes_per_step"] > 0  # the events are in the file
        assert graph["recorded_over_unrecorded"] > 0 and "langgraph_over_recorded" not in graph
    assert [t["name"].split(":")[0] for t in data["targets"]] == ["chain", "fanout"]
    assert all(isinstance(t["pass"], bool) and t["value"] > 0 for t in data["targets"])
    floor = data["floor"]  # one bare SQLite commit per step, measured in the same run
    assert 0 < floor["commit_us"]["min"] <= floor["commit_us"]["median"]
    assert floor["chain_us"] > floor["commit_us"]["min"]
    printed = capsys.readouterr().out
    assert "planweave recorded" in printed and "bytes/step" in printed
