"""Pull complete step objects out of a plan's JSON while it is still streaming.

The model writes `{"steps": [["a", "tool", {...}], {...}], "rationale": "...", "answer": null}`.
`StepStream.feed(text)` returns each element of `steps` (a compact list or an object)
the moment its closing bracket arrives, so the executor can start it while the rest is
being written.
"""

from __future__ import annotations

import json
import re
from typing import Any

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
    """

    def __init__(self, key: str = "answer", *, gate: str = "action", gate_value: str = "finish") -> None:
        self.text = ""
        self._start = re.compile(r'(?<!\\)"' + re.escape(key) + r'"\s*:\s*"')
        self._gate = re.compile(r'(?<!\\)"' + re.escape(gate) + r'"\s*:\s*"([^"\\]*)"')
        self._gate_value = gate_value
        self._value_at: int | None = None
        self.sent = 0
        """How many decoded characters of the field were returned so far."""

    def feed(self, chunk: str) -> str:
        self.text += chunk
        if self._value_at is None:
            m = self._start.search(self.text)
            if m is None:
                return ""
            self._value_at = m.end()
        gate = self._gate.search(self.text)
        if gate is None or gate.group(1) != self._gate_value:
            return ""
        decoded = _decode_prefix(self.text[self._value_at :])
        new = decoded[self.sent :]
        self.sent = len(decoded)
        return new


def _decode_prefix(raw: str) -> str:
    """Decode the JSON string body `raw` up to its closing quote, or as far as it is complete."""
    out = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == '"':
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            break  # an escape cut by the chunk boundary: wait for the rest
        if raw[i + 1] == "u":
            # A surrogate pair is two escapes (12 characters) that decode to one character.
            high = raw[i + 2 : i + 3].lower() == "d" and raw[i + 3 : i + 4].lower() in ("8", "9", "a", "b")
            size = 12 if high else 6
            if i + size > n:
                break
            try:
                out.append(json.loads(f'"{raw[i : i + size]}"'))
            except (json.JSONDecodeError, UnicodeDecodeError):
                out.append(raw[i : i + size])
            i += size
            continue
        out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(raw[i + 1], raw[i + 1]))
        i += 2
    return "".join(out)
