"""The run model: what a run's events have said so far, the plain line each prints, the summary line."""

from __future__ import annotations

from planweave.executor.events import (
    RunEvent,
    StepCancelled,
    StepFailed,
    StepReady,
    StepRestored,
    StepSkipped,
)
from planweave.planner.events import Decision, PlanRejected
from planweave.planner.cli.run_model import RunModel, plain_line, summary_line

# --- plain lines ---------------------------------------------------------------------------------


def test_plain_lines_for_failures_skips_cancels_replans() -> None:
    m = RunModel()

    def line(ev: RunEvent) -> str | None:
        m.apply(ev)
        return plain_line(ev, m)

    assert line(StepFailed(run_id="r", step_id="a", error="boom", error_type="ToolError", attempts=2,
                           on_failure="fail")) == "step a failed after 2 attempts: ToolError: boom"
    assert line(StepSkipped(run_id="r", step_id="b", reason="`a` failed")) == "step b skipped: `a` failed"
    assert line(StepCancelled(run_id="r", step_id="c", reason="")) == "step c cancelled"
    assert line(StepRestored(run_id="r", step_id="d")) == "step d restored from an earlier run"
    assert line(Decision(run_id="r", action="replan", round=2, reason="need more")) == "round 2: replanning: need more"
    assert line(Decision(run_id="r", action="budget_stop", round=2, reason="max_cost")) == "round 2: budget stop: max_cost"
    assert line(Decision(run_id="r", action="finish", round=2)) is None
    assert line(PlanRejected(run_id="r", round=1, reask=1, errors=["e1", "e2"])) == (
        "round 1: plan rejected, re-asking (e1; e2)"
    )
    assert line(StepReady(run_id="r", step_id="a")) is None


# --- the summary line ----------------------------------------------------------------------------


def test_summary_line() -> None:
    assert summary_line(status="succeeded", duration_s=2.414, run_id="r-1", llm_calls=3, tokens=1840,
                        cost_usd=0.00123, model="openai/gpt-4o-mini", trace_url="https://trace/r-1") == (
        "succeeded in 2.41s | model openai/gpt-4o-mini | 3 LLM calls, 1840 tokens, cost $0.0012 | run r-1"
        " | trace https://trace/r-1"
    )
    assert summary_line(status="failed", duration_s=1, run_id="r-2", llm_calls=1, tokens=10, cost_usd=None) == (
        "failed in 1.00s | 1 LLM call, 10 tokens, cost unknown | run r-2"
    )
    assert summary_line(status="succeeded", duration_s=0.5, run_id="r-3") == "succeeded in 0.50s | run r-3"
