"""Token counts with the target model's tokenizer, as litellm provides it offline.

litellm's `token_counter` picks the tokenizer for a model name: tiktoken's `o200k_base` for the
GPT-4o family, `cl100k_base` for other OpenAI-style names, and a bundled Hugging Face tokenizer
for a few others (litellm ships the tiktoken files and those tokenizers, so nothing is fetched).
For Llama 2/3 and Cohere names it would download a tokenizer from the Hugging Face Hub (and
retry for about 20 s with no network); for those planweave counts with tiktoken's `cl100k_base`
instead and says so (`tokenizer_name`).

Used where a provider reports no usage (the count is then planweave's) and by the benchmarks.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["count_tokens", "tokenizer_name"]

_DOWNLOADED = re.compile(r"llama-[23]|replicate|command-r", re.IGNORECASE)
"""Names for which litellm's `token_counter` would download a tokenizer (litellm 1.x)."""


def _counted_as(model: str) -> str:
    return "" if _DOWNLOADED.search(model) else model  # "": litellm's default tiktoken encoding


def tokenizer_name(model: str) -> str:
    """Which tokenizer `count_tokens` uses for `model`, for reports."""
    if not _counted_as(model):
        return "tiktoken cl100k_base (litellm would download this model's tokenizer; planweave does not)"
    return f"litellm's tokenizer for `{model}`"


def count_tokens(
    model: str, *, messages: list[dict[str, Any]] | None = None, text: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> int:
    """Tokens of `messages` (with the chat format's per-message overhead and `tools`' schemas, as
    litellm counts a request) or of plain `text`, for `model`."""
    from planweave.planner.llm import import_litellm

    litellm = import_litellm()
    counted = _counted_as(model)
    if messages is not None:
        return int(litellm.token_counter(model=counted, messages=messages, tools=tools))
    return int(litellm.token_counter(model=counted, text=text or ""))
