"""References between steps: the `${...}` syntax.

    ${fetch}                 the whole output of step `fetch`, type kept (a list stays a list)
    ${fetch.items.0.url}     a field path: dict keys and list indexes, separated by dots
    "Found ${count} items"   inside a longer string: interpolated as text (JSON for non-strings)
    ${inputs.city}           an initial input of the run;  ${goal}  the run's goal
    ${item}, ${item.url}     the current item of a `for_each` step
    $${not a ref}            escape: `$${` stands for a literal `${`

A reference implies a dependency on the referenced step.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from planweave.tools.errors import RuntimeFailure, SetupError

__all__ = [
    "PathError",
    "Ref",
    "RefSyntaxError",
    "RESERVED_ROOTS",
    "check_path",
    "find_refs",
    "has_refs",
    "parse",
    "pick",
    "resolve",
]

RESERVED_ROOTS = frozenset({"inputs", "goal", "item"})
"""Reference roots that are not step ids."""

_SEG = r"[A-Za-z0-9_-]+"
_REF_RE = re.compile(r"\$\$\{|\$\{\s*(" + _SEG + r"(?:\." + _SEG + r")*)\s*\}|\$\{[^}]*\}?")


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed `${root.path...}` reference."""

    root: str
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "${" + ".".join((self.root, *self.path)) + "}"


class RefSyntaxError(SetupError, ValueError):
    """A `${` that does not start a valid reference (found while a plan is checked)."""


_Part = str | Ref


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> tuple[_Part, ...]:
    """Split a string into literal text and references. Raises `RefSyntaxError` on a malformed `${`."""
    if "$" not in text:
        return (text,)
    parts: list[_Part] = []
    pos = 0
    buf: list[str] = []
    for m in _REF_RE.finditer(text):
        buf.append(text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token == "$${":
            buf.append("${")
        elif m.group(1) is not None:
            if buf and "".join(buf):
                parts.append("".join(buf))
            buf = []
            root, *path = m.group(1).split(".")
            parts.append(Ref(root, tuple(path)))
        else:
            raise RefSyntaxError(
                f"malformed reference `{token}`: write `${{step_id}}` or `${{step_id.field.0}}` "
                "(letters, digits, `_`, `-`, dots between parts), or `$${` for a literal `${`"
            )
    buf.append(text[pos:])
    tail = "".join(buf)
    if tail or not parts:
        parts.append(tail)
    return tuple(parts)


def find_refs(value: Any) -> Iterator[Ref]:
    """Every reference inside a JSON-like value (strings, lists, dicts; dict keys are literal)."""
    if isinstance(value, str):
        if "${" in value:
            for part in parse(value):
                if isinstance(part, Ref):
                    yield part
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from find_refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from find_refs(v)


def has_refs(value: Any) -> bool:
    """True if resolving `value` may change it (it holds a reference or an escape)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(has_refs(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_refs(v) for v in value)
    return False


class PathError(RuntimeFailure, LookupError):
    """A field path does not exist in a value (found while a step's arguments are resolved)."""


def pick(value: Any, path: tuple[str, ...], ref: Ref) -> Any:
    """Follow `path` into `value`; raises `PathError` naming the missing part and what exists."""
    for i, seg in enumerate(path):
        where = ".".join((ref.root, *path[:i])) or ref.root
        if isinstance(value, Mapping):
            if seg in value:
                value = value[seg]
                continue
            keys = ", ".join(f"`{k}`" for k in list(value)[:12]) or "none"
            raise PathError(f"`{where}` has no field `{seg}` (fields: {keys})")
        if isinstance(value, (list, tuple)):
            if seg.lstrip("-").isdigit():
                idx = int(seg)
                if -len(value) <= idx < len(value):
                    value = value[idx]
                    continue
                raise PathError(f"`{where}` has {len(value)} items; index {idx} is out of range")
            raise PathError(f"`{where}` is a list; use a number to pick an item, not `{seg}`")
        raise PathError(f"`{where}` is a {_json_type(value)}, which has no field `{seg}`")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def to_text(value: Any) -> str:
    """How a value reads when interpolated into a string."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def resolve(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """Replace every reference in a JSON-like value using `lookup(ref)`, which returns the picked value."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        parts = parse(value)
        if len(parts) == 1:
            only = parts[0]
            return lookup(only) if isinstance(only, Ref) else only
        return "".join(p if isinstance(p, str) else to_text(lookup(p)) for p in parts)
    if isinstance(value, Mapping):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    if isinstance(value, tuple):
        return [resolve(v, lookup) for v in value]
    return value


# --- checking a path against a JSON schema (plan-time) -----------------------------------------


def check_path(schema: Mapping[str, Any] | None, path: tuple[str, ...], root: str = "output") -> str | None:
    """Return why `path` cannot exist in values of `schema`, or None when it may exist.

    Only definite impossibilities are reported (a field on a number, an unknown field on a
    closed object, a word used as a list index); anything uncertain is allowed.
    """
    if schema is None:
        return None
    defs = schema.get("$defs", {})
    return _check(schema, path, defs, (root,))


def _deref(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 32:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = defs.get(name, {})
        seen += 1
    return schema


def _check(
    schema: Mapping[str, Any], path: tuple[str, ...], defs: Mapping[str, Any], done: tuple[str, ...]
) -> str | None:
    if not path:
        return None
    schema = _deref(schema, defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if _deref(o, defs).get("type") != "null"]
            reasons = [_check(o, path, defs, done) for o in options]
            if options and all(reasons):
                return reasons[0]
            return None
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _check(schema["allOf"][0], path, defs, done)
    seg, rest = path[0], path[1:]
    kind = schema.get("type")
    here = "`" + ".".join(done) + "`"
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if seg in props:
            return _check(props[seg], rest, defs, (*done, seg))
        extra = schema.get("additionalProperties", True if not props else False)
        if extra is False:
            names = ", ".join(f"`{p}`" for p in props) or "none"
            return f"{here} has no field `{seg}` (fields: {names})"
        if isinstance(extra, Mapping):
            return _check(extra, rest, defs, (*done, seg))
        return None
    if kind == "array":
        if not seg.lstrip("-").isdigit():
            return f"{here} is a list; use a number to pick an item, not `{seg}`"
        items = schema.get("items") or {}
        prefix = schema.get("prefixItems")
        if prefix:
            idx = int(seg)
            if idx >= len(prefix) and schema.get("items") is False:
                return f"{here} has {len(prefix)} items; index {idx} is out of range"
            if 0 <= idx < len(prefix):
                return _check(prefix[idx], rest, defs, (*done, seg))
        return _check(items, rest, defs, (*done, seg))
    if kind in ("string", "number", "integer", "boolean", "null"):
        noun = {"integer": "number"}.get(kind, kind)
        return f"{here} is a {noun}, which has no field `{seg}`"
    return None
