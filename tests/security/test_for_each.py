"""`for_each` counts against the step budget (issue 12, item 6): each item is a step, one step may
run at most `max_items_per_step` items, and breaking either limit fails the step before any item
runs, with an error that names the step, the count and the limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from planweave.executor import Executor, Step
from planweave.planner import Budget, Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools import tool
from planweave.tools.errors import ConfigError

CALLS: list[Any] = []


@tool
async def numbers(n: int) -> list[int]:
    """The numbers 0 to n - 1."""
    return list(range(n))


@tool
async def visit(item: int) -> int:
    """Record one call."""
    CALLS.append(item)
    return item


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    CALLS.clear()


def fan_out(n: int) -> list[Step]:
    return [
        Step(id="list", tool="numbers", args={"n": n}),
        Step(id="each", tool="visit", args={"item": "${item}"}, for_each="${list}", on_failure="continue"),
    ]


async def test_one_step_may_not_fan_out_past_its_item_cap() -> None:
    result = await Executor([numbers, visit]).run(fan_out(20_000))
    each = result.steps["each"]
    assert each.status == "failed" and each.error_type == "ForEachLimitError"
    assert each.error == (
        "step `each` `for_each` has 20,000 items; one step may run at most 1,000. "
        "Use a shorter list (slice it in an earlier step) or raise `max_items_per_step`."
    )
    assert CALLS == []  # refused before any item ran


async def test_the_item_cap_is_configurable() -> None:
    result = await Executor([numbers, visit], max_items_per_step=2_000).run(fan_out(1_500))
    assert result.steps["each"].status == "succeeded" and len(CALLS) == 1_500
    with pytest.raises(ConfigError, match="`max_items_per_step` must be at least 1"):
        Executor([numbers], max_items_per_step=0)


async def test_items_count_against_max_steps() -> None:
    result = await Executor([numbers, visit]).run(fan_out(20), max_steps=5)
    each = result.steps["each"]
    assert each.status == "failed" and each.error_type == "ForEachLimitError"
    assert each.error == (
        "step `each` `for_each` has 20 items, and each counts as a step: the run would have 21 steps, "
        "over its budget of 5. Use a shorter list or raise `max_steps`."
    )
    assert CALLS == []
    # Within the budget: 2 steps, the second over 4 items, is 5 steps.
    ok = await Executor([numbers, visit]).run(fan_out(4), max_steps=5)
    assert ok.steps["each"].status == "succeeded" and ok.steps["each"].output == [0, 1, 2, 3]


async def test_items_already_run_leave_less_budget_for_later_steps() -> None:
    ex = Executor([numbers, visit])
    steps = [*fan_out(4), Step(id="more", tool="visit", args={"item": 9}, depends_on=["each"])]
    result = await ex.run(steps, max_steps=5)  # 3 steps + 3 more items = 6 > 5
    assert result.steps["each"].status == "failed"
    assert "the run would have 6 steps, over its budget of 5" in (result.steps["each"].error or "")
    assert result.steps["more"].status == "skipped" and CALLS == []


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


async def test_the_planner_budget_holds_for_for_each(model: FakeModelServer) -> None:
    model.enqueue(
        Reply.json_obj(
            {
                "steps": [
                    ["list", "numbers", {"n": 20_000}],
                    {"id": "each", "tool": "visit", "args": {"item": "${item}"}, "for_each": "${list}"},
                ],
                "rationale": "r",
                "answer": None,
            }
        ),
        Reply.json_obj({"action": "finish", "answer": "too many", "reason": ""}),
    )
    planner = Planner(
        model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", tools=[numbers, visit],
        retry_delay_s=0.01, budget=Budget(max_steps=5),
    )
    result = await planner.run("visit them all")
    assert CALLS == []
    each = result.steps["each"]
    assert each.status == "failed" and each.attempts == 1
    assert "step `each` `for_each` has 20,000 items" in (each.error or "")
    assert result.status == "partial" and result.answer == "too many"
