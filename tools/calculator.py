"""`calculator`: arithmetic for plans, on top of `planweave.tools.safe_eval`."""

from __future__ import annotations

import math

from planweave.tools.base import tool
from planweave.tools.safe_eval import SafeEvalError, evaluate_async

__all__ = ["calculator"]


@tool(blocking=False)  # inline while cheap; `evaluate_async` moves heavy expressions to a thread itself
async def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression and return the number.

    Python syntax: `+ - * / // % **` and parentheses with the usual precedence
    (`**` binds tightest and is right-associative, `/` always gives a float,
    `//` rounds down, `%` takes the sign of the divisor). Functions: abs, min,
    max, round, sum, len, int, float, sqrt, floor, ceil, exp, log(x) (natural),
    log(x, base), and sin, cos, tan (radians). Constants: pi, e. Lists may be
    passed to functions, as in `sum([1, 2, 3])`. Integers are exact and stay
    integers; very large results (over about 3,000 digits) are refused.

    Args:
        expression: The expression, e.g. `(3 + 4) * 2 ** 3` or `round(log(1000, 10) / 7, 3)`.
    """
    try:
        result = await evaluate_async(expression)
        if isinstance(result, bool):
            raise SafeEvalError(
                f"`{expression}` is a comparison ({result}), not a number; the calculator returns "
                "numbers (put comparisons in a step's `when` condition instead).",
                expression=expression,
            )
        if not isinstance(result, (int, float)):
            raise SafeEvalError(
                f"`{expression}` evaluates to a `{type(result).__name__}`, not a number; "
                "the calculator returns numbers only.",
                expression=expression,
            )
        if isinstance(result, float) and not math.isfinite(result):
            # inf and nan are not valid JSON, and are never the answer the plan wanted.
            raise SafeEvalError(
                f"`{expression}` does not give a finite number (got {result}); "
                "check for overflow or an undefined operation.",
                expression=expression,
            )
    except SafeEvalError as exc:
        exc.tool = "calculator"
        raise
    return result
