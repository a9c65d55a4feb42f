"""Pull complete step objects out of a plan's JSON while it is still streaming.

The model writes `{"steps": [["a", "tool", {...}], {...}], "rationale": "...", "answer": null}`.
`StepStream.feed(text)` returns each element of `steps` (a compact list or an object)
the moment its closing bracket arrives, so the executor can start it while the rest is
being written.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

__all__ = ["FieldStream", "StepStream"]


class StepStream:
    """An incremental scanner over one JSON object; yields the items of its top-level `steps` list."""

    def __init__(self, key: str = "steps") -> None:
        self.key = key
        self.text = ""
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._string_start = 0
        self._last_key: str | None = None
        self._in_steps = False
        self._item_start: int | None = None

    def feed(self, chunk: str) -> list[Any]:
        """Add text; return the steps completed by it (objects or compact lists, in order)."""
        self.text += chunk
        done: list[Any] = []
        text = self.text
        i = self._pos
        n = len(text)
        while i < n:
            ch = text[i]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
                    if self._depth == 1:
                        # A string at depth 1 followed by ':' is a key; remember the latest one.
                        self._last_key = text[self._string_start + 1 : i]
            elif ch == '"':
                self._in_string = True
                self._string_start = i
            elif ch in "{[":
                self._depth += 1
                if ch == "[" and self._depth == 2 and self._last_key == self.key:
                    self._in_steps = True
                elif self._in_steps and self._depth == 3:
                    self._item_start = i  # an object, or a compact `[id, tool, args]` step
            elif ch in "}]":
                if self._in_steps and self._depth == 3 and self._item_start is not None:
                    try:
                        item = json.loads(text[self._item_start : i + 1])
                    except json.JSONDecodeError:
                        item = None
                    if isinstance(item, (dict, list)):
                        done.append(item)
                    self._item_start = None
                elif ch == "]" and self._in_steps and self._depth == 2:
                    self._in_steps = False
                self._depth -= 1
            i += 1
        self._pos = i
        return done


class FieldStream:
    """The text of one top-level string field (the join's `answer`) as it streams.

    `feed(text)` returns the newly decoded characters of the field, held back until the
    `gate` field (`action`) is known to have the value `gate_value` (`finish`): a reply
    that replans must not stream an answer.

    Each chunk is decoded once, by pydantic-core's partial JSON mode: `trailing-strings`
    keeps the unfinished last string (the answer being written) and holds back an escape
    cut by the chunk boundary, so no JSON string decoding is written by hand here.
    """

    def __init__(self, key: str = "answer", *, gate: str = "action", gate_value: str = "finish") -> None:
        self.text = ""
        self._key = key
        self._gate = gate
        self._gate_value = gate_value
        self._start: int | None = None
        """Where the JSON object starts (a model may write a few characters before it)."""
        self.sent = 0
        """How many decoded characters of the field were returned so far."""

    def feed(self, chunk: str) -> str:
        self.text += chunk
        if self._start is None:
            brace = self.text.find("{")
            if brace < 0:
                return ""
            self._start = brace
        try:
            partial = from_json(self.text[self._start :], allow_partial="trailing-strings")
        except ValueError:  # not (yet) a JSON object prefix: nothing to show
            return ""
        if not isinstance(partial, dict) or not self._gate_open(partial):
            return ""
        value = partial.get(self._key)
        if not isinstance(value, str):
            return ""
        new = value[self.sent :]
        self.sent = len(value)
        return new

    def _gate_open(self, partial: dict[str, Any]) -> bool:
        if partial.get(self._gate) != self._gate_value:
            return False
        if next(reversed(partial)) != self._gate:
            return True  # a later key began, so the gate's string is closed
        # The gate is the last key: its value may still be growing (`finish` -> `finished`).
        # Without trailing strings only closed strings are kept.
        closed = from_json(self.text[self._start :], allow_partial="on")
        return isinstance(closed, dict) and closed.get(self._gate) == self._gate_value
