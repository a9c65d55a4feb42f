"""Offer the model only the tools a goal needs, when there are many (for example 100 from MCP).

Every tool in the plan prompt costs its name, description and argument schema in every
planning call. `select_tools` is a cheap selection step with no model call: it ranks the tools
by the words their name and description share with the goal (rarer words count more, as in
BM25's idf) and keeps the best `limit`, plus the tools named in `keep` (the `llm` tool). The
executor still knows every tool, so a step using one that was not offered is still valid.

Measured by `bench/tool_selection.py` (input tokens per planning call, with and without).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["select_tools"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by for from get give how i in is it its me my of on or please the this to "
    "what which with you your".split()
)


def _words(text: str) -> set[str]:
    """Lower-case words, without stop words, plural `s` dropped (`files` ~ `file`)."""
    out = set()
    for w in _WORD.findall(text.lower().replace("_", " ").replace(".", " ")):
        if w not in _STOP:
            out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def select_tools(
    catalogue: Sequence[dict[str, Any]], goal: str, limit: int, *, keep: Iterable[str] = ("llm",)
) -> list[dict[str, Any]]:
    """The entries of `catalogue` (`name`, `description`, `parameters`) most relevant to `goal`:
    the `limit` best by shared words, plus `keep`, in the catalogue's order (stable for caching)."""
    if len(catalogue) <= limit:
        return list(catalogue)
    docs = [_words(f"{t['name']} {t.get('description', '')}") for t in catalogue]
    goal_words = _words(goal)
    df: dict[str, int] = {}
    for doc in docs:
        for w in doc & goal_words:
            df[w] = df.get(w, 0) + 1
    n = len(docs)
    scores = [sum(math.log(1 + n / df[w]) for w in doc & goal_words) for doc in docs]
    ranked = sorted(range(n), key=lambda i: (-scores[i], catalogue[i]["name"]))
    chosen = {i for i in ranked[:limit] if scores[i] > 0}
    kept = set(keep)
    chosen |= {i for i, t in enumerate(catalogue) if t["name"] in kept}
    return [t for i, t in enumerate(catalogue) if i in chosen]
