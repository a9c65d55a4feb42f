"""Smoke test for bench/parallelqa.py: three questions at high speed, every system, sane JSON.

Not a timed assertion: latencies depend on the machine and its load. What is checked is the
shape of the output and what does not depend on timing: every system answers correctly, with
the expected number of LLM calls (ReAct: 2 turns per branch + 2; planners: one plan and one
join; math steps: one `llm` call per branch + 1 for the combining step).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "parallelqa.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_parallelqa", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def test_workload_matches_parallelqa() -> None:
    bench = load_script()
    questions = bench.make_questions()
    assert [sum(q.fanout == k for q in questions) for k in (2, 3, 4, 5)] == [21, 31, 31, 30]
    assert len({q.text for q in questions}) == 113
    assert sorted(q.fanout for q in bench.sample(questions, 4)) == [2, 3, 4, 5]


def test_quick_run_writes_expected_json(tmp_path: Path, capsys: Any) -> None:
    bench = load_script()
    out = tmp_path / "parallelqa.json"
    fast = ["--ttft", "0.02", "--tokens-per-s", "1000", "--search-s", "0.03"]

    returned = bench.main(["--questions", "3", *fast, "--out", str(out), "--quiet"])

    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(returned))
    assert set(data) >= {"timestamp", "machine", "versions", "git", "settings", "systems", "targets", "what_if", "questions"}
    assert data["settings"]["questions"] == 3 and data["settings"]["fanout_counts"] == {"2": 1, "3": 1, "4": 1, "5": 0}
    assert list(data["systems"]) == ["react", "react_bare", "plan_execute", "planweave"]

    for name, s in data["systems"].items():
        assert s["questions"] == s["succeeded"] == s["correct"] == 3, name
        assert 0 < s["latency_s"]["min"] <= s["latency_s"]["median"] <= s["latency_s"]["max"]
        assert s["ideal_s"]["mean"] > 0 and s["ratio_to_ideal"]["mean"] > 0
        assert s["speedup_over_react"] > 0
        assert s["tokens_per_question"]["mean"] > 0
        assert set(s["by_fanout"]) == {"2", "3", "4"}
    for name in ("plan_execute", "planweave"):
        s = data["systems"][name]
        assert s["plan_join_calls_max_without_replan"] == 2 and s["replans"] == 0
        assert set(s["segments_s"]) == set(s["analytic_segments_s"])

    for q in data["questions"]:
        k = q["fanout"]
        assert q["ideal_s"]["planweave"] <= q["ideal_s"]["plan_execute"] < q["ideal_s"]["react"]
        runs = q["runs"]
        assert runs["react"]["agent_calls"] == runs["react_bare"]["agent_calls"] == 2 * k + 2
        assert runs["planweave"]["plan_join_calls"] == runs["plan_execute"]["plan_join_calls"] == 2
        assert all(r["tool_llm_calls"] == k + 1 and r["correct"] for r in runs.values())
        # Streaming: the first search starts before the plan has finished streaming.
        assert runs["planweave"]["steps_started_during_plan"] >= 1
        assert runs["plan_execute"]["steps_started_during_plan"] == 0

    assert {t["name"] for t in data["targets"]} >= {
        "planweave speedup over ReAct (mean latency ratio)",
        "planweave latency / analytic lower bound (mean)",
        "planweave planning + join LLM calls per question, no replan (max)",
    }
    assert all(isinstance(t["pass"], bool) for t in data["targets"])
    assert {w["plan_syntax"] for w in data["what_if"]} == set(bench.PLAN_SYNTAXES)
    printed = capsys.readouterr().out
    assert "ParallelQA" in printed and "planweave (streaming)" in printed and "Targets:" in printed
