"""Budget checks raise `BudgetExceededError` (in the error tree, with which limit and the values),
and a run that hits one ends `budget_exceeded`. Token budgets are hard: each call's `max_tokens` is
capped by what is left, a call whose prompt alone would not fit is not sent, and a reply cut at its
limit is bad output (re-asked while the budget allows, else a budget stop)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from planweave.executor import open_store
from planweave.planner import Budget, BudgetExceededError, Planner
from planweave.planner import budget as budget_module
from planweave.planner.budget import check_replans, check_steps, check_usage
from planweave.planner.llm import Usage
from planweave.planner.testing import FakeModelServer, Reply, tokenize
from planweave.tools import tool
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


# --- token budgets are hard, end to end ---------------------------------------------------------
# The fake server stops at each request's `max_tokens` like a provider (finish_reason `length`,
# only the tokens sent counted), so these runs spend what a provider would bill. It counts a prompt
# as planweave estimates one (4 characters a token, rounded up), so the bound checked here is the
# budget itself; with a real provider it is the budget plus the last prompt's estimate error.


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


LONG = "the model keeps writing about this at length " * 100  # about 900 tokens of the fake tokenizer
STEP = {"id": "a", "tool": "add", "args": {"a": 1, "b": 2}}


def plan_reply(*steps: dict[str, Any], rationale: str = "r", answer: str | None = None, **options: Any) -> Reply:
    return Reply.json_obj({"rationale": rationale, "steps": list(steps), "answer": answer}, **options)


def finish_reply(answer: str, **options: Any) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""}, **options)


def budget_planner(server: FakeModelServer, budget: Budget, **kw: Any) -> Planner:
    kw.setdefault("tools", [add])
    return Planner(model="openai/fake-model", api_base=server.base_url, api_key="k", budget=budget,
                   retry_delay_s=0.01, **kw)


@pytest.mark.parametrize(
    ("max_tokens", "replies"),
    [(900, [plan_reply(STEP, rationale=LONG)]),
     (1300, [plan_reply(STEP), finish_reply(LONG)])],  # the plan's call takes about 800 tokens: room for a join
    ids=["the plan is cut", "the join is cut"],
)
async def test_a_token_budget_is_hard(server: FakeModelServer, max_tokens: int, replies: list[Reply]) -> None:
    store = open_store()
    server.enqueue(*replies)
    result = await budget_planner(server, Budget(max_tokens=max_tokens), store=store).run("add 1 and 2")
    assert (result.status, result.budget) == ("budget_exceeded", "max_tokens")
    last = server.chat_requests[-1]
    assert len(tokenize(LONG)) > last.json["max_tokens"]  # the reply was long enough to overshoot...
    assert len(server.chat_requests) == len(replies) == result.usage.llm_calls
    # ... and was cut where the budget ends: a provider's bill is what the run reports and stores.
    assert 0 < result.usage.total_tokens <= max_tokens
    stored = store.summary(result.run_id)
    assert (stored.status, stored.total_tokens, stored.llm_calls) == ("budget_exceeded", result.usage.total_tokens,
                                                                       result.usage.llm_calls)
    assert result.answer is not None and result.answer.startswith("Stopped")


async def test_a_call_whose_prompt_alone_would_pass_the_budget_is_not_sent(server: FakeModelServer) -> None:
    server.enqueue(plan_reply(STEP))
    store = open_store()
    result = await budget_planner(server, Budget(max_tokens=50), store=store).run("add 1 and 2")
    assert (result.status, result.budget) == ("budget_exceeded", "max_tokens")
    assert server.chat_requests == [] and result.usage.total_tokens == 0 == store.summary(result.run_id).total_tokens
    assert result.error is not None and result.error.startswith("the run used 0 tokens; the next LLM call's prompt (about ")
    assert result.error.endswith("tokens) would pass its budget of 50; raise it (`--max-tokens`, `Budget(max_tokens=...)`)")


def cut(reply: Reply, keep: int) -> Reply:
    """`reply` as a provider sends it when its own output limit stops it after `keep` tokens."""
    text = reply.json_text or ""
    return Reply(content="".join(tokenize(text)[:keep]), finish_reason="length")


async def test_a_cut_plan_is_bad_output_and_is_re_asked(server: FakeModelServer) -> None:
    server.enqueue(cut(plan_reply(STEP), 12), plan_reply(STEP), finish_reply("3"))
    result = await budget_planner(server, Budget(max_tokens=100_000), store=False).run("add 1 and 2")
    assert result.ok and result.answer == "3"
    assert [r.json["max_tokens"] > 0 for r in server.chat_requests] == [True] * 3
    assert "the reply is not a valid plan object" in server.chat_requests[1].messages[-1]["content"]


async def test_a_cut_join_is_bad_output_and_is_re_asked(server: FakeModelServer) -> None:
    server.enqueue(plan_reply(STEP), cut(finish_reply("three, as the sum of one and two"), 9), finish_reply("3"))
    result = await budget_planner(server, Budget(max_tokens=100_000), store=False).run("add 1 and 2")
    assert result.ok and result.answer == "3"
    assert len(server.chat_requests) == 3 == result.usage.llm_calls


async def test_a_join_cut_again_when_re_asked_fails_the_run_cleanly(server: FakeModelServer) -> None:
    # instructor does not re-ask a reply cut at its output limit (asking again would cut it again):
    # the run fails with the reason instead of crashing, and sends nothing more.
    decision = finish_reply("three, as the sum of one and two")
    server.enqueue(plan_reply(STEP), cut(decision, 9),
                   Reply.tool_call("decide", "".join(tokenize(decision.json_text or "")[:9]), finish_reason="length"),
                   finish_reply("3"))
    result = await budget_planner(server, Budget(max_tokens=100_000), store=False).run("add 1 and 2")
    assert result.status == "failed" and result.answer is None
    assert result.error is not None and result.error.startswith("the model's join decision stayed invalid")
    assert len(server.chat_requests) == 3 == result.usage.llm_calls and server.pending_replies == 1


async def test_a_tool_call_the_budget_has_no_room_for_stops_the_run(server: FakeModelServer) -> None:
    # The `llm` step's prompt alone would pass what is left: it is not sent, and the run stops
    # there as it would after a call that went over (not `partial`, not a failed step planned around).
    @tool
    async def read() -> str:
        """Read the document."""
        return "a long document to think about " * 100

    steps = [{"id": "doc", "tool": "read"}, {"id": "think", "tool": "llm", "args": {"prompt": "sum up", "context": "${doc}"}}]
    server.enqueue(plan_reply(*steps), finish_reply("done"))
    store = open_store()
    # Plans not streamed: the step starts once the plan's call is counted. (A step that runs while
    # the plan still streams is capped by what was left when it started: see `LLMClient.max_tokens`.)
    planner = budget_planner(server, Budget(max_tokens=800), store=store, tools=[read], stream=False)
    result = await planner.run("think")
    assert (result.status, result.budget) == ("budget_exceeded", "max_tokens")
    assert len(server.chat_requests) == 1 == result.usage.llm_calls  # the plan only
    assert result.usage.total_tokens <= 800 and store.summary(result.run_id).status == "budget_exceeded"
    assert result.error is not None and "the next LLM call's prompt" in result.error
