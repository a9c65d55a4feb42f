"""Streaming a model's answer and plan: planweave's incremental scanners against re-parsing.

    python bench/streaming.py           # about half a minute on 2 cores
    python bench/streaming.py --quick   # the re-parse peer only up to 30,000 characters

The peer is what planweave did before (and what partial-JSON streaming commonly does, e.g.
instructor's `Partial`): on every chunk, parse the whole reply so far with pydantic-core's
partial JSON mode and take the new end of the field. Its cost grows with the square of the
reply. planweave's `FieldStream` and `StepStream` scan only the new chunk and decode each
character once, so their cost is linear.

The answer is fed in chunks of 4 characters (about one token each, as a provider streams it);
the plan is 1,000 steps. Prints a table of milliseconds of event-loop time per reply and
writes it to `bench/results/streaming.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from pydantic_core import from_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, git_info, table, version  # noqa: E402

from planweave.planner.streaming import FieldStream, StepStream  # noqa: E402

CHUNK = 4


class ReparseEachChunk:
    """The peer: re-parse the whole reply on every chunk (planweave's `FieldStream` before issue 12)."""

    def __init__(self) -> None:
        self.text = ""
        self.sent = 0

    def feed(self, chunk: str) -> str:
        self.text += chunk
        start = self.text.find("{")
        if start < 0:
            return ""
        try:
            partial = from_json(self.text[start:], allow_partial="trailing-strings")
        except ValueError:
            return ""
        if not isinstance(partial, dict) or partial.get("action") != "finish":
            return ""
        value = partial.get("answer")
        if not isinstance(value, str):
            return ""
        new = value[self.sent :]
        self.sent = len(value)
        return new


def answer_reply(chars: int) -> tuple[str, str]:
    words = ("planweave streams the answer as the model writes it, with \"quotes\", é and 😀.\n" * (chars // 60 + 1))
    answer = words[:chars]
    return answer, json.dumps({"action": "finish", "answer": answer, "reason": ""})


def plan_reply(steps: int) -> str:
    items = [[f"s{i}", "calculator", {"expression": f"{i} * 2 + 1"}] for i in range(steps)]
    return json.dumps({"steps": items, "rationale": "many steps", "answer": None})


def time_stream(stream: Any, text: str) -> tuple[float, int]:
    """Milliseconds to feed `text` in chunks, and how many characters came out."""
    started = time.perf_counter()
    out = 0
    for i in range(0, len(text), CHUNK):
        got = stream.feed(text[i : i + CHUNK])
        out += len(got)
    return (time.perf_counter() - started) * 1000, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the re-parse peer only up to 30,000 characters")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "streaming.json")
    args = parser.parse_args()

    rows: list[list[str]] = []
    results: dict[str, Any] = {"answer": {}, "plan": {}}
    peer_limit = 30_000 if args.quick else 100_000
    for chars in (10_000, 30_000, 100_000):
        answer, text = answer_reply(chars)
        ours, out = time_stream(FieldStream(), text)
        assert out == len(answer)
        peer: float | None = None
        if chars <= peer_limit:
            peer, peer_out = time_stream(ReparseEachChunk(), text)
            assert peer_out == len(answer)
        results["answer"][chars] = {"planweave_ms": ours, "reparse_ms": peer}
        rows.append(
            [
                f"answer of {chars:,} characters",
                f"{ours:,.1f}",
                "-" if peer is None else f"{peer:,.1f}",
                "-" if peer is None else f"{peer / ours:,.0f}x",
            ]
        )
    for steps in (100, 1_000):
        text = plan_reply(steps)
        stream = StepStream()
        started = time.perf_counter()
        got = sum(len(stream.feed(text[i : i + CHUNK])) for i in range(0, len(text), CHUNK))
        ours = (time.perf_counter() - started) * 1000
        assert got == steps
        results["plan"][steps] = {"planweave_ms": ours, "chars": len(text)}
        rows.append([f"plan of {steps:,} steps ({len(text):,} characters)", f"{ours:,.1f}", "-", "-"])
    print(f"Streaming in chunks of {CHUNK} characters: ms of event-loop time per reply\n")
    print(table(["reply", "planweave", "re-parse", "ratio"], rows))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                **results,
                "chunk_chars": CHUNK,
                "python": platform.python_version(),
                "versions": {"pydantic-core": version("pydantic-core")},
                **git_info(("planner/streaming.py",)),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
