"""Pull complete step objects out of a plan's JSON while it is still streaming.

The model writes `{"rationale": "...", "steps": [{...}, {...}], "answer": null}`.
`StepStream.feed(text)` returns each element of `steps` the moment its closing
brace arrives, so the executor can start it while the rest is being written.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["StepStream"]


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

    def feed(self, chunk: str) -> list[dict[str, Any]]:
        """Add text; return the step objects completed by it (in order)."""
        self.text += chunk
        done: list[dict[str, Any]] = []
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
                elif ch == "{" and self._in_steps and self._depth == 3:
                    self._item_start = i
            elif ch in "}]":
                if ch == "}" and self._in_steps and self._depth == 3 and self._item_start is not None:
                    try:
                        item = json.loads(text[self._item_start : i + 1])
                    except json.JSONDecodeError:
                        item = None
                    if isinstance(item, dict):
                        done.append(item)
                    self._item_start = None
                elif ch == "]" and self._in_steps and self._depth == 2:
                    self._in_steps = False
                self._depth -= 1
            i += 1
        self._pos = i
        return done
