"""Pynions' SERP analysis workflow: search the web, then a model analyses the results.

    planweave exec examples/seeds/serp_analysis.py -i query="best crm for startups"
    python examples/seeds/serp_analysis.py "best project management software"   # also saves results/

Built step by step as in Pynions (`Workflow(...)`, `add_step(...)`, `await workflow.execute(...)`,
results saved as timestamped JSON). Needs a search key (BRAVE_API_KEY, SERPER_API_KEY or
TAVILY_API_KEY) and a model (PLANWEAVE_MODEL, e.g. openai/gpt-4o-mini, with its key).
"""

from __future__ import annotations

import asyncio
import json
import sys

from planweave import Workflow, llm_tool

ANALYSIS = {
    "type": "object",
    "properties": {
        "themes": {"type": "array", "items": {"type": "string"}, "description": "What the top results talk about"},
        "top_domains": {"type": "array", "items": {"type": "string"}, "description": "Sites that rank, best first"},
        "content_gaps": {"type": "array", "items": {"type": "string"}, "description": "What no result covers well"},
        "summary": {"type": "string", "description": "Two sentences on what ranks and why"},
    },
    "required": ["themes", "top_domains", "summary"],
}

workflow = (
    Workflow("serp_analysis", description="Search the web and analyse the results",
             inputs={"query": "best project management software"})
    .add_step("fetch_serp", tool="web_search", args={"query": "${inputs.query}", "count": 10},
              retry=3, cache=3600)  # the same query within an hour is not searched again
    .add_step("analyze_results", tool="llm", args={
        "prompt": "Analyse these search results for the query `${inputs.query}`: the themes, the domains "
                  "that rank, and what content is missing.",
        "context": "${fetch_serp}",
        "output_schema": ANALYSIS,
    })
)  # fmt: skip


async def main(query: str) -> None:
    result = await workflow.execute({"query": query}, tools=[llm_tool()], save_results="results")
    result.raise_for_status()
    print(json.dumps(result.output("analyze_results"), indent=2))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else workflow.inputs["query"]))
