"""The README's smallest example: a plan of three tool calls, two of them in parallel."""

import asyncio

from planweave import Executor, Plan, tool


@tool
async def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


plan = Plan.of(
    [
        {"id": "count", "tool": "word_count", "args": {"text": "${inputs.text}"}},
        {"id": "loud", "tool": "shout", "args": {"text": "${inputs.text}"}},  # runs beside `count`
        {"id": "report", "tool": "shout", "args": {"text": "${count} words: ${loud}"}},
    ]
)


async def main() -> None:
    result = await Executor([word_count, shout]).run(plan, inputs={"text": "plans run in parallel"})
    print(result.status, result.output("report"))  # succeeded 4 WORDS: PLANS RUN IN PARALLEL


if __name__ == "__main__":
    asyncio.run(main())
