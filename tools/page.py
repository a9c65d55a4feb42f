"""`fetch_page`: a web page's readable text, title and links.

    fetch_page = make_fetch_page()                         # public internet only, like http_get
    intranet_page = make_fetch_page(allow_private=True)    # any address

The page is fetched by `http_get` (`planweave.tools.http.make_http_get`) with the same rules:
private and local addresses refused unless allowed, each redirect checked, the body capped.
The readable text (the article, without menus, ads and markup) is extracted by trafilatura,
imported on the first call (it takes a while to import) and run in a worker thread (parsing
a large page is CPU work that must not stall the event loop).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final
from urllib.parse import urljoin, urldefrag

import httpx
from pydantic import Field
from typing_extensions import NotRequired, TypedDict

from planweave.tools.base import Tool
from planweave.tools.errors import ConfigError
from planweave.tools.http import make_http_get

__all__ = ["Link", "Page", "fetch_page", "make_fetch_page"]

_TOOL: Final = "fetch_page"
_MAX_LINKS: Final = 100
_SPACES: Final = re.compile(r"\s+")


class Link(TypedDict):
    url: str
    """Absolute, without the `#fragment`."""
    text: str


class Page(TypedDict):
    """What `fetch_page` returns."""

    url: str
    """The final URL, after redirects."""
    title: str
    text: str
    """The readable text: the main content in paragraphs, without markup or page furniture."""
    links: list[Link]
    """The page's `http(s)` links, each once, in page order (at most 100)."""
    truncated: bool
    """True when the body was cut at the size cap or the text at `max_chars`."""
    published: NotRequired[str]
    """The publication date the page states (YYYY-MM-DD), when it states one."""


def make_fetch_page(
    *,
    allow_private: bool = False,
    timeout_s: float = 10.0,
    max_bytes: int = 2_000_000,
    transport: httpx.AsyncBaseTransport | None = None,
    fixes: Mapping[str, str] | None = None,
) -> Tool:
    """Build a `fetch_page` tool; the arguments are `make_http_get`'s and mean the same."""
    if timeout_s <= 0:
        raise ConfigError(f"`timeout_s` must be positive, got {timeout_s}.")
    fixes = fixes or {
        "allow_private": "build the tool with `make_fetch_page(allow_private=True)` "
        "(or `builtin_tools(allow_private_hosts=True)`)",
        "timeout_s": "build the tool with a larger `make_fetch_page(timeout_s=...)`",
    }
    get = make_http_get(
        allow_private=allow_private, timeout_s=timeout_s, max_bytes=max_bytes, transport=transport, fixes=fixes
    )

    async def fetch_page(
        url: str,
        max_chars: Annotated[int, Field(ge=100)] = 20_000,
    ) -> Page:
        """Fetch a web page and return its readable text (without menus, ads or markup), its title and its links.

        Args:
            url: The full `http://` or `https://` URL of the page.
            max_chars: Cut the text to this many characters.
        """
        response = await get.acall({"url": url})
        final_url = str(response["url"])
        links: list[Link] = []
        title, published = "", None
        if "json" in response:
            text = json.dumps(response["json"], ensure_ascii=False, indent=1)
        elif "html" in response["content_type"] or response["content_type"] == "":
            text, title, links, published = await asyncio.to_thread(_extract, str(response.get("text", "")), final_url)
        else:
            text = str(response.get("text", ""))
        truncated = bool(response["truncated"])
        if len(text) > max_chars:
            text, truncated = text[:max_chars], True
        page: Page = {"url": final_url, "title": title, "text": text, "links": links, "truncated": truncated}
        if published:
            page["published"] = published
        return page

    description = (
        "Fetch a web page and return its readable text (the main content, without menus, ads or markup), "
        "its title, its links and, when stated, its publication date."
    )
    if not allow_private:
        description += " Private, loopback and link-local addresses are refused."
    return Tool.from_function(fetch_page, name=_TOOL, description=description)


def _extract(html: str, url: str) -> tuple[str, str, list[Link], str | None]:
    """Text, title, links and date of an HTML page (runs in a worker thread)."""
    import lxml.html
    import trafilatura

    if not html.strip():
        return "", "", [], None
    try:
        tree = lxml.html.document_fromstring(html)
    except Exception:  # lxml's parser errors have no common base beyond this
        return _squash(html), "", [], None
    document = trafilatura.bare_extraction(tree, url=url, with_metadata=True, output_format="python")
    text = str(getattr(document, "text", "") or "") if document is not None else ""
    title = str(getattr(document, "title", "") or "") if document is not None else ""
    published = getattr(document, "date", None) if document is not None else None
    if not title:
        found = tree.findtext(".//title")
        title = _squash(found or "")
    if not text:  # too short or too unusual for the extractor: the body's text, whitespace squashed
        body = tree.find(".//body")
        text = _squash((body if body is not None else tree).text_content())
    return text, title, _links(tree, url), str(published) if published else None


def _links(tree: Any, base: str) -> list[Link]:
    links: list[Link] = []
    seen: set[str] = set()
    for anchor in tree.iter("a"):
        href = (anchor.get("href") or "").strip()
        if not href:
            continue
        absolute = urldefrag(urljoin(base, href))[0]
        if not absolute.startswith(("http://", "https://")) or absolute in seen:
            continue
        seen.add(absolute)
        links.append({"url": absolute, "text": _squash(anchor.text_content())})
        if len(links) == _MAX_LINKS:
            break
    return links


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


fetch_page: Final[Tool] = make_fetch_page()
"""The default `fetch_page`: public addresses only, 10 s, 2 MB."""
