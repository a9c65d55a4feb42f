import math
from typing import Any

import pytest

from planweave.tools.errors import ToolError
from planweave.tools.safe_eval import SafeEvalError, check, evaluate

OUTPUTS: dict[str, Any] = {
    "fetch": {"status": 200, "text": "all good", "items": [1, 2, 3], "meta": {"next": None}},
    "count": 3,
    "name": "planweave",
    "tags": ["a", "b"],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("7 / 2", 3.5),
        ("+3", 3),
        ("not 0", True),
        ("1.5e3", 1500.0),
        ("'plan' + 'weave'", "planweave"),
        ("'ab' * 3", "ababab"),
        ("[1, 2] + [3]", [1, 2, 3]),
        ("(1,) + (2,)", (1, 2)),
        ("{'a': 1, 'b': [2]}", {"a": 1, "b": [2]}),
        ("{1, 2, 2}", {1, 2}),
        ("None", None),
        ("True and False", False),
        ("0 or 'fallback'", "fallback"),
        ("1 and 'last'", "last"),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("1 == 1.0 != 2", True),
        ("'a' in 'cat'", True),
        ("3 not in [1, 2]", True),
        ("'yes' if 2 > 1 else 'no'", "yes"),
        ("'yes' if 0 else 'no'", "no"),
        ("[10, 20, 30][-1]", 30),
        ("[10, 20, 30][1:]", [20, 30]),
        ("'planweave'[:4]", "plan"),
        ("{'k': 'v'}['k']", "v"),
        ("{'k': 'v'}.k", "v"),
        ("abs(-3)", 3),
        ("min(3, 1, 2)", 1),
        ("max([3, 1, 2])", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("len('four')", 4),
        ("sum([1, 2, 3.5])", 6.5),
        ("int('42') + int(3.9)", 45),
        ("float('1.5')", 1.5),
        ("str(12) + '!'", "12!"),
        ("bool('')", False),
        ("sqrt(16)", 4.0),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("exp(0)", 1.0),
        ("sin(0) + cos(0) + tan(0)", 1.0),
        ("pi", math.pi),
        ("2 ** -1", 0.5),
        ("2 ** 100", 2**100),
    ],
)
def test_evaluates_the_supported_subset(expression: str, expected: Any) -> None:
    assert evaluate(expression) == expected
    assert type(evaluate(expression)) is type(expected)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("fetch.status == 200 and 'good' in fetch.text", True),
        ("fetch['items'][0] + count", 4),
        ("len(fetch.items) == count", True),
        ("fetch.meta.next is None", True),
        ("fetch.meta.next is not None", False),
        ("name[0] + name[-1]", "pe"),
        ("'b' in tags", True),
        ("count * 2 if count > 2 else 0", 6),
    ],
)
def test_names_are_step_outputs(expression: str, expected: Any) -> None:
    assert evaluate(expression, OUTPUTS) == expected


def test_names_shadow_constants_but_not_functions() -> None:
    assert evaluate("e + pi", {"e": 1, "pi": 2}) == 3
    assert evaluate("max(max, 5)", {"max": 7}) == 7


def test_short_circuit_skips_the_failing_side() -> None:
    assert evaluate("0 and 1 / 0") == 0
    assert evaluate("1 or missing") == 1
    assert evaluate("1 if 1 else 1 / 0") == 1
    assert evaluate("1 > 2 > 1 / 0") is False


def test_whole_expression_is_validated_before_evaluating() -> None:
    # Short-circuiting skips values, not validation: a forbidden construct fails every time.
    with pytest.raises(SafeEvalError, match="calling `open` is not allowed"):
        evaluate("0 and open('/etc/passwd')")
    with pytest.raises(SafeEvalError, match="attributes starting with `__` are not allowed"):
        evaluate("1 if True else ().__class__")


def test_check_validates_without_evaluating() -> None:
    check("fetch.status == 200 and 1 / 0", ["fetch"])  # division by zero is a run-time matter
    check("anything + goes")  # names are not checked without `names`
    with pytest.raises(SafeEvalError, match="calling `eval` is not allowed"):
        check("count > 1 or eval('1')")
    with pytest.raises(SafeEvalError, match="is not a valid expression"):
        check("count >")
    with pytest.raises(SafeEvalError) as info:
        check("_r0 > 1 and _r2", ["_r0", "_r1"])
    assert str(info.value) == (
        "unknown name `_r2` in `_r0 > 1 and _r2`; available names: `_r0`, `_r1`, `e`, `pi`. Did you mean `_r1`?"
    )
    with pytest.raises(SafeEvalError, match="`len` is a function; call it"):
        check("len", [])
    check("len(x) > pi", ["x"])  # function names in calls, and constants, are always known


def test_error_is_a_permanent_tool_error() -> None:
    with pytest.raises(SafeEvalError) as info:
        evaluate("1 / 0")
    assert isinstance(info.value, ToolError)
    assert info.value.permanent is True
    assert info.value.expression == "1 / 0"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero in `1 / 0`."),
        ("10 // (2 - 2)", "division by zero in `10 // (2 - 2)`."),
        ("5 % 0", "division by zero in `5 % 0`."),
        ("0 ** -1", "division by zero in `0 ** -1`."),
        ("log(8, 1)", "division by zero in `log(8, 1)`."),
        ("1 +", "`1 +` is not a valid expression: invalid syntax at the end of the expression."),
        ("1 + * 2", "`1 + * 2` is not a valid expression: invalid syntax at column 5 (`* 2`)."),
        ("x = 1", "`x = 1` is not a valid expression: invalid syntax at column 3 (`= 1`)."),
        ("", "the expression is empty; write one such as `x > 0`."),
        ("unknown + 1", "unknown name `unknown` in `unknown + 1`; available names: `e`, `pi`."),
        ("true", "unknown name `true`; write `True`, `False` or `None` (Python spelling)."),
        ("sqrt", "`sqrt` is a function; call it, e.g. `sqrt(x)`."),
        ("sqrt(-1)", "`sqrt(-1)` failed: math domain error."),
        ("'a' + 1", "cannot apply `+` to a `str` and an `int` in `'a' + 1`."),
        ("1 < 'a'", "cannot compare an `int` with a `str` using `<` in `1 < 'a'`."),
        ("1 in 5", "`in` needs a string, list, tuple, set or dict on its right, not an `int` (in `1 in 5`)."),
        ("[1, 2][5]", "index 5 is out of range in `[1, 2][5]`: `[1, 2]` has 2 items."),
        ("{'a': 1}['b']", "key 'b' is not in `{'a': 1}` (in `{'a': 1}['b']`); available keys: `'a'`."),
        ("{'a': 1}.b", "`{'a': 1}` has no key `b` (in `{'a': 1}.b`); available keys: `a`."),
        ("(1).real",
         "`(1).real`: attribute access works only on dicts (`x.key` means `x['key']`), and `1` is an `int`."),
        ("x is 1", "`is` only compares with `None` (in `x is 1`); use `==` or `!=` to compare values."),
        ("(-8) ** 0.5", "`(-8) ** 0.5` gives a complex number; only real numbers are supported."),
        ("1 << 3", "the `<<` operator is not supported (in `1 << 3`); arithmetic uses `+ - * / // % **`."),
        ("'%s' % 1",
         "string formatting with `%` is not supported (in `'%s' % 1`); join strings with `+` and `str(...)`."),
        ("round(2.5, ndigits=1)",
         "keyword arguments are not supported (in `round(2.5, ndigits=1)`); "
         "pass arguments by position, e.g. `round(x, 2)`."),
        ("sum([[1]], [])", "`sum([[1]], [])` failed: sum adds numbers only, got a `list`."),
        ("1j", "complex number literals such as `1j` are not supported; use numbers, strings, True, False or None."),
    ],
)
def test_error_messages(expression: str, message: str) -> None:
    with pytest.raises(SafeEvalError) as info:
        evaluate(expression, {"x": 1} if expression.startswith("x") else None)
    assert str(info.value) == message


def test_unknown_name_lists_names_and_suggests() -> None:
    with pytest.raises(SafeEvalError) as info:
        evaluate("fetchh.status == 200", OUTPUTS)
    assert str(info.value) == (
        "unknown name `fetchh` in `fetchh.status == 200`; available names: "
        "`count`, `e`, `fetch`, `name`, `pi`, `tags`. Did you mean `fetch`?"
    )


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('true')", "calling `__import__('os').system` is not allowed"),
        ("__import__('os')", "calling `__import__` is not allowed; the available functions are abs, min"),
        ("__builtins__", "`__builtins__`: names starting with `__` are not allowed"),
        ("().__class__.__bases__[0].__subclasses__()",
         "calling `().__class__.__bases__[0].__subclasses__` is not allowed"),
        ("().__class__", "attributes starting with `__` are not allowed"),
        ("fetch.__class__", "attributes starting with `__` are not allowed"),
        ("eval('1')", "calling `eval` is not allowed"),
        ("open('/etc/passwd')", "calling `open` is not allowed"),
        ("'abc'.upper()", "calling `'abc'.upper` is not allowed"),
        ("(lambda: 1)()", "calling `lambda: 1` is not allowed"),
        ("lambda: 1", "`lambda` functions are not supported (in `lambda: 1`); expressions may use literals"),
        ("[x for x in [1]]", "list comprehensions are not supported"),
        ("{x for x in [1]}", "set comprehensions are not supported"),
        ("{x: 1 for x in [1]}", "dict comprehensions are not supported"),
        ("sum(x for x in [1])", "generator expressions are not supported"),
        ("(y := 1)", "assignment expressions (`:=`) are not supported"),
        ("f'{count}'", "f-strings are not supported"),
        ("[*tags]", "`*` unpacking is not supported"),
        ("max(*tags)", "`*` unpacking is not supported"),
        ("{**fetch}", "`**` unpacking is not supported"),
        ("~1", "the `~` operator is not supported"),
        ("b'x'", "bytes literals such as `b'x'` are not supported"),
        ("...", "ellipsis literals such as `...` are not supported"),
        ("count.real", "attribute access works only on dicts"),
        ("tags.append", "attribute access works only on dicts"),
        ("import os", "is not a valid expression"),
    ],
)
def test_refuses_everything_outside_the_subset(expression: str, fragment: str) -> None:
    with pytest.raises(SafeEvalError) as info:
        evaluate(expression, OUTPUTS)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("9**9**9", "the result of `9**9**9` would have about 369,693,100 digits; the limit is about 3,010 digits."),
        ("2 ** (10 ** 30)", "would be astronomically large"),
        ("'a' * 10**9", "`'a' * 10**9` would build a `str` of about 1,000,000,000 characters; the limit is 1,000,000."),
        ("10**9 * 'a'", "would build a `str`"),
        ("[0] * 10**7", "would build a `list` of about 10,000,000 items"),
        ("[[0] * 1000] * 2000", "would build a `list` of about 2,002,000 items, nested ones included"),
        ("10**2000 * 10**2000", "would exceed 10,000 bits"),
        ("10 ** 3000 / 1", "the result of `10 ** 3000 / 1` is too large to represent."),
        ("10.0 ** 400", "the result of `10.0 ** 400` is too large to represent."),
        ("exp(1000)", "the result of `exp(1000)` is too large to represent."),
        ("'%0999999999d' % 1", "string formatting with `%` is not supported"),
        ("int('9' * 5000)", "failed: Exceeds the limit (4300 digits)"),
    ],
)
def test_huge_results_fail_fast(expression: str, fragment: str) -> None:
    # Refused before computing (the message gives the size it would have had); how fast the
    # refusal is, is measured by `bench/safe_eval.py`, not asserted here.
    with pytest.raises(SafeEvalError) as info:
        evaluate(expression)
    assert fragment in str(info.value)


def test_size_guards_count_names_too() -> None:
    with pytest.raises(SafeEvalError, match="would build a `str` of about 2,000,000 characters"):
        evaluate("s + s", {"s": "x" * 1_000_000})
    assert evaluate("s * 2", {"s": "ab"}) == "abab"


@pytest.mark.parametrize("expression", ["-" * 5000 + "1", "1" + "+1" * 4000, "[" * 300 + "]" * 300])
def test_deep_nesting_is_a_clean_error(expression: str) -> None:
    with pytest.raises(SafeEvalError, match="nested too deeply|is not a valid expression"):
        evaluate(expression)


def test_overlong_expression_is_refused() -> None:
    with pytest.raises(SafeEvalError, match="the expression is 10,001 characters long; the limit is 10,000."):
        evaluate("1" * 10_001)


def test_multi_line_syntax_error_names_the_line() -> None:
    with pytest.raises(SafeEvalError) as info:
        evaluate("(1 +\n)")
    assert str(info.value).endswith("invalid syntax at line 2, column 1 (`)`).")


def test_parsing_is_cached() -> None:
    from planweave.tools.safe_eval import _parse

    _parse.cache_clear()
    for value in range(3):
        assert evaluate("x > 1", {"x": value}) is (value > 1)
    info = _parse.cache_info()
    assert (info.hits, info.misses) == (2, 1)


def test_public_names() -> None:
    from planweave.tools import safe_eval

    assert sorted(safe_eval.__all__) == [
        'INLINE_WORK', 'MAX_EXPRESSION_CHARS', 'MAX_INT_BITS', 'MAX_ITEMS', 'MAX_SECONDS', 'MAX_WORK',
        'SafeEvalError', 'SizeLimitExceeded', 'WorkLimitExceeded', 'check', 'evaluate', 'evaluate_async',
    ]
