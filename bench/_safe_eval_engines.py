"""The two expression evaluators `bench/safe_eval.py` compares, set up alike: same functions, same names."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "min": min, "max": max, "round": round, "len": len, "sum": sum, "int": int, "float": float,
    "str": str, "bool": bool, "sqrt": math.sqrt, "floor": math.floor, "ceil": math.ceil, "log": math.log,
    "exp": math.exp, "sin": math.sin, "cos": math.cos, "tan": math.tan,
}


def make(engine: str, names: dict[str, Any]) -> Callable[[str], Any]:
    """`evaluate(expression)` for `engine` ("planweave" or "simpleeval"), with `names` bound."""
    if engine == "planweave":
        from planweave.tools.safe_eval import evaluate

        return lambda expression: evaluate(expression, names)
    from simpleeval import EvalWithCompoundTypes

    evaluator = EvalWithCompoundTypes(functions=FUNCTIONS, names={"pi": math.pi, "e": math.e, **names})
    return evaluator.eval  # type: ignore[no-any-return]


def make_preparsed(expression: str, names: dict[str, Any]) -> Callable[[str], Any]:
    """simpleeval with `expression` parsed once, as a caller that caches the tree would use it."""
    from simpleeval import EvalWithCompoundTypes

    evaluator = EvalWithCompoundTypes(functions=FUNCTIONS, names={"pi": math.pi, "e": math.e, **names})
    tree = evaluator.parse(expression)
    return lambda text: evaluator.eval(text, previously_parsed=tree)
