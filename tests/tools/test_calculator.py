import math
from typing import Any

import pytest

from planweave.tools.base import Tool
from planweave.tools.calculator import calculator
from planweave.tools.errors import ToolArgumentsError
from planweave.tools.safe_eval import SafeEvalError


async def calc(expression: Any) -> Any:
    return await calculator.acall({"expression": expression})


def test_is_a_non_blocking_tool_with_a_one_argument_schema() -> None:
    assert isinstance(calculator, Tool)
    assert calculator.name == "calculator"
    assert calculator.blocking is False
    assert calculator.is_async is True
    schema = calculator.json_schema
    assert schema["required"] == ["expression"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["expression"]["type"] == "string"
    assert "(3 + 4) * 2 ** 3" in schema["properties"]["expression"]["description"]
    assert calculator.output_schema == {"anyOf": [{"type": "integer"}, {"type": "number"}]}
    assert "sqrt" in calculator.description and "pi" in calculator.description


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512),
        ("-2 ** 2", -4),
        ("10 - 4 - 3", 3),
        ("2 * 3 / 4", 1.5),
        ("7 // 2 + 7 % 2", 4),
        ("-7 // 2", -4),
        ("sum([1, 2, 3]) / len([1, 2, 3])", 2.0),
        ("max(3, 7) * 2", 14),
        ("round(2 / 3, 4)", 0.6667),
        ("log(1000, 10)", pytest.approx(3.0)),
        ("sqrt(2) ** 2", pytest.approx(2.0)),
        ("floor(pi * 100) / 100", 3.14),
        ("2 ** 200", 2**200),
    ],
)
async def test_precedence_and_functions(expression: str, expected: Any) -> None:
    assert await calc(expression) == expected


@pytest.mark.asyncio
async def test_ints_stay_ints_and_floats_stay_floats() -> None:
    assert type(await calc("6 * 7")) is int
    result = await calc("4 / 2")
    assert result == 2.0 and type(result) is float
    assert type(await calc("sqrt(16)")) is float


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero in `1 / 0`."),
        ("2 +", "`2 +` is not a valid expression: invalid syntax at the end of the expression."),
        ("x * 2", "unknown name `x` in `x * 2`; available names: `e`, `pi`."),
        ("2 > 1", "`2 > 1` is a comparison (True), not a number; the calculator returns numbers "
                  "(put comparisons in a step's `when` condition instead)."),
        ("'a' + 'b'", "`'a' + 'b'` evaluates to a `str`, not a number; the calculator returns numbers only."),
        ("1e308 * 10", "`1e308 * 10` does not give a finite number (got inf); "
                       "check for overflow or an undefined operation."),
    ],
)
async def test_errors_are_permanent_and_name_the_tool(expression: str, message: str) -> None:
    with pytest.raises(SafeEvalError) as info:
        await calc(expression)
    assert str(info.value) == message
    assert info.value.permanent is True
    assert info.value.tool == "calculator"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo pwned')",
        "().__class__.__bases__[0].__subclasses__()",
        "__builtins__['eval']('1')",
        "exec('x = 1')",
        "open('/etc/passwd').read()",
        "(lambda: 1)()",
        "[c for c in ().__class__.__mro__]",
        "getattr(1, 'real')",
        "globals()",
    ],
)
async def test_code_injection_is_refused(expression: str) -> None:
    with pytest.raises(SafeEvalError, match="not allowed|not supported"):
        await calc(expression)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("9 ** 9 ** 9", "would have about 369,693,100 digits"),
        ("10 ** 10 ** 10", "would have about 10,000,000,000 digits"),
        ("2 ** 2 ** 100", "astronomically large"),
        ("(10 ** 2000) * (10 ** 2000)", "would exceed 10,000 bits"),
        ("exp(10 ** 6)", "too large to represent"),
    ],
)
async def test_huge_powers_fail_fast(expression: str, fragment: str) -> None:
    # Refused before computing: an unguarded `9 ** 9 ** 9` would run for minutes instead.
    # How fast the refusal is, is measured by `bench/safe_eval.py`, not asserted here.
    with pytest.raises(SafeEvalError, match=fragment.replace("*", r"\*")):
        await calc(expression)


@pytest.mark.asyncio
async def test_arguments_are_validated() -> None:
    with pytest.raises(ToolArgumentsError, match="`expression` is required"):
        await calculator.acall({})
    with pytest.raises(ToolArgumentsError, match="`precision` is not an argument of this tool"):
        await calculator.acall({"expression": "1", "precision": 2})
    with pytest.raises(ToolArgumentsError, match="`expression`: Input should be a valid string"):
        await calc(12)


async def test_constants() -> None:
    assert await calculator.fn("pi") == math.pi
    assert await calculator.fn("e") == math.e


def test_public_names() -> None:
    from planweave.tools import calculator

    assert sorted(calculator.__all__) == ['calculator']
