"""Evaluate small Python-syntax expressions without `eval`.

    >>> evaluate("price * (1 + vat)", {"price": 100, "vat": 0.25})
    125.0
    >>> evaluate("fetch.status == 200 and 'error' not in fetch.text", {"fetch": {"status": 200, "text": "ok"}})
    True

The expression is parsed with `ast.parse`, checked whole, and every node is
interpreted here, so only the constructs listed below can ever run; nothing
reaches `eval`, `exec` or a compiled code object. The executor uses this for
step conditions (`when`), with `names` bound to step outputs, and the
`calculator` tool uses it with no names at all. `check` validates an expression
without evaluating it, for use while a plan is built.

Supported:

- literals: int, float, str, `True`, `False`, `None`; list, tuple, dict and set displays
- arithmetic `+ - * / // % **`, unary `-`, `+` and `not`
- comparisons, chained ones too (`0 < x <= 10`), `in` / `not in`, `is None` / `is not None`
- `and`, `or`, and the conditional `a if cond else b`
- names from `names`, then the constants `pi` and `e`
- subscripts and slices (`x[0]`, `x['key']`, `x[1:3]`), and `x.key` as a shorthand for `x['key']` on dicts
- calls to abs, min, max, round, len, sum, int, float, str, bool, sqrt, floor, ceil,
  log (`log(x)` natural, `log(x, base)`), exp, sin, cos, tan

Anything else (other calls, methods, lambdas, comprehensions, f-strings, bitwise
operators, attributes of non-dicts, any name or attribute starting with `__`)
raises `SafeEvalError`, as does every run-time failure (division by zero, a
missing key, a type mismatch). Results are bounded so that `9**9**9` or
`'a' * 10**9` fail at once instead of exhausting memory: every intermediate value,
whatever operation or function produces it, is an integer of at most `MAX_INT_BITS` bits
or a string or list of at most `MAX_ITEMS` items, checked before it is built where it
could be large. Time is bounded too: each operation is charged for the elements it
touches (comparisons, `in`, `str(...)`, sums, copies, big-integer arithmetic), and one
evaluation may do at most `MAX_WORK` units of work and run `MAX_SECONDS`.

On the event loop, use `evaluate_async`: it evaluates inline while the work stays under
`INLINE_WORK` (about a millisecond; every typical condition), and otherwise starts over in
a worker thread, so a heavy expression never stalls the loop.

Why not simpleeval: `bench/safe_eval.py` runs both on 24 adversarial expressions, each in a
fresh process with 1 GiB and 10 s (simpleeval 1.0.8 as `EvalWithCompoundTypes` with the same
functions). This module refuses all 24, each with a `SafeEvalError` in about a millisecond.
simpleeval refuses 18: `10**3999999 // 7**3999999` runs until killed (its `MAX_POWER` bounds
an exponent, not a result), `(10**3999999) ** 2` takes 3-4 s before it is refused,
`[[0] * 1000] * 2000` builds two million items (1.4 s), and method calls and attributes of
non-dicts (`'abc'.upper()`, `count.real`, `tags.append`) are allowed; its refusals are a
dozen exception types (`RecursionError`, `ValueError`, `NumberTooHigh`, ...) whose messages
do not say the fix, where the planner needs one error type whose message it can act on. It
is also slower: 5.9x this module per condition as its README uses it (`simple_eval`, which
parses every call) and 1.7x with the expression parsed once (4.5-8.6 µs here against
19-50 µs and 4.3-18 µs; 2 shared cores, so ratios matter more than the µs). So this module
stays, and planweave does not depend on simpleeval.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import functools
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NoReturn

from planweave.tools.errors import ToolError

__all__ = [
    "INLINE_WORK",
    "MAX_EXPRESSION_CHARS",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_SECONDS",
    "MAX_WORK",
    "SafeEvalError",
    "SizeLimitExceeded",
    "WorkLimitExceeded",
    "check",
    "evaluate",
    "evaluate_async",
]

MAX_EXPRESSION_CHARS: Final = 10_000
"""Longest expression accepted, in characters."""
MAX_INT_BITS: Final = 10_000
"""Largest integer `*` and `**` may produce (about 3,000 decimal digits, still printable)."""
MAX_ITEMS: Final = 1_000_000
"""Largest string (characters) or list/tuple (items, nested ones counted too) any operation may produce."""
MAX_WORK: Final = 50_000_000
"""Most work one evaluation may do, in units of about one element touched in C (a few ns)."""
INLINE_WORK: Final = 200_000
"""Work `evaluate_async` (and the executor's conditions) allow on the event loop before moving to a thread."""
MAX_SECONDS: Final = 5.0
"""Longest one evaluation may run, whatever its work count says."""


class SafeEvalError(ToolError):
    """An expression cannot be evaluated: bad syntax, a construct outside the safe subset,
    or a run-time failure such as division by zero. Always permanent: the same
    expression fails the same way every time.

    `expression` holds the whole expression; the message quotes the part at fault.
    """

    permanent = True

    def __init__(self, message: str, *, expression: str, tool: str | None = None) -> None:
        super().__init__(message, tool=tool)
        self.expression = expression


class SizeLimitExceeded(SafeEvalError):
    """A value the expression would build is larger than `MAX_INT_BITS` or `MAX_ITEMS`."""


class WorkLimitExceeded(SafeEvalError):
    """The expression needs more work (or time) than its budget: `limit` units of work.

    Below `MAX_WORK` this is the signal to start over in a worker thread with the full budget
    (`evaluate_async` and the executor's conditions do); at `MAX_WORK` it is final.
    """

    def __init__(self, message: str, *, expression: str, limit: int, tool: str | None = None) -> None:
        super().__init__(message, expression=expression, tool=tool)
        self.limit = limit


def _log(x: Any, base: Any = None) -> float:
    # math.log(x, None) is a TypeError, so the one-argument form needs its own call.
    return math.log(x) if base is None else math.log(x, base)


def _sum(values: Iterable[Any], start: Any = 0) -> Any:
    # Builtin sum also concatenates lists (`sum(lists, [])`), which could build
    # arbitrarily large results; numbers only keeps it bounded.
    items = list(values)
    kinds = set(map(type, items))  # at C speed: lists of a million numbers are legal
    kinds.add(type(start))
    if not kinds <= {int, float}:
        odd = next(kind for kind in (*kinds - {int, float},))
        raise TypeError(f"sum adds numbers only, got a `{odd.__name__}`")
    return sum(items, start)


def _round(x: Any, ndigits: Any = None) -> Any:
    # `round(1, -10**8)` computes 10**(10**8) inside CPython. No bounded value has more than a few
    # thousand digits, so clamping `ndigits` changes no result and bounds the work.
    if isinstance(ndigits, int) and not isinstance(ndigits, bool):
        ndigits = max(-_ROUND_DIGITS, min(_ROUND_DIGITS, ndigits))
    return round(x) if ndigits is None else round(x, ndigits)


_ROUND_DIGITS: Final = 5_000


_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": _round,
    "len": len,
    "sum": _sum,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": _log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS: Final[dict[str, float]] = {"pi": math.pi, "e": math.e}

_ALLOWED: Final = (
    "expressions may use literals, `+ - * / // % **`, comparisons, `and`/`or`/`not`, "
    "`a if cond else b`, names, `x[i]`, `x.key` on dicts, and the functions "
    + ", ".join(_FUNCTIONS)
)

_BINARY: Final[dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
}
_UNSUPPORTED_BINARY: Final[dict[type[ast.operator], str]] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}
_COMPARE: Final[dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
}
_UNSUPPORTED_NODES: Final[dict[type[ast.AST], str]] = {
    ast.Lambda: "`lambda` functions are",
    ast.ListComp: "list comprehensions are",
    ast.SetComp: "set comprehensions are",
    ast.DictComp: "dict comprehensions are",
    ast.GeneratorExp: "generator expressions are",
    ast.NamedExpr: "assignment expressions (`:=`) are",
    ast.JoinedStr: "f-strings are",
    ast.Await: "`await` is",
    ast.Yield: "`yield` is",
    ast.YieldFrom: "`yield from` is",
    ast.Starred: "`*` unpacking is",
    ast.Slice: "slices outside `[...]` are",
}


def evaluate(
    expression: str,
    names: Mapping[str, Any] | None = None,
    *,
    work_limit: int = MAX_WORK,
    time_limit_s: float = MAX_SECONDS,
) -> Any:
    """Evaluate `expression` safely and return its value, in the calling thread.

    Args:
        expression: A Python expression in the subset described in this module's
            docstring, e.g. `"fetch.status == 200 and len(items) > 0"`.
        names: Values the expression may refer to by name. They shadow the
            constants `pi` and `e`; function names stay callable either way.
        work_limit: Most units of work allowed (see `MAX_WORK`).
        time_limit_s: Most seconds allowed.

    Raises:
        WorkLimitExceeded: when the work or the time runs out.
        SafeEvalError: for a syntax error, a construct outside the subset, an
            unknown name, or a run-time failure; the message quotes the part at fault.
    """
    source = expression.strip()
    tree = _parse(source)
    try:
        return _Evaluator(source, names or {}, work_limit, time_limit_s).eval(tree)
    except RecursionError:
        raise SafeEvalError(
            f"`{_clip(source)}` is nested too deeply to evaluate; split it into simpler expressions.",
            expression=source,
        ) from None


async def evaluate_async(
    expression: str,
    names: Mapping[str, Any] | None = None,
    *,
    work_limit: int = MAX_WORK,
    time_limit_s: float = MAX_SECONDS,
) -> Any:
    """`evaluate` without stalling the event loop: inline while cheap, else in a worker thread.

    The inline attempt stops after `INLINE_WORK` units (about a millisecond); an expression
    that needs more starts over in a thread with `work_limit` and `time_limit_s`, so other
    tasks keep running meanwhile. Same results and errors as `evaluate`.
    """
    try:
        return evaluate(expression, names, work_limit=min(work_limit, INLINE_WORK), time_limit_s=time_limit_s)
    except WorkLimitExceeded:
        if work_limit <= INLINE_WORK:
            raise
    return await asyncio.get_running_loop().run_in_executor(
        _pool(), functools.partial(evaluate, expression, names, work_limit=work_limit, time_limit_s=time_limit_s)
    )


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads of their own: heavy expressions must not queue behind blocking tools (or starve them)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="planweave-eval")
        return _POOL


def check(expression: str, names: Iterable[str] | None = None) -> None:
    """Check `expression` without evaluating it, so mistakes surface while a plan is built.

    Args:
        expression: The expression, as it will be passed to `evaluate`.
        names: The names that will be available. When given, any other name
            (except the constants) is an error too; when None, names are not checked.

    Raises:
        SafeEvalError: for a syntax error or a construct outside the subset,
            anywhere in the expression (also in branches that would not run), or
            for an unknown name; the same messages `evaluate` would give. Parts
            that use no names are evaluated (on a small work budget), so
            `x > 9**9**9` fails here as it would when run.
    """
    source = expression.strip()
    tree = _parse(source)
    known = set(names) if names is not None else None
    _check_constants(source, frozenset(known) if known is not None else None)
    if known is None:
        return
    checker = _Evaluator(source, dict.fromkeys(known))
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in called:
            checker.name(node)  # returns for a known name, raises the unknown-name message otherwise


@functools.lru_cache(maxsize=512)
def _check_constants(source: str, names: frozenset[str] | None) -> None:
    """Evaluate each largest part of the expression that uses no names: it fails the same way every time."""
    tree = _parse(source)
    order: list[ast.AST] = [tree]
    for node in order:  # breadth first: parents before children
        order.extend(ast.iter_child_nodes(node))
    variable: set[int] = set()  # ids of nodes that use a name, or hold one that does
    called = {id(node.func) for node in order if isinstance(node, ast.Call)}
    for node in reversed(order):
        if isinstance(node, ast.Name) and id(node) not in called:
            if node.id not in _CONSTANTS or (names is not None and node.id in names) or names is None:
                variable.add(id(node))
        elif any(id(child) in variable for child in ast.iter_child_nodes(node)):
            variable.add(id(node))
    evaluator = _Evaluator(source, {}, INLINE_WORK)
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if id(node) in variable or type(node) not in _HANDLERS:
            stack.extend(ast.iter_child_nodes(node))
            continue
        if isinstance(node, (ast.Constant, ast.Name)):
            continue
        try:
            evaluator.eval(node)  # a largest part without names: its parent uses one, or it is the whole
        except SafeEvalError as exc:
            if not isinstance(exc, (SizeLimitExceeded, WorkLimitExceeded)):
                continue  # e.g. division by zero: a run-time matter, the branch may never run
            if isinstance(exc, SizeLimitExceeded):
                raise
            raise SafeEvalError(
                f"`{evaluator.seg(node)}` is too much work for an expression (more than "
                f"{INLINE_WORK:,} units); use smaller values.",
                expression=source,
            ) from None
        except RecursionError:
            pass  # `evaluate` reports deep nesting itself


@functools.lru_cache(maxsize=512)
def _parse(source: str) -> ast.expr:
    """Parse and validate once per distinct expression: the executor re-checks the same `when` often."""
    if not source:
        raise SafeEvalError("the expression is empty; write one such as `x > 0`.", expression=source)
    if len(source) > MAX_EXPRESSION_CHARS:
        raise SafeEvalError(
            f"the expression is {len(source):,} characters long; the limit is {MAX_EXPRESSION_CHARS:,}.",
            expression=source,
        )
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        lines = source.splitlines() or [""]
        lineno = min(max(exc.lineno or 1, 1), len(lines))
        line, column = lines[lineno - 1], exc.offset or 0
        if 1 <= column <= len(line):
            where = f"column {column} (`{_clip(line[column - 1 :], 20)}`)"
        else:  # Python reports errors at the end of the input as column 0 or len + 1
            where = "the end of the expression" if lineno == len(lines) else f"the end of line {lineno}"
            lineno = 1
        if len(lines) > 1 and lineno > 1:
            where = f"line {lineno}, {where}"
        raise SafeEvalError(
            f"`{_clip(source)}` is not a valid expression: {exc.msg} at {where}.", expression=source
        ) from None
    except RecursionError:
        raise SafeEvalError(
            f"`{_clip(source)}` is nested too deeply to evaluate; split it into simpler expressions.",
            expression=source,
        ) from None
    except ValueError as exc:  # e.g. a NUL character
        raise SafeEvalError(f"`{_clip(source)}` cannot be parsed: {exc}.", expression=source) from None
    _Evaluator(source, {}).validate(tree)
    return tree


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _a(value: Any) -> str:
    """`value`'s type with its article, for messages: "an `int`", "a `str`"."""
    name = _type(value)
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} `{name}`"


def _sized(value: Any, size: int) -> str:
    unit = "characters" if isinstance(value, str) else "items, nested ones included"
    return f"{_a(value)} of about {size:,} {unit}"


def _listing(items: Iterable[Any], limit: int = 20) -> str:
    shown = [f"`{item}`" for item in items]
    if not shown:
        return "(none)"
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def _int_size(value: int) -> int:
    """An integer's size in the units of `MAX_ITEMS`: about its decimal digits (1 for a small one)."""
    bits = value.bit_length()
    return 1 if bits <= 64 else bits // 3


_NUMBERS: Final = frozenset({int, float, bool})
_LEAVES: Final = frozenset({float, bool, type(None)})
_INTS: Final = frozenset({int, bool})
_STRS: Final = frozenset({str})
_TWO_STRS: Final = (str, str)
_CONSTANT_TIME: Final = frozenset({"len", "bool"})
"""Functions whose cost does not depend on their argument's size."""
_WALK_COST: Final = 8
"""Work units per element `_Evaluator.size` visits: a Python loop step costs about 8 C-level touches."""
_CLOCK_EVERY: Final = 1_000_000
"""Work units between two looks at the clock (cheap enough, and often enough to stop within the limit)."""


class _Evaluator:
    """One evaluation: the source (to quote the part at fault) and the names in scope.

    `validate` runs once per distinct expression (from the cached `_parse`) and
    refuses every construct outside the subset; the evaluation methods then only
    meet trees it accepted, so they deal with values, not with syntax.
    """

    __slots__ = ("source", "names", "work", "limit", "clock_at", "deadline", "sizes")

    def __init__(
        self, source: str, names: Mapping[str, Any], limit: int = MAX_WORK, time_limit_s: float = MAX_SECONDS
    ) -> None:
        self.source = source
        self.names = names
        self.work = 0
        self.limit = limit
        self.clock_at = _CLOCK_EVERY
        self.deadline = time_limit_s
        """Seconds allowed, until the first look at the clock (after `_CLOCK_EVERY` units, a
        millisecond or so) makes it a deadline: the common, cheap case never reads the clock."""
        self.sizes: dict[int, tuple[Any, int]] = {}
        """`size` of the containers measured so far, by id (the value is kept so its id stays unique)."""

    # -- helpers -------------------------------------------------------------

    def fail(self, message: str) -> NoReturn:
        raise SafeEvalError(message, expression=self.source)

    def too_large(self, message: str) -> NoReturn:
        raise SizeLimitExceeded(message, expression=self.source)

    def seg(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.source, node) or ast.unparse(node)
        return _clip(" ".join(text.split()))

    # -- bounds: work (time) and size ----------------------------------------------

    def charge(self, units: int) -> None:
        """Count `units` of work before doing it; refuse once past the limit or the deadline."""
        self.work += units
        if self.work > self.limit:
            raise WorkLimitExceeded(
                f"`{_clip(self.source)}` needs more than {self.limit:,} units of work "
                "(elements compared, copied or converted); simplify it or work on smaller values.",
                expression=self.source,
                limit=self.limit,
            )
        if self.work >= self.clock_at:
            now = time.monotonic()
            if self.clock_at == _CLOCK_EVERY:
                self.deadline += now
            self.clock_at = self.work + _CLOCK_EVERY
            if now > self.deadline:
                raise WorkLimitExceeded(
                    f"`{_clip(self.source)}` took too long to evaluate; simplify it or work on smaller values.",
                    expression=self.source,
                    limit=self.limit,
                )

    def size(self, value: Any) -> int:
        """`value`'s size in the units of `MAX_ITEMS`: characters of a string, items of a container
        (nested ones counted each time they appear, so a shared list counts as often as it is
        referenced), digits of a big integer. Walking a container is charged as work."""
        kind = type(value)
        if kind is str:
            return len(value)
        if kind is int:
            return _int_size(value)
        if kind in _LEAVES:
            return 1
        known = self.sizes.get(id(value))
        if known is not None:
            return known[1]
        total = visited = 0
        room = self.limit - self.work + 1
        stack = [value]
        while stack and total <= MAX_ITEMS and visited <= room:
            item = stack.pop()
            kind = type(item)
            if kind is str or kind is bytes:
                total += len(item)
            elif kind is int:
                total += _int_size(item) - 1  # a small one is counted by its container's length
            elif isinstance(item, Mapping):
                total += len(item)
                visited += len(item) * 2 * _WALK_COST
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, (list, tuple, set, frozenset)):
                total += len(item)
                if len(item) < 32:
                    visited += len(item) * _WALK_COST
                    stack.extend(item)
                    continue
                # Long homogeneous lists are measured at C speed (map/set/max, a few units an item).
                visited += len(item) * 2
                types = set(map(type, item))
                if types <= _LEAVES:
                    continue
                if types <= _INTS and max(map(int.bit_length, item)) <= 64:
                    continue
                if types == _STRS:
                    total += sum(map(len, item))
                    continue
                visited += len(item) * _WALK_COST
                stack.extend(item)
        self.charge(visited)
        self.sizes[id(value)] = (value, total)
        return total

    def cost(self, value: Any) -> int:
        """Work units to scan `value` once: strings are scanned at memchr speed, about 8 characters a unit."""
        if type(value) is str:
            return len(value) // 8 + 1
        return self.size(value)

    def bounded(self, node: ast.AST, value: Any) -> Any:
        """`value`, if within the size limits; every new value an operation or call builds passes here."""
        kind = type(value)
        if kind is int:
            if value.bit_length() > MAX_INT_BITS:
                self.too_large(
                    f"the result of `{self.seg(node)}` has {value.bit_length():,} bits; "
                    f"integers are limited to {MAX_INT_BITS:,} bits (about "
                    f"{int(MAX_INT_BITS * math.log10(2)):,} digits)."
                )
        elif kind is str or kind is list or kind is tuple:
            size = self.size(value)
            if size > MAX_ITEMS:
                self.too_large(f"`{self.seg(node)}` built {_sized(value, size)}; the limit is {MAX_ITEMS:,}.")
        return value

    # -- validation (structure only, before any value exists) -------------------

    def validate(self, tree: ast.expr) -> None:
        """Refuse anything outside the subset, anywhere, even in a branch that would not run."""
        stack: list[ast.expr] = [tree]  # explicit stack: deep trees must not recurse
        while stack:
            stack.extend(reversed(self.validate_node(stack.pop())))

    def validate_node(self, node: ast.expr) -> list[ast.expr]:
        """Check `node` itself and return the sub-expressions still to check."""
        if isinstance(node, ast.Subscript):
            part = node.slice
            if isinstance(part, ast.Slice):  # a slice is only valid here, inside `[...]`
                return [node.value, *(p for p in (part.lower, part.upper, part.step) if p is not None)]
            return [node.value, part]
        if type(node) not in _HANDLERS:
            what = _UNSUPPORTED_NODES.get(type(node), f"`{type(node).__name__}` expressions are")
            self.fail(f"{what} not supported (in `{self.seg(node)}`); {_ALLOWED}.")
        if isinstance(node, ast.Constant):
            value = node.value
            if not (value is None or isinstance(value, (bool, int, float, str))):
                kind = {complex: "complex number", bytes: "bytes"}.get(type(value), type(value).__name__)
                self.fail(
                    f"{kind} literals such as `{self.seg(node)}` are not supported; "
                    "use numbers, strings, True, False or None."
                )
        elif isinstance(node, ast.Name) and node.id.startswith("__"):
            self.fail(f"`{node.id}`: names starting with `__` are not allowed; {_ALLOWED}.")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            self.fail(f"`{self.seg(node)}`: attributes starting with `__` are not allowed; {_ALLOWED}.")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            self.fail(f"the `~` operator is not supported (in `{self.seg(node)}`); {_ALLOWED}.")
        elif isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
            symbol = _UNSUPPORTED_BINARY.get(type(node.op), type(node.op).__name__)
            self.fail(
                f"the `{symbol}` operator is not supported (in `{self.seg(node)}`); "
                "arithmetic uses `+ - * / // % **`."
            )
        elif isinstance(node, ast.Compare):
            lefts = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, lefts, node.comparators):
                if isinstance(op, (ast.Is, ast.IsNot)) and not (_is_none(left) or _is_none(right)):
                    self.fail(
                        f"`{_COMPARE[type(op)][0]}` only compares with `None` (in `{self.seg(node)}`); "
                        "use `==` or `!=` to compare values."
                    )
        elif isinstance(node, ast.Dict) and any(key is None for key in node.keys):
            self.fail(f"`**` unpacking is not supported (in `{self.seg(node)}`); {_ALLOWED}.")
        elif isinstance(node, ast.Call):
            func = node.func
            if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS:
                self.fail(
                    f"calling `{self.seg(func)}` is not allowed; the available functions are {', '.join(_FUNCTIONS)}."
                )
            if node.keywords:
                self.fail(
                    f"keyword arguments are not supported (in `{self.seg(node)}`); "
                    "pass arguments by position, e.g. `round(x, 2)`."
                )
            if any(isinstance(arg, ast.Starred) for arg in node.args):
                self.fail(f"`*` unpacking is not supported (in `{self.seg(node)}`); pass arguments one by one.")
            return list(node.args)  # not `func`: a function name is not a value
        return [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]

    # -- evaluation ------------------------------------------------------------

    def eval(self, node: ast.AST) -> Any:
        return _HANDLERS[type(node)](self, node)

    def constant(self, node: ast.Constant) -> Any:
        return node.value

    def name(self, node: ast.Name) -> Any:
        name = node.id
        if name in self.names:
            return self.names[name]
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in _FUNCTIONS:
            self.fail(f"`{name}` is a function; call it, e.g. `{name}(x)`.")
        if name in ("true", "false", "null", "none"):
            self.fail(f"unknown name `{name}`; write `True`, `False` or `None` (Python spelling).")
        available = sorted({*self.names, *_CONSTANTS})
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        where = f" in `{_clip(self.source)}`" if self.source != name else ""
        self.fail(f"unknown name `{name}`{where}; available names: {_listing(available)}.{hint}")

    def unary(self, node: ast.UnaryOp) -> Any:
        operand = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        symbol, op = ("-", operator.neg) if isinstance(node.op, ast.USub) else ("+", operator.pos)
        try:
            result = op(operand)
        except TypeError:
            self.fail(f"cannot apply unary `{symbol}` to {_a(operand)} in `{self.seg(node)}`.")
        return self.bounded(node, result) if type(result) is int else result

    def binary(self, node: ast.BinOp) -> Any:
        symbol, op = _BINARY[type(node.op)]
        left = self.eval(node.left)
        right = self.eval(node.right)
        if type(left) in _NUMBERS and type(right) in _NUMBERS:
            if type(left) is int and type(right) is int:
                self.check_ints(node, left, right)
        else:
            size = self.check_size(node, left, right)
            if size is not None:
                result = op(left, right)  # cannot fail: a str, list or tuple `*` or `+` of the right types
                self.sizes[id(result)] = (result, size)  # measured, so later uses need not walk it
                return result
        try:
            result = op(left, right)
        except ZeroDivisionError:
            self.fail(f"division by zero in `{self.seg(node)}`.")
        except OverflowError:
            self.fail(f"the result of `{self.seg(node)}` is too large to represent.")
        except TypeError:
            self.fail(f"cannot apply `{symbol}` to {_a(left)} and {_a(right)} in `{self.seg(node)}`.")
        except (ArithmeticError, ValueError) as exc:
            self.fail(f"`{self.seg(node)}` failed: {exc}.")
        if isinstance(result, complex):
            self.fail(f"`{self.seg(node)}` gives a complex number; only real numbers are supported.")
        return self.bounded(node, result)

    def check_ints(self, node: ast.BinOp, left: int, right: int) -> None:
        """Refuse integer arithmetic whose result would be huge, before computing it; charge big ones."""
        op = node.op
        lbits, rbits = left.bit_length(), right.bit_length()
        if lbits > 64 or rbits > 64:
            self.charge((lbits + rbits) // 16)
        if isinstance(op, ast.Pow) and right > 0 and abs(left) > 1:
            if right.bit_length() > 64:
                self.too_large(
                    f"the result of `{self.seg(node)}` would be astronomically large; "
                    f"integers are limited to {MAX_INT_BITS:,} bits."
                )
            bits = right * math.log2(abs(left))
            if bits > MAX_INT_BITS:
                digits = right * math.log10(abs(left))
                self.too_large(
                    f"the result of `{self.seg(node)}` would have about {digits:,.0f} digits; "
                    f"the limit is about {int(MAX_INT_BITS * math.log10(2)):,} digits."
                )
            self.charge(int(bits) // 16)
        elif isinstance(op, ast.Mult) and lbits + rbits > MAX_INT_BITS:
            self.too_large(f"the result of `{self.seg(node)}` would exceed {MAX_INT_BITS:,} bits.")

    def check_size(self, node: ast.BinOp, left: Any, right: Any) -> int | None:
        """Refuse operations on strings and containers whose result would be huge, before
        computing them, and charge the elements they touch. Returns the size of a sequence
        that `*` or `+` will build."""
        op = node.op
        if isinstance(op, ast.Mult):
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                size = self.size(sequence) * max(count, 0)
                if size > MAX_ITEMS:
                    self.too_large(f"`{self.seg(node)}` would build {_sized(sequence, size)}; the limit is {MAX_ITEMS:,}.")
                self.charge(len(sequence) * max(count, 0) // (8 if isinstance(sequence, str) else 1) + 1)
                return size
        elif isinstance(op, ast.Add) and isinstance(left, (str, list, tuple)) and type(left) is type(right):
            size = self.size(left) + self.size(right)
            if size > MAX_ITEMS:
                self.too_large(f"`{self.seg(node)}` would build {_sized(left, size)}; the limit is {MAX_ITEMS:,}.")
            self.charge((len(left) + len(right)) // (8 if isinstance(left, str) else 1) + 1)
            return size
        elif isinstance(op, ast.Mod) and isinstance(left, str):
            # printf-style formatting can pad to any width (`'%099999999d' % 1`).
            self.too_large(
                f"string formatting with `%` is not supported (in `{self.seg(node)}`); "
                "join strings with `+` and `str(...)`."
            )
        self.charge(self.cost(left) + self.cost(right))
        return None

    def boolean(self, node: ast.BoolOp) -> Any:
        # Python semantics: short-circuit and return the deciding operand.
        want = isinstance(node.op, ast.Or)
        value: Any = None
        for operand in node.values:
            value = self.eval(operand)
            if bool(value) is want:
                return value
        return value

    def compare(self, node: ast.Compare) -> Any:
        left = self.eval(node.left)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators):
            symbol, func = _COMPARE[type(op)]
            right = self.eval(right_node)
            kinds = (type(left), type(right))
            if kinds == _TWO_STRS:
                if len(left) + len(right) > 4096:  # short strings cost less than counting them would
                    self.charge((len(left) + len(right)) >> 3)
            elif kinds[0] not in _NUMBERS or kinds[1] not in _NUMBERS:
                self.charge(self.cost(left) + self.cost(right))
            try:
                result = func(left, right)
            except TypeError:
                if isinstance(op, (ast.In, ast.NotIn)):
                    self.fail(
                        f"`{symbol}` needs a string, list, tuple, set or dict on its right, "
                        f"not {_a(right)} (in `{self.seg(node)}`)."
                    )
                self.fail(f"cannot compare {_a(left)} with {_a(right)} using `{symbol}` in `{self.seg(node)}`.")
            if not result:
                return result
            left = right
        return result

    def conditional(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    # -- containers and access -------------------------------------------------

    def list_(self, node: ast.List) -> list[Any]:
        return [self.eval(item) for item in node.elts]

    def tuple_(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.eval(item) for item in node.elts)

    def set_(self, node: ast.Set) -> set[Any]:
        items = [self.eval(item) for item in node.elts]
        self.charge_keys(items)
        try:
            return set(items)
        except TypeError as exc:
            self.fail(f"`{self.seg(node)}`: set items must be hashable ({exc}).")

    def dict_(self, node: ast.Dict) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values):
            assert key_node is not None  # `**` unpacking was refused by `validate`
            key = self.eval(key_node)
            value = self.eval(value_node)
            self.charge_keys((key,))
            try:
                result[key] = value
            except TypeError as exc:
                self.fail(f"`{self.seg(key_node)}` cannot be a dict key ({exc}).")
        return result

    def charge_keys(self, keys: Iterable[Any]) -> None:
        """Hashing a tuple or a long string touches all of it."""
        for key in keys:
            if type(key) is tuple or type(key) is str:
                self.charge(self.cost(key))

    def subscript(self, node: ast.Subscript) -> Any:
        container = self.eval(node.value)
        if isinstance(node.slice, ast.Slice):
            return self.slice(node, container, node.slice)
        key = self.eval(node.slice)
        if type(key) is tuple or (type(key) is str and len(key) > 4096):  # hashing it touches all of it
            self.charge(self.cost(key))
        if isinstance(container, Mapping):
            try:
                return container[key]
            except KeyError:
                self.fail(
                    f"key {key!r} is not in `{self.seg(node.value)}` (in `{self.seg(node)}`); "
                    f"available keys: {_listing(repr(k) for k in container)}."
                )
            except TypeError as exc:
                self.fail(f"`{self.seg(node)}`: {exc}.")
        if isinstance(container, Sequence):
            if isinstance(key, bool) or not isinstance(key, int):
                self.fail(
                    f"{_a(container)} index must be an integer, not {_a(key)} (in `{self.seg(node)}`)."
                )
            try:
                return container[key]
            except IndexError:
                self.fail(
                    f"index {key} is out of range in `{self.seg(node)}`: "
                    f"`{self.seg(node.value)}` has {len(container)} items."
                )
        self.fail(
            f"cannot index {_a(container)} (in `{self.seg(node)}`); "
            "only dicts, lists, tuples and strings can be indexed."
        )

    def slice(self, node: ast.Subscript, container: Any, spec: ast.Slice) -> Any:
        if isinstance(container, Mapping) or not isinstance(container, Sequence):
            self.fail(
                f"cannot slice {_a(container)} (in `{self.seg(node)}`); only lists, tuples and strings can be sliced."
            )
        bounds = [None if part is None else self.eval(part) for part in (spec.lower, spec.upper, spec.step)]
        for bound in bounds:
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                self.fail(f"slice bounds must be integers, not {_a(bound)} (in `{self.seg(node)}`).")
        if bounds[2] == 0:
            self.fail(f"the slice step cannot be zero (in `{self.seg(node)}`).")
        part = slice(*bounds)
        self.charge(len(range(*part.indices(len(container)))) + 1)
        return container[part]

    def attribute(self, node: ast.Attribute) -> Any:
        attr = node.attr
        value = self.eval(node.value)
        if isinstance(value, Mapping):
            if attr in value:
                return value[attr]
            self.fail(
                f"`{self.seg(node.value)}` has no key `{attr}` (in `{self.seg(node)}`); "
                f"available keys: {_listing(value)}."
            )
        self.fail(
            f"`{self.seg(node)}`: attribute access works only on dicts (`x.key` means `x['key']`), "
            f"and `{self.seg(node.value)}` is {_a(value)}."
        )

    def call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)  # `validate` allows calls to listed functions only
        args = [self.eval(arg) for arg in node.args]
        name = node.func.id
        if name not in _CONSTANT_TIME:
            for arg in args:
                kind = type(arg)
                if kind is int:
                    if arg.bit_length() > 64:
                        self.charge(arg.bit_length() // 16)
                elif kind is not float and kind is not bool:
                    self.charge(self.cost(arg))
        if name == "str" and len(args) == 1 and type(args[0]) not in (str, float, bool):
            # repr of a container or big integer is several characters per unit of size, and
            # int -> str is quadratic in the digits: check before building it.
            size = self.size(args[0])
            if size > MAX_ITEMS:
                self.too_large(f"`{self.seg(node)}` would build a `str` of more than {MAX_ITEMS:,} characters.")
            self.charge(size * 4)
        try:
            result = _FUNCTIONS[name](*args)
            return result if type(result) is float else self.bounded(node, result)
        except ZeroDivisionError:
            self.fail(f"division by zero in `{self.seg(node)}`.")
        except OverflowError:
            self.fail(f"the result of `{self.seg(node)}` is too large to represent.")
        except (TypeError, ValueError) as exc:
            self.fail(f"`{self.seg(node)}` failed: {exc}.")


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


_HANDLERS: Final[dict[type[ast.AST], Callable[[_Evaluator, Any], Any]]] = {
    ast.Constant: _Evaluator.constant,
    ast.Name: _Evaluator.name,
    ast.UnaryOp: _Evaluator.unary,
    ast.BinOp: _Evaluator.binary,
    ast.BoolOp: _Evaluator.boolean,
    ast.Compare: _Evaluator.compare,
    ast.IfExp: _Evaluator.conditional,
    ast.List: _Evaluator.list_,
    ast.Tuple: _Evaluator.tuple_,
    ast.Set: _Evaluator.set_,
    ast.Dict: _Evaluator.dict_,
    ast.Subscript: _Evaluator.subscript,
    ast.Attribute: _Evaluator.attribute,
    ast.Call: _Evaluator.call,
}
