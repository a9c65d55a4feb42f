"""Smoke test for bench/startup.py: one quick round runs every command and writes JSON of the right shape.

Not a timed assertion: the numbers depend on the machine and its load; only their
presence and sign are checked.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "startup.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_startup", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


# A whole (quick) benchmark: well over a minute when three test sessions share two cores.
@pytest.mark.timeout(240)
def test_quick_run_writes_expected_json(tmp_path: Path, capsys: Any) -> None:
    bench = load_script()
    out = tmp_path / "startup.json"

    returned = bench.main(["--quick", "--out", str(out)])

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(returned))
    assert set(data) >= {"timestamp", "machine", "versions", "git", "settings", "commands", "ratios", "targets"}
    assert data["settings"]["quick"] is True and data["settings"]["repeats"] == 1
    assert data["versions"]["litellm"] and data["machine"]["cpu_count"] >= 1
    assert list(data["commands"]) == ["import litellm", "import litellm (run's gc)", "run", "--help", "runs", "serve /health"]
    for command in data["commands"].values():
        assert len(command["samples"]) == 1 and command["samples"][0] > 0
        assert command["min"] == command["median"] == command["samples"][0]
        assert command["argv"]
    ratio = data["ratios"]["run / import litellm (medians)"]
    assert ratio == data["commands"]["run"]["median"] / data["commands"]["import litellm"]["median"]
    like = data["ratios"]["run / import litellm (run's gc) (medians)"]
    assert like == data["commands"]["run"]["median"] / data["commands"]["import litellm (run's gc)"]["median"]
    assert [t["name"] for t in data["targets"]] == ["run / import litellm", "--help", "runs", "serve /health"]
    assert all(isinstance(t["pass"], bool) and t["value"] > 0 for t in data["targets"])
    printed = capsys.readouterr().out
    assert "run / import litellm" in printed and "serve /health" in printed
