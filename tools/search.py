"""`web_search`: web search through the Brave Search API.

    web_search = make_web_search()                     # key from $BRAVE_API_KEY at call time
    search = make_web_search(api_key="...", timeout_s=5)

The key is read when the tool is called, not when it is built, so a key set
after import (or rotated) is picked up, and building the default tool never fails.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from typing import Annotated, Any, Final

import httpx
from pydantic import Field
from typing_extensions import TypedDict

from planweave.tools.base import Tool
from planweave.tools.errors import ConfigError, ToolError
from planweave.tools.http import _client

__all__ = ["API_KEY_ENV", "BRAVE_SEARCH_URL", "SearchResult", "make_web_search", "web_search"]

BRAVE_SEARCH_URL: Final = "https://api.search.brave.com/res/v1/web/search"
"""The Brave Search web endpoint."""
API_KEY_ENV: Final = "BRAVE_API_KEY"
"""Environment variable holding the Brave Search API key."""

_TOOL: Final = "web_search"
_KEY_PAGE: Final = "https://brave.com/search/api/"
_TAG: Final = re.compile(r"<[^>]+>")


class SearchResult(TypedDict):
    """One search hit."""

    title: str
    url: str
    snippet: str
    """Plain text: Brave's HTML highlighting is removed."""


def make_web_search(
    *,
    api_key: str | None = None,
    base_url: str = BRAVE_SEARCH_URL,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Tool:
    """Build a `web_search` tool backed by the Brave Search API.

    Args:
        api_key: The Brave Search API key; when None, `BRAVE_API_KEY` is read at each call.
        base_url: The search endpoint (tests point it at a local server).
        timeout_s: Limit for the whole call, in seconds.
        transport: An httpx transport to send requests through; borrowed, never closed.

    Returns:
        A `Tool` named `web_search`, returning a list of `SearchResult` dicts.
    """
    if timeout_s <= 0:
        raise ConfigError(f"`timeout_s` must be positive, got {timeout_s}.")

    async def web_search(
        query: Annotated[str, Field(min_length=1, max_length=400)],
        count: Annotated[int, Field(ge=1, le=20)] = 5,
    ) -> list[SearchResult]:
        """Search the web and return the top results, each with a title, URL and snippet.

        Args:
            query: What to search for, as you would type it into a search engine.
            count: How many results to return, from 1 to 20.
        """
        key = api_key or os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise ToolError(
                f"web_search needs a Brave Search API key; set {API_KEY_ENV} (get one at {_KEY_PAGE}), "
                "or build the tool with `make_web_search(api_key=...)`.",
                tool=_TOOL,
                permanent=True,
            )
        try:
            async with asyncio.timeout(timeout_s), _client(transport, timeout_s, trust_env=True) as client:
                response = await client.get(
                    base_url,
                    params={"q": query, "count": count},
                    headers={"Accept": "application/json", "X-Subscription-Token": key},
                )
        except (TimeoutError, httpx.TimeoutException):
            raise ToolError(
                f"Brave Search did not answer within {timeout_s:g} s; try again later.", tool=_TOOL, permanent=False
            ) from None
        except httpx.RequestError as exc:
            raise ToolError(
                f"cannot reach Brave Search at `{base_url}`: {type(exc).__name__}: {exc or 'no detail'}.",
                tool=_TOOL,
                permanent=False,
            ) from exc
        _check_status(response)
        try:
            payload = response.json()
        except ValueError:
            raise ToolError(
                f"Brave Search returned a response that is not JSON (HTTP {response.status_code}); try again later.",
                tool=_TOOL,
                permanent=False,
            ) from None
        return _results(payload)[:count]

    return Tool.from_function(web_search, name=_TOOL)


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise ToolError(
            f"Brave Search rejected the API key (HTTP {status}); check {API_KEY_ENV} "
            f"or the key passed to `make_web_search` (keys: {_KEY_PAGE}).",
            tool=_TOOL,
            permanent=True,
        )
    if status == 429:
        reset = response.headers.get("x-ratelimit-reset") or response.headers.get("retry-after")
        when = f"retry in {reset.split(',')[0].strip()} s" if reset else "retry later"
        raise ToolError(
            f"Brave Search rate limit reached (HTTP 429); {when}, or upgrade the API plan.",
            tool=_TOOL,
            permanent=False,
        )
    snippet = " ".join(response.text.split())[:300]
    if status >= 500:
        raise ToolError(
            f"Brave Search failed with HTTP {status}; retrying may help. Body: {snippet!r}",
            tool=_TOOL,
            permanent=False,
        )
    raise ToolError(
        f"Brave Search refused the request (HTTP {status}); check the query and `count`. Body: {snippet!r}",
        tool=_TOOL,
        permanent=True,
    )


def _results(payload: Any) -> list[SearchResult]:
    """The web results of a Brave response; an answer without a `web` section has none."""
    web = payload.get("web") if isinstance(payload, dict) else None
    raw = web.get("results") if isinstance(web, dict) else None
    results: list[SearchResult] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not item.get("url"):
            continue
        results.append(
            {
                "title": _plain(item.get("title")),
                "url": str(item["url"]),
                "snippet": _plain(item.get("description")),
            }
        )
    return results


def _plain(value: Any) -> str:
    """Brave marks matches with `<strong>`; the model wants plain text."""
    return html.unescape(_TAG.sub("", str(value))).strip() if value else ""


web_search: Final[Tool] = make_web_search()
"""The default `web_search`, reading `BRAVE_API_KEY` at call time."""
