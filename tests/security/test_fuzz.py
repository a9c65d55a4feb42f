"""A property-based fuzzer (hypothesis) for what a hostile model writes (issue 12, tests).

Malformed and hostile plan streams (truncated, deeply nested, huge numbers, broken escapes,
wrong types, any chunking) go through the streaming parsers and plan validation; hostile
expressions go through the `when` checker and the evaluator while a heartbeat task runs on the
event loop. The properties: nothing raises but planweave's own errors (and pydantic's
`ValidationError`, which the planner turns into a re-ask), nothing invalid is accepted, and the
loop keeps turning whenever an evaluation is heavy enough to leave it. Bounded: a few hundred
examples in all, no deadline, so it adds seconds to the suite."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from planweave.executor.graph import PlanGraph, compile_condition
from planweave.executor.plan import Step
from planweave.planner.models import JoinDecision, PlannedStep, PlanUpdate
from planweave.planner.streaming import MAX_DEPTH, FieldStream, StepStream, nesting_depth
from planweave.tools import ToolRegistry, tool
from planweave.tools.errors import PlanweaveError
from planweave.tools.safe_eval import SafeEvalError, WorkLimitExceeded, check, evaluate, evaluate_async

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@tool
async def echo(value: Any = None) -> Any:
    """Return `value`."""
    return value


REGISTRY = ToolRegistry([echo])

# --- plan streams -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


hostile_fragments = st.one_of(
    st.integers(1, 4000).map(_nested),
    st.integers(300, 6000).map(lambda n: "1" + "0" * n),
    st.sampled_from(['"\\ud800"', '"\\udc00\\ud800"', '"\\x41"', '"\\u12"', "1e99999", "-", "NaN", '"\x00"']),
    st.text(alphabet='{}[]",:\\ 0123abcu', max_size=40),
)
args_values = st.one_of(json_values.map(json.dumps), hostile_fragments)


@st.composite
def steps(draw: st.DrawFn) -> str:
    step_id = draw(st.sampled_from(["a", "b", "c", "bad id", "${x}", ""]) | st.text(max_size=6))
    when = draw(st.none() | st.sampled_from(["${a} > 9**9**9", "${a}.__class__", "${a} > 0", "len(", "x"]))
    kind = draw(st.integers(0, 3))
    if kind == 0:  # compact form
        return f'[{json.dumps(step_id)}, "echo", {{"value": {draw(args_values)}}}]'
    if kind == 1:  # object form
        fields = [f'"id": {json.dumps(step_id)}', '"tool": "echo"', f'"args": {{"value": {draw(args_values)}}}']
        if when is not None:
            fields.append(f'"when": {json.dumps(when)}')
        return "{" + ", ".join(draw(st.permutations(fields))) + "}"
    if kind == 2:  # wrong types
        return draw(st.sampled_from(["1", '"step"', "null", "{}", "[]", '{"id": 1, "tool": []}', "[1, 2, 3, 4, 5]"]))
    return draw(hostile_fragments)


@st.composite
def plan_streams(draw: st.DrawFn) -> tuple[str, list[int]]:
    items = draw(st.lists(steps(), max_size=5))
    text = draw(st.sampled_from(["", "```json\n", "Here is the plan: "])) + (
        '{"steps": [' + ", ".join(items) + '], "rationale": ' + json.dumps(draw(st.text(max_size=10))) + "}"
    )
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    cuts = draw(st.lists(st.integers(1, 64), min_size=1, max_size=8))
    return text, cuts


def _chunks(text: str, cuts: list[int]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        size = cuts[k % len(cuts)]
        out.append(text[i : i + size])
        i, k = i + size, k + 1
    return out


def _accept(item: Any, graph: PlanGraph) -> Step | None:
    """What the planner does with a streamed step: validate it as the model's, then as a plan's."""
    try:
        planned = PlannedStep.model_validate(item)
        step = Step(**planned.model_dump(exclude={"retry"}))
        graph.add([step])
    except (ValidationError, PlanweaveError):
        return None
    return step


@FUZZ
@given(plan_streams())
def test_hostile_plan_streams_are_refused_cleanly(stream: tuple[str, list[int]]) -> None:
    text, cuts = stream
    steps_stream, answer_stream, graph = StepStream(), FieldStream(), PlanGraph(REGISTRY)
    accepted: list[Step] = []
    for chunk in _chunks(text, cuts):
        for item in steps_stream.feed(chunk):
            assert isinstance(item, (dict, list))
            step = _accept(item, graph)
            if step is not None:
                accepted.append(step)
        assert isinstance(answer_stream.feed(chunk), str)
    assert steps_stream.text == text
    for step in accepted:  # nothing invalid gets in
        assert nesting_depth(step.args) <= MAX_DEPTH
        if step.when is not None:
            expression, refs = compile_condition(step.when)
            check(expression, [f"_r{i}" for i in range(len(refs))])
    start = text.find("{")
    for model in (PlanUpdate, JoinDecision):
        try:
            model.model_validate_json(text[start : text.rfind("}") + 1] if start >= 0 else text)
        except ValidationError:
            pass


# --- expressions --------------------------------------------------------------------------------

ATOMS = [
    "9**9**9", "10**3000", "2**9999", "'ab'*10**6", "[0]*10**6", "[[0]*1000]*1000", "int('9'*4000)",
    "round(1, -10**9)", "str(10**3000)", "x", "x.a", "x['s']", "len(x.s)", "pi", "__import__('os')",
    "x.__class__", "(1).__class__", "'%0999999d' % 1", "sum([10**3000]*3)", "-(2**9999)", "x.s*300",
    "[x.a]*300", "min(x.a)", "1/0", "True", "None", "'é😀'",
]
OPS = ["+", "-", "*", "/", "//", "%", "**", "==", "<", "in", "and", "or", "<<", "&"]
FUNCS = ["abs", "len", "str", "int", "float", "sum", "max", "round", "sqrt", "log", "exp", "bool", "eval"]

expressions = st.one_of(
    st.recursive(
        st.sampled_from(ATOMS) | st.integers(-(10**20), 10**20).map(str),
        lambda c: st.one_of(
            st.tuples(c, st.sampled_from(OPS), c).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(FUNCS), c).map(lambda t: f"{t[0]}({t[1]})"),
            st.lists(c, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
            st.tuples(c, c, c).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        ),
        max_leaves=8,
    ),
    st.text(max_size=40),
)
NAMES = {"x": {"a": list(range(2000)), "s": "abc" * 3000}}
WORK = 3_000_000  # a heavy expression's budget here: enough to leave the loop, small enough to be quick


class Heartbeat:
    def __init__(self) -> None:
        self.ticks = 0

    async def beat(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)


async def _evaluate_with_heartbeat(expression: str) -> None:
    try:
        evaluate(expression, NAMES, work_limit=200_000)  # what `evaluate_async` tries on the loop first
        heavy = False
    except WorkLimitExceeded:
        heavy = True
    except SafeEvalError:
        heavy = False
    beat = Heartbeat()
    task = asyncio.create_task(beat.beat())
    await asyncio.sleep(0)
    before = beat.ticks
    try:
        await evaluate_async(expression, NAMES, work_limit=WORK)
    except SafeEvalError:  # the only error an expression may raise
        pass
    finally:
        task.cancel()
    if heavy:  # it left the loop: the heartbeat kept turning meanwhile
        assert beat.ticks > before


@FUZZ
@given(expressions)
def test_hostile_expressions_fail_cleanly_and_never_stall_the_loop(expression: str) -> None:
    try:
        check(expression, ["x"])  # the plan-time checker
    except SafeEvalError:
        pass
    asyncio.run(_evaluate_with_heartbeat(expression))


@FUZZ
@given(expressions)
def test_hostile_conditions_are_refused_when_planned_or_evaluated_cleanly(expression: str) -> None:
    graph = PlanGraph(REGISTRY)
    graph.add([Step(id="a", tool="echo", args={"value": 1})])
    when = expression.replace("x", "${a}")
    try:
        graph.add([Step(id="b", tool="echo", args={"value": 2}, when=when)])
    except (PlanweaveError, ValidationError):
        return
    expr, refs = compile_condition(when)
    try:
        evaluate(expr, {f"_r{i}": 1 for i in range(len(refs))}, work_limit=WORK)
    except SafeEvalError:
        pass
