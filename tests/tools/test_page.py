"""`fetch_page`: readable text, title, links and date of real pages served on 127.0.0.1, under
`http_get`'s address rules and size cap."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from planweave.planner.testing import FakeSearchServer
from planweave.tools.errors import ToolError, ToolRefusedError
from planweave.tools.page import fetch_page, make_fetch_page

ARTICLE = """<!doctype html>
<html><head><title>Best PM tools of 2026 | Example</title>
<meta name="date" content="2026-11-02"></head>
<body>
<nav><a href="/">Home</a> <a href="/pricing">Pricing</a> <a href="javascript:void(0)">Menu</a></nav>
<article>
<h1>Best PM tools of 2026</h1>
<p>Project management software keeps teams on track. We compared twelve tools on planning, reporting and price,
and spent a month running real projects in each of them before writing this review.</p>
<p>Asana and <a href="https://asana.example/features#boards">Asana's boards</a> suit larger teams that plan across
departments; Trello suits small teams who like to move cards around a board and need little else.</p>
<p>Linear is the pick for software teams: fast, keyboard-driven and opinionated about how work should flow.</p>
</article>
<footer>Copyright 2026 Example Media. <a href="/pricing">Pricing</a></footer>
</body></html>"""


@pytest.fixture(scope="module")
def site() -> Iterator[FakeSearchServer]:
    with FakeSearchServer(pages={"/article": ARTICLE, "/tiny": "<html><body><p>Just this.</p></body></html>"}) as s:
        yield s


async def test_a_page_becomes_readable_text_title_and_links(site: FakeSearchServer) -> None:
    page = await make_fetch_page(allow_private=True).acall({"url": f"{site.base_url}/article"})
    assert page["url"] == f"{site.base_url}/article"
    assert page["title"] == "Best PM tools of 2026"  # the site's name after `|` is dropped
    assert "Linear is the pick for software teams" in page["text"]
    assert "<p>" not in page["text"] and "Copyright" not in page["text"] and "Home" not in page["text"]
    assert page["links"] == [
        {"url": f"{site.base_url}/", "text": "Home"},
        {"url": f"{site.base_url}/pricing", "text": "Pricing"},
        {"url": "https://asana.example/features", "text": "Asana's boards"},
    ]
    assert page["published"] == "2026-11-02"
    assert page["truncated"] is False


async def test_a_page_too_short_for_the_extractor_still_gives_its_text(site: FakeSearchServer) -> None:
    page = await make_fetch_page(allow_private=True).acall({"url": f"{site.base_url}/tiny"})
    assert page["text"] == "Just this." and page["title"] == "" and page["links"] == []


async def test_text_is_cut_at_max_chars(site: FakeSearchServer) -> None:
    page = await make_fetch_page(allow_private=True).acall({"url": f"{site.base_url}/article", "max_chars": 100})
    assert len(page["text"]) == 100 and page["truncated"] is True


async def test_the_body_cap_of_http_get_applies(site: FakeSearchServer) -> None:
    page = await make_fetch_page(allow_private=True, max_bytes=400).acall({"url": f"{site.base_url}/article"})
    assert page["truncated"] is True and "Linear" not in page["text"]


async def test_local_addresses_are_refused_by_default(site: FakeSearchServer) -> None:
    with pytest.raises(ToolRefusedError) as info:
        await fetch_page.acall({"url": f"{site.base_url}/article"})
    message = str(info.value)
    assert "a loopback address" in message
    assert message.endswith("to allow them, build the tool with `make_fetch_page(allow_private=True)` "
                            "(or `builtin_tools(allow_private_hosts=True)`).")


async def test_a_missing_page_is_an_http_error(site: FakeSearchServer) -> None:
    with pytest.raises(ToolError, match="HTTP 404"):
        await make_fetch_page(allow_private=True).acall({"url": f"{site.base_url}/missing"})


def test_trafilatura_is_imported_on_first_use_only() -> None:
    code = "import sys, planweave.tools.builtin; print('trafilatura' in sys.modules, 'lxml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
