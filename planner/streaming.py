"""Pull complete step objects, and the answer, out of a model's JSON while it is still streaming.

The model writes `{"steps": [["a", "tool", {...}], {...}], "rationale": "...", "answer": null}`.
`StepStream.feed(text)` returns each element of `steps` (a compact list or an object)
the moment its closing bracket arrives, so the executor can start it while the rest is
being written. `FieldStream.feed(text)` returns the newly written characters of one
string field (the join's `answer`).

Both look at each character a constant number of times (strings are skipped with a
regular expression, only the new chunk is scanned, a step's text is decoded once when
it closes): a reply of n characters costs O(n), whatever its chunking.

A model's reply is untrusted input. Its limits (`MAX_REPLY_CHARS`, `MAX_STEP_CHARS`,
`MAX_DEPTH`, `MAX_STEPS`) are checked as it streams; what breaks them, and any step that
is not valid JSON (too deep for the decoder, a number out of range, a lone surrogate),
is recorded in `problems` (sentences for the model's re-ask) and never raises.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic_core import from_json

__all__ = ["MAX_DEPTH", "MAX_REPLY_CHARS", "MAX_STEPS", "MAX_STEP_CHARS", "FieldStream", "StepStream", "nesting_depth"]

MAX_REPLY_CHARS: Final = 2_000_000
"""Longest plan or decision reply read, in characters; the rest is dropped and reported."""
MAX_STEP_CHARS: Final = 200_000
"""Longest single step, in characters."""
MAX_DEPTH: Final = 32
"""Deepest nesting of lists and objects inside one step (its arguments included)."""
MAX_STEPS: Final = 1_000
"""Most steps one plan reply may hold."""

_STRUCTURE = re.compile(r'["{}\[\],:]')
"""The characters that matter outside strings."""
_STRING_END = re.compile(r'["\\]')
"""The characters that matter inside a string."""
_COMPLETE_ESCAPES = re.compile(r'(?:[^\\]+|\\[^u]|\\u[0-9a-fA-F]{4})*')
"""The longest prefix of a JSON string's body that holds no escape cut short."""
_HIGH_SURROGATE_END = re.compile(r'\\u[dD][89abAB][0-9a-fA-F]{2}$')


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and dicts nest in `value` (0 for a scalar), counted up to `limit + 1`.

    Iterative, so a hostile value cannot exhaust the stack while it is measured."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


class _Scanner:
    """The structure of one streamed JSON object: depth, strings, and top-level keys.

    `_scan(chunk)` walks only the new chunk and calls the hooks below; subclasses keep
    what they need. Text before the first `{` (prose, a code fence) is skipped.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._text: str | None = ""
        self._chars = 0
        self._started = False
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._expect_key = False
        """At depth 1: the next string is a key (after `{` or `,`), not a value (after `:`)."""
        self._key_parts: list[str] | None = None
        self._key_from = 0
        self._last_key: str | None = None
        self.problems: list[str] = []
        """What was wrong with the reply, as sentences for the model (empty when nothing was)."""
        self.truncated = False
        self.work = 0
        """Characters scanned plus characters decoded so far: linear in the reply's length."""

    @property
    def text(self) -> str:
        """Everything received so far (up to `MAX_REPLY_CHARS`)."""
        if self._text is None:
            self._text = "".join(self._parts)
            self._parts = [self._text]
        return self._text

    def keep(self, chunk: str) -> bool:
        """Store `chunk` (not scanned); False once the reply is over `MAX_REPLY_CHARS`."""
        if self.truncated:
            return False
        if self._chars + len(chunk) > MAX_REPLY_CHARS:
            self.truncated = True
            self.problems.append(
                f"the reply is longer than {MAX_REPLY_CHARS:,} characters; write a shorter plan "
                "(fewer steps, shorter arguments)"
            )
            return False
        self._parts.append(chunk)
        self._chars += len(chunk)
        self._text = None
        return True

    def _scan(self, chunk: str) -> None:
        i, n = 0, len(chunk)
        self.work += n
        if not self._started:
            i = chunk.find("{")
            if i < 0:
                return
            self._started = True
        self._begin_chunk(chunk, i)
        while i < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                match = _STRING_END.search(chunk, i)
                if match is None:
                    break
                i = match.start()
                if chunk[i] == "\\":
                    self._escape = True
                    i += 1
                    continue
                self._in_string = False
                self._string_closed(chunk, i)
                i += 1
                continue
            match = _STRUCTURE.search(chunk, i)
            if match is None:
                break
            i = match.start()
            ch = chunk[i]
            if ch == '"':
                self._in_string = True
                self._string_opened(chunk, i)
            elif ch == "{" or ch == "[":
                self._depth += 1
                self._expect_key = self._depth == 1
                self._opened(chunk, i, ch)
            elif ch == "}" or ch == "]":
                self._closed(chunk, i, ch)
                self._depth -= 1
            elif self._depth == 1:
                self._expect_key = ch == ","
            i += 1
        self._end_chunk(chunk)

    # -- hooks -------------------------------------------------------------------------------

    def _begin_chunk(self, chunk: str, start: int) -> None:
        if self._key_parts is not None:
            self._key_from = start

    def _end_chunk(self, chunk: str) -> None:
        if self._key_parts is not None:
            self._key_parts.append(chunk[self._key_from :])
            self._key_from = 0

    def _string_opened(self, chunk: str, at: int) -> None:
        if self._depth == 1 and self._expect_key:
            self._key_parts = []
            self._key_from = at + 1

    def _string_closed(self, chunk: str, at: int) -> None:
        if self._key_parts is not None:
            raw = "".join(self._key_parts) + chunk[self._key_from : at]
            self._key_parts = None
            self.work += len(raw)
            self._last_key = _decode(raw)

    def _opened(self, chunk: str, at: int, bracket: str) -> None:
        pass

    def _closed(self, chunk: str, at: int, bracket: str) -> None:
        pass


_DECODER: Final = json.JSONDecoder(strict=False)


def _decode(raw: str) -> str | None:
    """A JSON string body, decoded; None when it is not valid."""
    if "\\" not in raw:
        return raw  # nothing escaped (and no `"`: the scanner ended the body at the first one)
    try:
        value = _DECODER.decode(f'"{raw}"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


class StepStream(_Scanner):
    """An incremental scanner over one JSON object; yields the items of its top-level `steps` list."""

    def __init__(self, key: str = "steps") -> None:
        super().__init__()
        self.key = key
        self._in_steps = False
        self._item: list[str] | None = None
        """The text of the step being written, in pieces (None between steps)."""
        self._item_from = 0
        self._item_chars = 0
        self._skipping = False
        """The current step broke a limit: its text is not kept."""
        self.count = 0
        """Steps seen so far (valid or not)."""
        self._done: list[Any] = []

    def feed(self, chunk: str) -> list[Any]:
        """Add text; return the steps completed by it (objects or compact lists, in order)."""
        if not self.keep(chunk):
            return []
        self._done = []
        self._scan(chunk)
        return self._done

    def _begin_chunk(self, chunk: str, start: int) -> None:
        super()._begin_chunk(chunk, start)
        self._item_from = start

    def _end_chunk(self, chunk: str) -> None:
        super()._end_chunk(chunk)
        if self._item is not None:
            self._grow(chunk[self._item_from :])

    def _grow(self, piece: str) -> None:
        assert self._item is not None
        self._item_chars += len(piece)
        if self._item_chars > MAX_STEP_CHARS:
            self._skip(f"step {self.count} is longer than {MAX_STEP_CHARS:,} characters; keep arguments short")
        else:
            self._item.append(piece)

    def _skip(self, problem: str) -> None:
        self.problems.append(problem)
        self._item = None
        self._skipping = True

    def _opened(self, chunk: str, at: int, bracket: str) -> None:
        depth = self._depth
        if bracket == "[" and depth == 2 and self._last_key == self.key:
            self._in_steps = True
        elif self._in_steps and depth == 3:
            # an object, or a compact `[id, tool, args]` step
            self.count += 1
            if self.count > MAX_STEPS:
                if self.count == MAX_STEPS + 1:
                    self.problems.append(f"the plan has more than {MAX_STEPS:,} steps; plan fewer steps")
                self._skipping = True
                return
            self._item, self._item_from, self._item_chars, self._skipping = [], at, 0, False
        elif self._in_steps and depth > 3 + MAX_DEPTH and not self._skipping:
            self._skip(
                f"step {self.count} nests lists or objects more than {MAX_DEPTH} levels deep; "
                "use flat arguments"
            )

    def _closed(self, chunk: str, at: int, bracket: str) -> None:
        depth = self._depth
        if self._in_steps and depth == 3:
            if self._item is not None:
                self._grow(chunk[self._item_from : at + 1])
            if self._item is not None:
                self._finish_item("".join(self._item))
            self._item = None
            self._skipping = False
        elif bracket == "]" and self._in_steps and depth == 2:
            self._in_steps = False

    def _finish_item(self, text: str) -> None:
        self.work += len(text)
        try:
            item = from_json(text, allow_inf_nan=False)
        except ValueError:
            return  # reported with its position by the validation of the whole reply
        if isinstance(item, (dict, list)):
            self._done.append(item)


class FieldStream(_Scanner):
    """The text of one top-level string field (the join's `answer`) as it streams.

    `feed(text)` returns the newly decoded characters of the field, held back until the
    `gate` field (`action`) is known to have the value `gate_value` (`finish`): a reply
    that replans must not stream an answer.

    The field's body is decoded as it arrives, piece by piece; an escape cut by a chunk
    boundary (or the first half of a surrogate pair) waits for the rest.
    """

    def __init__(self, key: str = "answer", *, gate: str = "action", gate_value: str = "finish") -> None:
        super().__init__()
        self._key = key
        self._gate = gate
        self._gate_value = gate_value
        self._gate_open = False
        self._value: str | None = None
        """Which top-level field's value string is being read (`key` or `gate`), if any."""
        self._value_from = 0
        self._pending = ""
        """The end of the body that cannot be decoded yet (a cut escape)."""
        self._gate_parts: list[str] = []
        self._unsent: list[str] = []
        self._broken = False
        self.sent = 0
        """How many decoded characters of the field were returned so far."""

    def feed(self, chunk: str) -> str:
        if not self.keep(chunk):
            return ""
        self._scan(chunk)
        if not self._gate_open or not self._unsent:
            return ""
        new = "".join(self._unsent)
        self._unsent = []
        self.sent += len(new)
        return new

    def _begin_chunk(self, chunk: str, start: int) -> None:
        super()._begin_chunk(chunk, start)
        self._value_from = start

    def _end_chunk(self, chunk: str) -> None:
        super()._end_chunk(chunk)
        if self._value is not None:
            self._take(chunk[self._value_from :], final=False)

    def _string_opened(self, chunk: str, at: int) -> None:
        super()._string_opened(chunk, at)
        if self._depth == 1 and not self._expect_key and self._last_key in (self._key, self._gate):
            self._value = self._last_key
            self._value_from = at + 1

    def _string_closed(self, chunk: str, at: int) -> None:
        super()._string_closed(chunk, at)
        if self._value is not None:
            self._take(chunk[self._value_from : at], final=True)
            self._value = None

    def _take(self, raw: str, *, final: bool) -> None:
        if self._value == self._gate:
            self._gate_parts.append(raw)
            self.work += len(raw)
            if final:
                self._gate_open = _decode("".join(self._gate_parts)) == self._gate_value
                self._gate_parts = []
            return
        if self._broken:
            return
        raw = self._pending + raw
        self.work += 2 * len(raw)  # matched, then decoded
        if final:
            ready, self._pending = raw, ""
        else:
            ready = _COMPLETE_ESCAPES.match(raw).group()  # type: ignore[union-attr]  # `*` always matches
            if _HIGH_SURROGATE_END.search(ready):
                ready = ready[:-6]  # wait for the low half of the pair
            self._pending = raw[len(ready) :]
        if not ready:
            return
        text = _decode(ready)
        if text is None:
            self._broken = True  # not valid JSON: the decision's validation reports it
            return
        self._unsent.append(text)
