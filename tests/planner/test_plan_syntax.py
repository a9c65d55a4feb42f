"""Plans written as lines: each step parsed into a validated `PlannedStep` as soon as its line
ends; JSON plans still accepted; malformed lines are problems for the re-ask, never crashes."""

from __future__ import annotations

import pytest

from planweave.planner.models import PlannedStep
from planweave.planner.plan_syntax import MAX_LINE_CHARS, LineError, PlanStream, parse_step_line

PLAN = (
    's1 = search(query="population of France")\n'
    's2 = search(query=\'population of Spain\')\n'
    'm1 = llm(prompt="Convert \\"it\\" (${s1}) to millions.", context=${s1})\n'
    'sum = llm(prompt="Add.", context=[${m1}, "${s2.0}"], n=-2, ok=true, none=None, opts={"a": [1, 2.5]})\n'
    '{"id": "check", "tool": "read_file", "args": {"path": "a.txt"}, "when": "${m1} > 3"}\n'
    '["last", "echo", {"text": "done"}]\n'
    "Thought: search, convert, add.\n"
)


def test_each_step_comes_out_when_its_line_ends() -> None:
    stream = PlanStream()
    seen: list[list[str]] = []
    for i in range(0, len(PLAN), 7):
        items = stream.feed(PLAN[i : i + 7])
        seen.append([PlannedStep.model_validate(item).id for item in items])
    assert [sid for chunk in seen for sid in chunk] == ["s1", "s2", "m1", "sum", "check", "last"]
    assert seen[PLAN.index("\n") // 7] == ["s1"]  # out with the chunk holding its newline, not later
    update, problems = stream.finish()
    assert problems == [] and update is not None and stream.mode == "lines"
    assert update.rationale == "search, convert, add." and update.answer is None
    steps = {s.id: s for s in update.planned()}
    assert steps["m1"].args == {"prompt": 'Convert "it" (${s1}) to millions.', "context": "${s1}"}
    assert steps["sum"].args == {"prompt": "Add.", "context": ["${m1}", "${s2.0}"], "n": -2, "ok": True, "none": None,
                                 "opts": {"a": [1, 2.5]}}  # fmt: skip
    assert steps["check"].when == "${m1} > 3" and steps["last"].tool == "echo"


def test_an_answer_with_no_steps() -> None:
    stream = PlanStream()
    assert stream.feed("Answer: Paris.\nIt has been the capital = since (987).\n") == []
    update, problems = stream.finish()
    assert problems == [] and update is not None and update.steps == []
    assert update.answer == "Paris.\nIt has been the capital = since (987)."


def test_a_json_plan_is_still_accepted_and_streamed() -> None:
    text = '{"steps": [["a", "add", {"a": 1}], {"id": "b", "tool": "add", "args": {"a": "${a}"}}], "rationale": "r"}'
    stream = PlanStream()
    ids = [PlannedStep.model_validate(item).id for i in range(0, len(text), 5) for item in stream.feed(text[i : i + 5])]
    update, problems = stream.finish()
    assert ids == ["a", "b"] and stream.mode == "json" and problems == []
    assert update is not None and [s.id for s in update.planned()] == ["a", "b"] and update.rationale == "r"
    bad = PlanStream()
    bad.feed('{"steps": 3}')
    assert bad.finish()[0] is None and bad.finish()[1][0].startswith("the reply is not a valid plan object: ")


def test_malformed_lines_are_problems_that_say_the_fix() -> None:
    stream = PlanStream()
    stream.feed(
        "Here is the plan:\n"  # prose: ignored
        's1 = search("positional")\n'
        "s2 = search(query=open('x'))\n"
        "s3 = search(query=\n"
        '{"id": "x", "tool": \n'
        "s4 = search(**kw)\n"
        "s5 search(query=1)\n"
        "ok = search(query=\"fine\", extra={1: 2})\n"
        "good = search(query=\"fine\")\n"
        '{"id": "bad", "tool": "t", "args": {}, "nope": 1}\n'
    )
    update, problems = stream.finish()
    assert update is not None and [s.id for s in update.planned()] == ["good"]
    assert problems[0] == 'line 2: step `s1`: name every argument (`name=value`), e.g. `s1 = search(query="...")`'
    assert problems[1].startswith("line 3: step `s2`: argument values must be literals") and "open('x')" in problems[1]
    assert problems[2].startswith("line 4: this line is not a step: `s3 = search(query=`")
    assert problems[3].startswith("line 5: a step in object form is not valid JSON")
    assert problems[4] == "line 6: step `s4`: `**` is not allowed; name every argument"
    assert problems[5].startswith("line 7: this line is not a step: `s5 search(query=1)`; write each step as")
    assert problems[6] == "line 8: step `ok`: object keys must be strings"
    assert problems[7].startswith("step `bad` is malformed:") and len(problems) == 8


@pytest.mark.parametrize(
    "line",
    [
        "x = t(a=" + "[" * 5000 + "]" * 5000 + ")",  # deep nesting: the parser's recursion
        "x = t(a=" + "[" * 40 + "]" * 40 + ")",  # deeper than the value limit
        "x = t(a=" + "1+" * 100_000 + "1)",
        "[" * 100_000,
        "x = t(a=" + '"' + "y" * MAX_LINE_CHARS + '")',
    ],
    ids=["ast-depth", "value-depth", "long-expression", "json-depth", "too-long"],
)
def test_hostile_lines_are_errors_not_crashes(line: str) -> None:
    with pytest.raises(LineError):
        parse_step_line(line)
    stream = PlanStream()
    assert stream.feed(line + "\n") == []
    update, problems = stream.finish()
    assert update is not None and update.steps == [] and len(problems) == 1
