"""What `planweave worker` prints: one line per run it takes, finishes, interrupts, refuses or gives up.

Names and errors come from the store (workflow files, tools, models): terminal escapes are
stripped, rich markup is escaped, and known secrets are masked before anything is printed.
"""

from __future__ import annotations

import time
from typing import Any

from rich.markup import escape

from planweave.executor.masking import Masker
from planweave.planner.cli.terminal import clean
from planweave.planner.worker import WorkerEvent, WorkerStats

__all__ = ["WorkerLog"]

_COLOURS = {"succeeded": "green", "waiting": "yellow", "partial": "yellow", "interrupted": "magenta"}


class WorkerLog:
    """A `Worker`'s `on_event`: prints each event as one line on `console` (a rich `Console`)."""

    def __init__(self, console: Any, masker: Masker | None = None) -> None:
        self.console = console
        self.masker = masker if masker is not None else Masker.from_env()

    def _safe(self, text: object) -> str:
        return escape(clean(self.masker.mask_text(str(text))))

    def _line(self, markup: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {markup}", soft_wrap=True)

    def started(self, store: str, concurrency: int) -> None:
        self._line(f"worker taking runs from {self._safe(store)} ({concurrency} at once); SIGINT or SIGTERM stops it")

    def stopping(self, running: int, grace_s: float) -> None:
        if running:
            self._line(f"stopping: {running} run{'' if running == 1 else 's'} in flight get {grace_s:g} s to finish, "
                       "then are recorded interrupted")
        else:
            self._line("stopping")

    def stopped(self, stats: WorkerStats) -> None:
        self._line(f"stopped: {stats.started} started ({stats.taken_over} taken over), {stats.finished} finished, "
                   f"{stats.interrupted} interrupted, {stats.refused} refused"
                   + (f", {stats.gave_up} given up" if stats.gave_up else ""))

    def __call__(self, event: WorkerEvent) -> None:
        run = f"run [bold]{self._safe(event.run_id)}[/bold] ({self._safe(event.name or '-')})"
        if event.kind == "started":
            how = "took over" if event.takeover else "started"
            why = "its owner stopped" if event.takeover else "queued"
            self._line(f"{how} {run}: {why}")
        elif event.kind == "finished":
            status = event.status or "ended"
            colour = _COLOURS.get(status, "red")
            tail = f": {self._safe(event.error)}" if event.error and status != "succeeded" else ""
            self._line(f"finished {run}: [{colour}]{self._safe(status)}[/{colour}]{tail}")
        elif event.kind == "interrupted" and event.error:
            self._line(f"interrupted {run}: [magenta]{self._safe(event.error)}[/magenta] (taken again later)")
        elif event.kind == "interrupted":
            self._line(f"interrupted {run}: recorded [magenta]interrupted[/magenta] for another worker to finish")
        elif event.kind == "gave_up":
            self._line(f"gave up {run}: [red]{self._safe(event.error or 'its owners died too often')}[/red] (recorded failed)")
        else:
            self._line(f"refused {run}: [red]{self._safe(event.error or 'it cannot start')}[/red] (recorded failed)")
