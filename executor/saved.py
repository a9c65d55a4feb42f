"""Saved results: a run's result as a timestamped JSON file, as Pynions' `DataStore` keeps them.

    path = save_results(result, "results", name="serp_analysis")
    # results/serp_analysis_20261202_071500.json

The file is written whole or not at all (a temporary file in the same directory, then linked
into place), and never replaces another: a second save in the same second gets `-2`.
`planweave exec FILE --save-results DIR` and `Workflow.execute(..., save_results=DIR)` use it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from planweave.executor.result import RunResult
from planweave.tools.errors import ConfigError

__all__ = ["load_results", "save_results"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def save_results(result: RunResult, directory: str | Path, *, name: str, now: datetime | None = None) -> Path:
    """Write `result` to `<directory>/<name>_<UTC YYYYmmdd_HHMMSS>.json` and return the path.

    The JSON holds `workflow`, `saved_at` (ISO 8601, UTC), the result's own fields (`run_id`,
    `status`, `steps`, ...) and `outputs` (the succeeded steps' outputs by id). `directory` is
    created if missing.
    """
    folder = Path(directory).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the results directory `{folder}`: {exc.strerror or exc}") from exc
    when = (now or datetime.now(UTC)).astimezone(UTC)
    stem = f"{_UNSAFE.sub('_', name).strip('_') or 'workflow'}_{when.strftime('%Y%m%d_%H%M%S')}"
    dumped = result.model_dump(mode="json")
    outputs = {sid: s["output"] for sid, s in dumped["steps"].items() if s["status"] == "succeeded"}
    data: dict[str, Any] = {
        "workflow": name,
        "saved_at": when.isoformat().replace("+00:00", "Z"),
        **dumped,
        "outputs": outputs,
    }
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False, default=str)
            out.flush()
            os.fsync(out.fileno())
        for n in range(1, 1000):
            target = folder / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
            try:
                os.link(tmp, target)  # atomic, and fails rather than replace an earlier save
            except FileExistsError:
                continue
            return target
        raise ConfigError(f"`{folder}` already holds 999 saves of `{stem}`; clean it up or save elsewhere.")
    finally:
        os.unlink(tmp)


def load_results(path: str | Path) -> dict[str, Any]:
    """A saved result file, as the JSON data it holds."""
    loaded: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return loaded
