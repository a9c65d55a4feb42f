"""What `planweave worker` prints per run: one line each, with names and errors from the store
made safe (terminal escapes stripped, rich markup shown as text, secrets masked)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from planweave.planner.cli.worker_log import WorkerLog
from planweave.planner.worker import WorkerEvent, WorkerStats


def printed(monkeypatch: pytest.MonkeyPatch, *events: WorkerEvent) -> list[str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-log-secret-123456")
    out = io.StringIO()
    log = WorkerLog(Console(file=out, width=300, highlight=False, color_system=None))
    for event in events:
        log(event)
    log.stopped(WorkerStats(started=2, taken_over=1, finished=1, interrupted=1))
    return [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # without the time


def test_one_line_per_run_with_names_and_errors_made_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = printed(
        monkeypatch,
        WorkerEvent("started", "r1", "[bold]trip\x1b[2J", takeover=False),
        WorkerEvent("started", "r2", "trip", takeover=True),
        WorkerEvent("finished", "r1", "trip", status="failed", error="key sk-worker-log-secret-123456 refused"),
        WorkerEvent("interrupted", "r2", "trip"),
        WorkerEvent("refused", "r3", "gone", error="workflow file `/x.yaml` does not exist"),
    )
    assert lines == [
        "started run r1 ([bold]trip): queued",
        "took over run r2 (trip): its owner stopped",
        "finished run r1 (trip): failed: key [REDACTED] refused",
        "interrupted run r2 (trip): recorded interrupted for another worker to finish",
        "refused run r3 (gone): workflow file `/x.yaml` does not exist (recorded failed)",
        "stopped: 2 started (1 taken over), 1 finished, 1 interrupted, 0 refused",
    ]
