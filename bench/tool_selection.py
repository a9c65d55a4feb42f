"""Input tokens per planning call with 100 tools, with and without tool selection.

    python bench/tool_selection.py              # 100 tools, offer 10
    python bench/tool_selection.py --tools 300 --offer 15

100 tools shaped like those of MCP servers (a service, a verb, an object; a description and a
JSON schema with two to four typed arguments) are offered to the plan prompt for a set of
goals. For each goal the plan call's messages are rendered exactly as a run renders them
(`plan.j2`) and counted with a real tokenizer (litellm's, offline): once with every tool, once
with `Planner(offer_tools=N)`'s selection (`planweave.planner.tool_selection`). No model is
called. Results: a printed table and bench/results/tool_selection.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/tool_selection.py` from a checkout
    sys.path.insert(0, str(ROOT))

from bench._report import git_info, table  # noqa: E402
from planweave.planner.prompts import PromptLibrary  # noqa: E402
from planweave.planner.tokens import count_tokens, tokenizer_name  # noqa: E402
from planweave.planner.tool_selection import select_tools  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "tool_selection.json"
TOKENIZER_MODEL = "gpt-4o-mini"

SERVICES = {
    "github": ("issue", "pull_request", "repository", "branch", "release"),
    "slack": ("message", "channel", "user", "reaction", "file"),
    "jira": ("ticket", "sprint", "board", "comment", "worklog"),
    "gdrive": ("document", "folder", "spreadsheet", "permission", "revision"),
    "calendar": ("event", "calendar", "attendee", "reminder", "room"),
}
VERBS = ("create", "get", "list", "update", "delete")
TYPES = ("string", "integer", "boolean")
GOALS = (
    "Open a GitHub issue in planweave/planweave saying the docs link is broken",
    "Post a message to the #ops Slack channel with today's deploy summary",
    "List the tickets of the current Jira sprint and summarise them",
    "Share the Q3 budget spreadsheet in Google Drive with ana@example.org",
    "Book a room and create a calendar event with Ana and Bo for Friday at 10",
    "Find the latest release of the planweave repository and list its pull requests",
)


def make_tools(n: int) -> list[dict[str, Any]]:
    """`n` MCP-like tool entries (name, description, parameters), as the tool catalogue has them."""
    tools: list[dict[str, Any]] = []
    i = 0
    while len(tools) < n:
        for k in range(5):  # every service's k-th object before any service's next: 100 tools cover all five
            for service, objects in SERVICES.items():
                obj = objects[k]
                for verb in VERBS:
                    if len(tools) == n:
                        break
                    suffix = f"_{i // 125 + 1}" if i >= 125 else ""
                    args = {f"{obj}_id" if verb != "create" else "title": {"type": "string",
                                                                            "description": f"The {obj}."}}
                    for j in range(1 + i % 3):
                        args[f"option_{j}"] = {"type": TYPES[(i + j) % 3], "description": f"Option {j} of the {obj}."}
                    tools.append({
                        "name": f"{service}_{verb}_{obj}{suffix}",
                        "description": f"{verb.capitalize()} a {obj.replace('_', ' ')} in {service.capitalize()}. "
                                       f"Returns the {obj.replace('_', ' ')} as JSON.",
                        "parameters": {"type": "object", "properties": args, "required": list(args)[:1]},
                    })  # fmt: skip
                    i += 1
    llm = {"name": "llm", "description": "Ask a language model to summarise, compare, extract or compute in words.",
           "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}, "context": {}},
                          "required": ["prompt"]}}  # fmt: skip
    return sorted([*tools, llm], key=lambda t: str(t["name"]))


def plan_tokens(goal: str, tools: list[dict[str, Any]]) -> int:
    messages = PromptLibrary().get("plan").messages(
        goal=goal, inputs=[], tools=tools, history=[], replan_reason=None, data_tag="0123abcd"
    )
    return count_tokens(TOKENIZER_MODEL, messages=messages)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--tools", type=int, default=100, help="tools offered (default 100)")
    p.add_argument("--offer", type=int, default=10, help="tools kept by the selection (default 10)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    tools = make_tools(args.tools)
    rows = []
    for goal in GOALS:
        chosen = select_tools(tools, goal, args.offer)
        rows.append({"goal": goal, "all_tokens": plan_tokens(goal, tools), "selected_tokens": plan_tokens(goal, chosen),
                     "selected": [t["name"] for t in chosen]})  # fmt: skip
    all_mean = statistics.fmean(r["all_tokens"] for r in rows)
    sel_mean = statistics.fmean(r["selected_tokens"] for r in rows)
    results = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_info(("planner", "prompts")),
        "settings": {"tools": len(tools), "offer": args.offer, "tokenizer": tokenizer_name(TOKENIZER_MODEL)},
        "goals": rows,
        "input_tokens_per_plan_call": {"all_tools": all_mean, "selected": sel_mean, "saved": 1 - sel_mean / all_mean},
    }
    print(f"Plan-call input tokens with {len(tools)} tools ({results['settings']['tokenizer']}):")
    print(table(
        ["goal", "all tools", f"top {args.offer} + llm", "tools kept"],
        [[r["goal"][:60], str(r["all_tokens"]), str(r["selected_tokens"]), ", ".join(r["selected"][:4]) + " ..."]
         for r in rows],
    ))  # fmt: skip
    print(f"mean: {all_mean:,.0f} -> {sel_mean:,.0f} input tokens per planning call ({1 - sel_mean / all_mean:.0%} fewer)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
