"""`FakeSearchServer`: Brave, Serper and Tavily stand-ins and a few web pages, on 127.0.0.1.

Each provider answers in its documented JSON shape, so `web_search` (and a workflow using it)
is tested exactly as it runs against the real APIs::

    with FakeSearchServer(results=[{"title": "A", "url": "{base}/a", "snippet": "..."}],
                          pages={"/a": "<html><title>A</title>...</html>"}) as search:
        os.environ.update(search.env("serper"))   # PLANWEAVE_SERPER_URL and SERPER_API_KEY
        ...                                        # web_search asks Serper; fetch_page reads /a

`{base}` in a result's url becomes the server's own address, so results can point at its pages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeSearchServer", "SearchRequest"]

_PATHS = {"brave": "/brave/res/v1/web/search", "serper": "/serper/search", "tavily": "/tavily/search"}
_ENV = {
    "brave": ("PLANWEAVE_BRAVE_URL", "BRAVE_API_KEY"),
    "serper": ("PLANWEAVE_SERPER_URL", "SERPER_API_KEY"),
    "tavily": ("PLANWEAVE_TAVILY_URL", "TAVILY_API_KEY"),
}


@dataclass
class SearchRequest:
    """One request the server received."""

    provider: str
    """`brave`, `serper`, `tavily`, or `page` for a page."""
    path: str
    query: str = ""
    count: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeSearchServer:
    """Search providers and pages over real HTTP on 127.0.0.1 (use as a context manager).

    Args:
        results: the hits every search returns (at most the request's count): dicts with
            `title`, `url`, `snippet` and optionally `published`; `{base}` in a url is replaced
            by the server's base URL.
        pages: path -> HTML served with GET (status 200, `text/html`).
        key: the API key every provider accepts; any other is refused with HTTP 401.
    """

    def __init__(
        self,
        results: Iterable[Mapping[str, str]] = (),
        *,
        pages: Mapping[str, str] | None = None,
        key: str = "test-key",
    ) -> None:
        self.results = [dict(r) for r in results]
        self.pages = dict(pages or {})
        self.key = key
        self.requests: list[SearchRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeSearchServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-search-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = self._thread = None

    def __enter__(self) -> FakeSearchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def endpoint(self, provider: str) -> str:
        """The URL standing in for `provider`'s search endpoint."""
        return self.base_url + _PATHS[provider]

    def env(self, provider: str = "brave") -> dict[str, str]:
        """Environment variables making `web_search` ask `provider` here, with the right key."""
        url_var, key_var = _ENV[provider]
        return {url_var: self.endpoint(provider), key_var: self.key}

    # --- answers -------------------------------------------------------------------------------

    def _hits(self, count: int) -> list[dict[str, str]]:
        return [{k: v.replace("{base}", self.base_url) for k, v in r.items()} for r in self.results[:count]]

    def answer(self, provider: str, query: str, count: int) -> dict[str, Any]:
        """The provider's documented response body for `query`."""
        hits = self._hits(count)
        if provider == "brave":
            return {
                "type": "search",
                "query": {"original": query, "more_results_available": False},
                "web": {
                    "type": "search",
                    "family_friendly": True,
                    "results": [
                        {"type": "search_result", "title": h["title"], "url": h["url"], "description": h["snippet"],
                         "language": "en", **({"page_age": h["published"]} if "published" in h else {})}
                        for h in hits
                    ],
                },
            }  # fmt: skip
        if provider == "serper":
            return {
                "searchParameters": {"q": query, "type": "search", "num": count, "engine": "google"},
                "organic": [
                    {"title": h["title"], "link": h["url"], "snippet": h["snippet"], "position": i + 1,
                     **({"date": h["published"]} if "published" in h else {})}
                    for i, h in enumerate(hits)
                ],
                "credits": 1,
            }  # fmt: skip
        return {
            "query": query,
            "follow_up_questions": None,
            "answer": None,
            "images": [],
            "results": [
                {"title": h["title"], "url": h["url"], "content": h["snippet"], "score": round(0.9 - i * 0.1, 3),
                 "raw_content": None, **({"published_date": h["published"]} if "published" in h else {})}
                for i, h in enumerate(hits)
            ],
            "response_time": 0.42,
        }  # fmt: skip

    def _record(self, request: SearchRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    server_owner: FakeSearchServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _provider(self, path: str) -> str | None:
        return next((name for name, p in _PATHS.items() if p == path), None)

    def do_GET(self) -> None:
        owner = self.server_owner
        parts = urlsplit(self.path)
        headers = dict(self.headers.items())
        if self._provider(parts.path) == "brave":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            count = int(query.get("count", "20"))
            owner._record(SearchRequest("brave", parts.path, query.get("q", ""), count, headers))
            if self.headers.get("X-Subscription-Token") != owner.key:
                self._send(401, b'{"type": "ErrorResponse", "error": {"status": 401, "code": "SUBSCRIPTION_TOKEN_INVALID"}}')
                return
            self._send(200, json.dumps(owner.answer("brave", query.get("q", ""), count)).encode())
            return
        owner._record(SearchRequest("page", parts.path, headers=headers))
        page = owner.pages.get(parts.path)
        if page is None:
            self._send(404, b"<html><body>not found</body></html>", "text/html")
        else:
            self._send(200, page.encode(), "text/html; charset=utf-8")

    def do_POST(self) -> None:
        owner = self.server_owner
        parts = urlsplit(self.path)
        provider = self._provider(parts.path)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        if provider not in ("serper", "tavily"):
            self._send(404, b'{"error": "not found"}')
            return
        query = str(body.get("q" if provider == "serper" else "query", ""))
        count = int(body.get("num" if provider == "serper" else "max_results", 10))
        owner._record(SearchRequest(provider, parts.path, query, count, dict(self.headers.items())))
        key = self.headers.get("X-API-KEY") if provider == "serper" else self.headers.get("Authorization", "")
        if key not in (owner.key, f"Bearer {owner.key}"):
            self._send(401 if provider == "tavily" else 403, b'{"message": "Unauthorized."}')
            return
        self._send(200, json.dumps(owner.answer(provider, query, count)).encode())
