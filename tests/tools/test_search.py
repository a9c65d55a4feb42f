import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from planweave.tools.base import Tool
from planweave.planner.testing import FakeSearchServer
from planweave.tools.errors import ConfigError, ToolArgumentsError, ToolError
from planweave.tools.search import API_KEY_ENV, BRAVE_SEARCH_URL, PROVIDERS, Provider, make_web_search, web_search

GOOD_KEY = "test-key"

BRAVE_ANSWER = {
    "type": "search",
    "query": {"original": "planweave"},
    "web": {
        "type": "search",
        "results": [
            {
                "title": "Planweave &amp; friends",
                "url": "https://example.com/planweave",
                "description": "An <strong>LLM</strong> workflow planner.",
                "language": "en",
            },
            {"title": "Second", "url": "https://example.org/2", "description": "Two"},
            {"title": "No snippet", "url": "https://example.net/3"},
            {"title": "Broken: no url"},
        ],
    },
}


class Handler(BaseHTTPRequestHandler):
    """A Brave Search stand-in: the API key picks the behaviour."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        key = self.headers.get("X-Subscription-Token")
        if parts.path != "/res/v1/web/search" or self.headers.get("Accept") != "application/json":
            self.send(400, b'{"error": "bad request"}')
        elif key == "rate-limited":
            self.send(429, b'{"error": "rate limited"}', X_RateLimit_Reset="1, 2000000")
        elif key == "broken":
            self.send(503, b"upstream down")
        elif key == "slow":
            time.sleep(1)
            self.send(200, b"{}")
        elif key == "not-json":
            self.send(200, b"<html>oops</html>")
        elif key == "no-web":
            self.send(200, b'{"type": "search", "query": {"original": "x"}}')
        elif key == "invalid-count":
            self.send(422, b'{"error": {"detail": "count is invalid"}}')
        elif key != GOOD_KEY:
            self.send(401, b'{"error": "unauthorized"}')
        else:
            echo = dict(BRAVE_ANSWER, query={"original": query["q"], "count": query["count"]})
            self.send(200, json.dumps(echo).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/res/v1/web/search"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def search_with(endpoint: str, key: str | None = GOOD_KEY, timeout_s: float = 5) -> Tool:
    return make_web_search(api_key=key, base_url=endpoint, timeout_s=timeout_s)


def test_default_tool_and_schema() -> None:
    assert isinstance(web_search, Tool)
    assert web_search.name == "web_search"
    assert web_search.is_async
    schema = web_search.json_schema
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"]["minLength"] == 1
    assert schema["properties"]["count"] == {
        "default": 5,
        "description": "How many results to return, from 1 to 20.",
        "maximum": 20,
        "minimum": 1,
        "title": "Count",
        "type": "integer",
    }
    assert web_search.output_schema is not None
    assert web_search.output_schema["type"] == "array"
    assert BRAVE_SEARCH_URL == "https://api.search.brave.com/res/v1/web/search"


@pytest.mark.asyncio
async def test_returns_plain_results(endpoint: str) -> None:
    results = await search_with(endpoint).acall({"query": "planweave", "count": 10})
    assert results == [
        {"title": "Planweave & friends", "url": "https://example.com/planweave", "snippet": "An LLM workflow planner.",
         "source": "brave"},
        {"title": "Second", "url": "https://example.org/2", "snippet": "Two", "source": "brave"},
        {"title": "No snippet", "url": "https://example.net/3", "snippet": "", "source": "brave"},
    ]


@pytest.mark.asyncio
async def test_count_limits_results(endpoint: str) -> None:
    assert len(await search_with(endpoint).acall({"query": "planweave", "count": 2})) == 2


@pytest.mark.asyncio
async def test_key_is_read_from_the_environment_at_call_time(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = search_with(endpoint, key=None)
    monkeypatch.setenv(API_KEY_ENV, GOOD_KEY)
    assert len(await tool.acall({"query": "planweave"})) == 3
    monkeypatch.setenv(API_KEY_ENV, "wrong")
    with pytest.raises(ToolError, match="rejected the API key"):
        await tool.acall({"query": "planweave"})


@pytest.mark.asyncio
@pytest.mark.parametrize("value", [None, "", "   "])
async def test_missing_key(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    for var in ("SERPER_API_KEY", "TAVILY_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    if value is None:
        monkeypatch.delenv(API_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(API_KEY_ENV, value)
    with pytest.raises(ToolError) as info:
        await web_search.acall({"query": "planweave"})  # the default tool; no request is made
    assert str(info.value) == (
        "web_search needs a search API key; set one of BRAVE_API_KEY (Brave Search, https://brave.com/search/api/), "
        "SERPER_API_KEY (Serper, https://serper.dev/), TAVILY_API_KEY (Tavily, https://tavily.com/), "
        "or build the tool with `make_web_search(provider=..., api_key=...)`."
    )
    assert info.value.permanent is True
    assert info.value.tool == "web_search"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("key", "message", "permanent"),
    [
        ("wrong", "Brave Search rejected the API key (HTTP 401); check BRAVE_API_KEY or the key passed to "
                  "`make_web_search` (keys: https://brave.com/search/api/).", True),
        ("rate-limited", "Brave Search rate limit reached (HTTP 429); retry in 1 s, or upgrade the API plan.", False),
        ("broken", "Brave Search failed with HTTP 503; retrying may help. Body: 'upstream down'", False),
        ("invalid-count", "Brave Search refused the request (HTTP 422); check the query and `count`. "
                          "Body: '{\"error\": {\"detail\": \"count is invalid\"}}'", True),
        ("not-json", "Brave Search returned a response that is not JSON (HTTP 200); try again later.", False),
    ],
)
async def test_error_mapping(endpoint: str, key: str, message: str, permanent: bool) -> None:
    with pytest.raises(ToolError) as info:
        await search_with(endpoint, key=key).acall({"query": "planweave"})
    assert str(info.value) == message
    assert info.value.permanent is permanent
    assert key not in str(info.value)  # the key itself is never echoed


@pytest.mark.asyncio
async def test_answer_without_web_section_has_no_results(endpoint: str) -> None:
    assert await search_with(endpoint, key="no-web").acall({"query": "x"}) == []


@pytest.mark.asyncio
async def test_timeout_is_transient(endpoint: str) -> None:
    with pytest.raises(ToolError) as info:  # the server answers after 1 s: the client gave up first
        await search_with(endpoint, key="slow", timeout_s=0.2).acall({"query": "x"})
    assert str(info.value) == "Brave Search did not answer within 0.2 s; try again later."
    assert info.value.permanent is False


@pytest.mark.asyncio
async def test_unreachable_endpoint_is_transient() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as unused:
        port = unused.server_address[1]
    with pytest.raises(ToolError) as info:
        await search_with(f"http://127.0.0.1:{port}/res/v1/web/search").acall({"query": "x"})
    assert str(info.value).startswith(f"cannot reach Brave Search at `http://127.0.0.1:{port}/res/v1/web/search`")
    assert info.value.permanent is False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "`query` is required"),
        ({"query": ""}, "`query`: String should have at least 1 character"),
        ({"query": "x", "count": 0}, "`count`: Input should be greater than or equal to 1"),
        ({"query": "x", "count": 21}, "`count`: Input should be less than or equal to 20"),
    ],
)
async def test_arguments_are_validated(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolArgumentsError, match=message):
        await web_search.acall(args)


def test_public_names() -> None:
    from planweave.tools import search

    assert sorted(search.__all__) == [
        'API_KEY_ENV', 'BRAVE_SEARCH_URL', 'PROVIDERS', 'Provider', 'SearchResult', 'make_web_search', 'web_search'
    ]


# --- providers, chosen by the key that is set, against FakeSearchServer --------------------------

HITS = [
    {"title": "Best <strong>PM</strong> tools", "url": "https://example.com/pm", "snippet": "Ten tools &amp; more",
     "published": "2026-11-02"},
    {"title": "Second", "url": "{base}/second", "snippet": "Two"},
    {"title": "Third", "url": "https://example.org/3", "snippet": "Three"},
]


@pytest.fixture
def fake_search() -> Iterator[FakeSearchServer]:
    with FakeSearchServer(HITS) as server:
        yield server


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for provider in PROVIDERS.values():
        monkeypatch.delenv(provider.key_env, raising=False)
        monkeypatch.delenv(provider.url_env, raising=False)
    return monkeypatch


@pytest.mark.parametrize("provider", ["brave", "serper", "tavily"])
async def test_each_provider_gives_the_same_result_shape(
    fake_search: FakeSearchServer, no_keys: pytest.MonkeyPatch, provider: str
) -> None:
    for name, value in fake_search.env(provider).items():
        no_keys.setenv(name, value)
    results = await web_search.acall({"query": "best project management software", "count": 2})
    assert results == [
        {"title": "Best PM tools", "url": "https://example.com/pm", "snippet": "Ten tools & more", "source": provider,
         "published": "2026-11-02"},
        {"title": "Second", "url": f"{fake_search.base_url}/second", "snippet": "Two", "source": provider},
    ]
    [request] = fake_search.requests
    assert (request.provider, request.query, request.count) == (provider, "best project management software", 2)


async def test_the_first_provider_with_a_key_is_asked(fake_search: FakeSearchServer, no_keys: pytest.MonkeyPatch) -> None:
    for provider in ("serper", "tavily"):
        for name, value in fake_search.env(provider).items():
            no_keys.setenv(name, value)
    assert {r["source"] for r in await web_search.acall({"query": "x"})} == {"serper"}
    no_keys.delenv("SERPER_API_KEY")
    assert {r["source"] for r in await web_search.acall({"query": "x"})} == {"tavily"}


async def test_an_explicit_provider_is_asked_even_when_another_key_is_set(
    fake_search: FakeSearchServer, no_keys: pytest.MonkeyPatch
) -> None:
    no_keys.setenv("BRAVE_API_KEY", "brave-key")
    search = make_web_search(provider="tavily", api_key=fake_search.key, base_url=fake_search.endpoint("tavily"))
    assert {r["source"] for r in await search.acall({"query": "x"})} == {"tavily"}
    with pytest.raises(ToolError) as info:
        await make_web_search(provider="serper").acall({"query": "x"})
    assert str(info.value) == (
        "web_search needs a Serper API key; set SERPER_API_KEY (get one at https://serper.dev/), "
        "or build the tool with `make_web_search(api_key=...)`."
    )


@pytest.mark.parametrize(("provider", "status"), [("serper", 403), ("tavily", 401)])
async def test_a_rejected_key_names_the_providers_variable(
    fake_search: FakeSearchServer, provider: Provider, status: int
) -> None:
    search = make_web_search(provider=provider, api_key="wrong", base_url=fake_search.endpoint(provider))
    with pytest.raises(ToolError) as info:
        await search.acall({"query": "x"})
    label, var = PROVIDERS[provider].label, PROVIDERS[provider].key_env
    assert str(info.value).startswith(f"{label} rejected the API key (HTTP {status}); check {var} ")
    assert info.value.permanent is True


def test_an_unknown_provider_is_refused_when_building() -> None:
    with pytest.raises(ConfigError, match="unknown search provider `bing`; use one of brave, serper, tavily."):
        make_web_search(provider="bing")  # type: ignore[arg-type]
