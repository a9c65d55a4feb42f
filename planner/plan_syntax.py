"""Plans as lines: one step a line, parsed into the same validated `PlannedStep`s as JSON plans.

    s1 = search(query="population of France")
    m1 = llm(prompt="Convert it to millions.", context=${s1})
    {"id": "check", "tool": "read_file", "args": {"path": "a.txt"}, "when": "${m1} > 3"}
    Thought: search, then convert.

A step line is `id = tool(name=value, ...)`; values are JSON or Python literals (strings,
numbers, `true`/`True`, `null`/`None`, lists, objects), and a reference may stand bare
(`${s1}`, `[${m1}, ${m2}]`). A line that is a JSON object or `[id, tool, args]` list is a step
in object form (for `when`, `for_each`, `depends_on`, `description`, `retry`). `Thought:` gives
the rationale; `Answer:` starts the final answer (everything after it), for a plan with no
steps. The same steps cost about 28% fewer tokens than compact JSON (bench/parallelqa.py
measures it), and each step can start the moment its line ends.

A reply that is one JSON object (`{"steps": [...], "rationale": ..., "answer": ...}`, as
written by older prompts, the offline model or a tool call) is read as JSON, with steps
streamed by `planweave.planner.streaming.StepStream`: the object form stays accepted.

Malformed input is never a crash: every line is bounded in size and nesting, and whatever
cannot be read becomes a problem for the re-ask that names the line and the fix.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Literal

from pydantic import ValidationError

from planweave.planner.models import PlannedStep, PlanUpdate
from planweave.planner.streaming import MAX_REPLY_CHARS, StepStream
from planweave.tools.base import format_validation_error

__all__ = ["MAX_LINE_CHARS", "PlanStream", "parse_step_line"]

MAX_LINE_CHARS = 20_000
"""Longest step line read; a longer one is a problem, not parsed."""
_MAX_DEPTH = 32
"""Deepest nesting of lists and objects in one argument value."""

_STEP = re.compile(r"^([A-Za-z_][\w-]*)\s*=\s*([A-Za-z_][\w.-]*)\s*\((.*)\)$", re.S)
_LABEL = re.compile(r"^(thought|rationale|answer)\s*:\s?(.*)$", re.I | re.S)
_JSON_PLAN = re.compile(r'^\{\s*"(steps|rationale|answer)"')
_ATTEMPT = re.compile(r"^[\[{]|^[A-Za-z_][\w-]*\s*=|\(")
"""A line meant as a step (a malformed one is a problem); any other line is prose, ignored."""
_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_HINT = "write each step as `id = tool(name=value, ...)` on one line"


class LineError(ValueError):
    """A step line that cannot be read; the message says why and how to write it."""


def parse_step_line(line: str) -> dict[str, Any] | list[Any]:
    """One step line as the item a `PlannedStep` validates (`{"id", "tool", "args"}`, or the
    object / compact form as written). Raises `LineError`."""
    if len(line) > MAX_LINE_CHARS:
        raise LineError(f"a step line has {len(line)} characters (at most {MAX_LINE_CHARS}); {_HINT}")
    if line[0] in "{[":
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise LineError(f"a step in object form is not valid JSON ({_short(exc)}): `{_short(line)}`") from None
        if not isinstance(item, (dict, list)):
            raise LineError(f"a step in object form must be an object or a list: `{_short(line)}`")
        return item
    m = _STEP.match(line)
    if m is None:
        raise LineError(f"this line is not a step: `{_short(line)}`; {_HINT}")
    sid, tool, arguments = m.groups()
    try:
        call = ast.parse(f"f({_quote_bare_refs(arguments)})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise LineError(f"step `{sid}`: its arguments cannot be read ({_short(exc)}); {_HINT}") from None
    if not isinstance(call, ast.Call) or call.args:
        raise LineError(f"step `{sid}`: name every argument (`name=value`), e.g. `{sid} = {tool}(query=\"...\")`")
    args: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise LineError(f"step `{sid}`: `**` is not allowed; name every argument")
        args[keyword.arg] = _value(keyword.value, sid, 0)
    return {"id": sid, "tool": tool, "args": args}


def _value(node: ast.expr, sid: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise LineError(f"step `{sid}`: an argument is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)) or (
        isinstance(node, ast.Constant) and node.value is None
    ):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        number = node.operand.value if isinstance(node.operand, ast.Constant) else None
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, sid, depth + 1) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for key, value in zip(node.keys, node.values):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise LineError(f"step `{sid}`: object keys must be strings")
            out[key.value] = _value(value, sid, depth + 1)
        return out
    raise LineError(
        f"step `{sid}`: argument values must be literals (text in quotes, numbers, true/false/null, lists, "
        f"objects) or references like ${{step_id}}; got `{_short(ast.unparse(node))}`"
    )


def _quote_bare_refs(text: str) -> str:
    """`${ref}` outside string literals, written as the string `"${ref}"`."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
            out.append(c)
        elif text.startswith("${", i) and (end := text.find("}", i)) != -1:
            out.append(json.dumps(text[i : end + 1]))
            i = end
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _short(value: object, limit: int = 120) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PlanStream:
    """The steps of a plan reply as they complete, in either syntax.

    `feed(chunk)` returns the items (for `PlannedStep`) of the steps completed by `chunk`;
    `finish()` reads the whole reply and returns the `PlanUpdate` (None when it cannot be read)
    and the problems to re-ask about."""

    def __init__(self) -> None:
        self.text = ""
        self.mode: Literal["lines", "json"] | None = None
        self._json = StepStream()
        self._done = 0
        """Characters of `text` whose lines were handed out (line mode)."""
        self._answer = False
        self._too_long = False

    @property
    def problems(self) -> list[str]:
        """Limits the reply broke while it streamed (size; in JSON form also depth and step count)."""
        found = list(self._json.problems) if self.mode == "json" else []
        if self._too_long:
            found.append(f"the reply is longer than {MAX_REPLY_CHARS:,} characters; write a shorter plan")
        return found

    def feed(self, chunk: str) -> list[dict[str, Any] | list[Any]]:
        if self._too_long or len(self.text) + len(chunk) > MAX_REPLY_CHARS:
            self._too_long = True  # the rest is not read: the reply is re-asked
            return []
        self.text += chunk
        if self.mode is None:
            head = self.text.lstrip()
            if head.startswith("```"):
                head = head.partition("\n")[2].lstrip()
            if not head or (head[0] == "{" and len(head) < 12 and "\n" not in head):
                return []  # not yet known: wait for `{"steps"` or a step line
            self.mode = "json" if _JSON_PLAN.match(head) else "lines"
        if self.mode == "json":
            return self._json.feed(chunk) if self._json.text else self._json.feed(self.text)
        items: list[dict[str, Any] | list[Any]] = []
        while not self._answer:
            end = self.text.find("\n", self._done)
            if end == -1:
                break
            line, self._done = self.text[self._done : end].strip(), end + 1
            item = self._line(line)
            if item is not None:
                items.append(item)
        return items

    def _line(self, line: str) -> dict[str, Any] | list[Any] | None:
        """A step's item, or None for anything else (problems are reported by `finish`)."""
        label = _LABEL.match(line)
        if label is not None:
            self._answer = self._answer or label.group(1).lower() == "answer"
            return None
        if not line or line.startswith("```") or line.startswith("#") or not _ATTEMPT.search(line):
            return None
        try:
            return parse_step_line(line)
        except LineError:
            return None

    def finish(self) -> tuple[PlanUpdate | None, list[str]]:
        """The whole reply as a `PlanUpdate` and the problems found in it."""
        if self.mode != "lines":
            full = self.text
            try:
                # Tolerate prose or code fences around the object.
                return PlanUpdate.model_validate_json(full[full.find("{") : full.rfind("}") + 1] or full), []
            except ValidationError as exc:
                return None, [f"the reply is not a valid plan object: {format_validation_error(exc)}"]
        steps: list[PlannedStep] = []
        problems: list[str] = []
        rationale, answer = "", None
        lines = self.text.split("\n")
        for n, raw in enumerate(lines):
            line = raw.strip()
            label = _LABEL.match(line)
            if not line or line.startswith("```") or line.startswith("#") or (label is None and not _ATTEMPT.search(line)):
                continue
            if label is not None:
                if label.group(1).lower() == "answer":
                    answer = "\n".join([label.group(2), *lines[n + 1 :]]).strip().removesuffix("```").strip()
                    break
                rationale = label.group(2).strip()
                continue
            try:
                item = parse_step_line(line)
            except LineError as exc:
                problems.append(f"line {n + 1}: {exc}")
                continue
            try:
                steps.append(PlannedStep.model_validate(item))
            except ValidationError as exc:
                sid = item.get("id", "?") if isinstance(item, dict) else (item[0] if item else "?")
                problems.append(f"step `{sid}` is malformed: {format_validation_error(exc)}")
        try:
            return PlanUpdate(steps=list(steps), rationale=rationale, answer=answer), problems
        except ValidationError as exc:  # e.g. more steps than a plan may have
            return None, [*problems, f"the plan is not valid: {format_validation_error(exc)}"]
