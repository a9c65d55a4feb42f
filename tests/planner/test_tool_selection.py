"""With many tools, the plan prompt offers the relevant ones; the executor still knows them all."""

from __future__ import annotations

from typing import Any

from planweave.planner import Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.planner.tool_selection import select_tools
from planweave.tools import Tool, tool


def catalogue(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"name": n, "description": d, "parameters": {}} for n, d in pairs]


TOOLS = catalogue(
    ("github.create_issue", "Create an issue in a GitHub repository."),
    ("github.list_issues", "List the issues of a GitHub repository."),
    ("llm", "Ask a language model."),
    ("slack.post_message", "Post a message to a Slack channel."),
    ("weather.forecast", "The weather forecast for a city."),
)


def test_the_most_relevant_tools_are_kept_in_catalogue_order() -> None:
    chosen = select_tools(TOOLS, "Post the weather forecast for Oslo to the #ops Slack channel", 2)
    assert [t["name"] for t in chosen] == ["llm", "slack.post_message", "weather.forecast"]
    chosen = select_tools(TOOLS, "list open issues in planweave/planweave", 1)
    assert [t["name"] for t in chosen] == ["github.list_issues", "llm"]
    assert select_tools(TOOLS, "anything", 10) == TOOLS  # few tools: all offered
    assert [t["name"] for t in select_tools(TOOLS, "nothing in common", 2)] == ["llm"]


def numbered_tools(n: int) -> list[Tool]:
    made = []
    for i in range(n):

        async def run(text: str) -> str:
            return text

        made.append(tool(name=f"service{i}_action", description=f"Do thing number {i} for topic{i}.")(run))
    return made


async def test_a_planner_with_many_tools_offers_only_the_relevant_ones() -> None:
    tools = numbered_tools(30)
    with FakeModelServer([Reply.text('a = service7_action(text="x")\n'), Reply.json_obj({"action": "finish", "answer": "x"})]) as server:
        planner = Planner(model="openai/fake-model", api_base=server.base_url, api_key="k", tools=tools, store=False,
                          offer_tools=1)  # fmt: skip
        result = await planner.run("Do the topic7 thing")
        system = server.chat_requests[0].messages[0]["content"]
    assert result.ok and result.answer == "x"
    tools_section = system.split("## Tools\n", 1)[1].split("\n## ", 1)[0]
    offered = [line.split("`")[1] for line in tools_section.splitlines() if line.startswith("- `")]
    assert offered == ["llm", "service7_action"]
