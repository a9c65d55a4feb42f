"""The step cache: identical calls of cached steps run once (over runs too), keyed by tool,
tool version and resolved arguments; hits are events; impure tools are never cached."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import Executor, PlanError, Step, Workflow
from planweave.executor.cache import StepCache, open_cache
from planweave.executor.events import StepCacheHit
from planweave.tools import Tool, ToolDefinitionError, tool
from planweave.tools.builtin import builtin_tools


class Counter:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def tool(self, name: str = "square", **options: Any) -> Tool:
        def square(x: int) -> int:
            """Square a number."""
            self.calls.append(x)
            return x * x

        return Tool.from_function(square, name=name, **options)


def three_steps(cache: Any = True) -> list[Step]:
    return [
        Step(id="a", tool="square", args={"x": 2}, cache=cache),
        Step(id="b", tool="square", args={"x": "${a}"}, cache=cache),
        Step(id="c", tool="square", args={"x": 3}, cache=cache),
    ]


async def test_two_identical_runs_make_three_calls_not_six(tmp_path: Path) -> None:
    counter = Counter()
    executor = Executor([counter.tool()], cache=StepCache(tmp_path / "cache.db"))
    first = await executor.run(three_steps())
    events: list[Any] = []
    second = await executor.run(three_steps(), subscribers=[events.append])
    assert sorted(counter.calls) == [2, 3, 4]  # a, b, c once each
    assert first.outputs == second.outputs == {"a": 4, "b": 16, "c": 9}
    hits = [e for e in events if isinstance(e, StepCacheHit)]
    assert sorted(h.step_id for h in hits) == ["a", "b", "c"] and all(h.tool == "square" for h in hits)
    assert second.status == "succeeded"


async def test_the_default_cache_lives_beside_the_run_store() -> None:
    counter = Counter()
    async with Executor([counter.tool()]) as executor:
        await executor.run(three_steps())
        await executor.run(three_steps())
    assert len(counter.calls) == 3
    stats = open_cache().stats()
    assert stats.entries == 3 and stats.hits == 3 and stats.by_tool == {"square": 3}


async def test_new_arguments_or_a_new_tool_version_are_misses(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "cache.db")
    counter = Counter()
    await Executor([counter.tool(version="1")], cache=cache).run([Step(id="a", tool="square", args={"x": 2}, cache=True)])
    await Executor([counter.tool(version="1")], cache=cache).run([Step(id="a", tool="square", args={"x": 5}, cache=True)])
    await Executor([counter.tool(version="2")], cache=cache).run([Step(id="a", tool="square", args={"x": 2}, cache=True)])
    await Executor([counter.tool(version="2")], cache=cache).run([Step(id="z", tool="square", args={"x": 2}, cache=True)])
    assert counter.calls == [2, 5, 2]  # the step's id is not part of the key


def test_a_tools_default_version_is_a_hash_of_its_source() -> None:
    def one(x: int) -> int:
        return x

    def two(x: int) -> int:
        return x + 1

    assert Tool.from_function(one, name="f").version == Tool.from_function(one, name="f").version
    assert Tool.from_function(one, name="f").version != Tool.from_function(two, name="f").version
    assert Tool.from_function(one, version="7").version == "7"


async def test_a_ttl_makes_older_results_misses(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "cache.db")
    counter = Counter()
    executor = Executor([counter.tool()], cache=cache)
    await executor.run([Step(id="a", tool="square", args={"x": 2}, cache=60)])
    with sqlite3.connect(tmp_path / "cache.db") as db:  # the result is now two minutes old
        db.execute("UPDATE entries SET created = created - 120")
    await executor.run([Step(id="a", tool="square", args={"x": 2}, cache=True)])  # no age limit: a hit
    assert counter.calls == [2]
    await executor.run([Step(id="a", tool="square", args={"x": 2}, cache=60)])  # older than 60 s: a miss
    assert counter.calls == [2, 2]


async def test_a_tool_can_ask_for_caching_and_a_step_can_refuse_it(tmp_path: Path) -> None:
    counter = Counter()
    executor = Executor([counter.tool(cache=True)], cache=StepCache(tmp_path / "c.db"))
    for _ in range(2):
        await executor.run([Step(id="a", tool="square", args={"x": 2})])
    assert counter.calls == [2]
    await executor.run([Step(id="a", tool="square", args={"x": 2}, cache=False)])
    assert counter.calls == [2, 2]


async def test_for_each_items_are_cached_one_by_one(tmp_path: Path) -> None:
    counter = Counter()
    executor = Executor([counter.tool()], cache=StepCache(tmp_path / "c.db"))
    await executor.run([Step(id="sq", tool="square", args={"x": "${item}"}, for_each="${inputs.xs}", cache=True)],
                       inputs={"xs": [1, 2]})
    events: list[Any] = []
    result = await executor.run(
        [Step(id="sq", tool="square", args={"x": "${item}"}, for_each="${inputs.xs}", cache=True)],
        inputs={"xs": [1, 2, 3]}, subscribers=[events.append],
    )
    assert result.output("sq") == [1, 4, 9] and sorted(counter.calls) == [1, 2, 3]
    assert sorted(e.item for e in events if isinstance(e, StepCacheHit)) == [0, 1]


async def test_an_executor_without_a_cache_runs_every_call() -> None:
    counter = Counter()
    executor = Executor([counter.tool()], cache=False)
    await executor.run(three_steps())
    await executor.run(three_steps())
    assert len(counter.calls) == 6


async def test_caching_a_tool_with_side_effects_is_a_plan_error(tmp_path: Path) -> None:
    workflow = Workflow(name="w", steps=[
        Step(id="save", tool="write_file", args={"path": "a.txt", "content": "x"}, cache=True),
    ])  # fmt: skip
    with pytest.raises(PlanError) as info:
        await workflow.run(builtin_tools(workspace=tmp_path))
    assert str(info.value).endswith(
        "step `save` asks to cache tool `write_file`, which has side effects (`pure=False`): a cached call would "
        "skip them; remove `cache` from the step."
    )
    assert not (tmp_path / "a.txt").exists()
    with pytest.raises(ToolDefinitionError, match="tool `send` has side effects .* cannot be cached"):

        @tool(pure=False, cache=True)
        def send(text: str) -> str:
            return text


def test_a_steps_cache_must_be_true_false_or_seconds() -> None:
    assert Step(id="a", tool="t", cache=3600).cache == 3600
    assert Step(id="a", tool="t", cache=True).cache is True
    with pytest.raises(ValueError, match="`cache` is true, false or a number of seconds above 0"):
        Step(id="a", tool="t", cache=0)


def test_cache_stats_and_clear_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from planweave.planner.cli.app import app

    cache = open_cache()
    cache.put("k1", Counter().tool(), 4)
    cache.put("k2", Counter().tool(name="other"), [1, 2])
    cache.close()
    runner = CliRunner()
    shown = runner.invoke(app, ["cache", "stats", "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"entries": 2' in shown.stdout and '"other": 1' in shown.stdout
    cleared = runner.invoke(app, ["cache", "clear", "--tool", "other"])
    assert cleared.exit_code == 0 and cleared.stdout.strip() == "removed 1 cached result of `other`"
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.stdout.strip() == "removed 1 cached result"
    assert open_cache().stats().entries == 0
