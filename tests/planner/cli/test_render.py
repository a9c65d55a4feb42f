"""Plan drawings: tree, Mermaid, DOT and PNG, with and without run states."""

from __future__ import annotations

import io
import re
import struct
import sys
from typing import Any

import pytest
from rich.tree import Tree

from planweave.executor import Plan, Step
from planweave.executor.graph import PlanGraph
from planweave.executor.result import StepResult
from planweave.planner.errors import ConfigError
from planweave.planner.cli.render import (
    PNG_EXTRA_HINT,
    STATE_STYLES,
    StepState,
    args_summary,
    plan_tree,
    render_plan,
    run_tree,
    step_state,
    to_dot,
    to_mermaid,
    to_png,
    tree_text,
)
from planweave.tools import ToolRegistry, tool

# Listed out of order on purpose: drawings follow dependencies, ties in plan order.
PLAN = Plan.of(
    [
        {"id": "combine", "tool": "summarize", "args": {"text": "${fetch_a} and ${fetch_b.body}"}},
        {"id": "fetch_a", "tool": "http_get", "args": {"url": "https://a.example"}},
        {"id": "fetch_b", "tool": "http_get", "args": {"url": "https://b.example"}, "retry": 3},
        {"id": "report", "tool": "write_file", "args": {"path": "out.txt", "text": "${combine}"}, "when": "${fetch_a} != ''"},
    ]
)
STATES: dict[str, Any] = {
    "fetch_a": StepState("succeeded", 0.41, 1),
    "fetch_b": {"status": "failed", "duration_s": 1.5, "attempts": 3},
    "combine": "skipped",
}

# Step text a careless renderer would turn into broken Mermaid or DOT.
NASTY = 'say "hi" <b>x</b> #quot; %% comment; a:b `code` \\N {x} [y] --> end\nnext & more'


def nasty_plan() -> list[Step]:
    return [
        Step(id="end", tool="graph", args={"q": NASTY}),
        Step(id="style", tool='a"b', args={NASTY: [NASTY, 1]}, depends_on=["end"]),
        Step(id="o-x", tool="classDef", args={"q": "style x fill:#f00;"}, depends_on=["end", "style"]),
    ]


# --- tree ----------------------------------------------------------------------------------------


def test_tree_lists_steps_in_dependency_order_with_tool_args_and_needs() -> None:
    assert tree_text(PLAN) == (
        "plan (4 steps)\n"
        '├── fetch_a  http_get(url="https://a.example")\n'
        '├── fetch_b  http_get(url="https://b.example")\n'
        '├── combine  summarize(text="${fetch_a} and ${fetch_b.body}")  ← fetch_a, fetch_b\n'
        '└── report  write_file(path="out.txt", text="${combine}")  ← combine, fetch_a\n'
        "    └── when ${fetch_a} != ''\n"
    )


def test_tree_shows_states_durations_and_attempts() -> None:
    text = tree_text(PLAN, STATES, width=140)
    lines = text.splitlines()
    assert lines[1].endswith("✓ succeeded 0.41s")
    assert lines[2].endswith("✗ failed 1.50s, 3 attempts")
    assert lines[3].endswith("↷ skipped")
    assert lines[4].endswith("○ pending")  # missing from the states: not run yet
    assert "\x1b" not in text


def test_plan_tree_is_a_rich_tree_with_one_branch_per_step() -> None:
    tree = plan_tree(PLAN, title="my plan")
    assert isinstance(tree, Tree)
    assert len(tree.children) == 4
    assert "my plan" in str(tree.label)


def test_dependencies_come_from_depends_on_args_when_and_for_each_not_inputs() -> None:
    steps = [
        Step(id="a", tool="t"),
        Step(id="b", tool="t"),
        Step(id="c", tool="t"),
        Step(id="d", tool="t"),
        Step(
            id="e", tool="t", depends_on=["a"], when="${b.ok} == true", for_each="${c.items}",
            args={"x": ["${d}", "${inputs.city}", "${goal}", "${item.url}", "$${literal}"]},
        ),
    ]
    assert tree_text(steps, width=200).splitlines()[5].endswith("← a, d, b, c")  # as written


def test_a_cyclic_or_malformed_plan_still_draws_in_plan_order() -> None:
    steps = [Step(id="x", tool="t", depends_on=["y"]), Step(id="y", tool="t", depends_on=["x"]),
             Step(id="z", tool="t", args={"a": "${oops"})]
    assert [line.split()[1] for line in tree_text(steps).splitlines()[1:]] == ["x", "y", "z"]
    assert "s0 --> s1" in to_mermaid(steps) and "s1 --> s0" in to_mermaid(steps)


def test_accepts_step_dicts_and_a_plan_graph() -> None:
    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    graph = PlanGraph(ToolRegistry([echo]))
    graph.add(Plan.of([{"id": "a", "tool": "echo", "args": {"text": "x"}},
                       {"id": "b", "tool": "echo", "args": {"text": "${a}"}}]).steps)
    from_graph = tree_text(graph)
    from_dicts = tree_text([{"id": "a", "tool": "echo", "args": {"text": "x"}},
                            {"id": "b", "tool": "echo", "args": {"text": "${a}"}}])
    assert from_graph == from_dicts
    assert "b  echo(text=\"${a}\")  ← a" in from_graph


def test_states_can_be_step_results_dicts_strings_or_step_states() -> None:
    result = StepResult(id="a", tool="t", status="succeeded", attempts=2, started_at=10.0, finished_at=10.5)
    assert step_state(result) == StepState("succeeded", 0.5, 2)
    assert step_state({"status": "failed"}) == StepState("failed")
    assert step_state("running") == StepState("running")
    assert StepState("ready").drawn == "pending"
    assert StepState("succeeded", 75.0, 2).describe() == "succeeded 1m15.0s, 2 attempts"


def test_args_summary_is_one_line_and_cut_to_fit() -> None:
    assert args_summary({"a": "x\ny", "n": 3, "l": [1, 2]}) == 'a="x y", n=3, l=[1, 2]'
    long = args_summary({"text": "word " * 40, "b": 1}, limit=40)
    assert len(long) == 40 and long.endswith("…")


# --- Mermaid -------------------------------------------------------------------------------------

_NODE = re.compile(r'^    s\d+\["([^"]*)"\]$')
_EDGE = re.compile(r"^    s\d+ --> s\d+$")
_CLASSDEF = re.compile(r"^    classDef (succeeded|failed|skipped|cancelled|running|pending) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6},color:#[0-9a-f]{6}$")
_CLASS = re.compile(r"^    class s\d+(,s\d+)* (succeeded|failed|skipped|cancelled|running|pending)$")


def assert_valid_mermaid(text: str) -> list[str]:
    """Every line is one of the four statement shapes we emit; returns the node labels."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    labels = []
    for line in lines[1:]:
        m = _NODE.match(line)
        if m:
            label = m.group(1)
            # Only entity codes, `<br/>` and plain characters inside a label.
            assert re.fullmatch(r"(#\d+;|<br/>|[^\"<>#%:;`&\\\n])*", label), label
            labels.append(label)
        else:
            assert _EDGE.match(line) or _CLASSDEF.match(line) or _CLASS.match(line), line
    return labels


def test_mermaid_flowchart_is_pinned() -> None:
    assert to_mermaid(PLAN, STATES) == (
        "flowchart TD\n"
        '    s0["fetch_a<br/>http_get<br/>url=#34;https#58;//a.example#34;<br/>succeeded 0.41s"]\n'
        '    s1["fetch_b<br/>http_get<br/>url=#34;https#58;//b.example#34;<br/>failed 1.50s, 3 attempts"]\n'
        '    s2["combine<br/>summarize<br/>text=#34;${fetch_a} and ${fetch_b.body}#34;<br/>skipped"]\n'
        '    s3["report<br/>write_file<br/>path=#34;out.txt#34;, text=#34;${combine}#34;<br/>pending"]\n'
        "    s0 --> s2\n"
        "    s1 --> s2\n"
        "    s2 --> s3\n"
        "    s0 --> s3\n"
        "    classDef succeeded fill:#d1f2d9,stroke:#2e7d32,color:#212121\n"
        "    classDef failed fill:#f8d7da,stroke:#c62828,color:#212121\n"
        "    classDef skipped fill:#fff3cd,stroke:#b28704,color:#212121\n"
        "    classDef cancelled fill:#eadcf2,stroke:#7b1fa2,color:#212121\n"
        "    classDef running fill:#d6e6fb,stroke:#1565c0,color:#212121\n"
        "    classDef pending fill:#eeeeee,stroke:#757575,color:#212121\n"
        "    class s0 succeeded\n"
        "    class s1 failed\n"
        "    class s2 skipped\n"
        "    class s3 pending\n"
    )


def test_mermaid_without_states_has_no_colours() -> None:
    text = to_mermaid(PLAN)
    assert "classDef" not in text and "class " not in text
    assert len(assert_valid_mermaid(text)) == 4


def test_mermaid_escapes_any_step_text() -> None:
    states = {"end": "running", "style": "ready", "o-x": "cancelled"}
    text = to_mermaid(nasty_plan(), states)
    labels = assert_valid_mermaid(text)
    assert labels[0].startswith("end<br/>graph<br/>q=#34;say \\") is False  # backslashes are entities too
    assert labels[0].startswith("end<br/>graph<br/>q=#34;say #92;#34;hi#92;#34; #60;b#62;x#60;/b#62; #35;quot#59;")
    assert "    class s0 running" in text and "    class s1 pending" in text and "    class s2 cancelled" in text
    assert text.count("-->") == 3  # the three edges; the `-->` in the arguments is escaped


def test_an_empty_plan_draws() -> None:
    assert to_mermaid([]) == "flowchart TD\n"
    assert tree_text([]) == "plan (0 steps)\n"
    assert to_dot([]).startswith('digraph "plan" {')


# --- DOT -----------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def test_dot_is_pinned() -> None:
    plan = Plan.of([{"id": "a", "tool": "t", "args": {"x": 1}}, {"id": "b", "tool": "u", "depends_on": ["a"]}])
    assert to_dot(plan, {"a": "succeeded", "b": "running"}) == (
        'digraph "plan" {\n'
        "    rankdir=TB;\n"
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#424242", fontname="Helvetica"];\n'
        '    edge [color="#616161"];\n'
        '    "a" [label="a\\nt\\nx=1\\nsucceeded", fillcolor="#d1f2d9", color="#2e7d32"];\n'
        '    "b" [label="b\\nu\\nrunning", fillcolor="#d6e6fb", color="#1565c0"];\n'
        '    "a" -> "b";\n'
        "}\n"
    )


def test_dot_quotes_and_escapes_any_step_text() -> None:
    text = to_dot(nasty_plan(), {"end": "failed"}, name=NASTY)
    body = _QUOTED.sub('""', text)  # outside the quoted strings, only DOT syntax remains
    assert body.count("{") == 1 and body.count("}") == 1
    assert re.fullmatch(r'digraph "" \{\n(    [^\n]*;\n)+\}\n', body), body
    labels = [m.group(1) for m in re.finditer(r'label=' + _QUOTED.pattern, text)]
    unescaped = [re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), lab) for lab in labels]
    assert unescaped[0].split("\n")[:2] == ["end", "graph"]
    assert unescaped[0].split("\n")[2] == args_summary({"q": NASTY}, 40)
    assert unescaped[1].split("\n")[1] == 'a"b'
    assert '"end" -> "style";' in text and '"style" -> "o-x";' in text


# --- PNG -----------------------------------------------------------------------------------------


def _png_pixels(data: bytes) -> Any:
    from matplotlib.image import imread

    return (imread(io.BytesIO(data), format="png")[:, :, :3] * 255).round().astype(int)


def _has_colour(pixels: Any, hex_colour: str, at_least: int = 500) -> bool:
    """At least `at_least` pixels of this colour (a step's box is thousands; a legend patch about 100)."""
    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    return bool(((abs(pixels - rgb) <= 1).all(axis=2)).sum() >= at_least)


def test_png_is_a_real_image_coloured_by_state() -> None:
    states = {"fetch_a": "succeeded", "fetch_b": "failed", "combine": "running"}
    data = to_png(PLAN, states, legend=False)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width > 0 and height > 0
    pixels = _png_pixels(data)
    assert pixels.shape[:2] == (height, width)
    for state in ("succeeded", "failed", "running", "pending"):  # `report` has no state: pending
        assert _has_colour(pixels, STATE_STYLES[state].fill), state
    for state in ("skipped", "cancelled"):
        assert not _has_colour(pixels, STATE_STYLES[state].fill, at_least=1), state


def test_png_without_states_and_with_a_legend() -> None:
    plain = _png_pixels(to_png(PLAN))
    assert not _has_colour(plain, STATE_STYLES["succeeded"].fill, at_least=1)
    with_legend = _png_pixels(to_png([Step(id="a", tool="t")], {"a": "succeeded"}))
    assert all(_has_colour(with_legend, s.fill, at_least=50) for k, s in STATE_STYLES.items() if k != "ready")
    assert to_png([])[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.backends", "matplotlib.backends.backend_agg", "matplotlib.figure",
                 "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError) as info:
        to_png(PLAN)
    assert str(info.value) == PNG_EXTRA_HINT
    assert "pip install 'planweave[png]'" in PNG_EXTRA_HINT


def test_render_plan_picks_the_format() -> None:
    assert render_plan(PLAN, "tree") == tree_text(PLAN)
    assert render_plan(PLAN, "mermaid", STATES) == to_mermaid(PLAN, STATES)
    assert render_plan(PLAN, "dot") == to_dot(PLAN)
    with pytest.raises(ConfigError, match="unknown graph format `svg`; use `tree`, `mermaid`, `dot` or `png`."):
        render_plan(PLAN, "svg")  # type: ignore[arg-type]


# --- a recorded run ------------------------------------------------------------------------------


def _record(events: list[Any], **summary: Any) -> Any:
    from planweave.executor.store import RunRecord, RunSummary

    base: dict[str, Any] = {"id": "r-1", "kind": "planner", "name": "", "goal": "g", "status": "succeeded",
                            "created_at": 0.0, "duration_s": 2.5}
    return RunRecord(summary=RunSummary(**{**base, **summary}), events=[e.to_dict() for e in events])


def _plain(tree: Tree, width: int = 120) -> str:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(tree)
    return out.getvalue()


def test_run_tree_groups_steps_and_llm_calls_by_round() -> None:
    from planweave.executor.events import StepAdded, StepFailed, StepStarted, StepSucceeded
    from planweave.planner.events import AnswerDelta, Decision, LLMCalled, PlanUpdated

    a, b = Step(id="a", tool="calculator"), Step(id="b", tool="http_get")
    events = [
        LLMCalled(run_id="r-1", purpose="plan", model="m", input_tokens=90, output_tokens=10, cost_usd=0.001),
        StepAdded(run_id="r-1", step_id="a", tool="calculator", step=a),
        StepStarted(run_id="r-1", step_id="a", tool="calculator", attempt=1, at=10.0),
        StepSucceeded(run_id="r-1", step_id="a", output=391, attempts=1, duration_s=0.25, at=10.25),
        PlanUpdated(run_id="r-1", round=1, rationale="compute", step_ids=["a"]),
        LLMCalled(run_id="r-1", purpose="join", model="m", input_tokens=50, output_tokens=5, cost_usd=None),
        Decision(run_id="r-1", action="replan", round=1, reason="need b"),
        LLMCalled(run_id="r-1", purpose="plan", model="m", input_tokens=1, output_tokens=1, cost_usd=0.0),
        StepAdded(run_id="r-1", step_id="b", tool="http_get", step=b),
        StepStarted(run_id="r-1", step_id="b", tool="http_get", attempt=2, at=11.0),
        StepFailed(run_id="r-1", step_id="b", error="HTTP 503", error_type="ToolError", attempts=2,
                   on_failure="continue", at=12.0),
        PlanUpdated(run_id="r-1", round=2, rationale="fetch", step_ids=["b"]),
        AnswerDelta(run_id="r-1", text="391"),
    ]
    text = _plain(run_tree(_record(events, llm_calls=3, input_tokens=141, output_tokens=16, cost_usd=None,
                                   answer="391")))
    assert text == (
        "run r-1  planner  succeeded in 2.50s\n"
        "├── goal: g\n"
        "├── round 1: compute  → replan: need b\n"
        "│   ├── LLM plan: m, 100 tokens, $0.0010\n"
        "│   ├── ✓ a  calculator  succeeded  0.25s  391\n"
        "│   └── LLM join: m, 55 tokens, cost unknown\n"
        "├── round 2: fetch\n"
        "│   ├── LLM plan: m, 2 tokens, $0.0000\n"
        "│   └── ✗ b  http_get  failed  2 attempts  1.00s  HTTP 503\n"
        "├── LLM: 3 calls, 157 tokens, cost unknown\n"
        "└── answer: 391\n"
    )


def test_run_tree_puts_a_tool_call_made_while_the_plan_streams_under_its_round() -> None:
    from planweave.executor.events import StepAdded, StepSucceeded
    from planweave.planner.events import LLMCalled, PlanUpdated

    c = Step(id="c", tool="llm")
    events = [  # the order a streamed round records: the step's own call ends before the plan call
        StepAdded(run_id="r-1", step_id="c", tool="llm", step=c),
        LLMCalled(run_id="r-1", purpose="llm_tool", model="m", input_tokens=3, output_tokens=1, cost_usd=0.0),
        StepSucceeded(run_id="r-1", step_id="c", output="ok", attempts=1, duration_s=0.1, at=5.0),
        LLMCalled(run_id="r-1", purpose="plan", model="m", input_tokens=9, output_tokens=1, cost_usd=0.0),
        PlanUpdated(run_id="r-1", round=1, rationale="think", step_ids=["c"]),
    ]
    lines = _plain(run_tree(_record(events, llm_calls=2))).splitlines()
    assert lines[2:5] == [
        "├── round 1: think",
        "│   ├── LLM plan: m, 10 tokens, $0.0000",
        "│   ├── ✓ c  llm  succeeded  0.10s  ok",
    ]
    assert lines[5] == "│   └── LLM llm_tool: m, 4 tokens, $0.0000"


def test_run_tree_of_a_workflow_run() -> None:
    from planweave.executor.events import StepAdded, StepSkipped

    events = [StepAdded(run_id="r-1", step_id="x", tool="t", step=Step(id="x", tool="t")),
              StepSkipped(run_id="r-1", step_id="x", reason="`when` was false")]
    text = _plain(run_tree(_record(events, kind="workflow", name="trip", goal="", status="failed",
                                   error="criterion failed")))
    assert text == (
        "run r-1  workflow trip  failed in 2.50s\n"
        "├── ↷ x  t  skipped  `when` was false\n"
        "└── error: criterion failed\n"
    )
