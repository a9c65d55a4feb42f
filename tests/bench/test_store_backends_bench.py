"""bench/store_backends.py runs (quick) against the test server and writes what it prints."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "store_backends.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planweave_bench_store_backends", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_expected_json(tmp_path: Path, pg_url: str, capsys: Any) -> None:
    bench = load_script()
    out = tmp_path / "store_backends.json"
    returned = bench.main(["--quick", "-n", "40", "--url", pg_url, "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    for graph in ("chain", "fanout"):
        entry = written["graphs"][graph]
        assert set(entry["configs"]) == {"sqlite", "postgres", "postgres async commit"}
        assert all(c["us_per_step"]["min"] > 0 for c in entry["configs"].values())
        assert entry["postgres_over_sqlite"] > 0
    assert "PG / SQLite" in capsys.readouterr().out
