"""The seeds' workflows in examples/seeds/, run offline as a user runs them (`planweave exec`,
`python examples/...`), against local fake servers speaking each provider's real response
shape: Brave, Serper or Tavily for search, pages on 127.0.0.1, and the fake model server."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from planweave.executor.store import open_store
from planweave.planner.testing import FakeModelServer, FakeSearchServer, RecordedRequest, Reply
from planweave.tools.search import PROVIDERS

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "examples" / "seeds"

HITS = [
    {"title": "Asana vs Trello", "url": "{base}/asana-vs-trello", "snippet": "Boards or lists?", "published": "2026-10-01"},
    {"title": "Linear for teams", "url": "{base}/linear", "snippet": "Fast issue tracking."},
]
PAGES = {
    "/asana-vs-trello": "<html><head><title>Asana vs Trello</title></head><body><article><h1>Asana vs Trello</h1>"
    "<p>Small teams that plan visually do well with Trello boards; Asana suits teams that plan across "
    "departments and need timelines, workload views and reporting.</p></article></body></html>",
    "/linear": "<html><head><title>Linear</title></head><body><article><h1>Linear for teams</h1>"
    "<p>Linear keeps software teams fast: keyboard-first issue tracking with cycles and a clean roadmap "
    "that needs little set-up.</p></article></body></html>",
}
ARTICLE = (
    "Small teams should pick the lightest tool that matches how they plan. Trello's boards suit teams who "
    "plan visually, while Asana's timelines fit work that crosses departments. Software teams get the most "
    "from Linear, whose keyboard-first tracking keeps cycles moving without set-up."
)


def last_prompt(request: RecordedRequest) -> str:
    content = request.json["messages"][-1]["content"]
    return content if isinstance(content, str) else json.dumps(content)


def model_answers(request: RecordedRequest) -> Reply:
    """The fake model's replies, chosen by what each example's steps ask."""
    prompt = last_prompt(request)
    if "Compile a short report" in prompt:  # first: its context names sentiment and topics too
        return Reply.text("# Report\nPositive; topics: planning, parallel execution.")
    if "Analyse these search results" in prompt:
        return Reply.json_obj({"themes": ["boards", "speed"], "top_domains": ["127.0.0.1"], "summary": "Boards rank."})
    if "Extract the key points" in prompt:
        return Reply.json_obj({"key_points": [{"point": "Trello suits visual planners", "source": "asana-vs-trello"}]})
    if "Write a short article" in prompt:
        return Reply.text(ARTICLE)
    if "Summarise this document" in prompt:
        return Reply.text("Planweave runs tool graphs in parallel. Users like its speed.")
    if "main topics" in prompt:
        return Reply.json_obj({"topics": ["planning", "parallel execution"]})
    if "sentiment" in prompt:
        return Reply.json_obj({"label": "positive", "reason": "users love it"})
    if "named entities" in prompt:
        return Reply.json_obj({"entities": ["Planweave", "Langfuse"]})
    return Reply.http_error(400, "the test's fake model has no answer for this prompt")


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer(handler=model_answers) as server:
        yield server


@pytest.fixture
def web() -> Iterator[FakeSearchServer]:
    with FakeSearchServer(HITS, pages=PAGES) as server:
        yield server


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def planweave(*args: str, env: dict[str, str]) -> Outcome:
    """`planweave ARGS` in this process (the model libraries are loaded once for the whole suite)."""
    from typer.testing import CliRunner

    from planweave.planner.cli.app import app

    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k not in env]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        result = CliRunner().invoke(app, list(args))
    return Outcome(result.exit_code, result.stdout, result.stderr)


def env_for(model: FakeModelServer, web: FakeSearchServer | None = None, provider: str = "brave") -> dict[str, str]:
    keys = {p.key_env for p in PROVIDERS.values()} | {p.url_env for p in PROVIDERS.values()}
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env.update({"OPENAI_API_KEY": "sk-fake", **(web.env(provider) if web is not None else {})})
    return env


def model_flags(model: FakeModelServer) -> list[str]:
    return ["--model", "openai/gpt-4o-mini", "--api-base", model.base_url]


def test_serp_analysis(model: FakeModelServer, web: FakeSearchServer, tmp_path: Path) -> None:
    proc = planweave("exec", str(SEEDS / "serp_analysis.py"), "-i", "query=best pm software", *model_flags(model),
                     "--save-results", str(tmp_path), "--json", env=env_for(model, web, "serper"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps"]["analyze_results"]["output"]["themes"] == ["boards", "speed"]
    [search] = web.requests
    assert (search.provider, search.query, search.count) == ("serper", "best pm software", 10)
    assert "Asana vs Trello" in last_prompt(model.chat_requests[0])  # the results were the model's context
    [saved] = tmp_path.iterdir()
    assert saved.name.startswith("serp_analysis_") and json.loads(saved.read_text())["run_id"] == result["run_id"]


def test_content_creation(model: FakeModelServer, web: FakeSearchServer) -> None:
    proc = planweave("exec", str(SEEDS / "content_creation.yaml"), *model_flags(model), "--allow-private-hosts",
                     "--json", env=env_for(model, web, "tavily"))
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)["steps"]
    assert [page["title"] for page in steps["scrape"]["output"]] == ["Asana vs Trello", "Linear for teams"]
    assert steps["write"]["output"] == ARTICLE
    extract_prompt = next(last_prompt(r) for r in model.chat_requests if "Extract the key points" in last_prompt(r))
    assert "Trello boards" in extract_prompt and "keyboard-first issue tracking" in extract_prompt
    assert {r.provider for r in web.requests} == {"tavily", "page"}


def test_document_analysis_records_each_steps_tokens(model: FakeModelServer) -> None:
    proc = planweave("exec", str(SEEDS / "document_analysis.py"), *model_flags(model), "--json", env=env_for(model))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps"]["analysis"]["output"]["sentiment"]["label"] == "positive"
    assert result["steps"]["report"]["output"].startswith("# Report")
    store = open_store()
    calls = [e for e in store.get_run(result["run_id"]).events if e["kind"] == "llm_called"]
    tokens = {c["step_id"]: c["input_tokens"] + c["output_tokens"] for c in calls}
    assert set(tokens) == {"summary", "topics", "sentiment", "entities", "report"} and all(tokens.values())
    assert store.summary(result["run_id"]).llm_calls == 5
    store.close()
    shown = planweave("show", result["run_id"], env={**os.environ, "COLUMNS": "250"})
    lines = shown.stdout.splitlines()
    summary_line = next(i for i, line in enumerate(lines) if "summary" in line and "llm" in line)
    assert "LLM llm_tool: openai/gpt-4o-mini, " in lines[summary_line + 1]  # the step's call, under the step


async def test_dynamic_workflow_plans_again_after_seeing_results(
    web: FakeSearchServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def plan(*steps: Any) -> Reply:
        return Reply.json_obj({"rationale": "r", "steps": list(steps), "answer": None})

    replies = [
        plan({"id": "search", "tool": "web_search", "args": {"query": "remote onboarding", "count": 2}}),
        Reply.json_obj({"action": "replan", "answer": None, "reason": "read the articles"}),
        plan({"id": "read", "tool": "fetch_page", "args": {"url": "${item.url}"}, "for_each": "${search}"},
             {"id": "digest", "tool": "llm", "args": {"prompt": "What do they recommend?", "context": "${read}"}}),
        Reply.text("Use boards for visual planning; Linear for software teams."),
        Reply.json_obj({"action": "finish", "answer": "They recommend Trello boards and Linear [1][2].", "reason": ""}),
    ]
    with FakeModelServer(replies) as model:
        env = {**env_for(model, web), "PLANWEAVE_MODEL": "openai/fake-model", "PLANWEAVE_API_BASE": model.base_url}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        script = runpy.run_path(str(SEEDS / "dynamic_workflow.py"))  # as `python examples/...` would, minus `main`
        code = await script["main"]("what do they recommend?", allow_private_hosts=True)
        out, err = capsys.readouterr()
        assert code == 0, err
        assert out.strip() == "They recommend Trello boards and Linear [1][2]."
        assert "status succeeded; 2 rounds, 5 LLM calls" in err
        second_plan = model.chat_requests[2].last_user_text  # results are data, in the user message
        assert "Asana vs Trello" in second_plan  # the second round was planned from the first one's results
        assert "Trello boards" in last_prompt(model.chat_requests[3])  # the pages were the llm step's context

