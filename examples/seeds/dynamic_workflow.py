"""The eight-factor guide's dynamic workflow: a model plans the next steps, they run, it looks
at the results and plans again until it can answer. In planweave that loop is the `Planner`.

    python examples/seeds/dynamic_workflow.py "what do the top articles recommend for remote onboarding?"
    planweave run "..." --tools web_search,fetch_page,llm      # the same from the command line

Each round's plan, steps, LLM calls (tokens and cost) and decision are recorded
(`planweave show RUN_ID`) and traced to Langfuse when its keys are set. Needs a search key
(BRAVE_API_KEY, SERPER_API_KEY or TAVILY_API_KEY) and a model (PLANWEAVE_MODEL with its key).
"""

from __future__ import annotations

import asyncio
import sys

from planweave import Budget, Planner
from planweave.tools.builtin import select_tools

GOAL = "What do the top articles recommend for onboarding remote engineers? Cite them."


async def main(goal: str, *, allow_private_hosts: bool = False) -> int:
    planner = Planner(
        # The planner adds its own `llm` tool; `allow_private_hosts` lets fetch_page read local pages.
        tools=select_tools(["web_search", "fetch_page"], allow_private_hosts=allow_private_hosts),
        budget=Budget(max_llm_calls=12, max_seconds=300, max_replans=3),
        name="dynamic_research",
    )
    result = await planner.run(goal)
    print(result.answer or result.error)
    print(f"status {result.status}; {result.rounds} rounds, {result.usage.llm_calls} LLM calls, "
          f"{result.usage.total_tokens} tokens; run {result.run_id}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--allow-private-hosts"]
    sys.exit(asyncio.run(main(args[0] if args else GOAL, allow_private_hosts="--allow-private-hosts" in sys.argv)))
