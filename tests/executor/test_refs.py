from __future__ import annotations

import pytest

from planweave.executor.refs import Ref, RefSyntaxError, check_path, find_refs, parse, resolve, pick, PathError

OUT = {"search": {"items": [{"url": "https://a"}, {"url": "https://b"}], "count": 2}, "n": 3, "name": "x"}


def lookup(ref: Ref) -> object:
    return pick(OUT[ref.root], ref.path, ref)


def test_whole_value_reference_keeps_type() -> None:
    assert resolve("${search.items}", lookup) == OUT["search"]["items"]
    assert resolve("${n}", lookup) == 3
    assert resolve({"a": ["${search.count}", "${n}"]}, lookup) == {"a": [2, 3]}


def test_field_path_picks_inside() -> None:
    assert resolve("${search.items.1.url}", lookup) == "https://b"
    assert resolve("${search.items.-1.url}", lookup) == "https://b"


def test_interpolation_in_longer_string() -> None:
    assert resolve("found ${search.count} items at ${search.items.0.url}", lookup) == "found 2 items at https://a"
    # Non-strings interpolate as compact JSON.
    assert resolve("items: ${search.items}", lookup) == 'items: [{"url":"https://a"},{"url":"https://b"}]'


def test_escape_gives_literal() -> None:
    assert resolve("cost $${n} and ${n}", lookup) == "cost ${n} and 3"
    assert list(find_refs("$${n}")) == []
    assert resolve("$${n}", lookup) == "${n}"


def test_find_refs_walks_nested_values() -> None:
    refs = list(find_refs({"a": "${x.y}", "b": ["pre ${z} post", {"c": "${w.0}"}], "d": 4}))
    assert refs == [Ref("x", ("y",)), Ref("z"), Ref("w", ("0",))]


def test_malformed_reference_is_an_error() -> None:
    with pytest.raises(RefSyntaxError, match=r"malformed reference `\$\{a b\}`"):
        parse("${a b}")
    with pytest.raises(RefSyntaxError):
        parse("${unclosed")


def test_missing_path_names_what_exists() -> None:
    with pytest.raises(PathError, match=r"`search` has no field `itemz` \(fields: `items`, `count`\)"):
        resolve("${search.itemz}", lookup)
    with pytest.raises(PathError, match=r"`search.items` has 2 items; index 5 is out of range"):
        resolve("${search.items.5}", lookup)
    with pytest.raises(PathError, match=r"`n` is a number, which has no field `x`"):
        resolve("${n.x}", lookup)


def test_check_path_against_schemas() -> None:
    number = {"type": "number"}
    assert check_path(number, ("x",), "calc") == "`calc` is a number, which has no field `x`"
    closed = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}, "additionalProperties": False}
    assert check_path(closed, ("a", "0")) is None
    assert check_path(closed, ("b",), "s") == "`s` has no field `b` (fields: `a`)"
    assert check_path(closed, ("a", "first"), "s") == "`s.a` is a list; use a number to pick an item, not `first`"
    assert check_path(closed, ("a", "0", "x"), "s") == "`s.a.0` is a string, which has no field `x`"
    # Open objects and unknown schemas allow anything.
    assert check_path({"type": "object"}, ("anything", "deep")) is None
    assert check_path(None, ("x",)) is None
    assert check_path({}, ("x",)) is None
    # Optional values are checked through anyOf with null.
    assert check_path({"anyOf": [number, {"type": "null"}]}, ("x",), "c") is not None
