"""The command line's live view of a run, built from its events and nothing else.

    view = LiveView()                     # a rich console on stderr by default
    with view:                            # a table updating in place when it is a terminal
        result = await planner.run(goal, subscribers=[view])
    view.print_answer(result.answer)      # unless the view already showed it
    print(view.summary_line(result, model=planner.model))

On a terminal the steps show as a table updating in place (`rich.live.Live`), with the
planning rounds, the LLM usage and the answer as it streams. Anywhere else (piped, in
CI, in a log file) there is no live display and no colour: one plain line per notable
event instead (a step started, retried, succeeded, failed, was skipped or cancelled; a
plan, a replan; the answer). `quiet=True` prints nothing.

`RunModel` and `plain_line` (in `planweave.planner.cli.run_model`) are the state behind the view and the
plain lines; the model is usable on its own: feed it events with `apply`.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from planweave.executor.events import RunEvent
from planweave.executor.plan import Step
from planweave.planner.events import Decision, PlannerFinished
from planweave.planner.cli.render import STATE_STYLES, args_summary, format_seconds
from planweave.planner.cli.run_model import RoundView, RunModel, StepView, _one_line, plain_line, summary_line
from planweave.planner.cli.terminal import clean

__all__ = ["LiveView", "RoundView", "RunModel", "StepView", "summary_line"]

log = logging.getLogger("planweave.live")


class LiveView:
    """An event subscriber that shows a run as it happens (see the module docstring).

    Args:
        console: where to draw; by default a rich console on stderr, so stdout keeps only
            the answer or JSON for scripts.
        quiet: print nothing (the model is still kept, for `summary_line`).
        show_answer: show the answer in the live table / print an `answer:` line.
        max_rows: most step rows on screen; by default what fits the terminal. Running and
            failed steps are kept, the rest folded into one `... N more` row.
        clock: the time source for running steps' elapsed times.
        loading: set once the model libraries are imported (the command line imports them in
            the background); until then a planning view says "loading model libraries".
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        quiet: bool = False,
        show_answer: bool = True,
        max_rows: int | None = None,
        refresh_per_second: float = 8,
        clock: Callable[[], float] = time.time,
        loading: threading.Event | None = None,
    ) -> None:
        self.console = console if console is not None else Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.show_answer = show_answer
        self.max_rows = max_rows
        self.refresh_per_second = refresh_per_second
        self.clock = clock
        self.loading = loading
        self.created_at = clock()
        self.model = RunModel()
        self.live = not quiet and self.console.is_terminal
        """True when the view draws in place (a terminal); False: plain lines, or nothing when quiet."""
        self._live: Live | None = None
        self._last: RenderableType = Text("")
        self._shown_answer: str | None = None  # the answer as the view last showed it

    # --- the subscriber ------------------------------------------------------------------

    def __call__(self, event: RunEvent) -> None:
        try:
            self.model.apply(event)
            if self.live or self.quiet:
                return  # the live display reads the model on its own refresh
            line = plain_line(event, self.model)
            if isinstance(event, Decision) and event.action in ("budget_stop", "cancel"):
                # Why the run stopped is said once, by the command's closing line.
                line = f"round {event.round}: {event.action.replace('_', ' ')}"
            if line is not None:
                self._print(line)
            if isinstance(event, PlannerFinished):
                self._print_answer()
        except Exception:  # a view must never break a run
            log.debug("live view failed on %s", getattr(event, "kind", event), exc_info=True)

    def _print(self, line: str) -> None:
        # Straight to the file: not a terminal, so rich has nothing to add, and a big run
        # prints thousands of lines (rich's `out` costs about 100 us each, this about 3).
        file = self.console.file
        file.write(clean(line) + "\n")
        file.flush()  # a log being followed sees each line as it happens

    def _print_answer(self) -> None:
        answer = self.model.answer.strip()
        if self.show_answer and answer and self._shown_answer is None:
            self._shown_answer = answer
            self._print(f"answer: {answer}")

    def print_answer(self, answer: str | None = None) -> None:
        """After the run: print `answer` (default: the streamed one) unless the view already showed it."""
        text = (answer if answer is not None else self.model.answer).strip()
        if self.quiet or not text or text == self._shown_answer:
            return
        self._shown_answer = text
        if self.live:
            self.console.print(_answer_panel(text))
        else:
            self._print(f"answer: {text}")

    # --- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        """Start drawing in place (a no-op when the console is not a terminal, or quiet)."""
        if self.live and self._live is None:
            self._live = Live(
                console=self.console,
                get_renderable=self._safe_renderable,
                refresh_per_second=self.refresh_per_second,
                redirect_stdout=self.console.file is sys.stdout,
                redirect_stderr=self.console.file is sys.stderr,
            )
            self._live.start()

    def stop(self) -> None:
        """Draw the final frame and stop (or print the answer line, when not a terminal)."""
        if self._live is not None:
            live, self._live = self._live, None
            thread = getattr(live, "_refresh_thread", None)
            live.refresh()
            live.stop()
            if self.show_answer and self.model.answer.strip():
                self._shown_answer = self.model.answer.strip()  # it is in the final frame
            if thread is not None:  # rich signals its refresh thread but does not wait for it
                thread.join(timeout=2)
        elif not self.live and not self.quiet:
            self._print_answer()

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- drawing -------------------------------------------------------------------------

    def _safe_renderable(self) -> RenderableType:
        # Called from rich's refresh thread while the event loop updates the model.
        try:
            self._last = self.renderable()
        except Exception:
            log.debug("live view frame failed", exc_info=True)
        return self._last

    def renderable(self, now: float | None = None, *, max_rows: int | None = None) -> RenderableType:
        """The current frame as a rich renderable."""
        now = self.clock() if now is None else now
        m = self.model
        parts: list[RenderableType] = []
        head = Text.assemble(("planweave", "bold"), " · ")
        if m.goal:
            head.append(_one_line(m.goal, 200))
        state = STATE_STYLES.get(m.status)
        head.append(f"  [{m.status} {format_seconds(m.duration_s(now))}]", state.rich if state else "bold blue")
        parts.append(head)
        if m.rounds:
            r = m.rounds[-1]
            line = Text(f"round {r.round}", "bold")
            if r.rationale:
                line.append(f": {_one_line(r.rationale, 160)}")
            if r.decision in ("replan", "budget_stop", "cancel"):
                line.append(f"  → {r.decision.replace('_', ' ')}", "yellow")
                if r.reason and r.decision == "replan":  # a stop's reason: the command's closing line
                    line.append(f": {_one_line(r.reason, 120)}", "yellow")
            parts.append(line)
        planning = self._planning_line(now)
        if planning is not None:
            parts.append(planning)
        parts.append(self._table(now, max_rows if max_rows is not None else self._default_rows()))
        if m.planner:
            cost = "unknown" if m.cost_usd is None else f"${m.cost_usd:.4f}"
            llm = f"LLM: {m.llm_calls} call{'' if m.llm_calls == 1 else 's'}, {m.tokens} tokens, cost {cost}"
            if m.rejections:
                llm += f", {m.rejections} plan{'' if m.rejections == 1 else 's'} re-asked"
            parts.append(Text(llm, "dim"))
        if self.show_answer and m.answer:
            parts.append(_answer_panel(m.answer.strip()))
        return Group(*parts)

    def _planning_line(self, now: float) -> Text | None:
        """`planning… waiting for the model (3.2s)` while the planner, not a step, is what the run waits on."""
        m = self.model
        if m.finished_at is not None or m.answer:
            return None
        steps = list(m.steps.values())
        if any(s.status not in ("succeeded", "failed", "skipped", "cancelled") for s in steps):
            return None  # steps are running or waiting: the table says it
        since = max([self.created_at, *(s.finished_at or 0.0 for s in steps)])
        if self.loading is not None and not self.loading.is_set():
            what = "loading model libraries"
        else:
            what = "waiting for the model"
        return Text(f"planning… {what} ({format_seconds(max(0.0, now - since))})", "cyan")

    def _default_rows(self) -> int | None:
        if not self.live:
            return None
        extra = 8 + (6 if self.show_answer and self.model.answer else 0)
        return max(4, self.console.size.height - extra)

    def _table(self, now: float, max_rows: int | None) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        steps = list(self.model.steps.values())
        shown, hidden = _pick_rows(steps, max_rows)
        # Fixed columns keep their width; only `detail` gives way when the terminal is narrow.
        table.add_column("", min_width=1, no_wrap=True)
        for name, width, justify in (
            ("step", min(32, max((len(s.id) for s in shown), default=4)), "left"),
            ("tool", min(20, max((len(s.tool) for s in shown), default=4)), "left"),
            ("state", 9, "left"),
            ("try", 3, "right"),
            ("time", 6, "right"),
        ):
            table.add_column(name, min_width=width, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
        table.add_column("detail")  # wrappable, so the table narrows it first; each cell still stays one line
        for s in shown:
            style = STATE_STYLES.get(s.status, STATE_STYLES["pending"])
            waiting = s.status == "running" and s.retry_at is not None
            tries = "" if s.attempt == 0 else str(s.attempt)
            if tries and s.max_attempts and s.max_attempts > 1:
                tries += f"/{s.max_attempts}"
            elapsed = s.elapsed(now)
            table.add_row(
                Text("↻", "yellow") if waiting else Text(style.symbol, style.rich),
                s.id,
                s.tool,
                Text("retrying", "yellow") if waiting else Text(s.status, style.rich),
                tries,
                "" if elapsed is None else format_seconds(elapsed),
                Text(self._detail(s, now), "red" if s.status == "failed" else "dim", no_wrap=True, overflow="ellipsis"),
            )
        if hidden:
            counts: dict[str, int] = {}
            for s in hidden:
                counts[s.status] = counts.get(s.status, 0) + 1
            table.add_row(
                "…", f"{len(hidden)} more", "", Text(", ".join(f"{n} {k}" for k, n in counts.items()), "dim"), "", "", ""
            )
        return table

    def _detail(self, s: StepView, now: float) -> str:
        if s.status == "pending":
            waiting = [d for d in s.deps if d in self.model.steps and self.model.steps[d].status != "succeeded"]
            return f"needs {', '.join(waiting)}" if waiting else ""
        if s.status == "ready":
            return "waiting for a free slot"
        if s.status == "running":
            if s.retry_at is not None:
                return f"next try in {max(0.0, s.retry_at - now):.1f}s, after {_one_line(s.last_error or '', 80)}"
            if s.last_error:
                return f"attempt {s.attempt - 1} failed: {_one_line(s.last_error, 80)}"
            if s.reported:
                return s.reported
            step = s.step
            args = step.args if isinstance(step, Step) else (step or {}).get("args", {})
            return args_summary(args, 60) if isinstance(args, dict) else ""
        if s.status == "failed":
            return _one_line(s.last_error or "", 120)
        return _one_line(s.detail, 120)

    def frame(self, width: int = 100, *, now: float | None = None, color: bool = False) -> str:
        """The current frame as text, as the terminal would show it (without colour by default)."""
        out = io.StringIO()
        console = Console(
            file=out, width=width, force_terminal=color, color_system="truecolor" if color else None,
            highlight=False, legacy_windows=False,
        )
        console.print(self.renderable(now, max_rows=self.max_rows))
        return out.getvalue()

    # --- after the run -------------------------------------------------------------------

    @property
    def answer(self) -> str:
        return self.model.answer

    def summary_line(self, result: Any = None, *, model: str | None = None, trace_url: str | None = None) -> str:
        """The closing line: status, duration, LLM calls, tokens, cost (or `unknown`), run id, trace.

        From `result` when given (a `PlannerResult`, or a `RunResult`: no LLM part), else from the events.
        """
        if result is None:
            return self.model.summary_line(model=model, trace_url=trace_url, now=self.clock())
        usage = getattr(result, "usage", None)
        return summary_line(
            status=result.status, duration_s=result.duration_s, run_id=result.run_id,
            llm_calls=usage.llm_calls if usage is not None else None,
            tokens=usage.total_tokens if usage is not None else None,
            cost_usd=usage.cost_usd if usage is not None else None,
            model=model, trace_url=trace_url,
        )


def _answer_panel(text: str) -> Panel:
    return Panel(Text(clean(text)), title="answer", title_align="left", border_style="green")


def _pick_rows(steps: list[StepView], max_rows: int | None) -> tuple[list[StepView], list[StepView]]:
    """Rows to show in plan order, keeping running and failed steps when not all fit."""
    if max_rows is None or len(steps) <= max_rows:
        return steps, []
    budget = max(1, max_rows - 1)  # one row says how many are hidden
    rank = {"running": 0, "failed": 1, "ready": 2}
    recent = sorted(
        (s for s in steps if s.status not in rank),
        key=lambda s: (s.status == "pending", -(s.finished_at or 0.0)),
    )
    chosen = {s.id for s in sorted((s for s in steps if s.status in rank), key=lambda s: rank[s.status])[:budget]}
    for s in recent:
        if len(chosen) >= budget:
            break
        chosen.add(s.id)
    return [s for s in steps if s.id in chosen], [s for s in steps if s.id not in chosen]
