"""`ask_user`: the built-in tool that asks a person a question; the answer is its output.

    ["city", "ask_user", {"question": "Which city?", "choices": ["Paris", "Rome"], "default": "Paris"}]

The executor never calls its function: a step of a `QuestionTool` waits for a person's answer
(`planweave.executor.waiting`), from a terminal prompt, `planweave respond`, the chat endpoint's
next message or a Python callback. Its deadline, when it has one, gives it its `default`.
"""

from __future__ import annotations

from dataclasses import dataclass

from planweave.tools.base import Tool
from planweave.tools.errors import ToolError

__all__ = ["QuestionTool", "ask_user"]


@dataclass(frozen=True, eq=False)
class QuestionTool(Tool):
    """A tool whose output is a person's answer (the executor waits for it instead of calling `fn`)."""


def _ask_user(question: str, choices: list[str] | None = None, default: str | None = None) -> str:
    """Ask the user a question when the goal is ambiguous or needs facts only they have; the answer is the output.

    Args:
        question: As the user will read it.
        choices: The answers to pick from, when there are few.
        default: Used when nobody answers in time.
    """
    if default is not None:
        return default
    raise ToolError(
        f"`ask_user` needs a person to answer {question!r}; run it through planweave's executor, "
        "which waits for the answer.",
        tool="ask_user",
        permanent=True,
    )


ask_user = QuestionTool.from_function(_ask_user, name="ask_user", blocking=False, pure=False)  # never cached
