"""Provider prompt caching: mark the static prefix of a prompt where the provider needs a marker.

planweave's prompts put their static part (role, rules, tool list, examples) first, as the
system message, and what changes after it (`planweave.planner.prompts`). OpenAI, DeepSeek and
xAI then cache that prefix by themselves. Anthropic's models (directly, or through Bedrock,
Vertex AI, Azure AI, OpenRouter or Databricks) cache only up to a block marked with
`cache_control`, which litellm passes through in a content block: `mark_cache_prefix` adds it.
What was cached is reported back in the usage (`planweave.planner.llm.cache_tokens`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["mark_cache_prefix", "needs_cache_marker"]

_CLAUDE_HOSTS = ("bedrock/", "vertex_ai/", "azure_ai/", "openrouter/", "databricks/")


def needs_cache_marker(model: str) -> bool:
    """True for a litellm model name that reaches an Anthropic model, whose cache needs a marker."""
    name = model.lower()
    return name.startswith("anthropic/") or (name.startswith(_CLAUDE_HOSTS) and "claude" in name)


def mark_cache_prefix(messages: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """`messages` with the leading system message marked `cache_control: ephemeral` for a model
    that needs the marker (a copy; `messages` is left as it was), else `messages` itself."""
    if not messages or messages[0].get("role") != "system" or not needs_cache_marker(model):
        return messages
    first = messages[0]
    content = first.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list) and content and isinstance(content[-1], dict):
        blocks = [dict(part) if isinstance(part, dict) else part for part in content]
    else:
        return messages
    blocks[-1] = {**blocks[-1], "cache_control": {"type": "ephemeral"}}
    return [{**first, "content": blocks}, *messages[1:]]
