"""Token counts with the model's own tokenizer (litellm's, offline), never a download."""

from __future__ import annotations

import socket

import pytest
import tiktoken

from planweave.planner.tokens import count_tokens, tokenizer_name

TEXT = 'Plan: ["s1", "search", {"query": "population of France"}] 日本語'


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# Each comparison counts with planweave first: litellm then points tiktoken at the encodings it
# bundles, which `tiktoken.get_encoding` alone would download.
def test_counts_with_the_models_tokenizer_offline(no_network: None) -> None:
    assert count_tokens("gpt-4o-mini", text=TEXT) == len(tiktoken.get_encoding("o200k_base").encode(TEXT))
    assert count_tokens("openai/gpt-4", text=TEXT) == len(tiktoken.get_encoding("cl100k_base").encode(TEXT))
    messages = [{"role": "system", "content": "rules"}, {"role": "user", "content": TEXT}]
    assert count_tokens("gpt-4o-mini", messages=messages) > count_tokens("gpt-4o-mini", text="rules" + TEXT)


def test_a_tokenizer_litellm_would_download_is_replaced_by_cl100k(no_network: None) -> None:
    counted = count_tokens("groq/llama-3-8b", text=TEXT)
    assert counted == len(tiktoken.get_encoding("cl100k_base").encode(TEXT))
    assert "would download" in tokenizer_name("replicate/meta/llama-2-70b")
    assert tokenizer_name("gpt-4o-mini") == "litellm's tokenizer for `gpt-4o-mini`"
