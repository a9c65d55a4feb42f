"""Chat front ends' background tasks: recognised, and answered with one direct model call.

Open WebUI sends its title, tags, follow-up and autocomplete prompts (each begins `### Task:`)
to the chat model, and LibreChat its title prompt ("Provide a concise, 5-word-or-less title for
the conversation..."). They are not goals: planweave answers each with one model call in the
format it asks for (never a planner run or a tool) and records nothing. The offline model
answers them itself (`offline_task_reply`): a title from the first user message, empty lists.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

__all__ = ["TaskKind", "background_task", "offline_task_reply"]

TaskKind = Literal["title", "tags", "follow_ups", "autocomplete", "librechat_title"]

_LIBRECHAT_TITLE = re.compile(r"5-word-or-less title for the conversation", re.I)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def background_task(messages: list[dict[str, Any]]) -> TaskKind | None:
    """Which front-end task the last user message is, or None for a real turn of the conversation."""
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        return None
    text = _text(users[-1].get("content")).lstrip()
    if _LIBRECHAT_TITLE.search(text) and "only return the title" in text.lower():
        return "librechat_title"
    if not text.startswith("### Task:"):
        return None
    head = text[:600].lower()
    if '"follow_ups"' in head or "follow-up" in head:
        return "follow_ups"
    if "autocompletion" in head or '"text":' in text.lower():
        return "autocomplete"
    if '"tags"' in text or "tags categorizing" in head:
        return "tags"
    if "title" in head:
        return "title"
    return None


def _first_user_line(text: str) -> str:
    """The first user message quoted in a task prompt's chat history (Open WebUI's `USER: ...`,
    LibreChat's `User: ...`)."""
    m = re.search(r"^(?:USER|User|user):\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else ""


def _title(first: str) -> str:
    words = re.findall(r"[\w'×÷+*/^.-]+", first)
    words = [w.strip(".") for w in words if w.strip(".")]
    if not words:
        return "New Chat"
    title = " ".join(words[:5])
    return title[:1].upper() + title[1:]


def offline_task_reply(messages: list[dict[str, Any]]) -> str | None:
    """The offline model's reply to a front end's task prompt, in the format it asks for (None: not one)."""
    kind = background_task(messages)
    if kind is None:
        return None
    users = [m for m in messages if m.get("role") == "user"]
    text = _text(users[-1].get("content"))
    if kind == "librechat_title":
        return _title(_first_user_line(text))
    if kind == "title":
        return json.dumps({"title": _title(_first_user_line(text))}, ensure_ascii=False)
    if kind == "tags":
        return json.dumps({"tags": []})
    if kind == "follow_ups":
        return json.dumps({"follow_ups": []})
    return json.dumps({"text": ""})
