"""`web_search`: web search through Brave, Serper or Tavily, with one result shape.

    web_search = make_web_search()                      # the provider whose key is set, at call time
    search = make_web_search(provider="tavily")         # this provider; key from $TAVILY_API_KEY
    search = make_web_search(provider="serper", api_key="...", timeout_s=5)

Without a `provider`, each call uses the first provider whose key is set: Brave
(`BRAVE_API_KEY`), then Serper (`SERPER_API_KEY`), then Tavily (`TAVILY_API_KEY`). Keys are
read when the tool is called, not when it is built, so a key set after import (or rotated)
is picked up, and building the default tool never fails. Each provider's endpoint can be
moved with an environment variable (`PLANWEAVE_BRAVE_URL`, `PLANWEAVE_SERPER_URL`,
`PLANWEAVE_TAVILY_URL`; tests point them at `planweave.planner.testing.FakeSearchServer`).

Every provider's answer becomes a list of `SearchResult`: title, url, plain-text snippet,
the provider's name in `source`, and `published` when the provider dates the page.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import httpx
from pydantic import Field
from typing_extensions import NotRequired, TypedDict

from planweave.tools.base import Tool
from planweave.tools.errors import ConfigError, ToolError
from planweave.tools.http import _client

__all__ = [
    "API_KEY_ENV",
    "BRAVE_SEARCH_URL",
    "PROVIDERS",
    "Provider",
    "SearchResult",
    "make_web_search",
    "web_search",
]

BRAVE_SEARCH_URL: Final = "https://api.search.brave.com/res/v1/web/search"
"""The Brave Search web endpoint."""
API_KEY_ENV: Final = "BRAVE_API_KEY"
"""Environment variable holding the Brave Search API key."""

Provider = Literal["brave", "serper", "tavily"]

_TOOL: Final = "web_search"
_TAG: Final = re.compile(r"<[^>]+>")


class SearchResult(TypedDict):
    """One search hit, the same from every provider."""

    title: str
    url: str
    snippet: str
    """Plain text: HTML highlighting is removed."""
    source: str
    """The provider that found it: `brave`, `serper` or `tavily`."""
    published: NotRequired[str]
    """When the page was published, as the provider says it (an ISO date or "3 days ago")."""


@dataclass(frozen=True)
class _Provider:
    """How to ask one provider and read its answer."""

    name: Provider
    label: str
    key_env: str
    url_env: str
    default_url: str
    key_page: str
    request: Callable[[httpx.AsyncClient, str, str, str, int], Any]
    """(client, url, key, query, count) -> the awaitable response."""
    results: Callable[[Any], list[SearchResult]]


def _brave_request(client: httpx.AsyncClient, url: str, key: str, query: str, count: int) -> Any:
    return client.get(
        url, params={"q": query, "count": count}, headers={"Accept": "application/json", "X-Subscription-Token": key}
    )


def _serper_request(client: httpx.AsyncClient, url: str, key: str, query: str, count: int) -> Any:
    return client.post(url, json={"q": query, "num": count}, headers={"X-API-KEY": key})


def _tavily_request(client: httpx.AsyncClient, url: str, key: str, query: str, count: int) -> Any:
    return client.post(url, json={"query": query, "max_results": count}, headers={"Authorization": f"Bearer {key}"})


def _items(payload: Any, *path: str) -> list[dict[str, Any]]:
    """The list at `path` in a provider's answer (an answer without it has no results)."""
    node = payload
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return [item for item in node if isinstance(item, dict)] if isinstance(node, list) else []


def _result(source: Provider, title: Any, url: Any, snippet: Any, published: Any) -> SearchResult | None:
    if not url:
        return None
    result: SearchResult = {"title": _plain(title), "url": str(url), "snippet": _plain(snippet), "source": source}
    if published:
        result["published"] = str(published)
    return result


def _brave_results(payload: Any) -> list[SearchResult]:
    found = (_result("brave", i.get("title"), i.get("url"), i.get("description"), i.get("page_age") or i.get("age"))
             for i in _items(payload, "web", "results"))  # fmt: skip
    return [r for r in found if r is not None]


def _serper_results(payload: Any) -> list[SearchResult]:
    found = (_result("serper", i.get("title"), i.get("link"), i.get("snippet"), i.get("date"))
             for i in _items(payload, "organic"))  # fmt: skip
    return [r for r in found if r is not None]


def _tavily_results(payload: Any) -> list[SearchResult]:
    found = (_result("tavily", i.get("title"), i.get("url"), i.get("content"), i.get("published_date"))
             for i in _items(payload, "results"))  # fmt: skip
    return [r for r in found if r is not None]


PROVIDERS: Final[dict[str, _Provider]] = {
    p.name: p
    for p in (
        _Provider("brave", "Brave Search", API_KEY_ENV, "PLANWEAVE_BRAVE_URL", BRAVE_SEARCH_URL,
                  "https://brave.com/search/api/", _brave_request, _brave_results),
        _Provider("serper", "Serper", "SERPER_API_KEY", "PLANWEAVE_SERPER_URL", "https://google.serper.dev/search",
                  "https://serper.dev/", _serper_request, _serper_results),
        _Provider("tavily", "Tavily", "TAVILY_API_KEY", "PLANWEAVE_TAVILY_URL", "https://api.tavily.com/search",
                  "https://tavily.com/", _tavily_request, _tavily_results),
    )
}  # fmt: skip
"""The providers, in the order `web_search` tries their keys."""


def make_web_search(
    *,
    provider: Provider | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Tool:
    """Build a `web_search` tool.

    Args:
        provider: `brave`, `serper` or `tavily`; None: at each call, the first provider whose
            key is set (Brave, Serper, Tavily), or Brave when `api_key` or `base_url` is given.
        api_key: The provider's key; when None, its environment variable is read at each call.
        base_url: The provider's endpoint; when None, its `PLANWEAVE_<PROVIDER>_URL`
            environment variable, else the provider's own.
        timeout_s: Limit for the whole call, in seconds.
        transport: An httpx transport to send requests through; borrowed, never closed.

    Returns:
        A `Tool` named `web_search`, returning a list of `SearchResult` dicts.
    """
    if timeout_s <= 0:
        raise ConfigError(f"`timeout_s` must be positive, got {timeout_s}.")
    if provider is not None and provider not in PROVIDERS:
        raise ConfigError(f"unknown search provider `{provider}`; use one of {', '.join(PROVIDERS)}.")
    fixed = provider or ("brave" if api_key or base_url else None)

    async def web_search(
        query: Annotated[str, Field(min_length=1, max_length=400)],
        count: Annotated[int, Field(ge=1, le=20)] = 5,
    ) -> list[SearchResult]:
        """Search the web and return the top results, each with a title, URL and snippet.

        Args:
            query: What to search for, as you would type it into a search engine.
            count: How many results to return, from 1 to 20.
        """
        chosen, key = _choose(fixed, api_key)
        url = base_url or os.environ.get(chosen.url_env, "").strip() or chosen.default_url
        try:
            async with asyncio.timeout(timeout_s), _client(transport, timeout_s, trust_env=True) as client:
                response = await chosen.request(client, url, key, query, count)
        except (TimeoutError, httpx.TimeoutException):
            raise ToolError(
                f"{chosen.label} did not answer within {timeout_s:g} s; try again later.", tool=_TOOL, permanent=False
            ) from None
        except httpx.RequestError as exc:
            raise ToolError(
                f"cannot reach {chosen.label} at `{url}`: {type(exc).__name__}: {exc or 'no detail'}.",
                tool=_TOOL,
                permanent=False,
            ) from exc
        _check_status(response, chosen)
        try:
            payload = response.json()
        except ValueError:
            raise ToolError(
                f"{chosen.label} returned a response that is not JSON (HTTP {response.status_code}); try again later.",
                tool=_TOOL,
                permanent=False,
            ) from None
        return chosen.results(payload)[:count]

    return Tool.from_function(web_search, name=_TOOL)


def _choose(fixed: str | None, api_key: str | None) -> tuple[_Provider, str]:
    """The provider to ask and its key, or a permanent error saying which variable to set."""
    if fixed is not None:
        chosen = PROVIDERS[fixed]
        key = api_key or os.environ.get(chosen.key_env, "").strip()
        if not key:
            raise ToolError(
                f"web_search needs a {chosen.label} API key; set {chosen.key_env} (get one at {chosen.key_page}), "
                "or build the tool with `make_web_search(api_key=...)`.",
                tool=_TOOL,
                permanent=True,
            )
        return chosen, key
    for chosen in PROVIDERS.values():
        key = os.environ.get(chosen.key_env, "").strip()
        if key:
            return chosen, key
    options = ", ".join(f"{p.key_env} ({p.label}, {p.key_page})" for p in PROVIDERS.values())
    raise ToolError(
        f"web_search needs a search API key; set one of {options}, "
        "or build the tool with `make_web_search(provider=..., api_key=...)`.",
        tool=_TOOL,
        permanent=True,
    )


def _check_status(response: httpx.Response, provider: _Provider) -> None:
    status = response.status_code
    if status < 400:
        return
    label = provider.label
    if status in (401, 403):
        raise ToolError(
            f"{label} rejected the API key (HTTP {status}); check {provider.key_env} "
            f"or the key passed to `make_web_search` (keys: {provider.key_page}).",
            tool=_TOOL,
            permanent=True,
        )
    if status == 429:
        reset = response.headers.get("x-ratelimit-reset") or response.headers.get("retry-after")
        when = f"retry in {reset.split(',')[0].strip()} s" if reset else "retry later"
        raise ToolError(
            f"{label} rate limit reached (HTTP 429); {when}, or upgrade the API plan.",
            tool=_TOOL,
            permanent=False,
        )
    snippet = " ".join(response.text.split())[:300]
    if status >= 500:
        raise ToolError(
            f"{label} failed with HTTP {status}; retrying may help. Body: {snippet!r}",
            tool=_TOOL,
            permanent=False,
        )
    raise ToolError(
        f"{label} refused the request (HTTP {status}); check the query and `count`. Body: {snippet!r}",
        tool=_TOOL,
        permanent=True,
    )


def _plain(value: Any) -> str:
    """Providers mark matches with `<strong>`; the model wants plain text."""
    return html.unescape(_TAG.sub("", str(value))).strip() if value else ""


web_search: Final[Tool] = make_web_search()
"""The default `web_search`: the provider whose key is set, read at call time."""
