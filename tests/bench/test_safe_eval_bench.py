"""`bench/safe_eval.py` runs, and planweave's evaluator refuses every adversarial expression in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_safe_eval_bench_refuses_every_adversarial_expression(tmp_path: Path) -> None:
    out = tmp_path / "safe_eval.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "safe_eval.py"), "--quick", "--no-simpleeval", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    cases = data["safety"]["planweave"]
    assert len(cases) >= 20
    assert [c["expression"] for c in cases if c["outcome"] != "refused"] == []
    # SafeEvalError or its subclasses for the size and work limits
    assert {c["detail"] for c in cases} <= {"SafeEvalError", "SizeLimitExceeded", "WorkLimitExceeded"}
    assert set(data["speed_us"]["planweave"]) >= {"1 + 2 * 3", "a.b > 3 and c[0] == 'x'"}
    assert "planweave: 24/24 refused" in proc.stdout
