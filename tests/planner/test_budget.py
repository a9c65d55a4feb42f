"""Budget checks raise `BudgetExceededError` (in the error tree, with which limit and the values),
and a run that hits one ends `budget_exceeded`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from planweave.planner import Budget, BudgetExceededError, Planner
from planweave.planner import budget as budget_module
from planweave.planner.budget import check_replans, check_steps, check_usage
from planweave.planner.llm import Usage
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools.errors import PlanweaveError, RuntimeFailure


def test_budget_stop_is_gone_and_the_documented_error_is_in_the_tree() -> None:
    assert not hasattr(budget_module, "BudgetStop")
    assert issubclass(BudgetExceededError, RuntimeFailure) and issubclass(BudgetExceededError, PlanweaveError)


@pytest.mark.parametrize(
    ("budget", "usage", "name", "limit", "used", "message"),
    [
        (Budget(max_llm_calls=2), Usage(llm_calls=3), "max_llm_calls", 2, 3, "the run reached its budget of 2 LLM calls"),
        (Budget(max_tokens=500), Usage(input_tokens=400, output_tokens=124), "max_tokens", 500, 524,
         "the run used 524 tokens, over its budget of 500"),
        (Budget(max_cost_usd=0.01), Usage(cost_usd=0.02), "max_cost_usd", 0.01, 0.02,
         "the run cost $0.0200, over its budget of $0.0100"),
    ],
    ids=["calls", "tokens", "cost"],
)
def test_check_usage_says_which_limit_and_the_values(
    budget: Budget, usage: Usage, name: str, limit: float, used: float, message: str
) -> None:
    with pytest.raises(BudgetExceededError) as info:
        check_usage(budget, usage)
    assert (info.value.budget, info.value.limit, info.value.used, str(info.value)) == (name, limit, used, message)


def test_before_a_call_a_full_call_budget_stops() -> None:
    check_usage(Budget(max_llm_calls=2), Usage(llm_calls=2))  # reached, not passed: the run may end
    with pytest.raises(BudgetExceededError):
        check_usage(Budget(max_llm_calls=2), Usage(llm_calls=2), before_call=True)


def test_unknown_cost_does_not_stop_a_cost_budget_check() -> None:
    check_usage(Budget(max_cost_usd=0.01), Usage(cost_usd=None))


def test_steps_and_replans() -> None:
    with pytest.raises(BudgetExceededError) as info:
        check_steps(Budget(max_steps=2), 2)
    assert (info.value.budget, info.value.limit, info.value.used) == ("max_steps", 2, 2)
    assert str(info.value) == "the run reached its budget of 2 steps"
    with pytest.raises(BudgetExceededError) as info:
        check_replans(Budget(max_replans=1), 2)
    assert (info.value.budget, info.value.limit, info.value.used) == ("max_replans", 1, 2)
    assert str(info.value) == "the run reached its budget of 1 replans"


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


async def test_a_run_that_hits_a_budget_ends_budget_exceeded(server: FakeModelServer) -> None:
    server.enqueue(Reply.json_obj({"rationale": "r", "steps": [{"id": "x", "tool": "calculator",
                                                               "args": {"expression": "1 + 2"}}], "answer": None}))
    planner = Planner(model="openai/fake-model", api_base=server.base_url, api_key="k", store=False,
                      budget=Budget(max_llm_calls=1))
    result = await planner.run("add")
    assert result.status == "budget_exceeded" and result.budget == "max_llm_calls"
    assert result.error == "the run reached its budget of 1 LLM calls"
    assert len(server.chat_requests) == 1 == result.usage.llm_calls
