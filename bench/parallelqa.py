"""ParallelQA, simulated: a ReAct loop against plan-then-execute and planweave's streamed plans.

    python bench/parallelqa.py                    # all 113 questions, 4 systems (about 8 minutes)
    python bench/parallelqa.py --questions 12     # a sample that still covers every fan-out size
    python bench/parallelqa.py --tokens-per-s 100 --ttft 0.2 --search-s 0.3   # another model / tool speed

The workload is modelled on LLMCompiler's ParallelQA (Kim et al., 2023): each question needs
2, 3, 4 or 5 parallel branches (21, 31, 31 and 30 questions). A branch is a `search` tool
(about 0.6 s, varied per query) followed by a math step that is itself an LLM call (the
planner's built-in `llm` tool, about 1 s); a combining `llm` step then adds, averages,
compares or subtracts the branch results, and the answer is written. The facts are synthetic.

One `FakeModelServer` (real HTTP on 127.0.0.1) plays the model for every system at one token
rate (default 50 tokens/s after 0.3 s to the first token); its handler reads each request and
answers as a capable model would (a plan, a join decision, a math answer or a ReAct turn).
Everything goes through the real litellm (nothing is patched). Systems, all in one run:

- `react`: a sequential ReAct loop written here, one tool call per LLM turn, each turn a
  `Thought:` line and an action, as in LLMCompiler's ReAct baseline (the named peer);
- `react_bare`: the same loop with bare function calls and no thoughts (a stricter peer);
- `plan_execute`: `Planner(stream=False)`: the whole plan is written, then executed, then joined;
- `planweave`: `Planner()`: steps start while the plan is still streaming.

Jobs (system x question) run in a shuffled order, `--concurrency` at a time, so every system
sees the same machine load. For each question the script also computes, from the replies'
token counts and the tool durations, the analytic ideal of each system; planweave's is the
lower bound (stream the plan; the critical path left after the last step is planned; the join).
Results: a printed table and bench/results/parallelqa.json (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/parallelqa.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table, version  # noqa: E402
from planweave.planner import Planner  # noqa: E402
from planweave.planner.run import make_llm_tool  # noqa: E402
from planweave.planner.llm import LLMClient, LLMConfig, import_litellm  # noqa: E402
from planweave.planner.prompts import PromptLibrary  # noqa: E402
from planweave.planner.testing import FakeModelServer, RecordedRequest, Reply, ToolCall, json_spans  # noqa: E402
from planweave.planner.tokens import count_tokens, tokenizer_name  # noqa: E402
from planweave.tools import Tool, ToolRegistry, tool  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "parallelqa.json"
TOKENIZER_MODEL = "gpt-4"
"""Whose tokenizer paces the fake model and counts every token (tiktoken's cl100k_base, through
litellm): the GPT-3.5/GPT-4 tokenizer of LLMCompiler's published figures."""
LLMCOMPILER_TOKENS = {"LLMCompiler": (9_200, 340), "ReAct (LLMCompiler's)": (46_000, 470)}
"""Input and output tokens per ParallelQA question as LLMCompiler's paper reports them (GPT-4)."""
FANOUT_COUNTS = {2: 21, 3: 31, 4: 31, 5: 30}  # LLMCompiler's ParallelQA: 113 questions
MODEL = "openai/fake-model"
SYSTEMS = {
    "react": "ReAct (thought + action)",
    "react_bare": "ReAct (action only)",
    "plan_execute": "plan-then-execute (stream=False)",
    "planweave": "planweave (streaming)",
}
PEER = "react"

# Targets (PASS/FAIL in the output), all for `planweave`.
TARGET_SPEEDUP = 2.5  # mean ReAct latency / mean planweave latency (LLMCompiler reports 2.15x)
TARGET_BOUND_RATIO = 1.05  # mean of latency / analytic lower bound
TARGET_PLAN_JOIN_CALLS = 2  # planning + join LLM calls per question without a replan (max)


# --- the workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    noun: str  # "population"
    raw_unit: str  # what the search result counts: "people"
    unit_label: str  # what the question asks for: "millions"
    unit: str  # how the answer says it: "million"
    factor: int
    low: float
    high: float


ATTRIBUTES = (
    Attribute("population", "people", "millions", "million", 10**6, 2e6, 2.5e8),
    Attribute("area", "km²", "thousands of km²", "thousand km²", 10**3, 2e4, 3e6),
    Attribute("GDP", "US dollars", "billions of US dollars", "billion US dollars", 10**9, 2e10, 4e12),
)
COUNTRIES = (
    "France", "Spain", "Italy", "Germany", "Poland", "Norway", "Sweden", "Finland", "Portugal", "Greece",
    "Chile", "Peru", "Brazil", "Mexico", "Canada", "Kenya", "Ghana", "Egypt", "Morocco", "Nigeria",
    "Japan", "Vietnam", "Thailand", "India", "Nepal", "Turkey", "Iran", "Australia", "Ireland", "Austria",
)  # fmt: skip

# Combining step: the `llm` prompt, and how the value is computed from the branch values.
COMBINE_PROMPTS = {
    "sum": "Add these values, to one decimal.",
    "mean": "Average these values, to one decimal.",
    "max": "Give the largest of these values.",
    "diff": "Subtract the second value from the first, to one decimal.",
}
NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+")  # a raw fact in a search result: 68,170,228
ANSWER_RE = re.compile(r"Answer: (-?\d+\.\d)")


@dataclass(frozen=True)
class Question:
    id: str
    attribute: Attribute
    op: str
    entities: tuple[str, ...]
    raw: tuple[int, ...]  # the fact for each entity, as `search` reports it

    @property
    def fanout(self) -> int:
        return len(self.entities)

    @property
    def text(self) -> str:
        a, names = self.attribute, _join_names(self.entities)
        if self.op == "sum":
            return f"What is the combined {a.noun} of {names}, in {a.unit_label}?"
        if self.op == "mean":
            return f"What is the average {a.noun} of {names}, in {a.unit_label}?"
        if self.op == "max":
            return f"Which of {names} has the largest {a.noun}, and how large is it, in {a.unit_label}?"
        return f"How much larger is the {a.noun} of {self.entities[0]} than that of {self.entities[1]}, in {a.unit_label}?"

    def branch_values(self) -> list[str]:
        return [convert(r, self.attribute.factor)[1] for r in self.raw]

    def expected(self) -> str:
        return combine(self.op, self.branch_values())[1]


def _join_names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def fact(attribute: Attribute, entity: str, seed: int) -> int:
    value = random.Random(f"{seed}:{attribute.noun}:{entity}").uniform(attribute.low, attribute.high)
    return int(round(value, -6 if attribute.factor >= 10**9 else 0))


def make_questions(seed: int = 0) -> list[Question]:
    """113 questions: 21 / 31 / 31 / 30 with 2 / 3 / 4 / 5 branches; attributes and operations rotate."""
    rng = random.Random(seed)
    questions: list[Question] = []
    seen: set[str] = set()
    for k, count in FANOUT_COUNTS.items():
        ops = ("sum", "mean", "max", "diff") if k == 2 else ("sum", "mean", "max")
        while sum(q.fanout == k for q in questions) < count:
            j = sum(q.fanout == k for q in questions)
            attribute, op = ATTRIBUTES[j % len(ATTRIBUTES)], ops[j % len(ops)]
            entities = rng.sample(COUNTRIES, k)
            raw = [fact(attribute, e, seed) for e in entities]
            if op == "diff" and raw[0] < raw[1]:  # "how much larger is A than B": A is larger
                entities, raw = entities[::-1], raw[::-1]
            q = Question(f"q{len(questions) + 1:03d}", attribute, op, tuple(entities), tuple(raw))
            if q.text not in seen:
                seen.add(q.text)
                questions.append(q)
    return questions


def sample(questions: list[Question], n: int | None) -> list[Question]:
    """The first `n` questions taken round-robin over the fan-out sizes (every size once n >= 4)."""
    if n is None or n >= len(questions):
        return questions
    groups = [[q for q in questions if q.fanout == k] for k in FANOUT_COUNTS]
    picked: list[Question] = []
    for i in range(max(map(len, groups))):
        picked += [g[i] for g in groups if i < len(g)]
    return sorted(picked[:n], key=lambda q: q.id)


# --- what the tools and the model say (shared by the fake model and the analytic model) ----------


def query_of(attribute: Attribute, entity: str) -> str:
    return f"{attribute.noun} of {entity}"


def search_result(attribute: Attribute, entity: str, raw: int) -> str:
    return f"{entity}, {attribute.noun}: {raw:,} {attribute.raw_unit} (2024 estimate)."


def search_seconds(query: str, mean_s: float) -> float:
    """Deterministic, varied: mean_s x [0.67, 1.33], the same in every process (str seeds are hashed with SHA-512)."""
    return mean_s * random.Random(f"search:{query}").uniform(2 / 3, 4 / 3)


def branch_prompt(q: Question, i: int) -> str:
    return f"Convert the {q.attribute.noun} of {q.entities[i]} to {q.attribute.unit_label}, to one decimal."


def convert(raw: int, factor: int) -> tuple[str, str]:
    """The math model's reply converting a raw fact, and the value it gives."""
    value = f"{raw / factor:.1f}"
    return f"{raw:,} / {factor:,} = {raw / factor:.2f}, which rounds to {value}. Answer: {value}", value


def combine(op: str, values: Sequence[str]) -> tuple[str, str]:
    """The math model's reply combining branch values, and the value it gives."""
    nums = [float(v) for v in values]
    if op == "sum":
        value = f"{sum(nums):.1f}"
        return f"{' + '.join(values)} = {value}. Answer: {value}", value
    if op == "mean":
        value = f"{statistics.fmean(nums):.1f}"
        return f"({' + '.join(values)}) / {len(nums)} = {statistics.fmean(nums):.2f}, about {value}. Answer: {value}", value
    if op == "max":
        value = f"{max(nums):.1f}"
        return f"The largest of {', '.join(values)} is {value}. Answer: {value}", value
    value = f"{nums[0] - nums[1]:.1f}"
    return f"{values[0]} - {values[1]} = {value}. Answer: {value}", value


def final_answer(q: Question, value: str, branch_values: Sequence[str]) -> str:
    a, names = q.attribute, _join_names(q.entities)
    if q.op == "sum":
        return f"The combined {a.noun} of {names} is {value} {a.unit}."
    if q.op == "mean":
        return f"The average {a.noun} of {names} is {value} {a.unit}."
    if q.op == "max":
        who = q.entities[list(branch_values).index(value)] if value in branch_values else "One of them"
        return f"{who} has the largest {a.noun}: {value} {a.unit}."
    return f"The {a.noun} of {q.entities[0]} is {value} {a.unit} larger than that of {q.entities[1]}."


def plan_of(q: Question) -> dict[str, Any]:
    """The plan a capable model writes: every search first (they can start at once), then the maths."""
    k, a = q.fanout, q.attribute
    steps: list[dict[str, Any]] = [
        {"id": f"s{i + 1}", "tool": "search", "args": {"query": query_of(a, e)}} for i, e in enumerate(q.entities)
    ]
    steps += [
        {"id": f"m{i + 1}", "tool": "llm", "args": {"prompt": branch_prompt(q, i), "context": f"${{s{i + 1}}}"}}
        for i in range(k)
    ]
    refs = [f"${{m{i + 1}}}" for i in range(k)]
    steps.append({"id": "result", "tool": "llm", "args": {"prompt": COMBINE_PROMPTS[q.op], "context": refs}})
    verb = {"sum": "add", "mean": "average", "max": "compare", "diff": "subtract"}[q.op]
    return {"rationale": f"Search each {a.noun}, convert each to {a.unit_label}, then {verb} them.", "steps": steps}


REACT_SYSTEM = (
    "You answer questions with tools, one tool call per turn: you see each result before you choose the next call. "
    "Pass the numbers a calculation needs as `context`. When you know the answer, reply with it in plain text and "
    "call no tool."
)
REACT_THOUGHTS = " Before each tool call, write one line starting with `Thought:` that says why."


def react_turn(q: Question, outputs: Sequence[str], thoughts: bool) -> Reply:
    """ReAct turn number len(outputs): search, convert, search, convert, ..., combine, answer."""
    k, a, n = q.fanout, q.attribute, len(outputs)
    if n < 2 * k and n % 2 == 0:
        thought = f"I need the {a.noun} of {q.entities[n // 2]}."
        call = ToolCall.of("search", {"query": query_of(a, q.entities[n // 2])})
    elif n < 2 * k:
        found = NUMBER_RE.search(outputs[-1])
        context = found.group(0) if found else outputs[-1]
        thought = f"Now convert it to {a.unit_label}."
        call = ToolCall.of("llm", {"prompt": branch_prompt(q, n // 2), "context": context})
    elif n == 2 * k:
        values = [m.group(1) for out in outputs[1::2] for m in [ANSWER_RE.search(out)] if m]
        thought = "I have every value; now combine them."
        call = ToolCall.of("llm", {"prompt": COMBINE_PROMPTS[q.op], "context": ", ".join(values)})
    else:
        found = ANSWER_RE.search(outputs[-1])
        values = [m.group(1) for out in outputs[1 : 2 * k : 2] for m in [ANSWER_RE.search(out)] if m]
        return Reply.text(final_answer(q, found.group(1), values) if found else "I could not work it out.")
    return Reply(content=f"Thought: {thought}" if thoughts else None, tool_calls=(call,))


# --- the fake model ----------------------------------------------------------------------------


class FakeModel:
    """The fake server's handler: answers a plan, join, math or ReAct request for the known questions."""

    HISTORY_RE = re.compile(r"^- `(\w+)` \((\w+), (\w+)\): (.*)$", re.MULTILINE)

    def __init__(self, questions: Sequence[Question]) -> None:
        self.by_text = {q.text: q for q in questions}

    def __call__(self, request: RecordedRequest) -> Reply:
        reply = self._reply(request)
        # Usage as the provider would bill it: the request counted by the model's tokenizer (the
        # completion tokens are the streamed pieces of that tokenizer, see `real_tokenizer`).
        tokens = count_tokens(TOKENIZER_MODEL, messages=request.messages, tools=request.tools or None)
        return reply.model_copy(update={"prompt_tokens": tokens})

    def _reply(self, request: RecordedRequest) -> Reply:
        names = {t.get("function", {}).get("name") for t in request.tools}
        if "search" in names:
            return self._react(request)
        if names:  # the join decision (the planner's `decide` tool)
            return self._join(request)
        if "Plan the next steps" in str(request.messages[0].get("content", "")):  # plans come as lines
            return Reply.text(written_plan(plan_of(self._goal(request))))
        return self._math(request.last_user_text)

    def _goal(self, request: RecordedRequest) -> Question:
        found = re.search(r"## Goal\n(.+)\n?$", request.last_user_text)  # the goal comes last
        if found is None or found.group(1) not in self.by_text:
            raise ValueError("the request names no known question under `## Goal`")
        return self.by_text[found.group(1)]

    def _join(self, request: RecordedRequest) -> Reply:
        q = self._goal(request)
        history = self.HISTORY_RE.findall(request.last_user_text)
        results = {sid: text for sid, _tool, _status, text in history}
        found = ANSWER_RE.search(results.get("result", ""))
        values = [m.group(1) for i in range(q.fanout) for m in [ANSWER_RE.search(results.get(f"m{i + 1}", ""))] if m]
        answer = final_answer(q, found.group(1), values) if found else "I could not work it out."
        return Reply.json_obj({"action": "finish", "answer": answer})

    @staticmethod
    def _math(text: str) -> Reply:
        prompt, _, context = text.partition("## Context")
        prompt = prompt.strip()
        if prompt.startswith("Convert"):
            unit = next((a for a in ATTRIBUTES if f"to {a.unit_label}," in prompt), None)
            found = NUMBER_RE.search(context)
            if unit is None or found is None:
                return Reply.text("I cannot convert this: the context has no figure.")
            return Reply.text(convert(int(found.group(0).replace(",", "")), unit.factor)[0])
        op = next((op for op, p in COMBINE_PROMPTS.items() if prompt.startswith(p)), None)
        values = ANSWER_RE.findall(context) or re.findall(r"-?\d+\.\d", context)
        if op is None or not values:
            return Reply.text("I cannot compute this: no values were given.")
        return Reply.text(combine(op, values)[0])

    def _react(self, request: RecordedRequest) -> Reply:
        messages = request.messages
        q = self.by_text[next(str(m["content"]) for m in messages if m.get("role") == "user")]
        outputs = [str(m.get("content", "")) for m in messages if m.get("role") == "tool"]
        return react_turn(q, outputs, thoughts="Thought:" in str(messages[0].get("content", "")))


def make_search(questions: Sequence[Question], mean_s: float) -> Tool:
    facts = {query_of(q.attribute, e): search_result(q.attribute, e, r) for q in questions for e, r in zip(q.entities, q.raw)}

    @tool
    async def search(query: str) -> str:
        """Search the web; returns the best snippet."""
        await asyncio.sleep(search_seconds(query, mean_s))
        return facts.get(query, f"No results for {query!r}.")

    return search


# --- the analytic model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    ttft_s: float
    tokens_per_s: float
    search_s: float

    def call_s(self, reply: Reply) -> float:
        """How long the fake server takes to finish `reply` (its last token's due time)."""
        return self.ttft_s + (max(1, reply_tokens(reply)) - 1) / self.tokens_per_s


def real_tokenizer(model: str = TOKENIZER_MODEL) -> Callable[[str], list[str]]:
    """`model`'s tokenizer as the fake server's: text -> the pieces of its tokens, offline."""
    count_tokens(model, text="x")  # litellm points tiktoken at the encodings it bundles
    import tiktoken

    encoding = tiktoken.encoding_for_model(model)

    def split(text: str) -> list[str]:
        _, starts = encoding.decode_with_offsets(encoding.encode(text))
        cuts = sorted({0, *starts, len(text)})  # a character split over two tokens stays whole
        return [text[a:b] for a, b in zip(cuts, cuts[1:])]

    return split


def tokenize(text: str) -> list[str]:
    """The streamed tokens of `text`: the real tokenizer's, as the fake server streams them."""
    return _SPLIT(text)


_SPLIT = real_tokenizer()


def reply_tokens(reply: Reply) -> int:
    return len(tokenize(reply.stream_text))


PLAN_SYNTAXES = {
    "lines": 'planweave\'s plan prompt v5: `m1 = llm(prompt="...", context=${s1})` lines, then `Thought:`',
    "json": 'plan prompt v3-v4: a PlanUpdate object, compact steps `["s1", "search", {...}]`, then `rationale`',
    "json dense": "the same object with no spaces after `,` and `:`",
    "json v1": "plan prompt v1: `rationale` first, then steps as objects",
    "llmcompiler": 'LLMCompiler\'s plan syntax: `4. math("...", ["$1"])` lines',
}
PARSED_SYNTAX = "lines"
"""What planweave's model writes in this benchmark (and what the analytic bound assumes)."""


def _value(value: Any) -> str:
    """An argument value as planweave's line syntax writes it: JSON, with whole-value references bare."""
    if isinstance(value, str) and re.fullmatch(r"\$\{[\w.-]+\}", value):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def step_line(step: dict[str, Any]) -> str:
    return f"{step['id']} = {step['tool']}(" + ", ".join(f"{k}={_value(v)}" for k, v in step["args"].items()) + ")"


def written_plan(plan: dict[str, Any]) -> str:
    """The plan as a model following planweave's plan prompt (v5) writes it: one step a line, then the thought."""
    return "".join(step_line(s) + "\n" for s in plan["steps"]) + f"Thought: {plan['rationale']}"


def written_json_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan as plan prompts v3-v4 asked for it: compact steps first, as a JSON object."""
    return {"steps": [[s["id"], s["tool"], s["args"]] for s in plan["steps"]], "rationale": plan["rationale"]}


def plan_layout(q: Question, syntax: str = PARSED_SYNTAX) -> tuple[str, list[int]]:
    """The plan's streamed text and the offset where each step ends in it.

    `lines` is what planweave's model writes (plan prompt v5); `json` and `json dense` are the
    object form (still accepted); `llmcompiler` is for the what-if analysis only: the same
    steps, written differently.
    """
    plan = plan_of(q)
    if syntax == "lines":
        text, ends = "", []
        for step in plan["steps"]:
            text += step_line(step) + "\n"
            ends.append(len(text))  # a line's step is read when its newline arrives
        return text + f"Thought: {plan['rationale']}", ends
    if syntax.startswith("json"):
        if syntax in ("json", "json dense"):
            obj = written_json_plan(plan)
        else:
            obj = {"rationale": plan["rationale"], "steps": plan["steps"]}
        text, spans = json_spans(obj)
        ends = [spans[("steps", j)][1] for j in range(len(plan["steps"]))]
        if syntax == "json dense":  # the same spans, less the spaces before each end
            dense = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            ends = [end - text[:end].count(", ") - text[:end].count(": ") for end in ends]
            text = dense
        return text, ends
    number = {step["id"]: j + 1 for j, step in enumerate(plan["steps"])}
    text, ends = f"Thought: {plan['rationale']}\n", []
    for j, step in enumerate(plan["steps"]):
        args = step["args"]
        if step["tool"] == "search":
            line = f"{j + 1}. search({json.dumps(args['query'])})"
        else:
            refs = args["context"] if isinstance(args["context"], list) else [args["context"]]
            refs = ", ".join(f'"${number[r[2:-1]]}"' for r in refs)
            line = f"{j + 1}. math({json.dumps(args['prompt'])}, [{refs}])"
        text += line
        ends.append(len(text))
        text += "\n"
    return text + f"{len(plan['steps']) + 1}. join()<END_OF_PLAN>", ends


def ideal_times(q: Question, t: Timing, plan_syntax: str = PARSED_SYNTAX) -> dict[str, float]:
    """Each system's time for `q` with zero overhead: only model tokens and tool time count."""
    k, a = q.fanout, q.attribute
    search_s = [search_seconds(query_of(a, e), t.search_s) for e in q.entities]
    math_s = [t.call_s(Reply.text(convert(r, a.factor)[0])) for r in q.raw]
    combine_s = t.call_s(Reply.text(combine(q.op, q.branch_values())[0]))
    join_s = t.call_s(Reply.json_obj({"action": "finish", "answer": final_answer(q, q.expected(), q.branch_values())}))

    # Plan: token i arrives at ttft + i / rate; a step is planned when the token holding its end arrives.
    text, step_ends = plan_layout(q, plan_syntax)
    token_ends, pos = [], 0
    for piece in tokenize(text):
        pos += len(piece)
        token_ends.append(pos)
    stream_end = t.ttft_s + (len(token_ends) - 1) / t.tokens_per_s
    planned_at = [t.ttft_s + next(i for i, e in enumerate(token_ends) if e >= end) / t.tokens_per_s for end in step_ends]

    def finish_all(streaming: bool) -> float:
        # Steps in plan order: s1..sk, m1..mk (m_i needs s_i), result (needs every m_i).
        done: list[float] = []
        for j, duration in enumerate([*search_s, *math_s, combine_s]):
            needs = [done[j - k]] if k <= j < 2 * k else done[k : 2 * k] if j == 2 * k else []
            done.append(max([planned_at[j] if streaming else stream_end, *needs]) + duration)
        return max(stream_end, *done)

    outputs = [x for r, e in zip(q.raw, q.entities) for x in (search_result(a, e, r), convert(r, a.factor)[0])]
    outputs.append(combine(q.op, q.branch_values())[0])
    tools_s = sum(search_s) + sum(math_s) + combine_s
    react = {th: sum(t.call_s(react_turn(q, outputs[:n], th)) for n in range(2 * k + 2)) + tools_s for th in (True, False)}
    return {
        "react": react[True],
        "react_bare": react[False],
        "plan_execute": finish_all(streaming=False) + join_s,
        "planweave": finish_all(streaming=True) + join_s,
        "plan_stream_s": stream_end,
        "plan_execute_steps_after_plan_s": finish_all(streaming=False) - stream_end,
        "planweave_steps_after_plan_s": finish_all(streaming=True) - stream_end,
        "join_s": join_s,
        "plan_tokens": len(token_ends),
    }


def what_if(questions: Sequence[Question], t: Timing) -> list[dict[str, Any]]:
    """Analytic only: the speedup over ReAct a zero-overhead planweave reaches, by plan syntax and token rate."""
    cases = [(PARSED_SYNTAX, r) for r in sorted({t.tokens_per_s, 2 * t.tokens_per_s, 4 * t.tokens_per_s})]
    cases += [(syntax, t.tokens_per_s) for syntax in PLAN_SYNTAXES if syntax != PARSED_SYNTAX]
    rows = []
    for syntax, rate in cases:
        ideal = [ideal_times(q, Timing(t.ttft_s, rate, t.search_s), syntax) for q in questions]
        react, bound = (statistics.fmean(i[s] for i in ideal) for s in ("react", "planweave"))
        rows.append({
            "plan_syntax": syntax, "tokens_per_s": rate, "plan_tokens": statistics.fmean(i["plan_tokens"] for i in ideal),
            "react_s": react, "planweave_bound_s": bound, "speedup": react / bound,
            "react_bare_speedup": statistics.fmean(i["react_bare"] for i in ideal) / bound,
        })  # fmt: skip
    return rows


# --- the systems -------------------------------------------------------------------------------


def _tool_schemas(registry: ToolRegistry) -> list[dict[str, Any]]:
    return [{"type": "function", "function": t.describe()} for t in registry]


async def run_react(q: Question, search: Tool, config: LLMConfig, *, thoughts: bool, max_turns: int = 20) -> dict[str, Any]:
    """The peer: one tool call per LLM turn, the result appended, until a plain-text answer."""
    litellm = import_litellm()
    math_client = LLMClient(config)  # the `llm` tool: the very code path the planner uses, own accounting
    registry = ToolRegistry([search, make_llm_tool(math_client, PromptLibrary())])
    schemas = _tool_schemas(registry)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": REACT_SYSTEM + (REACT_THOUGHTS if thoughts else "")},
        {"role": "user", "content": q.text},
    ]
    turns, tokens_in, tokens_out, answer = 0, 0, 0, None
    started = time.perf_counter()
    while turns < max_turns:
        resp = await litellm.acompletion(
            model=MODEL, api_base=config.api_base, api_key=config.api_key, messages=messages,
            tools=schemas, tool_choice="auto", temperature=0, num_retries=0, timeout=config.timeout_s,
        )  # fmt: skip
        turns += 1
        tokens_in += resp.usage.prompt_tokens
        tokens_out += resp.usage.completion_tokens
        message = resp.choices[0].message
        if not message.tool_calls:
            answer = message.content
            break
        call = message.tool_calls[0]
        fn = {"name": call.function.name, "arguments": call.function.arguments}
        messages.append({"role": "assistant", "content": message.content, "tool_calls": [{"id": call.id, "type": "function", "function": fn}]})
        try:
            output = await registry.get(call.function.name).acall(json.loads(call.function.arguments))
        except Exception as exc:  # the model sees the error, as in any ReAct loop
            output = f"error: {exc}"
        messages.append({"role": "tool", "tool_call_id": call.id, "content": output if isinstance(output, str) else json.dumps(output)})
    latency = time.perf_counter() - started
    u = math_client.usage
    return {
        "latency_s": latency,
        "ok": answer is not None,
        "answer": answer,
        "plan_join_calls": None,
        "agent_calls": turns,
        "tool_llm_calls": u.llm_calls,
        "input_tokens": tokens_in + u.input_tokens,
        "output_tokens": tokens_out + u.output_tokens,
        "replans": None,
    }


async def run_planner(q: Question, planner: Planner) -> dict[str, Any]:
    wall0, started = time.time(), time.perf_counter()
    result = await planner.run(q.text)
    latency = time.perf_counter() - started
    wall_end = wall0 + latency
    calls = {p: [c for c in result.llm_calls if c["purpose"] == p] for p in ("plan", "join", "llm_tool")}
    n_calls = {p: sum(c["attempts"] + c["reasks"] for c in cs) for p, cs in calls.items()}
    run = {
        "latency_s": latency,
        "ok": result.ok,
        "answer": result.answer,
        "error": result.error,
        "plan_join_calls": n_calls["plan"] + n_calls["join"],
        "agent_calls": n_calls["plan"] + n_calls["join"],
        "tool_llm_calls": n_calls["llm_tool"],
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "replans": result.replans,
    }
    if calls["plan"] and calls["join"] and result.steps:
        # Where the time went, as consecutive segments that add up to the latency.
        plan_end = calls["plan"][-1]["started_at"] + calls["plan"][-1]["latency_s"]
        steps_end = max(plan_end, *(s.finished_at or plan_end for s in result.steps.values()))
        join = calls["join"][-1]
        join_start, join_end = join["started_at"], join["started_at"] + join["latency_s"]
        first_start = min(s.started_at or plan_end for s in result.steps.values())
        run["segments_s"] = {
            "plan_stream": plan_end - wall0,
            "steps_after_plan": steps_end - plan_end,
            "join_wait": join_start - steps_end,
            "join": join_end - join_start,
            "tail": wall_end - join_end,
        }
        run["first_step_start_s"] = first_start - wall0
        run["steps_started_during_plan"] = sum((s.started_at or plan_end) < plan_end for s in result.steps.values())
        run["step_seconds"] = {sid: s.duration_s for sid, s in result.steps.items()}
    return run


# --- running and reporting ---------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarize(system: str, rows: list[dict[str, Any]], peer_rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """rows: [{"question": ..., "ideal": ..., "run": ...}] for one system."""
    runs = [r["run"] for r in rows]
    out: dict[str, Any] = {
        "label": SYSTEMS[system],
        "questions": len(rows),
        "succeeded": sum(r["ok"] for r in runs),
        "correct": sum(r["correct"] for r in runs),
        "latency_s": _stats([r["latency_s"] for r in runs]),
        "ideal_s": _stats([r["ideal"][system] for r in rows]),
        "ratio_to_ideal": _stats([r["run"]["latency_s"] / r["ideal"][system] for r in rows]),
        "agent_calls_per_question": _stats([r["agent_calls"] for r in runs]),
        "tool_llm_calls_per_question": _stats([r["tool_llm_calls"] for r in runs]),
        "tokens_per_question": _stats([r["input_tokens"] + r["output_tokens"] for r in runs]),
        "input_tokens_per_question": _stats([r["input_tokens"] for r in runs]),
        "output_tokens_per_question": _stats([r["output_tokens"] for r in runs]),
    }
    if peer_rows is not None:
        peer = {r["question"]: r["run"]["latency_s"] for r in peer_rows}
        out["speedup_over_react"] = statistics.fmean(peer.values()) / out["latency_s"]["mean"]
        out["speedup_over_react_median_of_ratios"] = statistics.median(
            peer[r["question"]] / r["run"]["latency_s"] for r in rows
        )
    segments = [r["segments_s"] for r in runs if "segments_s" in r]
    if segments:
        out["segments_s"] = {k: statistics.fmean(s[k] for s in segments) for k in segments[0]}
        out["first_step_start_s"] = statistics.fmean(r["first_step_start_s"] for r in runs if "segments_s" in r)
        no_replan = [r["plan_join_calls"] for r in runs if r["replans"] == 0]
        out["plan_join_calls_max_without_replan"] = max(no_replan) if no_replan else None
        out["replans"] = sum(r["replans"] or 0 for r in runs)
    by_fanout = {}
    for k in FANOUT_COUNTS:
        sub = [r for r in rows if r["fanout"] == k]
        if sub:
            by_fanout[str(k)] = {
                "questions": len(sub),
                "latency_s_mean": statistics.fmean(r["run"]["latency_s"] for r in sub),
                "ideal_s_mean": statistics.fmean(r["ideal"][system] for r in sub),
            }
            if peer_rows is not None:
                peer_sub = [r["run"]["latency_s"] for r in peer_rows if r["fanout"] == k]
                by_fanout[str(k)]["speedup_over_react"] = statistics.fmean(peer_sub) / by_fanout[str(k)]["latency_s_mean"]
    out["by_fanout"] = by_fanout
    return out




def build_targets(systems: dict[str, Any]) -> list[dict[str, Any]]:
    pw = systems.get("planweave")
    if pw is None:
        return []
    targets = []

    def add(name: str, value: float | None, target: str, ok: bool, binding: bool = True) -> None:
        targets.append({"name": name, "value": value, "target": target, "binding": binding, "pass": ok})

    if "speedup_over_react" in pw:
        s = pw["speedup_over_react"]
        add("planweave speedup over ReAct (mean latency ratio)", s, f">= {TARGET_SPEEDUP:g}", s >= TARGET_SPEEDUP)
    r = pw["ratio_to_ideal"]["mean"]
    add("planweave latency / analytic lower bound (mean)", r, f"<= {TARGET_BOUND_RATIO:g}", r <= TARGET_BOUND_RATIO)
    calls = pw.get("plan_join_calls_max_without_replan")
    add(
        "planweave planning + join LLM calls per question, no replan (max)",
        calls,
        f"<= {TARGET_PLAN_JOIN_CALLS}",
        calls is not None and calls <= TARGET_PLAN_JOIN_CALLS,
    )
    wrong = sum(s["questions"] - s["correct"] for s in systems.values())
    add("wrong or missing answers, every system", wrong, "== 0", wrong == 0)
    if PEER in systems:
        best = systems[PEER]["ideal_s"]["mean"] / pw["ideal_s"]["mean"]
        add("speedup a zero-overhead planweave would reach (ReAct ideal / bound)", best, "info", True, binding=False)
    if "react_bare" in systems:
        s = systems["react_bare"]["latency_s"]["mean"] / pw["latency_s"]["mean"]
        add("planweave speedup over ReAct without thoughts", s, "info", True, binding=False)
    return targets



def render(results: dict[str, Any]) -> str:
    m, c, systems = results["machine"], results["settings"], results["systems"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"] or [])
    out = [
        f"planweave ParallelQA (simulated) -- {results['timestamp']}",
        f"Python {m['python']} on {m['platform']}, {m['cpu_count']} CPUs, load average at start {load}",
        f"planweave {results['versions']['planweave']} (commit {str(results['git']['commit'])[:12]}), "
        f"litellm {results['versions']['litellm']}, instructor {results['versions']['instructor']}",
        f"{c['questions']} questions (fan-out {c['fanout_counts']}), model at {c['tokens_per_s']:g} tokens/s after "
        f"{c['ttft_s']:g} s; search {c['search_s']:g} s mean; {c['concurrency']} jobs at a time, shuffled",
        "",
        "1. Per question (mean; ideal = the same system with zero overhead, from token counts and tool times)",
    ]
    rows = []
    for name, s in systems.items():
        lat = s["latency_s"]
        rows.append([
            s["label"], f"{s['correct']}/{s['questions']}", f"{lat['mean']:.2f}", f"{lat['median']:.2f}",
            f"{s['speedup_over_react']:.2f}x" if "speedup_over_react" in s else "-",
            f"{s['ideal_s']['mean']:.2f}", f"{s['ratio_to_ideal']['mean']:.3f} (max {s['ratio_to_ideal']['max']:.3f})",
            f"{s['agent_calls_per_question']['mean']:.1f} (max {s['agent_calls_per_question']['max']:g})",
            f"{s['tool_llm_calls_per_question']['mean']:.1f}",
            f"{s['input_tokens_per_question']['mean']:.0f} / {s['output_tokens_per_question']['mean']:.0f}",
        ])  # fmt: skip
    out.append(table(
        ["system", "correct", "mean s", "median s", "speedup", "ideal s", "/ ideal", "agent LLM calls",
         "tool LLM calls", "tokens in / out"],
        rows,
    ))  # fmt: skip
    out.append(
        "   speedup: mean ReAct latency / mean latency. agent LLM calls: ReAct turns; planning + join calls for the"
    )
    out.append("   planners. tool LLM calls: the math steps' own calls (the `llm` tool), counted separately.")
    out += ["", "2. By fan-out: mean latency in s (speedup over ReAct)"]
    rows = []
    for k in FANOUT_COUNTS:
        cells = [str(k)]
        for s in systems.values():
            f = s["by_fanout"].get(str(k))
            if f is None:
                cells.append("-")
                continue
            cells.append(f"{f['latency_s_mean']:.2f}" + (f" ({f['speedup_over_react']:.2f}x)" if "speedup_over_react" in f else ""))
        if "planweave" in systems and str(k) in systems["planweave"]["by_fanout"]:
            cells.append(f"{systems['planweave']['by_fanout'][str(k)]['ideal_s_mean']:.2f}")
        else:
            cells.append("-")
        rows.append(cells)
    out.append(table(["branches", *(s["label"] for s in systems.values()), "planweave bound"], rows))
    seg_rows = []
    for name in ("plan_execute", "planweave"):
        s = systems.get(name)
        if s is None or "segments_s" not in s:
            continue
        a = s["analytic_segments_s"]
        seg_rows.append([s["label"], *(f"{v:.3f} ({a[k]:.3f})" for k, v in s["segments_s"].items()),
                         f"{s['first_step_start_s']:.2f}"])  # fmt: skip
    if seg_rows:
        out += ["", "3. Where the planners' time goes: mean seconds (analytic ideal in parentheses)"]
        out.append(table(["system", "plan stream", "steps after plan", "join wait", "join", "tail", "first step at"], seg_rows))
        out.append("   consecutive segments that add up to the latency: plan stream = run start to the plan's last byte;")
        out.append("   steps after plan = to the last step's end; join wait = until the join call starts; tail = join end to return.")
    if results.get("what_if"):
        out += ["", "4. What-if (analytic, these questions): the speedup over ReAct of a zero-overhead planweave"]
        out.append(table(
            ["plan syntax", "tokens/s", "plan tokens", "ReAct ideal s", "planweave bound s", "speedup", "vs ReAct w/o thoughts"],
            [[w["plan_syntax"], f"{w['tokens_per_s']:g}", f"{w['plan_tokens']:.0f}", f"{w['react_s']:.2f}",
              f"{w['planweave_bound_s']:.2f}", f"{w['speedup']:.2f}x", f"{w['react_bare_speedup']:.2f}x"]
             for w in results["what_if"]],
        ))  # fmt: skip
        out += [f"   {name}: {meaning}" for name, meaning in PLAN_SYNTAXES.items()]
        out.append(f"   (the same steps, tokenized by {TOKENIZER_MODEL}'s tokenizer; planweave parses `lines` and the `json` forms)")
    out += ["", f"5. Tokens per question, all LLM calls (tool `llm` steps included), counted by {results['settings']['tokenizer']}"]
    rows = [[s["label"], f"{s['input_tokens_per_question']['mean']:,.0f}", f"{s['output_tokens_per_question']['mean']:,.0f}"]
            for s in systems.values()]  # fmt: skip
    rows += [[f"{name}, as published", f"{tin:,}", f"{tout:,}"] for name, (tin, tout) in LLMCOMPILER_TOKENS.items()]
    out.append(table(["system", "input tokens", "output tokens"], rows))
    out += ["", "Targets:"]
    for t in results["targets"]:
        value = t["value"] if not isinstance(t["value"], float) else f"{t['value']:.3f}"
        mark = ("PASS" if t["pass"] else "FAIL") if t["binding"] else "info"
        out.append(f"  {mark}  {t['name']}: {value} (target {t['target']})")
    return "\n".join(out)


async def run_all(args: argparse.Namespace, questions: list[Question]) -> dict[str, list[dict[str, Any]]]:
    timing = Timing(args.ttft, args.tokens_per_s, args.search_s)
    ideals = {q.id: ideal_times(q, timing) for q in questions}
    server = FakeModelServer(
        handler=FakeModel(questions), ttft_s=args.ttft, tokens_per_s=args.tokens_per_s, tokenizer=_SPLIT
    )
    with server, tempfile.TemporaryDirectory(prefix="planweave-bench-") as home:
        config = LLMConfig(model=MODEL, api_base=server.base_url, api_key="x")
        search = make_search(questions, args.search_s)
        # Runs are recorded, as by default, but in a throwaway store rather than the user's.
        store = Path(home) / "runs.db"
        planners = {
            name: Planner(MODEL, [search], api_base=server.base_url, api_key="x", stream=name == "planweave", store=store)
            for name in ("plan_execute", "planweave")
        }

        async def run(system: str, q: Question) -> dict[str, Any]:
            if system.startswith("react"):
                return await run_react(q, search, config, thoughts=system == "react")
            return await run_planner(q, planners[system])

        # Warm-up, not recorded: imports, litellm's clients, the first connections.
        await asyncio.gather(*(run(s, questions[0]) for s in args.systems))

        jobs = [(s, q) for q in questions for s in args.systems]
        random.Random(args.seed).shuffle(jobs)  # every system sees the same mix of load
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
        slots = asyncio.Semaphore(args.concurrency)
        started = time.perf_counter()

        async def job(system: str, q: Question) -> None:
            async with slots:
                r = await run(system, q)
            r["correct"] = (r.get("answer") or "").strip() == final_answer(q, q.expected(), q.branch_values())
            if r["correct"]:
                r.pop("answer")
            rows[system].append({"question": q.id, "fanout": q.fanout, "ideal": ideals[q.id], "run": r})
            done = sum(map(len, rows.values()))
            if not args.quiet and (done % max(1, len(jobs) // 20) == 0 or done == len(jobs)):
                print(f"  {done}/{len(jobs)} runs, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

        async with asyncio.TaskGroup() as tg:
            for system, q in jobs:
                tg.create_task(job(system, q))
        if server.handler_errors:
            raise RuntimeError(f"the fake model failed {len(server.handler_errors)} times: {server.handler_errors[0]!r}")
    for r in rows.values():
        r.sort(key=lambda row: row["question"])
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=int, default=None, help="run a sample of N questions, round-robin over the fan-out sizes (default: all 113)")
    p.add_argument("--concurrency", type=int, default=12, help="runs at a time, all systems mixed (default 12)")
    p.add_argument("--ttft", type=float, default=0.3, help="the model's seconds to the first token (default 0.3)")
    p.add_argument("--tokens-per-s", type=float, default=50.0, help="the model's token rate (default 50)")
    p.add_argument("--search-s", type=float, default=0.6, help="mean seconds of a search; each varies x0.67-1.33 (default 0.6)")
    p.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS), help=f"comma-separated, from {','.join(SYSTEMS)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="questions, facts and job order (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    args.systems = [s for s in SYSTEMS if s in args.systems]  # the peer first: speedups need it
    return args


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals (0.1 ms), so the JSON stays readable."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; returns the results."""
    args = parse_args(argv)
    questions = sample(make_questions(args.seed), args.questions)
    results: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "versions": {d: version(d) for d in ("planweave", "litellm", "instructor", "pydantic", "httpx")},
        "git": git_info(("planner", "executor", "tools", "prompts")),
        "settings": {
            "questions": len(questions),
            "fanout_counts": {k: sum(q.fanout == k for q in questions) for k in FANOUT_COUNTS},
            "ttft_s": args.ttft,
            "tokens_per_s": args.tokens_per_s,
            "search_s": args.search_s,
            "concurrency": args.concurrency,
            "systems": args.systems,
            "seed": args.seed,
            "model": MODEL,
            "tokenizer": tokenizer_name(TOKENIZER_MODEL),
        },
    }
    print(f"ParallelQA: {len(questions)} questions x {len(args.systems)} systems ...", flush=True)
    rows = asyncio.run(run_all(args, questions))
    results["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    systems: dict[str, Any] = {}
    for name, sys_rows in rows.items():
        peer = rows.get(PEER)
        systems[name] = summarize(name, sys_rows, peer)
        if name in ("plan_execute", "planweave"):
            systems[name]["analytic_segments_s"] = {
                "plan_stream": statistics.fmean(r["ideal"]["plan_stream_s"] for r in sys_rows),
                "steps_after_plan": statistics.fmean(r["ideal"][f"{name}_steps_after_plan_s"] for r in sys_rows),
                "join_wait": 0.0,
                "join": statistics.fmean(r["ideal"]["join_s"] for r in sys_rows),
                "tail": 0.0,
            }
    results["systems"] = systems
    results["targets"] = build_targets(systems)
    results["what_if"] = what_if(questions, Timing(args.ttft, args.tokens_per_s, args.search_s))
    by_q: dict[str, dict[str, Any]] = {}
    for q in questions:
        ideal = next(r["ideal"] for sys_rows in rows.values() for r in sys_rows if r["question"] == q.id)
        by_q[q.id] = {"id": q.id, "fanout": q.fanout, "op": q.op, "question": q.text, "expected": q.expected(), "ideal_s": ideal, "runs": {}}
    for name, sys_rows in rows.items():
        for r in sys_rows:
            by_q[r["question"]]["runs"][name] = r["run"]
    results["questions"] = list(by_q.values())
    results = _rounded(results)
    print()
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
