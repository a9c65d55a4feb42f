"""Steps and the answer are pulled out of JSON while it streams, whatever the chunk boundaries."""

from __future__ import annotations

import json

import pytest

from planweave.planner.streaming import FieldStream, StepStream

PLAN = {
    "steps": [
        ["a", "calculator", {"expression": "1 + 1"}],
        {"id": "b", "tool": "calculator", "args": {"expression": "${a} * 2 ]}"}, "when": "${a} > 0"},
        ["c", "llm", {"prompt": "say \"hi\" [x]"}, ["b"]],
    ],
    "rationale": "with [brackets] and {braces} in text",
    "answer": None,
}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_step_stream_yields_each_step_when_it_closes(size: int) -> None:
    text = json.dumps(PLAN)
    stream, seen, positions = StepStream(), [], []
    for i in range(0, len(text), size):
        for item in stream.feed(text[i : i + size]):
            seen.append(item)
            positions.append(i + size)
    assert seen == PLAN["steps"]
    # Each step is handed over as soon as its closing bracket arrived, before the rationale.
    assert positions[0] <= text.index(']]') + 2 + size and positions[-1] < text.index('"rationale"') + size


def test_step_stream_ignores_steps_key_inside_strings_and_nested_lists() -> None:
    text = json.dumps({"rationale": 'the "steps": [1] here', "steps": [{"id": "x", "tool": "t", "args": {"l": [[1]]}}]})
    assert StepStream().feed(text) == [{"id": "x", "tool": "t", "args": {"l": [[1]]}}]


@pytest.mark.parametrize("size", [1, 4, 50])
def test_field_stream_decodes_escapes_across_chunks(size: int) -> None:
    answer = 'Line "one"\nline two \\ tab\t unicode é and 😀 end'
    text = json.dumps({"action": "finish", "answer": answer, "reason": ""})
    f = FieldStream()
    out = "".join(f.feed(text[i : i + size]) for i in range(0, len(text), size))
    assert out == answer and f.sent == len(answer)


def test_field_stream_holds_back_until_the_action_is_known() -> None:
    f = FieldStream()
    assert f.feed('{"answer": "early ') == ""  # the action is not known yet
    assert f.feed('text", "action": "fin') == ""
    assert f.feed('ish"}') == "early text"
    replan = FieldStream()
    assert replan.feed(json.dumps({"action": "replan", "answer": "no", "reason": "r"})) == ""


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 1000])
def test_field_stream_at_every_chunk_size_with_the_action_last(size: int) -> None:
    answer = 'A "quoted" \\ answer\nwith é, 😀 and \u2028'
    for ensure_ascii in (True, False):
        text = json.dumps({"answer": answer, "reason": "", "action": "finish"}, ensure_ascii=ensure_ascii)
        f = FieldStream()
        pieces = [f.feed(text[i : i + size]) for i in range(0, len(text), size)]
        assert "".join(pieces) == answer
        first = next(i for i, p in enumerate(pieces) if p)
        assert (first + 1) * size > text.rindex('"')  # nothing before the action's value closed


def test_field_stream_waits_for_the_gate_value_to_close() -> None:
    f = FieldStream()
    assert f.feed('{"answer": "text", "action": "finish') == ""  # could still become `finished`
    assert f.feed('ed"}') == ""
    g = FieldStream()
    assert g.feed('```json\n{"action": "finish", "answer": "pre') == "pre"  # text before the object is skipped
    assert g.feed('fix\\') == "fix"  # an escape cut by the chunk boundary waits for the rest
    assert g.feed('n"}') == "\n"
