"""Crash torture, bounded: real `planweave exec` and `planweave run` processes SIGKILLed at
seeded random points (mid plan stream and during resume included), resumed until done.

The engine is `bench/crash_torture.py` (run it with more trials for a longer soak). What is
asserted is the durability guarantee from the README: no step whose success was recorded ran
again (every tool call is logged with its idempotency key), a step that ran again kept its
key, every final output is right, and no join saw part of a plan.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "crash_torture.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_crash_torture", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


@pytest.mark.timeout(600)
def test_sigkill_at_random_points_never_reruns_a_recorded_success(tmp_path: Path) -> None:
    torture = load_script()
    # 5 workflow + 3 planner trials (was 9 + 3: ~45 s more, no more kinds of kill). With this
    # seed they kill mid plan stream 3 times and during resume 3 times; longer soaks: the script.
    counts = torture.run_torture(5, 3, seed=20261202, directory=tmp_path)
    print("\ncrash torture:", json.dumps(asdict(counts)))
    assert counts.failures == []
    assert counts.trials == 8 and counts.kills >= 4
    assert counts.kills_mid_plan >= 1 and counts.kills_during_resume >= 1
    assert counts.reruns_of_recorded_successes == 0
    assert counts.changed_keys == 0
    assert counts.wrong_outputs == 0
    assert counts.joins_on_partial_plan == 0
