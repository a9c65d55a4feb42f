"""The live view: a model of the run from its events, frames, plain lines and the summary line."""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

import pytest
from rich.console import Console

from planweave.executor import Executor, Plan, Step
from planweave.executor.events import (
    RunEvent,
    RunFinished,
    RunStarted,
    StepAdded,
    StepCancelled,
    StepFailed,
    StepReady,
    StepRestored,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlannerFinished, PlanRejected, PlanUpdated
from planweave.planner.cli.live import LiveView
from planweave.planner.cli.render import to_mermaid
from planweave.tools import tool

T0 = 1_700_000_000.0
RID = "r-7f3a2c"
CITIES = ("paris", "rome", "oslo")


def weather_run() -> tuple[list[RunEvent], int]:
    """A recorded planner run: three forecasts fetched in parallel (Rome's retried once), then
    a combining step, then the answer. Returns the events and where the middle frame is taken."""
    ev: list[RunEvent] = [RunStarted(run_id=RID, goal="Which is warmest right now: Paris, Rome or Oslo?", at=T0)]
    for c in CITIES:
        s = Step(id=f"weather_{c}", tool="http_get", args={"url": f"https://wttr.in/{c.title()}?format=j1"}, retry=3)
        ev += [
            StepAdded(run_id=RID, step_id=s.id, tool="http_get", step=s, at=T0 + 0.6),
            StepReady(run_id=RID, step_id=s.id, at=T0 + 0.6),
            StepStarted(run_id=RID, step_id=s.id, tool="http_get", attempt=1, args=s.args, at=T0 + 0.6),
        ]
    warmest = Step(
        id="warmest", tool="calculator",
        args={"expression": "max(${weather_paris.temp_c}, ${weather_rome.temp_c}, ${weather_oslo.temp_c})"},
    )
    ev += [
        StepAdded(run_id=RID, step_id="warmest", tool="calculator", step=warmest,
                  deps=[f"weather_{c}" for c in CITIES], at=T0 + 0.9),
        StepRetrying(run_id=RID, step_id="weather_rome", attempt=1, delay_s=0.5, error="connection reset by peer",
                     error_type="ConnectError", at=T0 + 0.9),
        StepSucceeded(run_id=RID, step_id="weather_paris", output={"temp_c": 18}, attempts=1, duration_s=0.42,
                      at=T0 + 1.02),
        LLMCalled(run_id=RID, purpose="plan", model="openai/gpt-4o-mini", input_tokens=912, output_tokens=164,
                  cost_usd=0.000235, at=T0 + 1.1),
        PlanUpdated(run_id=RID, round=1, rationale="fetch the three forecasts in parallel, then compare",
                    step_ids=[*(f"weather_{c}" for c in CITIES), "warmest"], at=T0 + 1.1),
        StepSucceeded(run_id=RID, step_id="weather_oslo", output={"temp_c": 9}, attempts=1, duration_s=0.57,
                      at=T0 + 1.17),
    ]
    middle = len(ev)
    ev += [
        StepStarted(run_id=RID, step_id="weather_rome", tool="http_get", attempt=2, args={}, at=T0 + 1.4),
        StepSucceeded(run_id=RID, step_id="weather_rome", output={"temp_c": 24}, attempts=2, duration_s=1.21,
                      at=T0 + 1.81),
        StepReady(run_id=RID, step_id="warmest", at=T0 + 1.81),
        StepStarted(run_id=RID, step_id="warmest", tool="calculator", attempt=1, args={"expression": "max(18, 24, 9)"},
                    at=T0 + 1.81),
        StepSucceeded(run_id=RID, step_id="warmest", output=24, attempts=1, duration_s=0.003, at=T0 + 1.813),
        LLMCalled(run_id=RID, purpose="join", model="openai/gpt-4o-mini", input_tokens=1130, output_tokens=61,
                  cost_usd=0.000206, at=T0 + 2.6),
        Decision(run_id=RID, action="finish", round=1, reason="all three temperatures are known", at=T0 + 2.6),
        AnswerDelta(run_id=RID, text="Rome is warmest right now at 24 °C ", at=T0 + 2.6),
        AnswerDelta(run_id=RID, text="(Paris 18 °C, Oslo 9 °C).", at=T0 + 2.7),
        RunFinished(run_id=RID, status="succeeded", duration_s=2.7, at=T0 + 2.7),
        PlannerFinished(
            run_id=RID, status="succeeded", answer="Rome is warmest right now at 24 °C (Paris 18 °C, Oslo 9 °C).",
            usage={"input_tokens": 2042, "output_tokens": 225, "llm_calls": 2, "cost_usd": 0.000441}, at=T0 + 2.72,
        ),
    ]
    return ev, middle


def piped() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100), out


def feed(view: Any, events: list[RunEvent]) -> None:
    for e in events:
        view(e)


def row(frame: str, step_id: str) -> list[str]:
    return next(cells for cells in map(str.split, frame.splitlines()) if len(cells) > 1 and cells[1] == step_id)


# --- frames --------------------------------------------------------------------------------------


def test_middle_frame_shows_states_attempts_times_and_the_retry() -> None:
    events, middle = weather_run()
    view = LiveView(piped()[0])
    feed(view, events[:middle])
    frame = view.frame(width=140, now=T0 + 1.25)
    assert frame.splitlines()[0] == "planweave · Which is warmest right now: Paris, Rome or Oslo?  [running 1.25s]"
    assert frame.splitlines()[1] == "round 1: fetch the three forecasts in parallel, then compare"
    assert row(frame, "weather_paris")[:6] == ["✓", "weather_paris", "http_get", "succeeded", "1/3", "0.42s"]
    assert row(frame, "weather_rome")[:6] == ["↻", "weather_rome", "http_get", "retrying", "1/3", "0.65s"]
    assert "next try in 0.2s, after ConnectError: connection reset by peer" in frame
    assert row(frame, "weather_oslo")[3:6] == ["succeeded", "1/3", "0.57s"]
    assert row(frame, "warmest")[:4] == ["○", "warmest", "calculator", "pending"]
    assert "needs weather_rome" in frame  # only what it still waits for
    assert "LLM: 1 call, 1076 tokens, cost $0.0002" in frame
    assert "answer" not in frame


def test_final_frame_is_the_readme_example() -> None:
    events, _ = weather_run()
    view = LiveView(piped()[0])
    feed(view, events)
    assert view.frame(now=T0 + 3) == README_FRAME


README_FRAME = """\
planweave · Which is warmest right now: Paris, Rome or Oslo?  [succeeded 2.72s]
round 1: fetch the three forecasts in parallel, then compare
    step            tool         state       try     time   detail        
──────────────────────────────────────────────────────────────────────────
✓   weather_paris   http_get     succeeded   1/3    0.42s   {"temp_c": 18}
✓   weather_rome    http_get     succeeded   2/3    1.21s   {"temp_c": 24}
✓   weather_oslo    http_get     succeeded   1/3    0.57s   {"temp_c": 9} 
✓   warmest         calculator   succeeded     1    3.0ms   24            
LLM: 2 calls, 2267 tokens, cost $0.0004
╭─ answer ─────────────────────────────────────────────────────────────────────────────────────────╮
│ Rome is warmest right now at 24 °C (Paris 18 °C, Oslo 9 °C).                                     │
╰──────────────────────────────────────────────────────────────────────────────────────────────────╯
"""


def test_failed_skipped_cancelled_and_restored_steps() -> None:
    view = LiveView(piped()[0])
    s = Step(id="flaky", tool="http_get", retry=3)
    feed(view, [
        RunStarted(run_id="r", at=T0),
        StepAdded(run_id="r", step_id="old", tool="t", step=Step(id="old", tool="t"), at=T0),
        StepRestored(run_id="r", step_id="old", output=1, at=T0),
        StepAdded(run_id="r", step_id="flaky", tool="http_get", step=s, at=T0),
        StepAdded(run_id="r", step_id="after", tool="t", step={"id": "after", "tool": "t"}, deps=["flaky"], at=T0),
        StepAdded(run_id="r", step_id="other", tool="t", step=Step(id="other", tool="t"), at=T0),
        StepStarted(run_id="r", step_id="flaky", tool="http_get", attempt=1, at=T0),
        StepStarted(run_id="r", step_id="other", tool="t", attempt=1, at=T0),
        StepStarted(run_id="r", step_id="flaky", tool="http_get", attempt=3, at=T0 + 1),
        StepFailed(run_id="r", step_id="flaky", error="HTTP 503", error_type="ToolError", attempts=3,
                   on_failure="fail", duration_s=2.5, at=T0 + 2.5),
        StepSkipped(run_id="r", step_id="after", reason="`flaky` did not succeed", at=T0 + 2.5),
        StepCancelled(run_id="r", step_id="other", reason="the run failed", at=T0 + 2.5),
        RunFinished(run_id="r", status="failed", duration_s=2.5, error="step `flaky` failed", at=T0 + 2.5),
    ])
    frame = view.frame(width=120, now=T0 + 9)
    assert row(frame, "old")[:4] == ["✓", "old", "t", "succeeded"] and "restored from an earlier run" in frame
    assert row(frame, "flaky")[:6] == ["✗", "flaky", "http_get", "failed", "3/3", "2.50s"]
    assert "ToolError: HTTP 503" in frame
    assert row(frame, "after")[:4] == ["↷", "after", "t", "skipped"] and "`flaky` did not succeed" in frame
    assert row(frame, "other")[:6] == ["⊘", "other", "t", "cancelled", "1", "2.50s"]
    assert frame.splitlines()[0] == "planweave ·   [failed 2.50s]"
    assert "LLM" not in frame  # not a planner run
    assert view.model.counts() == {"succeeded": 1, "failed": 1, "skipped": 1, "cancelled": 1}


def test_running_step_shows_its_arguments_and_elapsed_time() -> None:
    view = LiveView(piped()[0])
    s = Step(id="fetch", tool="http_get", args={"url": "https://example.org"})
    feed(view, [StepAdded(run_id="r", step_id="fetch", tool="http_get", step=s, at=T0),
                StepStarted(run_id="r", step_id="fetch", tool="http_get", attempt=1, at=T0 + 1)])
    frame = view.frame(now=T0 + 3.5)
    assert row(frame, "fetch")[:6] == ["▶", "fetch", "http_get", "running", "1", "2.50s"]
    assert 'url="https://example.org"' in frame


def test_too_many_steps_fold_into_one_row_keeping_running_and_failed() -> None:
    view = LiveView(piped()[0], max_rows=5)
    for i in range(30):
        view(StepAdded(run_id="r", step_id=f"s{i}", tool="t", step=Step(id=f"s{i}", tool="t"), at=T0))
    for i in range(20):
        view(StepSucceeded(run_id="r", step_id=f"s{i}", output=i, attempts=1, duration_s=0.1, at=T0 + i))
    view(StepStarted(run_id="r", step_id="s25", tool="t", attempt=1, at=T0))
    view(StepFailed(run_id="r", step_id="s27", error="x", error_type="E", attempts=1, on_failure="continue", at=T0))
    frame = view.frame(now=T0 + 30)
    shown = [line.split()[1] for line in frame.splitlines()[3:] if line.split() and line.split()[0] in "✓▶✗○"]
    assert shown == ["s18", "s19", "s25", "s27"]  # running, failed, then the latest finished
    assert "…   26 more" in frame and "18 succeeded, 8 pending" in frame


def test_plan_rejections_replans_and_unknown_cost() -> None:
    view = LiveView(piped()[0])
    feed(view, [
        LLMCalled(run_id="r", purpose="plan", model="m", input_tokens=10, output_tokens=5, cost_usd=0.01, reasks=1),
        PlanRejected(run_id="r", round=1, reask=1, errors=["step `a` uses unknown tool `x`"]),
        PlanUpdated(run_id="r", round=1, rationale="try a", step_ids=["a"]),
        Decision(run_id="r", action="replan", round=1, reason="a was not enough"),
        LLMCalled(run_id="r", purpose="plan", model="m", input_tokens=10, output_tokens=5, cost_usd=None),
    ])
    frame = view.frame(now=T0)
    assert "round 1: try a  → replan: a was not enough" in frame
    assert "LLM: 3 calls, 30 tokens, cost unknown, 1 plan re-asked" in frame
    assert view.model.cost_usd is None and view.model.llm_calls == 3


# --- not a terminal: plain lines -----------------------------------------------------------------


def test_a_piped_console_gets_plain_lines_and_no_escape_codes() -> None:
    console, out = piped()
    events, _ = weather_run()
    with LiveView(console) as view:
        assert not view.live
        feed(view, events)
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "step weather_paris started (http_get)",
        "step weather_rome started (http_get)",
        "step weather_oslo started (http_get)",
        "step weather_rome attempt 1/3 failed (ConnectError: connection reset by peer); retrying in 0.50s",
        "step weather_paris succeeded in 0.42s",
        "round 1: planned 4 steps (weather_paris, weather_rome, weather_oslo, warmest)",
        "step weather_oslo succeeded in 0.57s",
        "step weather_rome attempt 2/3 started",
        "step weather_rome succeeded in 1.21s after 2 attempts",
        "step warmest started (calculator)",
        "step warmest succeeded in 3.0ms",
        "answer: Rome is warmest right now at 24 °C (Paris 18 °C, Oslo 9 °C).",
    ]


def test_answer_without_planner_finished_is_printed_on_stop() -> None:
    console, out = piped()
    with LiveView(console) as view:
        view(AnswerDelta(run_id="r", text="forty-two"))
    assert out.getvalue() == "answer: forty-two\n"


def test_streamed_answer_starts_over_on_reset_and_the_final_answer_wins() -> None:
    view = LiveView(piped()[0])
    feed(view, [AnswerDelta(run_id="r", text="Rome is"), AnswerDelta(run_id="r", text=" warm{")])
    assert "Rome is warm{" in view.frame()
    view(AnswerDelta(run_id="r", text="", reset=True))
    assert view.answer == "" and "answer" not in view.frame()
    feed(view, [AnswerDelta(run_id="r", text="Rome, "), AnswerDelta(run_id="r", text="24 °C")])
    assert view.answer == "Rome, 24 °C"
    view(PlannerFinished(run_id="r", status="budget_exceeded", answer="best effort: Rome"))
    assert view.answer == "best effort: Rome"


def test_print_answer_prints_only_what_the_view_did_not_show() -> None:
    console, out = piped()
    with LiveView(console) as view:
        feed(view, weather_run()[0])
    view.print_answer("Rome is warmest right now at 24 °C (Paris 18 °C, Oslo 9 °C).")  # already printed
    assert out.getvalue().count("answer: ") == 1
    view.print_answer("something else")
    assert out.getvalue().endswith("answer: something else\n")

    term = io.StringIO()
    with LiveView(Console(file=term, force_terminal=True, width=100, height=40)) as live:
        feed(live, weather_run()[0])
    shown = term.getvalue()
    live.print_answer()
    assert term.getvalue() == shown  # the final frame had it

    quiet_out = io.StringIO()
    quiet = LiveView(Console(file=quiet_out), quiet=True)
    quiet.print_answer("x")
    assert quiet_out.getvalue() == ""


def test_summary_line_from_a_result() -> None:
    from planweave.executor.result import RunResult
    from planweave.planner import PlannerResult, Usage

    view = LiveView(piped()[0])
    planned = PlannerResult(
        run_id="r-9", goal="g", status="budget_exceeded", started_at=T0, finished_at=T0 + 4,
        usage=Usage(input_tokens=100, output_tokens=20, llm_calls=2, cost_usd=None),
    )
    assert view.summary_line(planned, model="m") == (
        "budget_exceeded in 4.00s | model m | 2 LLM calls, 120 tokens, cost unknown | run r-9"
    )
    ran = RunResult(run_id="r-8", status="failed", started_at=T0, finished_at=T0 + 1.5)
    assert view.summary_line(ran) == "failed in 1.50s | run r-8"


def test_quiet_prints_nothing_but_still_keeps_the_model() -> None:
    console, out = piped()
    events, _ = weather_run()
    with LiveView(console, quiet=True) as view:
        feed(view, events)
    assert out.getvalue() == ""
    assert view.answer.startswith("Rome is warmest")
    assert view.summary_line() == "succeeded in 2.72s | 2 LLM calls, 2267 tokens, cost $0.0004 | run r-7f3a2c"


# --- a terminal: drawn in place ------------------------------------------------------------------


def test_a_terminal_gets_a_live_display_that_ends_with_the_final_frame() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, height=40, color_system="truecolor")
    events, _ = weather_run()
    threads = set(threading.enumerate())
    with LiveView(console, refresh_per_second=50) as view:
        assert view.live
        feed(view, events)
    assert set(threading.enumerate()) <= threads  # the refresh thread is gone
    text = out.getvalue()
    assert "\x1b[" in text  # colour and cursor movement
    assert "Rome is warmest right now" in text and "weather_rome" in text
    assert "step weather_paris started" not in text  # no plain lines on a terminal


def test_frame_can_keep_colour() -> None:
    view = LiveView(piped()[0])
    feed(view, weather_run()[0])
    assert "\x1b[" in view.frame(color=True) and "\x1b" not in view.frame()


# --- robustness ----------------------------------------------------------------------------------


def test_the_subscriber_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    console, out = piped()
    view = LiveView(console)
    caplog.set_level(logging.DEBUG, "planweave.live")
    view(StepStarted(run_id="r", step_id="ghost", tool="t", attempt=1))  # never added: still shown
    view(object())  # type: ignore[arg-type]
    view(StepAdded(run_id="r", step_id="x", tool="t", step=None, deps=[]))  # type: ignore[arg-type]
    view(PlannerFinished(run_id="r", status="failed", usage={"llm_calls": "many"}))
    assert "ghost" in view.frame()
    assert "step ghost started (t)" in out.getvalue()


# --- the summary line ----------------------------------------------------------------------------


def test_summary_line_from_the_view() -> None:
    view = LiveView(piped()[0], clock=lambda: T0 + 10)
    feed(view, weather_run()[0])
    assert view.summary_line(model="openai/gpt-4o-mini", trace_url="http://127.0.0.1:3000/trace/r-7f3a2c") == (
        "succeeded in 2.72s | model openai/gpt-4o-mini | 2 LLM calls, 2267 tokens, cost $0.0004 | run r-7f3a2c"
        " | trace http://127.0.0.1:3000/trace/r-7f3a2c"
    )


# --- with the real executor ----------------------------------------------------------------------


async def test_view_of_a_real_executor_run_with_a_retry() -> None:
    calls = {"n": 0}

    @tool
    async def flaky(x: int) -> int:
        """Fails once, then doubles."""
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("reset")
        return 2 * x

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    plan = Plan.of([
        {"id": "a", "tool": "flaky", "args": {"x": 2}, "retry": {"max_attempts": 2, "initial_delay_s": 0}},
        {"id": "b", "tool": "add", "args": {"a": 1, "b": 2}},
        {"id": "total", "tool": "add", "args": {"a": "${a}", "b": "${b}"}},
    ])
    console, out = piped()
    with LiveView(console) as view:
        result = await Executor([flaky, add]).run(plan, subscribers=[view])
    assert result.ok
    lines = out.getvalue().splitlines()
    assert "step a attempt 1/2 failed (ConnectionError: reset); retrying in 0.00s" in lines
    assert "step a attempt 2/2 started" in lines
    assert lines[-1].startswith("step total succeeded in ")
    frame = view.frame()
    assert row(frame, "a")[:5] == ["✓", "a", "flaky", "succeeded", "2/2"]
    assert row(frame, "total")[:4] == ["✓", "total", "add", "succeeded"] and frame.rstrip().endswith("7")
    assert view.summary_line().startswith(f"succeeded in {result.duration_s:.2f}s | run {result.run_id}")
    # The model also draws the run's graph in its colours.
    mermaid = to_mermaid(view.model.plan_steps(), view.model.states())
    assert "class s0,s1,s2 succeeded" in mermaid and "s1 --> s2" in mermaid


def test_planning_shows_from_the_first_moment_until_steps_arrive() -> None:
    loading = threading.Event()
    now = [T0]
    view = LiveView(console=Console(file=io.StringIO(), width=100), clock=lambda: now[0], loading=loading)
    assert "planning… loading model libraries (0.0ms)" in view.frame(now=T0)  # before any event
    loading.set()
    view(RunStarted(run_id=RID, goal="what is 6 * 7", at=T0))
    assert "planning… waiting for the model (3.20s)" in view.frame(now=T0 + 3.2)
    step = Step(id="a", tool="calculator", args={"expression": "6 * 7"})
    view(StepAdded(run_id=RID, step_id="a", tool="calculator", step=step, at=T0 + 3.3))
    assert "planning…" not in view.frame(now=T0 + 3.4)  # the table shows what the run waits on
    view(StepSucceeded(run_id=RID, step_id="a", output=42, attempts=1, duration_s=0.1, at=T0 + 3.5))
    assert "planning… waiting for the model (1.00s)" in view.frame(now=T0 + 4.5)  # the planner decides next
    view(AnswerDelta(run_id=RID, text="It is 42."))
    assert "planning…" not in view.frame(now=T0 + 4.6)


def test_a_budget_stop_reason_is_left_to_the_closing_line() -> None:
    out = io.StringIO()
    view = LiveView(console=Console(file=out, width=100))
    view(Decision(run_id=RID, action="budget_stop", round=1, reason="the run used 524 of its 500 tokens"))
    assert out.getvalue() == "round 1: budget stop\n"
