"""Bounded evaluation (issue 12, item 2): every intermediate value of a calculator expression or a
`when` condition is bounded, every operation is charged to a work budget, heavy evaluation runs off
the event loop, and a `when` the run-time checker would refuse is refused while the plan is built
(so the planner re-asks the model about it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from planweave.executor import Executor, PlanError, Step
from planweave.planner import Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools import tool
from planweave.tools.calculator import calculator
from planweave.tools.safe_eval import (
    INLINE_WORK,
    SafeEvalError,
    SizeLimitExceeded,
    WorkLimitExceeded,
    check,
    evaluate,
    evaluate_async,
)

HEAVY = " + ".join(f"sum([{i}] * 900000)" for i in range(1, 9))
"""Legal, but far past `INLINE_WORK`: it must leave the event loop."""


class Heartbeat:
    """A task that counts turns of the event loop: a stalled loop does not tick."""

    def __init__(self) -> None:
        self.ticks = 0

    async def beat(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)


@pytest.fixture
async def heartbeat() -> AsyncIterator[Heartbeat]:
    beat = Heartbeat()
    task = asyncio.create_task(beat.beat())
    await asyncio.sleep(0)
    yield beat
    task.cancel()


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9",
        "(2**5000) * (2**5001)",  # multiplication of big integers
        "2**9000 * 2**9000 * 2**9000",  # a factorial-like chain
        "int('9' * 4000)",  # str -> int
        "[2**9999] * 100000",  # few items, each thousands of digits
        "str([[10**3000] * 100] * 100)",  # int -> str of a huge repr
        "'ab' * 600000",
        "[[0] * 1000] * 2000",
        "[0] * 700000 + [0] * 700000",
        "-(2**9999) - 2**9999 - 2**9999",  # addition past the bits limit
    ],
)
def test_every_intermediate_value_is_bounded(expression: str) -> None:
    with pytest.raises(SizeLimitExceeded):
        evaluate(expression)


def test_repeated_heavy_work_runs_out_of_budget() -> None:
    big = " + ".join(["len(str([7] * 240000))"] * 40)  # each term legal, all of them too much work
    with pytest.raises(WorkLimitExceeded, match="needs more than 5,000,000 units of work"):
        evaluate(big, work_limit=5_000_000)
    with pytest.raises(WorkLimitExceeded):
        evaluate(HEAVY, work_limit=INLINE_WORK)
    assert evaluate(HEAVY) == sum(i * 900000 for i in range(1, 9))


def test_round_with_huge_ndigits_does_not_build_a_huge_power() -> None:
    # CPython computes 10**-ndigits: `round(1, -10**8)` alone used to take minutes.
    assert evaluate("round(1, -10**8)") == 0
    assert evaluate("round(2.5, 10**9)") == 2.5


async def test_heavy_expressions_leave_the_event_loop(heartbeat: Heartbeat) -> None:
    before = heartbeat.ticks
    assert await evaluate_async(HEAVY) == sum(i * 900000 for i in range(1, 9))
    assert heartbeat.ticks > before  # the loop kept turning while the worker thread computed


async def test_the_calculator_does_not_stall_the_loop(heartbeat: Heartbeat) -> None:
    before = heartbeat.ticks
    assert await calculator.acall({"expression": HEAVY}) == sum(i * 900000 for i in range(1, 9))
    assert heartbeat.ticks > before
    with pytest.raises(SafeEvalError, match="has 13,288 bits"):
        await calculator.acall({"expression": "int('9' * 4000) + 1"})


@tool
async def numbers(n: int) -> list[int]:
    """A list of n numbers."""
    return list(range(n))


@tool
async def echo(value: Any) -> Any:
    return value


async def test_a_heavy_condition_is_decided_off_the_loop(heartbeat: Heartbeat) -> None:
    before = heartbeat.ticks
    result = await Executor([numbers, echo]).run(
        [
            Step(id="n", tool="numbers", args={"n": 900000}),
            Step(id="yes", tool="echo", args={"value": 1}, when="sum(${n}) + sum(${n}) > 0"),
            Step(id="no", tool="echo", args={"value": 2}, when="sum(${n}) + sum(${n}) < 0"),
            Step(id="after", tool="echo", args={"value": "${yes}"}),
        ]
    )
    assert result.steps["yes"].status == "succeeded" and result.steps["after"].status == "succeeded"
    assert result.steps["no"].status == "skipped"
    assert heartbeat.ticks > before


async def test_a_condition_past_every_budget_fails_its_step() -> None:
    result = await Executor([numbers, echo]).run(
        [
            Step(id="n", tool="numbers", args={"n": 900000}),
            Step(id="s", tool="echo", args={"value": 1}, when="str(${n} + ${n}) == ''", on_failure="continue"),
        ]
    )
    assert result.steps["s"].status == "failed"
    assert result.steps["s"].error_type == "SizeLimitExceeded"


@pytest.mark.parametrize(
    ("when", "fault"),
    [
        ("${a} > 9**9**9", "would have about 369,693,100 digits"),
        ("${a}.__class__", "attributes starting with `__` are not allowed"),
        ("${a} > x", "unknown name `x`"),
        ("len > ${a}", "`len` is a function"),
        ("${a} in 'ab' * 10**7", "would build a `str` of about 20,000,000 characters"),
    ],
)
async def test_an_unsafe_condition_is_a_plan_error(when: str, fault: str) -> None:
    with pytest.raises(PlanError) as info:
        await Executor([echo]).run(
            [Step(id="a", tool="echo", args={"value": 1}), Step(id="b", tool="echo", args={"value": 2}, when=when)]
        )
    (problem,) = info.value.problems
    assert problem.message.startswith(f"step `b` has an invalid `when` condition `{when}` (")
    assert fault in problem.message


def test_check_refuses_what_evaluate_refuses() -> None:
    # The plan-time checker is the run-time one: constant parts are evaluated with the same limits.
    for expression in ["x > 9**9**9", "x == [0] * 10**7", "x and 'a' % 3"]:
        with pytest.raises(SafeEvalError):
            check(expression, ["x"])
    check("x > 0 and 1 / 0", ["x"])  # a run-time failure in a branch that may never run stays legal


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


def _plan(*steps: Any) -> Reply:
    return Reply.json_obj({"rationale": "r", "steps": list(steps), "answer": None})


async def test_the_planner_re_asks_an_unsafe_condition(server: FakeModelServer) -> None:
    server.enqueue(
        _plan({"id": "b", "tool": "calculator", "args": {"expression": "2"}, "when": "2 > 9**9**9"}),
        _plan({"id": "b", "tool": "calculator", "args": {"expression": "2"}, "when": "2 > 1"}),
        Reply.json_obj({"action": "finish", "answer": "2", "reason": ""}),
    )
    planner = Planner(
        model="openai/fake-model", api_base=server.base_url, api_key="sk-fake", tools=[calculator], retry_delay_s=0.01
    )
    result = await planner.run("two")
    assert result.status == "succeeded" and result.answer == "2"
    assert result.steps["b"].output == 2
    repair = server.chat_requests[1].json["messages"][-1]["content"]
    assert "step `b` has an invalid `when` condition `2 > 9**9**9`" in repair
    assert "369,693,100 digits" in repair
