"""planweave's expression evaluator against simpleeval: safety on adversarial input, then speed.

    pip install simpleeval            # only for the comparison; planweave does not depend on it
    python bench/safe_eval.py         # about a minute on 2 cores
    python bench/safe_eval.py --quick # fewer timing rounds
    python bench/safe_eval.py --no-simpleeval  # planweave only (what the test runs)

Safety: every adversarial expression (the ones `tests/tools/test_safe_eval.py` and
`test_calculator.py` refuse: sandbox escapes, huge powers and literals, attribute access,
deep nesting, slow big-integer arithmetic) is evaluated by each engine in a fresh
subprocess with a 1 GiB memory limit and a time limit. The outcome is `refused` (an
exception), `allowed` (a value came back) or `TIMEOUT`/`CRASHED` (the process had to be
killed, or died). simpleeval runs as `EvalWithCompoundTypes`, given the same functions and
names as planweave's `calculator` and step conditions.

Speed: µs per evaluation of a few typical conditions, best of several rounds;
simpleeval both as `simple_eval` (parses every call, as its README shows) and with
the expression parsed once (`SimpleEval.eval(expr, previously_parsed=...)`).

Prints two tables and writes them, with versions and the commit, to
`bench/results/safe_eval.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, git_info, table, version  # noqa: E402

ADVERSARIAL: list[tuple[str, str]] = [
    # (category, expression)
    ("escape", "__import__('os').system('true')"),
    ("escape", "().__class__.__bases__[0].__subclasses__()"),
    ("escape", "fetch.__class__"),
    ("escape", "'{0.__class__}'.format(1)"),
    ("escape", "eval('1')"),
    ("escape", "open('/etc/passwd')"),
    ("escape", "(lambda: 1)()"),
    ("attribute", "'abc'.upper()"),
    ("attribute", "count.real"),
    ("attribute", "tags.append"),
    ("huge", "9**9**9"),
    ("huge", "2 ** (10 ** 30)"),
    ("huge", "'a' * 10**9"),
    ("huge", "[0] * 10**7"),
    ("huge", "[[0] * 1000] * 2000"),
    ("huge", "10**2000 * 10**2000"),
    ("huge", "10.0 ** 400"),
    ("huge", "int('9' * 5000)"),
    ("huge", "10**3999999 // 7**3999999"),
    ("huge", "(10**3999999) ** 2"),
    ("nesting", "-" * 5000 + "1"),
    ("nesting", "1" + "+1" * 4000),
    ("nesting", "[" * 300 + "]" * 300),
    ("comprehension", "[a for a in 'x' * 9999 for b in 'x' * 9999]"),
]

SPEED: list[tuple[str, dict[str, Any]]] = [
    ("1 + 2 * 3", {}),
    ("a.b > 3 and c[0] == 'x'", {"a": {"b": 5}, "c": ["x"]}),
    ("sqrt(x) * 2 + max(1, 2, 3)", {"x": 16}),
    ("fetch.status == 200 and 'good' in fetch.text", {"fetch": {"status": 200, "text": "all good"}}),
]

NAMES = {"fetch": {"status": 200, "text": "all good"}, "count": 3, "tags": ["a", "b"]}

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
engine, expression, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from _safe_eval_engines import make
evaluate = make(engine, names)
started = time.perf_counter()
try:
    value = evaluate(expression)
    outcome, detail = "allowed", repr(value)[:40]
except BaseException as exc:
    outcome, detail = "refused", type(exc).__name__
print(json.dumps({"outcome": outcome, "detail": detail, "ms": (time.perf_counter() - started) * 1000}))
"""


def run_case(engine: str, expression: str, timeout_s: float) -> dict[str, Any]:
    here = str(Path(__file__).resolve().parent)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, engine, expression, json.dumps(NAMES), here],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "TIMEOUT", "detail": f"killed after {timeout_s:g}s", "ms": timeout_s * 1000}
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"outcome": "CRASHED", "detail": f"exit {proc.returncode}", "ms": math.nan}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def speed(engine: str, rounds: int, number: int) -> list[float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _safe_eval_engines import make, make_preparsed

    out = []
    for expression, names in SPEED:
        fn = make_preparsed(expression, names) if engine == "simpleeval (parsed once)" else make(engine, names)
        fn(expression)  # warm the caches
        best = min(timeit.repeat(lambda: fn(expression), number=number, repeat=rounds))
        out.append(best / number * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="time limit per adversarial case")
    parser.add_argument("--no-simpleeval", action="store_true", help="planweave only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "safe_eval.json")
    args = parser.parse_args()

    have_simpleeval = version("simpleeval") is not None and not args.no_simpleeval
    engines = ["planweave"] + (["simpleeval"] if have_simpleeval else [])
    if not have_simpleeval and not args.no_simpleeval:
        print("simpleeval is not installed (pip install simpleeval): planweave only.\n")

    safety: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    for _, expression in ADVERSARIAL:
        for engine in engines:
            safety[engine].append(run_case(engine, expression, args.timeout_s))
    rows = []
    for i, (category, expression) in enumerate(ADVERSARIAL):
        shown = expression if len(expression) <= 44 else expression[:41] + "..."
        cells = [f"{category}: {shown}"]
        for engine in engines:
            r = safety[engine][i]
            cells.append(f"{r['outcome']} ({r['detail']}, {r['ms']:.0f} ms)")
        rows.append(cells)
    print("Safety: each adversarial expression in a fresh process (1 GiB, "
          f"{args.timeout_s:g} s limit)\n")
    print(table(["expression", *engines], rows))
    for engine in engines:
        bad = [r for r in safety[engine] if r["outcome"] != "refused"]
        counts = {o: sum(r["outcome"] == o for r in bad) for o in sorted({r["outcome"] for r in bad})}
        print(f"\n{engine}: {len(ADVERSARIAL) - len(bad)}/{len(ADVERSARIAL)} refused"
              + "".join(f", {n} {o}" for o, n in counts.items()))

    rounds, number = (3, 2_000) if args.quick else (7, 20_000)
    speed_engines = engines + (["simpleeval (parsed once)"] if have_simpleeval else [])
    timings = {e: speed(e, rounds, number) for e in speed_engines}
    print(f"\nSpeed: µs per evaluation, best of {rounds} rounds of {number:,}\n")
    speed_rows = [
        [expression, *(f"{timings[e][i]:.2f}" for e in speed_engines)] for i, (expression, _) in enumerate(SPEED)
    ]
    if have_simpleeval:
        ratio_cells = []
        for e in speed_engines:
            ratios = [timings[e][i] / timings["planweave"][i] for i in range(len(SPEED))]
            ratio_cells.append(f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x")
        speed_rows.append(["relative to planweave (geometric mean)", *ratio_cells])
    print(table(["expression", *speed_engines], speed_rows))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "safety": {
                    e: [{"category": c, "expression": x, **r} for (c, x), r in zip(ADVERSARIAL, safety[e])]
                    for e in engines
                },
                "speed_us": {e: dict(zip((x for x, _ in SPEED), timings[e])) for e in speed_engines},
                "python": platform.python_version(),
                "versions": {"simpleeval": version("simpleeval"), "pydantic": version("pydantic")},
                **git_info(("tools/safe_eval.py",)),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
