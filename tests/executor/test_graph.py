"""Plan validation: every problem at once, each message precise (the LLM reads them)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import networkx as nx

from planweave.executor import Plan, PlanError, Step, validate_plan
from planweave.executor.graph import PlanGraph
from planweave.tools import ToolRegistry, tool


class Page(BaseModel):
    url: str
    links: list[str]


@tool
def fetch(url: str) -> Page:
    """Fetch a page."""
    return Page(url=url, links=[])


@tool
def add(a: float, b: float = 0) -> float:
    """Add."""
    return a + b


@tool
def echo(value: Any) -> Any:
    return value


TOOLS = ToolRegistry([fetch, add, echo])


def problems(steps: list[dict[str, Any]], **kw: Any) -> list[str]:
    with pytest.raises(PlanError) as info:
        validate_plan(Plan.of(steps), TOOLS, **kw)
    return [p.message for p in info.value.problems]


def test_valid_plan_builds_a_digraph() -> None:
    g = PlanGraph(TOOLS)
    g.add(
        Plan.of(
            [
                {"id": "a", "tool": "fetch", "args": {"url": "u"}},
                {"id": "b", "tool": "echo", "args": {"value": "${a.links}"}},
                {"id": "c", "tool": "add", "args": {"a": 1}, "depends_on": ["a"]},
                {"id": "d", "tool": "echo", "args": {"value": "${b} ${c}"}},
            ]
        ).steps
    )
    assert set(g.graph.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert next(iter(nx.topological_sort(g.graph))) == "a"


def test_every_problem_reported_together_with_exact_messages() -> None:
    msgs = problems(
        [
            {"id": "a", "tool": "fetch", "args": {"url": "u"}},
            {"id": "a", "tool": "fetch", "args": {"url": "v"}},
            {"id": "b", "tool": "fetchh", "args": {}},
            {"id": "c", "tool": "echo", "args": {"value": 1}, "depends_on": ["c", "ghost"]},
            {"id": "d", "tool": "echo", "args": {"value": "${nowhere.x}"}},
            {"id": "e", "tool": "add", "args": {"a": "not a number", "zzz": 1}},
            {"id": "f", "tool": "echo", "args": {"value": "${a.title}"}},
        ]
    )
    assert msgs == [
        "duplicate step id `a` (steps 1 and 2); give each step a unique id.",
        "step `b` uses unknown tool `fetchh`; did you mean `fetch`?",
        "step `c` depends on itself; remove `c` from its `depends_on`.",
        "step `c` depends on `ghost`, which is not in the plan; add that step or remove the dependency.",
        "step `d` references `${nowhere.x}`, but there is no step `nowhere`; add that step or fix the reference.",
        "step `e` arguments do not match tool `add`: `a`: Input should be a valid number, unable to parse string as a number (got 'not a number'); `zzz` is not an argument of this tool.",
        "step `f` references `${a.title}`, which cannot exist: `a` has no field `title` (fields: `url`, `links`) (tool `fetch`); fix the field path.",
    ]


def test_cycle_shows_its_path() -> None:
    msgs = problems(
        [
            {"id": "a", "tool": "echo", "args": {"value": "${c}"}},
            {"id": "b", "tool": "echo", "args": {"value": "${a}"}},
            {"id": "c", "tool": "echo", "args": {"value": "${b}"}},
        ]
    )
    assert msgs == [
        "dependency cycle `a -> c -> b -> a` (each step needs the next); remove one of these dependencies or references."
    ]


def test_unknown_tool_without_close_match_lists_tools() -> None:
    assert problems([{"id": "x", "tool": "zzzz"}]) == [
        "step `x` uses unknown tool `zzzz`; available tools: `add`, `echo`, `fetch`."
    ]


def test_missing_required_argument_and_self_reference() -> None:
    assert problems([{"id": "x", "tool": "add", "args": {"b": "${x}"}}]) == [
        "step `x` references its own output `${x}`; a step cannot use its own output.",
        "step `x` arguments do not match tool `add`: `a` is required.",
    ]


def test_referenced_arguments_are_not_checked_until_run_time() -> None:
    validate_plan(
        Plan.of([{"id": "a", "tool": "echo", "args": {"value": 1}}, {"id": "b", "tool": "add", "args": {"a": "${a}"}}]),
        TOOLS,
    )


def test_item_inputs_goal_references() -> None:
    assert problems([{"id": "x", "tool": "echo", "args": {"value": "${item}"}}]) == [
        "step `x` uses `${item}` but has no `for_each`; `${item}` only exists in steps that run `for_each`."
    ]
    assert problems([{"id": "x", "tool": "echo", "args": {"value": "${inputs.q}"}}], inputs={"p": 1}) == [
        "step `x` references `${inputs.q}`, but the run has no input `q` (inputs: `p`)."
    ]
    validate_plan(Plan.of([{"id": "x", "tool": "echo", "args": {"value": "${goal} ${inputs.p}"}}]), TOOLS, inputs={"p": 1})


def test_for_each_must_be_a_single_reference() -> None:
    assert problems(
        [
            {"id": "a", "tool": "echo", "args": {"value": [1]}},
            {"id": "b", "tool": "echo", "args": {"value": "${item}"}, "for_each": "items: ${a}"},
        ]
    ) == [
        "step `b` `for_each` must be a single reference to a list, such as `${search.results}`, not `items: ${a}`."
    ]


def test_bad_condition_syntax() -> None:
    msgs = problems(
        [
            {"id": "a", "tool": "echo", "args": {"value": 1}},
            {"id": "b", "tool": "echo", "args": {"value": 2}, "when": "${a} >"},
        ]
    )
    assert len(msgs) == 1 and msgs[0].startswith("step `b` has an invalid `when` condition `${a} >`")


def test_reserved_id_and_malformed_reference() -> None:
    msgs = problems([{"id": "inputs", "tool": "echo", "args": {"value": "${oops"}}])
    assert msgs[0] == "step id `inputs` is reserved for references; choose another id."
    assert msgs[1].startswith("step `inputs` `args`: malformed reference `${oops`")


def test_live_graph_checks_new_steps_against_existing() -> None:
    g = PlanGraph(TOOLS)
    g.add([Step(id="a", tool="echo", args={"value": 1})])
    with pytest.raises(PlanError, match="step `a` already exists in the run; give the new step another id."):
        g.add([Step(id="a", tool="echo", args={"value": 2})])
    g.add([Step(id="b", tool="echo", args={"value": "${a}"})])
    assert ("a", "b") in g.graph.edges
    assert g.check([Step(id="c", tool="echo", args={"value": "${zz}"})])[0].step_id == "c"
    assert "c" not in g  # check() adds nothing


def test_plan_error_message_single_and_many() -> None:
    with pytest.raises(PlanError) as info:
        validate_plan(Plan.of([{"id": "x", "tool": "nope"}]), ToolRegistry())
    assert str(info.value) == (
        "invalid plan: step `x` uses unknown tool `nope`; no tools are registered: pass the tool to the executor."
    )
    assert info.value.step_ids == {"x"}


def test_steps_may_need_later_steps_of_their_batch() -> None:
    g = PlanGraph(TOOLS)
    g.add(
        Plan.of(
            [
                {"id": "d", "tool": "echo", "args": {"value": "${b} ${c}"}},
                {"id": "c", "tool": "echo", "args": {"value": 1}, "depends_on": ["b"]},
                {"id": "b", "tool": "echo", "args": {"value": 1}},
            ]
        ).steps
    )
    assert list(nx.topological_sort(g.graph)) == ["b", "c", "d"]


def test_a_cycle_is_reported_with_the_other_problems() -> None:
    msgs = problems(
        [
            {"id": "a", "tool": "echo", "args": {"value": 1}, "depends_on": ["b", "ghost"]},
            {"id": "b", "tool": "echo", "args": {"value": 1}, "depends_on": ["a"]},
        ]
    )
    assert msgs == [
        "step `a` depends on `ghost`, which is not in the plan; add that step or remove the dependency.",
        "dependency cycle `a -> b -> a` (each step needs the next); remove one of these dependencies or references.",
    ]


def test_steps_with_the_same_depends_on_are_each_checked() -> None:
    assert problems(
        [
            {"id": "a", "tool": "echo", "args": {"value": 1}},
            {"id": "b", "tool": "echo", "args": {"value": 1}, "depends_on": ["a", "ghost"]},
            {"id": "c", "tool": "echo", "args": {"value": 1}, "depends_on": ["a", "ghost"]},
            {"id": "d", "tool": "echo", "args": {"value": 1}, "depends_on": ["a", "e"]},
            {"id": "e", "tool": "echo", "args": {"value": 1}, "depends_on": ["a", "e"]},
        ]
    ) == [
        "step `b` depends on `ghost`, which is not in the plan; add that step or remove the dependency.",
        "step `c` depends on `ghost`, which is not in the plan; add that step or remove the dependency.",
        "step `e` depends on itself; remove `e` from its `depends_on`.",
    ]


def test_dependencies_are_depends_on_plus_references() -> None:
    g = PlanGraph(TOOLS)
    compiled = g.add(
        Plan.of(
            [
                {"id": "a", "tool": "echo", "args": {"value": 1}},
                {"id": "b", "tool": "echo", "args": {"value": 1}},
                {"id": "c", "tool": "echo", "args": {"value": "${b}"}, "depends_on": ["a"]},
                {"id": "d", "tool": "echo", "args": {"value": 1}, "depends_on": ["a", "b"]},
            ]
        ).steps
    )
    assert [sorted(c.deps) for c in compiled] == [[], [], ["a", "b"], ["a", "b"]]
    g.add([Step(id="e", tool="echo", args={"value": "${d}"}, depends_on=["a"])])  # a later batch
    assert ("a", "e") in g.graph.edges and ("d", "e") in g.graph.edges
