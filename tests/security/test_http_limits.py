"""`http_get`'s byte cap holds for compressed bodies (issue 12, item 10), against a real local server.

A "zip bomb" is a small compressed body that decodes to something huge: 100 KB of gzip can be
100 MB of zeros. The cap must apply to decoded bytes as they are decoded, so memory stays
bounded by the cap, not by what one network chunk expands to.
"""

from __future__ import annotations

import gzip
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from planweave.tools.errors import ToolError
from planweave.tools.http import make_http_get

BOMB_BYTES = 200_000_000  # what the bomb decodes to
CAP = 2_000_000


def compress(encoding: str, size: int, fill: bytes = b"\0") -> bytes:
    wbits = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[encoding]
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = fill * 1_000_000
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + packer.compress(fill * (size % len(block))) + packer.flush()


class Bodies:
    def __init__(self) -> None:
        self.bomb = compress("gzip", BOMB_BYTES)
        self.double = gzip.compress(self.bomb)  # gzip inside gzip: `Content-Encoding: gzip, gzip`
        self.sent: dict[str, int] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Bodies]]:
    bodies = Bodies()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            routes: dict[str, tuple[bytes, str]] = {
                "/bomb": (bodies.bomb, "gzip"),
                "/double-bomb": (bodies.double, "gzip, gzip"),
                "/deflate": (compress("deflate", 10_000, b"d"), "deflate"),
                "/raw-deflate": (compress("raw-deflate", 10_000, b"r"), "deflate"),
                "/members": (gzip.compress(b"one ") + gzip.compress(b"two"), "gzip"),
                "/brotli": (b"\x1b\x03\x00\xf8\xa5", "br"),
                "/broken": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff", "gzip"),
                "/cut": (gzip.compress(b"x" * 10_000)[:-20], "gzip"),
            }
            body, encoding = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            sent = 0
            try:
                for start in range(0, len(body), 16_384):
                    self.wfile.write(body[start : start + 16_384])
                    sent += min(16_384, len(body) - start)
            except (BrokenPipeError, ConnectionResetError):
                pass  # http_get hung up at its cap
            bodies.sent[self.path] = sent

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("path", ["/bomb", "/double-bomb"])
async def test_a_compressed_bomb_is_cut_at_the_cap_with_bounded_memory(server: tuple[str, Bodies], path: str) -> None:
    base, bodies = server
    fetch = make_http_get(allow_private=True, max_bytes=CAP, timeout_s=60)
    tracemalloc.start()
    try:
        result = await fetch.acall({"url": base + path})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["truncated"] is True
    assert len(result["text"]) == CAP and set(result["text"]) == {"\0"}
    # The decoded text itself is 2 MB (held twice over while it is joined and decoded); the bomb
    # is 200 MB, and one 64 KB network chunk of it decodes to 64 MB.
    assert peak < 5 * CAP + 2_000_000, f"peak {peak:,} bytes"


async def test_every_supported_encoding_still_decodes(server: tuple[str, Bodies]) -> None:
    base, _ = server
    fetch = make_http_get(allow_private=True, max_bytes=CAP)
    assert (await fetch.acall({"url": base + "/deflate"}))["text"] == "d" * 10_000
    assert (await fetch.acall({"url": base + "/raw-deflate"}))["text"] == "r" * 10_000
    assert (await fetch.acall({"url": base + "/members"}))["text"] == "one two"


async def test_an_encoding_it_did_not_ask_for_or_a_broken_body_is_a_clear_error(server: tuple[str, Bodies]) -> None:
    base, _ = server
    fetch = make_http_get(allow_private=True)
    with pytest.raises(ToolError, match="content encoding, which http_get cannot decode; it asks for gzip or deflate"):
        await fetch.acall({"url": base + "/brotli"})
    with pytest.raises(ToolError, match="DecodingError: the body is not valid gzip"):
        await fetch.acall({"url": base + "/broken"})
    with pytest.raises(ToolError, match="the body is not valid gzip .it ends before its compressed stream does"):
        await fetch.acall({"url": base + "/cut"})
