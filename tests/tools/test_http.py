import gzip
import ipaddress
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from planweave.tools import http as tools_http
from planweave.tools.base import Tool
from planweave.tools.errors import ToolArgumentsError, ToolError, ToolRefusedError
from planweave.tools.http import MAX_REDIRECTS, blocked_reason, http_get, make_http_get


class Handler(BaseHTTPRequestHandler):
    """Routes for every behaviour under test; the path picks the response."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        n = int(query.get("n", "0"))
        if path == "/json":
            self.send(200, b'{"ok": true, "items": [1, 2]}', "application/json", ETag='"v1"', X_Ignored="1")
        elif path == "/problem-json":
            self.send(200, b'{"title": "fine"}', "application/problem+json; charset=utf-8")
        elif path == "/bad-json":
            self.send(200, b"not json at all", "application/json")
        elif path == "/latin1":
            self.send(200, "café".encode("latin-1"), "text/plain; charset=iso-8859-1")
        elif path == "/nocharset":
            self.send(200, "<p>naïve</p>".encode(), "text/html")
        elif path == "/big":
            self.send(200, b"x" * n, "text/plain")
        elif path == "/multibyte":
            self.send(200, ("é" * n).encode(), "text/plain; charset=utf-8")
        elif path == "/bigjson":
            self.send(200, json.dumps({"data": "y" * n}).encode(), "application/json")
        elif path == "/gzip":
            self.send(200, gzip.compress(b"z" * 10_000), "text/plain", Content_Encoding="gzip")
        elif path == "/png":
            self.send(200, b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png")
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            extra = {"Retry_After": "7"} if status == 429 else {}
            self.send(status, f"error body {status}\n  with   spaces".encode(), "text/plain", **extra)
        elif path == "/slow":
            time.sleep(float(query["s"]))
            self.send(200, b"late", "text/plain")
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self.send(302, b"", None, Location=f"/redirect/{left - 1}" if left > 1 else "/json")
        elif path == "/redirect-to":
            self.send(int(query.get("status", "302")), b"", None, Location=query["url"])
        elif path == "/relative/start":
            self.send(301, b"", None, Location="../json")
        elif path == "/loop":
            self.send(302, b"", None, Location="/loop")
        elif path == "/no-location":
            self.send(302, b"moved, somewhere", "text/plain")
        elif path == "/echo":
            body = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self.send(200, json.dumps(body).encode(), "application/json")
        else:
            self.send(404, b"no such route", "text/plain")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not wait for handlers still sleeping after a client timed out

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hung up (timeouts, truncation): expected here


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server with a self-signed certificate for `localhost`, and a client context trusting it."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = Server(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ssl.create_default_context(cafile=str(cert))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def fetch() -> Tool:
    return make_http_get(allow_private=True, timeout_s=5)


@pytest.fixture
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let 127.0.0.1 pass the address check, so the checked path can reach the local server."""
    real = tools_http.blocked_reason
    monkeypatch.setattr(
        tools_http, "blocked_reason", lambda ip: None if str(ip) == "127.0.0.1" else real(ip)
    )


# -- the tool ------------------------------------------------------------------


def test_default_tool_and_schema() -> None:
    assert isinstance(http_get, Tool)
    assert http_get.name == "http_get"
    assert http_get.is_async
    schema = http_get.json_schema
    assert schema["required"] == ["url"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"url", "headers", "max_chars"}
    assert schema["properties"]["url"]["type"] == "string"
    assert schema["properties"]["max_chars"]["anyOf"][0] == {"type": "integer", "minimum": 1}
    assert "Private, loopback and link-local addresses are refused." in http_get.description
    assert "refused" not in make_http_get(allow_private=True).description
    output = http_get.output_schema
    assert output is not None
    assert set(output["required"]) == {"url", "status", "content_type", "headers", "truncated"}
    assert {"text", "json"} <= set(output["properties"])


def test_factory_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="`timeout_s` must be positive"):
        make_http_get(timeout_s=0)
    with pytest.raises(ValueError, match="`max_bytes` must be positive"):
        make_http_get(max_bytes=0)


# -- decoding ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_json_is_decoded(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/json"})
    assert result == {
        "url": f"{base}/json",
        "status": 200,
        "content_type": "application/json",
        "headers": {"content-type": "application/json", "content-length": "29", "etag": '"v1"'},
        "json": {"ok": True, "items": [1, 2]},
        "truncated": False,
    }


@pytest.mark.asyncio
async def test_json_suffix_types_are_decoded(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/problem-json"})
    assert result["content_type"] == "application/problem+json"
    assert result["json"] == {"title": "fine"}


@pytest.mark.asyncio
async def test_invalid_json_falls_back_to_text(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/bad-json"})
    assert result["text"] == "not json at all"
    assert "json" not in result


@pytest.mark.asyncio
async def test_text_uses_the_response_charset(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/latin1"})
    assert result["text"] == "café"
    assert result["content_type"] == "text/plain"
    assert "json" not in result


@pytest.mark.asyncio
async def test_text_without_charset_is_utf8(base: str, fetch: Tool) -> None:
    assert (await fetch.acall({"url": f"{base}/nocharset"}))["text"] == "<p>naïve</p>"


@pytest.mark.asyncio
async def test_compressed_bodies_are_decompressed(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/gzip"})
    assert result["text"] == "z" * 10_000


@pytest.mark.asyncio
async def test_binary_content_is_refused(base: str, fetch: Tool) -> None:
    with pytest.raises(ToolError) as info:
        await fetch.acall({"url": f"{base}/png"})
    assert str(info.value) == (
        f"`{base}/png` returned `image/png` content, which is binary; http_get returns text and JSON only."
    )
    assert info.value.permanent


@pytest.mark.asyncio
async def test_request_headers_merge_factory_and_call(base: str) -> None:
    tool = make_http_get(allow_private=True, headers={"X-Team": "planweave", "X-Both": "factory"})
    result = await tool.acall({"url": f"{base}/echo", "headers": {"X-Both": "call"}})
    seen = result["json"]["headers"]
    assert seen["x-team"] == "planweave"
    assert seen["x-both"] == "call"
    assert seen["user-agent"].startswith("planweave-http_get/")


# -- size caps -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_body_is_cut_at_max_bytes(base: str) -> None:
    tool = make_http_get(allow_private=True, max_bytes=1_000)
    result = await tool.acall({"url": f"{base}/big?n=5000"})
    assert result["text"] == "x" * 1_000
    assert result["truncated"] is True
    small = await tool.acall({"url": f"{base}/big?n=1000"})
    assert small["truncated"] is False and len(small["text"]) == 1_000


@pytest.mark.asyncio
async def test_cut_never_splits_a_character(base: str) -> None:
    tool = make_http_get(allow_private=True, max_bytes=1_001)
    result = await tool.acall({"url": f"{base}/multibyte?n=1000"})
    assert result["text"] == "é" * 500  # the 501st character's first byte is dropped, not replaced
    assert result["truncated"] is True


@pytest.mark.asyncio
async def test_truncated_json_is_returned_as_text(base: str) -> None:
    tool = make_http_get(allow_private=True, max_bytes=100)
    result = await tool.acall({"url": f"{base}/bigjson?n=5000"})
    assert "json" not in result
    assert result["text"].startswith('{"data": "yyy') and len(result["text"]) == 100
    assert result["truncated"] is True


@pytest.mark.asyncio
async def test_max_chars_cuts_text(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/big?n=500", "max_chars": 10})
    assert result["text"] == "x" * 10
    assert result["truncated"] is True
    whole = await fetch.acall({"url": f"{base}/big?n=5", "max_chars": 10})
    assert whole["text"] == "xxxxx" and whole["truncated"] is False


@pytest.mark.asyncio
async def test_max_chars_must_be_positive(fetch: Tool) -> None:
    with pytest.raises(ToolArgumentsError, match="`max_chars`: Input should be greater than or equal to 1"):
        await fetch.acall({"url": "http://example.com", "max_chars": 0})


# -- status codes and failures ---------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "permanent", "hint"),
    [
        (400, True, "the request was rejected; check the URL and headers."),
        (401, True, "the server wants credentials; pass them in `headers` if you have them, or use another source."),
        (404, True, "check the URL."),
        (429, False, "rate limited; retry after 7 s."),
        (500, False, "a server error; retrying may help."),
        (503, False, "a server error; retrying may help."),
    ],
)
async def test_error_statuses(base: str, fetch: Tool, status: int, permanent: bool, hint: str) -> None:
    url = f"{base}/status/{status}"
    with pytest.raises(ToolError) as info:
        await fetch.acall({"url": url})
    phrase = httpx.codes.get_reason_phrase(status)
    body = f"'error body {status} with spaces'"  # whitespace collapsed
    assert str(info.value) == f"GET `{url}` returned HTTP {status} {phrase}: {hint} Body: {body}"
    assert info.value.permanent is permanent
    assert info.value.tool == "http_get"
    assert not isinstance(info.value, ToolRefusedError)


@pytest.mark.asyncio
async def test_timeout_is_transient_and_names_the_limit(base: str) -> None:
    tool = make_http_get(allow_private=True, timeout_s=0.2)
    with pytest.raises(ToolError) as info:  # the server answers after 30 s: only the timeout returns this early
        await tool.acall({"url": f"{base}/slow?s=30"})
    assert str(info.value) == (
        f"GET `{base}/slow?s=30` timed out after 0.2 s; the server may be slow or down. "
        "Try again, or build the tool with a larger `make_http_get(timeout_s=...)`."
    )
    assert info.value.permanent is False


@pytest.mark.asyncio
async def test_timeout_covers_the_whole_body(base: str) -> None:
    # Each byte arrives well within the timeout; the whole body does not.
    tool = make_http_get(allow_private=True, timeout_s=0.3)
    with pytest.raises(ToolError, match="timed out after 0.3 s"):  # the body takes 1 s to arrive
        await tool.acall({"url": f"{base}/trickle"})


@pytest.mark.asyncio
async def test_connection_refused_is_transient(fetch: Tool) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as unused:
        port = unused.server_address[1]  # bound, then closed: nothing listens there
    with pytest.raises(ToolError) as info:
        await fetch.acall({"url": f"http://127.0.0.1:{port}/"})
    assert str(info.value).startswith(f"GET `http://127.0.0.1:{port}/` failed: ConnectError:")
    assert info.value.permanent is False


@pytest.mark.asyncio
async def test_unknown_host_is_permanent() -> None:
    with pytest.raises(ToolError) as info:
        await http_get.acall({"url": "http://no-such-host.invalid/"})
    assert str(info.value).startswith("host `no-such-host.invalid` could not be resolved (")
    assert info.value.permanent is True


# -- redirects -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_follows_redirects(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/redirect/{MAX_REDIRECTS}"})
    assert result["url"] == f"{base}/json"
    assert result["json"] == {"ok": True, "items": [1, 2]}


@pytest.mark.asyncio
async def test_resolves_relative_redirects(base: str, fetch: Tool) -> None:
    assert (await fetch.acall({"url": f"{base}/relative/start"}))["url"] == f"{base}/json"


@pytest.mark.asyncio
async def test_too_many_redirects(base: str, fetch: Tool) -> None:
    with pytest.raises(ToolError) as info:
        await fetch.acall({"url": f"{base}/redirect/{MAX_REDIRECTS + 1}"})
    assert str(info.value) == (
        f"`{base}/redirect/{MAX_REDIRECTS + 1}` redirected more than {MAX_REDIRECTS} times (last to `{base}/json`); "
        "the URL probably loops, so fetch the final URL directly."
    )
    assert info.value.permanent
    with pytest.raises(ToolError, match="redirected more than 5 times"):
        await fetch.acall({"url": f"{base}/loop"})


@pytest.mark.asyncio
async def test_redirect_without_location_is_returned(base: str, fetch: Tool) -> None:
    result = await fetch.acall({"url": f"{base}/no-location"})
    assert (result["status"], result["text"]) == (302, "moved, somewhere")


@pytest.mark.asyncio
async def test_redirect_to_another_scheme_is_refused(base: str, fetch: Tool) -> None:
    with pytest.raises(ToolRefusedError) as info:
        await fetch.acall({"url": f"{base}/redirect-to?url=file:///etc/passwd"})
    assert str(info.value) == (
        f"`{base}/redirect-to?url=file:///etc/passwd` redirected to `file:///etc/passwd`, which uses the `file` "
        "scheme; http_get only follows `http` and `https` URLs."
    )


@pytest.mark.asyncio
async def test_credentials_do_not_follow_a_redirect_to_another_origin(base: str, fetch: Tool) -> None:
    port = base.rsplit(":", 1)[1]
    headers = {"Authorization": "Bearer secret", "Cookie": "s=1", "X-Keep": "yes"}
    same = await fetch.acall({"url": f"{base}/redirect-to?url=/echo", "headers": headers})
    assert same["json"]["headers"]["authorization"] == "Bearer secret"
    other = await fetch.acall({"url": f"{base}/redirect-to?url=http://localhost:{port}/echo", "headers": headers})
    seen = other["json"]["headers"]
    assert "authorization" not in seen and "cookie" not in seen
    assert seen["x-keep"] == "yes"


@pytest.mark.asyncio
async def test_borrowed_transport_is_not_closed(base: str) -> None:
    transport = httpx.AsyncHTTPTransport()
    try:
        tool = make_http_get(allow_private=True, transport=transport)
        for _ in range(2):
            assert (await tool.acall({"url": f"{base}/json"}))["status"] == 200
    finally:
        await transport.aclose()


# -- address policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped private"),
        ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
        ("2002:7f00:1::", "6to4 loopback"),
        ("64:ff9b::a00:1", "NAT64 private"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_address_classifier(address: str, reason: str | None) -> None:
    assert blocked_reason(address) == reason
    assert blocked_reason(ipaddress.ip_address(address)) == reason


ALLOW_HINT = (
    "http_get blocks private and local addresses so that plans cannot reach internal services; to allow them, "
    "build the tool with `make_http_get(allow_private=True)` (or `builtin_tools(allow_private_hosts=True)`)."
)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "host", "described"),
    [
        ("http://127.0.0.1/admin", "127.0.0.1", "a loopback"),
        ("http://10.0.0.5:8080/", "10.0.0.5", "a private"),
        ("https://192.168.0.1/", "192.168.0.1", "a private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local"),
        ("http://224.0.0.251/", "224.0.0.251", "a multicast"),
        ("http://0.0.0.0:8000/", "0.0.0.0", "an unspecified"),
        ("http://[::1]:8000/", "::1", "a loopback"),
        ("http://[fe80::1]/", "fe80::1", "a link-local"),
        ("http://[fd00::1]/", "fd00::1", "a private"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "an IPv4-mapped loopback"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe", "an IPv4-mapped link-local"),
    ],
)
async def test_refuses_non_public_literal_addresses(url: str, host: str, described: str) -> None:
    with pytest.raises(ToolRefusedError) as info:
        await http_get.acall({"url": url})
    assert str(info.value) == f"refusing to fetch `{url}`: host `{host}` is {described} address. {ALLOW_HINT}"
    assert info.value.permanent is True
    assert info.value.tool == "http_get"


@pytest.mark.asyncio
async def test_refuses_names_that_resolve_to_private_addresses(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/json"
    with pytest.raises(ToolRefusedError) as info:
        await http_get.acall({"url": url})
    assert str(info.value).startswith(f"refusing to fetch `{url}`: host `localhost` resolves to `")
    assert "a loopback address" in str(info.value)
    assert "make_http_get(allow_private=True)" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("target", "described"),
    [
        ("http://169.254.169.254/latest/meta-data/", "host `169.254.169.254` is a link-local address"),
        ("http://[::1]:9/", "host `::1` is a loopback address"),
        ("http://[::ffff:127.0.0.2]/", "host `::ffff:127.0.0.2` is an IPv4-mapped loopback address"),
        ("http://10.0.0.1/", "host `10.0.0.1` is a private address"),
    ],
)
async def test_each_redirect_is_checked(base: str, loopback_is_public: None, target: str, described: str) -> None:
    start = f"{base}/redirect-to?url={target}"
    with pytest.raises(ToolRefusedError) as info:
        await http_get.acall({"url": start})
    assert str(info.value) == f"refusing to fetch `{target}` (redirected from `{start}`): {described}. {ALLOW_HINT}"


@pytest.mark.asyncio
async def test_checked_address_is_the_one_connected_to(base: str, loopback_is_public: None) -> None:
    # `localhost` is resolved and checked once; the request then goes to that address,
    # carrying the name in `Host`, so a second DNS answer could not change the target.
    port = base.rsplit(":", 1)[1]
    result = await http_get.acall({"url": f"http://localhost:{port}/echo?q=1", "headers": {"host": "evil"}})
    assert result["url"] == f"http://localhost:{port}/echo?q=1"
    assert result["json"]["headers"]["host"] == f"localhost:{port}"
    assert result["json"]["path"] == "/echo?q=1"


@pytest.mark.asyncio
async def test_pinned_https_keeps_the_name_for_tls(
    tls_port: tuple[int, ssl.SSLContext], loopback_is_public: None
) -> None:
    # The connection goes to the checked IP address, yet the certificate (issued for
    # `localhost` only) still verifies: the name travels as the TLS server name.
    port, client_context = tls_port
    transport = httpx.AsyncHTTPTransport(verify=client_context)
    try:
        tool = make_http_get(transport=transport)
        result = await tool.acall({"url": f"https://localhost:{port}/echo"})
        assert result["json"]["headers"]["host"] == f"localhost:{port}"
        # Control: by IP the same certificate does not verify, so verification is really on.
        with pytest.raises(ToolError, match="CERTIFICATE_VERIFY_FAILED"):
            await tool.acall({"url": f"https://127.0.0.1:{port}/echo"})
    finally:
        await transport.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("ftp://example.com/file", ToolRefusedError,
         "`ftp://example.com/file` uses the `ftp` scheme; http_get only fetches `http` and `https` URLs."),
        ("file:///etc/passwd", ToolRefusedError,
         "`file:///etc/passwd` uses the `file` scheme; http_get only fetches `http` and `https` URLs."),
        ("javascript:alert(1)", ToolRefusedError,
         "`javascript:alert(1)` uses the `javascript` scheme; http_get only fetches `http` and `https` URLs."),
        ("example.com/page", ToolArgumentsError,
         "`example.com/page` has no scheme; pass a full URL such as `https://example.com/page`."),
        ("http:///path", ToolArgumentsError,
         "`http:///path` has no host; pass a full URL such as `https://example.com/page`."),
    ],
)
async def test_refuses_other_schemes_and_bad_urls(url: str, error: type[ToolError], message: str) -> None:
    with pytest.raises(error) as info:
        await http_get.acall({"url": url})
    assert str(info.value) == message
    assert info.value.permanent


def test_public_names() -> None:
    from planweave.tools import http as tools_http

    assert sorted(tools_http.__all__) == ['HttpResponse', 'MAX_REDIRECTS', 'blocked_reason', 'http_get', 'make_http_get']
