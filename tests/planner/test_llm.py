"""Model calls through the real litellm and instructor against FakeModelServer (real HTTP on
127.0.0.1): every failure is its own error class with a one-line cause and fix, retries go by
exception type, and every request the server receives is counted."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planweave.executor import open_store
from planweave.executor.store import RunStore
from planweave.planner import Budget, Planner
from planweave.planner.errors import (
    APIKeyRejectedError,
    ConfigError,
    LLMError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderError,
    ProviderUnreachableError,
    UnknownProviderError,
    UnpricedBudgetError,
)
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools import tool
from planweave.tools.errors import PlanweaveError, RuntimeFailure, SetupError

MODEL = "openai/fake-model"
PICK = "pick another model with `--model` or `PLANWEAVE_MODEL`."


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def plan(*steps: dict[str, Any], answer: str | None = None, **options: Any) -> Reply:
    return Reply.json_obj({"rationale": "r", "steps": list(steps), "answer": answer}, **options)


def finish(answer: str, **options: Any) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""}, **options)


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as s:
        yield s


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def planner(api_base: str, **kw: Any) -> Planner:
    kw.setdefault("tools", [add])
    kw.setdefault("retry_delay_s", 0.01)
    kw.setdefault("model", MODEL)
    return Planner(api_base=api_base, store=kw.pop("store", False), **kw)


def test_each_failure_has_its_own_class_in_the_tree() -> None:
    for cls in (MissingAPIKeyError, UnknownProviderError, UnpricedBudgetError):
        assert issubclass(cls, ConfigError) and issubclass(cls, SetupError) and issubclass(cls, PlanweaveError)
    for cls in (APIKeyRejectedError, ModelNotFoundError, ProviderUnreachableError, ProviderError):
        assert issubclass(cls, LLMError) and issubclass(cls, RuntimeFailure) and issubclass(cls, PlanweaveError)


# --- refused before any call ---------------------------------------------------------------------


async def test_missing_key_fails_at_once_before_any_call(
    server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        await planner(server.base_url).run("add 1 and 2")
    assert str(info.value) == (
        "model `openai/fake-model` needs OPENAI_API_KEY, which is not set; set it (any non-empty value for a "
        f"local server that needs no key), or {PICK}"
    )
    assert info.value.model == MODEL and info.value.env_var == "OPENAI_API_KEY"
    assert info.value.api_base == server.base_url
    assert server.chat_requests == []  # no call, so no retries


async def test_missing_key_without_api_base_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("PLANWEAVE_API_BASE", raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        await Planner(model="anthropic/claude-3-5-haiku-latest", store=False).run("x")
    assert str(info.value) == (
        f"model `anthropic/claude-3-5-haiku-latest` needs ANTHROPIC_API_KEY, which is not set; set it, or {PICK}"
    )


async def test_unknown_provider_fails_before_any_call() -> None:
    with pytest.raises(UnknownProviderError) as info:
        await Planner(model="nosuch/model-x", api_key="k", store=False).run("x")
    assert str(info.value) == (
        "model `nosuch/model-x` names no provider litellm knows; write it as `provider/model` "
        "(e.g. `openai/gpt-4o-mini`, `anthropic/claude-3-5-haiku-latest`, `ollama/llama3.1`) "
        "with `--model` or `PLANWEAVE_MODEL`."
    )
    assert info.value.model == "nosuch/model-x"


async def test_cost_budget_on_an_unpriced_model_is_refused_up_front(server: FakeModelServer) -> None:
    with pytest.raises(UnpricedBudgetError) as info:
        await planner(server.base_url, api_key="k", budget=Budget(max_cost_usd=0.5)).run("x")
    assert str(info.value) == (
        "the cost budget of $0.5 cannot be kept: planweave knows no price for model `openai/fake-model`; "
        "register one with `Planner(prices={'openai/fake-model': (usd_per_million_input, usd_per_million_output)})`, "
        "or limit tokens instead (`--max-tokens`, `Budget(max_tokens=...)`)."
    )
    assert server.chat_requests == []
    # With a price registered the same budget is accepted.
    server.enqueue(plan(answer="fine"))
    result = await planner(
        server.base_url, api_key="k", budget=Budget(max_cost_usd=0.5), prices={"fake-model": (1.0, 2.0)}
    ).run("x")
    assert result.ok and result.answer == "fine"


# --- failures after the provider answered (or did not) ------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_is_never_retried(server: FakeModelServer, status: int) -> None:
    # The message talks of overload: retrying goes by the exception type, never by its text.
    server.enqueue(Reply.http_error(status, "server overloaded, try again"), plan(answer="unused"))
    result = await planner(server.base_url, api_key="sk-bad").run("x")
    assert result.status == "failed"
    assert result.error == (
        f"the provider at `{server.base_url}` rejected the API key for model `openai/fake-model` (HTTP {status}); "
        f"check the key given as `api_key=`, or {PICK}"
    )
    assert len(server.chat_requests) == 1 == result.usage.llm_calls


async def test_rejected_key_from_the_environment_names_the_variable(
    server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bad")
    server.enqueue(Reply.http_error(401))
    result = await planner(server.base_url).run("x")
    assert result.error == (
        f"the provider at `{server.base_url}` rejected the API key for model `openai/fake-model` (HTTP 401); "
        f"check OPENAI_API_KEY, or {PICK}"
    )


async def test_unknown_model_is_not_retried(server: FakeModelServer) -> None:
    server.enqueue(Reply.http_error(404, "The model `fake-model` does not exist"))
    result = await planner(server.base_url, api_key="k").run("x")
    assert result.error == (
        f"the provider at `{server.base_url}` has no model `openai/fake-model` (HTTP 404); check the name given "
        "with `--model` or `PLANWEAVE_MODEL`."
    )
    assert len(server.chat_requests) == 1


async def test_unreachable_api_base_is_retried_then_says_so(closed_port: int) -> None:
    api_base = f"http://127.0.0.1:{closed_port}/v1"
    result = await planner(api_base, api_key="k", max_retries=2).run("x")
    assert result.status == "failed"
    assert result.error == (
        f"cannot connect to `{api_base}` for model `openai/fake-model` (2 attempts); start the server or fix "
        "the URL given with `--api-base` or `PLANWEAVE_API_BASE`."
    )
    assert result.usage.llm_calls == 2  # both attempts counted
    assert [c["error"] is not None for c in result.llm_calls] == [True, True]


async def test_persistent_provider_error_fails_after_the_retries(server: FakeModelServer) -> None:
    # The message mentions a key: still a 500, still retried.
    server.enqueue(*[Reply.http_error(500, "the key store is down")] * 3)
    result = await planner(server.base_url, api_key="k").run("x")
    assert result.status == "failed"
    assert (result.error or "").startswith(
        f"the provider at `{server.base_url}` failed for model `openai/fake-model` (HTTP 500, 3 attempts: "
    )
    assert (result.error or "").endswith(f"); try again later, add fallback models, or {PICK}")
    assert len(server.chat_requests) == 3 == result.usage.llm_calls
    assert result.usage.cost_usd == 0.0  # nothing answered, nothing billed


async def test_transient_then_success_uses_the_fallback_only_when_needed(server: FakeModelServer) -> None:
    server.enqueue(Reply.http_error(503), plan(answer="second try"))
    result = await planner(server.base_url, api_key="k", fallbacks=["openai/other"]).run("x")
    assert result.ok and result.answer == "second try"
    assert [r.json["model"] for r in server.chat_requests] == ["fake-model", "fake-model"]


# --- counting every request ---------------------------------------------------------------------


async def test_llm_calls_equal_the_requests_the_server_received(server: FakeModelServer) -> None:
    bad_join = Reply.json_obj({"action": "maybe", "answer": None, "reason": ""})
    server.enqueue(
        Reply.http_error(500),  # retried
        plan({"id": "a", "tool": "nope", "args": {}}),  # invalid: re-asked
        plan({"id": "a", "tool": "add", "args": {"a": 1, "b": 2}}),
        bad_join,  # the streamed join is invalid: re-asked through instructor
        bad_join,  # instructor's first structured try is invalid too: re-asked again
        finish("3"),
    )
    store = open_store()
    result = await planner(server.base_url, api_key="k", store=store).run("add 1 and 2")
    assert result.ok and result.answer == "3", result.error
    assert len(server.chat_requests) == 6
    assert result.usage.llm_calls == 6 == len(result.llm_calls)
    summary = store.summary(result.run_id)
    assert summary.llm_calls == 6
    assert summary.input_tokens == result.usage.input_tokens and summary.output_tokens == result.usage.output_tokens
    reasks = [c["reask"] for c in result.llm_calls if c["purpose"] == "join"]
    assert reasks == [0, 0, 1]  # the streamed join, then instructor's try and its re-ask


async def test_a_failed_run_records_its_calls(server: FakeModelServer) -> None:
    server.enqueue(Reply.http_error(401))
    store = open_store()
    result = await planner(server.base_url, api_key="k", store=store).run("x")
    summary = store.summary(result.run_id)
    assert summary.status == "failed" and summary.llm_calls == 1 == len(server.chat_requests)


# --- budgets inside each call -------------------------------------------------------------------


async def test_max_tokens_of_each_request_is_capped_by_the_token_budget(server: FakeModelServer) -> None:
    server.enqueue(
        plan({"id": "a", "tool": "add", "args": {"a": 1, "b": 2}}, completion_tokens=40, prompt_tokens=400),
        finish("3", completion_tokens=20, prompt_tokens=400),
    )
    result = await planner(server.base_url, api_key="k", budget=Budget(max_tokens=800)).run("add 1 and 2")
    first, second = (r.json for r in server.chat_requests)
    estimate = [-(-sum(len(m["content"]) for m in r["messages"]) // 4) for r in (first, second)]  # rounded up
    assert first["max_tokens"] == 800 - estimate[0]
    assert second["max_tokens"] == max(1, 800 - 440 - estimate[1])
    assert result.status == "budget_exceeded" and result.budget == "max_tokens"


async def test_max_tokens_of_each_request_is_capped_by_the_cost_budget(server: FakeModelServer) -> None:
    server.enqueue(plan(answer="ok"))
    prices = {"fake-model": (1.0, 1000.0)}  # USD per million tokens: output costs $0.001 a token
    result = await planner(server.base_url, api_key="k", budget=Budget(max_cost_usd=0.1), prices=prices).run("x")
    assert result.ok
    request = server.chat_requests[0].json
    prompt_tokens = -(-sum(len(m["content"]) for m in request["messages"]) // 4)
    assert request["max_tokens"] == int((0.1 - prompt_tokens * 1.0 / 1_000_000) / 1000.0 * 1_000_000)


async def test_retries_stop_at_the_llm_call_budget(server: FakeModelServer) -> None:
    server.enqueue(*[Reply.http_error(500)] * 3)
    result = await planner(server.base_url, api_key="k", budget=Budget(max_llm_calls=2)).run("x")
    assert result.status == "budget_exceeded" and result.budget == "max_llm_calls"
    assert len(server.chat_requests) == 2 == result.usage.llm_calls


# --- through the real CLI -----------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planweave", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PLANWEAVE_MODEL", "PLANWEAVE_API_BASE")}
    return {**env, "PLANWEAVE_HOME": str(tmp_path / "home"), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


@pytest.mark.parametrize("mode", [[], ["--quiet"]], ids=["piped", "quiet"])
def test_cli_missing_key_says_why_in_one_line(
    server: FakeModelServer, tmp_path: Path, mode: list[str]
) -> None:
    proc = _cli(["run", "add 1 and 2", "--model", "openai/x", "--api-base", server.base_url, *mode],
                _env(tmp_path), tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "planweave: error: model `openai/x` needs OPENAI_API_KEY, which is not set; set it (any non-empty value "
        f"for a local server that needs no key), or {PICK}\n"
    )
    assert proc.stdout == "" and server.chat_requests == []


def test_cli_unknown_provider_says_why(tmp_path: Path) -> None:
    proc = _cli(["run", "x", "--model", "nosuch/x", "--quiet"], _env(tmp_path), tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "planweave: error: model `nosuch/x` names no provider litellm knows; write it as `provider/model` "
        "(e.g. `openai/gpt-4o-mini`, `anthropic/claude-3-5-haiku-latest`, `ollama/llama3.1`) "
        "with `--model` or `PLANWEAVE_MODEL`."
    ]


@pytest.mark.parametrize("case", ["rejected", "unreachable", "server-error"])
def test_cli_failed_call_says_why_once(
    server: FakeModelServer, closed_port: int, tmp_path: Path, case: str
) -> None:
    api_base = f"http://127.0.0.1:{closed_port}/v1" if case == "unreachable" else server.base_url
    expected = {
        "rejected": f"the provider at `{api_base}` rejected the API key for model `openai/x` (HTTP 401); "
                    f"check OPENAI_API_KEY, or {PICK}",
        "unreachable": f"cannot connect to `{api_base}` for model `openai/x` (3 attempts); start the server or fix "
                       "the URL given with `--api-base` or `PLANWEAVE_API_BASE`.",
        "server-error": f"the provider at `{api_base}` failed for model `openai/x` (HTTP 500, 3 attempts: ",
    }[case]
    server.enqueue(*([Reply.http_error(401)] if case == "rejected" else [Reply.http_error(500)] * 3))
    proc = _cli(["run", "add 1 and 2", "--model", "openai/x", "--api-base", api_base, "--quiet"],
                _env(tmp_path, OPENAI_API_KEY="sk-test"), tmp_path)
    assert proc.returncode == 1, proc.stderr
    reasons = [line for line in proc.stderr.splitlines() if line.startswith("planweave: failed: ")]
    assert len(reasons) == 1 and reasons[0].startswith(f"planweave: failed: {expected}")
    if case != "unreachable":
        assert len(server.chat_requests) == (1 if case == "rejected" else 3)


# --- prompt caching -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
async def test_cached_input_tokens_are_counted_and_priced_with_the_cache_discount(shape: str) -> None:
    import litellm

    store = open_store()
    with FakeModelServer(prompt_cache=shape) as cache_server:  # type: ignore[arg-type]
        cache_server.enqueue(plan({"id": "a", "tool": "add", "args": {"a": 1, "b": 2}}), finish("3"))
        cache_server.enqueue(plan({"id": "b", "tool": "add", "args": {"a": 2, "b": 2}}), finish("4"))
        pw = Planner(model="openai/gpt-4o-mini", api_base=cache_server.base_url, api_key="k", tools=[add], store=store)
        first = await pw.run("add 1 and 2")
        second = await pw.run("add 2 and 2")  # another goal: the same static system message
        requests = cache_server.chat_requests
    system_tokens = -(-len(requests[0].messages[0]["content"]) // 4)
    plan_call, join_call = second.llm_calls
    assert first.llm_calls[0]["cached_input_tokens"] == 0 and plan_call["cached_input_tokens"] == system_tokens
    assert join_call["cached_input_tokens"] > 0  # the join's system message was seen in the first run too
    assert second.usage.cached_input_tokens == plan_call["cached_input_tokens"] + join_call["cached_input_tokens"]
    if shape == "anthropic":  # Anthropic says what it wrote to the cache, too
        assert first.llm_calls[0]["cache_write_tokens"] == system_tokens and plan_call["cache_write_tokens"] == 0
    # The cost is litellm's price map with its cache-read price for the cached part.
    full_in, full_out = litellm.cost_per_token(
        model="gpt-4o-mini", prompt_tokens=plan_call["input_tokens"], completion_tokens=plan_call["output_tokens"]
    )
    price = litellm.model_cost["gpt-4o-mini"]
    discount = plan_call["cached_input_tokens"] * (price["input_cost_per_token"] - price["cache_read_input_token_cost"])
    assert plan_call["cost_usd"] == pytest.approx(full_in + full_out - discount)
    assert plan_call["cost_usd"] < full_in + full_out
    # Recorded in the events (so `show` and traces have it), and shown by `planweave show`.
    events = [e for e in store.get_run(second.run_id).events if e["kind"] == "llm_called"]
    assert [e["cached_input_tokens"] for e in events] == [plan_call["cached_input_tokens"], join_call["cached_input_tokens"]]
    from planweave.planner.cli.render import run_tree
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(run_tree(store.get_run(second.run_id)))
    shown = console.export_text()
    assert f"({plan_call['cached_input_tokens']} cached)" in shown
    assert f"({second.usage.cached_input_tokens} cached), cost" in shown
    # And `planweave stats` sums them per goal kind (one query per store, not event by event).
    cached = {g.name: g.cached_input_tokens for g in store.stats()}
    assert cached == {"add 1 and 2": first.usage.cached_input_tokens, "add 2 and 2": second.usage.cached_input_tokens}
    assert store.cached_input_tokens([second.run_id]) == {second.run_id: second.usage.cached_input_tokens}
    assert RunStore.cached_input_tokens(store, [first.run_id, second.run_id]) == store.cached_input_tokens(
        [first.run_id, second.run_id]
    )  # the interface's default (reading events) agrees with SQLite's query


async def test_an_anthropic_model_gets_its_static_prefix_marked_for_the_cache() -> None:
    with FakeModelServer() as anthropic_like:  # OpenRouter speaks OpenAI's protocol to Claude models
        anthropic_like.enqueue(plan(answer="done"), finish("unused"))
        result = await Planner(
            model="openrouter/anthropic/claude-3.5-haiku", api_base=anthropic_like.base_url, api_key="k", tools=[add],
            store=False,
        ).run("say done")
        [request] = anthropic_like.chat_requests
    assert result.answer == "done"
    system, user = request.messages
    assert system["role"] == "system" and system["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "Plan the next steps" in system["content"][-1]["text"]
    assert user["content"] == "## Goal\nsay done\n"  # what changes is not marked


def test_only_models_that_need_a_marker_get_one() -> None:
    from planweave.planner.caching import mark_cache_prefix, needs_cache_marker

    messages = [{"role": "system", "content": "static"}, {"role": "user", "content": "goal"}]
    assert mark_cache_prefix(messages, "openai/gpt-4o-mini") is messages  # OpenAI caches prefixes by itself
    assert [needs_cache_marker(m) for m in ("anthropic/claude-3-5-haiku-latest", "bedrock/anthropic.claude-3-haiku",
                                            "ollama/llama3.1", "openrouter/openai/gpt-4o")] == [True, True, False, False]
    marked = mark_cache_prefix(messages, "anthropic/claude-3-5-haiku-latest")
    assert marked[0]["content"] == [{"type": "text", "text": "static", "cache_control": {"type": "ephemeral"}}]
    assert messages[0]["content"] == "static" and marked[1] is messages[1]
