"""`http_get`: fetch a URL, refusing private and local addresses.

    http_get = make_http_get()                                  # public internet only
    intranet_get = make_http_get(allow_private=True, timeout_s=5)  # any address

Why the address checks: plans are written by a model from text it was given, so
a URL in a plan is untrusted input. Without checks, a plan could read cloud
metadata (`http://169.254.169.254/`), admin consoles on `localhost`, or other
internal services (server-side request forgery). So unless `allow_private` is
set, every host, including each redirect target, is resolved first and refused
if any of its addresses is not public (see `blocked_reason`). The request is
then sent to the address that was checked, with the original `Host` header and
TLS server name, so a second DNS answer cannot swap in a private address
between the check and the connection (DNS rebinding).

Environment proxy settings (`HTTP_PROXY` and friends) are ignored: a proxy would
connect to addresses this module never sees.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import json
import socket
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Final, TypeAlias

import httpx
from pydantic import Field
from typing_extensions import NotRequired, TypedDict

from planweave.tools.base import Tool
from planweave.tools.errors import ConfigError, ToolArgumentsError, ToolError, ToolRefusedError

__all__ = ["MAX_REDIRECTS", "HttpResponse", "blocked_reason", "http_get", "make_http_get"]

MAX_REDIRECTS: Final = 5
"""Redirects followed before giving up."""

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_TOOL: Final = "http_get"
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_KEPT_HEADERS: Final = (
    "content-type",
    "content-length",
    "content-language",
    "last-modified",
    "etag",
    "cache-control",
    "expires",
    "retry-after",
)
# Credentials meant for one origin must not follow a redirect to another.
_ORIGIN_BOUND_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_BINARY_MAIN_TYPES: Final = frozenset({"image", "audio", "video", "font"})
_BINARY_TYPES: Final = frozenset(
    {
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/vnd.ms-excel",
        "application/msword",
    }
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_ERROR_SNIPPET_BYTES: Final = 2048
_ERROR_SNIPPET_CHARS: Final = 300
_USER_AGENT: Final = "planweave-http_get/0.1"
_DECODE_STEP: Final = 64 * 1024
"""Most decoded bytes one step of decompression may produce: the byte cap is checked between steps,
so a small compressed body (a "zip bomb") never expands in memory beyond the cap and one step."""


class HttpResponse(TypedDict):
    """What `http_get` returns. Exactly one of `text` and `json` is present."""

    url: str
    """The final URL, after redirects."""
    status: int
    content_type: str
    """The media type without parameters, e.g. `text/html`; "" when the server sent none."""
    headers: dict[str, str]
    """A few useful response headers (content-type, content-length, last-modified, etag, ...)."""
    text: NotRequired[str]
    """The body decoded with the response's charset (UTF-8 when it names none)."""
    json: NotRequired[Any]
    """The decoded body, for JSON responses that arrived whole and parse."""
    truncated: bool
    """True when the body was cut at the byte cap or at `max_chars`."""


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why `http_get` must not connect to `address`, or None when it is a public address.

    The reason is an adjective for the message: "unspecified", "loopback",
    "link-local", "multicast", "reserved", "private" or "non-global" (not
    globally routable, e.g. 100.64.0.0/10). IPv6 addresses that carry an IPv4
    address (IPv4-mapped `::ffff:a.b.c.d`, 6to4 `2002::/16`, NAT64
    `64:ff9b::/96`) are judged by that IPv4 address, e.g. "IPv4-mapped loopback".
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        for kind, inner in (
            ("IPv4-mapped", ip.ipv4_mapped),
            ("6to4", ip.sixtofour),
            ("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None),
        ):
            if inner is not None:
                reason = blocked_reason(inner)
                return f"{kind} {reason}" if reason else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-global"
    return None


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class _BorrowedTransport(httpx.AsyncBaseTransport):
    """Lends a caller-owned transport to a short-lived client without letting the client close it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass  # the caller owns the transport and closes it


def _client(transport: httpx.AsyncBaseTransport | None, timeout_s: float, *, trust_env: bool) -> httpx.AsyncClient:
    """A client for one tool call; a caller's transport is borrowed, not closed."""
    return httpx.AsyncClient(
        transport=_BorrowedTransport(transport) if transport is not None else None,
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=trust_env,
    )


def make_http_get(
    *,
    allow_private: bool = False,
    timeout_s: float = 10.0,
    max_bytes: int = 2_000_000,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    fixes: Mapping[str, str] | None = None,
) -> Tool:
    """Build an `http_get` tool with its own policy.

    Args:
        allow_private: Allow private, loopback, link-local and other non-public
            addresses. Leave False whenever plans come from a model.
        timeout_s: Limit for the whole call (DNS, connecting, redirects and the
            body together), in seconds.
        max_bytes: Body size cap; longer bodies are cut and marked `truncated`.
        headers: Headers sent with every request (a call's `headers` override them).
        transport: An httpx transport to send requests through, e.g. for tests.
            It is borrowed: the tool never closes it.
        fixes: How error messages tell the user to change `allow_private` or `timeout_s`,
            by those names, where the user does not build the tool in Python (the command
            line says `pass --allow-private-hosts`). By default they name this function.

    Returns:
        A `Tool` named `http_get`, returning `HttpResponse` dicts.
    """
    if timeout_s <= 0:
        raise ConfigError(f"`timeout_s` must be positive, got {timeout_s}.")
    if max_bytes <= 0:
        raise ConfigError(f"`max_bytes` must be positive, got {max_bytes}.")
    # Only encodings `_read_capped` decodes step by step under the byte cap.
    base_headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "gzip, deflate", **(headers or {})}
    fix_timeout = (fixes or {}).get("timeout_s", "build the tool with a larger `make_http_get(timeout_s=...)`")
    fix_private = (fixes or {}).get(
        "allow_private",
        "build the tool with `make_http_get(allow_private=True)` (or `builtin_tools(allow_private_hosts=True)`)",
    )

    async def http_get(
        url: str,
        headers: dict[str, str] | None = None,
        max_chars: Annotated[int, Field(ge=1)] | None = None,
    ) -> HttpResponse:
        """Fetch a URL with HTTP GET and return its status, some headers and the body.

        Args:
            url: The full `http://` or `https://` URL to fetch.
            headers: Extra request headers, e.g. {"Accept": "application/json"}.
            max_chars: Cut the returned text to this many characters (useful for long pages).
        """
        start = _parse_url(url)
        try:
            async with asyncio.timeout(timeout_s):
                return await _fetch(start, {**base_headers, **(headers or {})}, max_chars)
        except (TimeoutError, httpx.TimeoutException):
            raise ToolError(
                f"GET `{url}` timed out after {timeout_s:g} s; the server may be slow or down. "
                f"Try again, or {fix_timeout}.",
                tool=_TOOL,
                permanent=False,
            ) from None
        except httpx.RequestError as exc:  # connection refused or reset, bad compression, ...
            raise ToolError(
                f"GET `{url}` failed: {type(exc).__name__}: {exc or 'no detail'}; the server may be down.",
                tool=_TOOL,
                permanent=False,
            ) from exc

    async def _fetch(url: httpx.URL, request_headers: dict[str, str], max_chars: int | None) -> HttpResponse:
        origin = url
        async with _client(transport, timeout_s, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                response = await _send(client, url, request_headers, origin)
                try:
                    location = response.headers.get("location")
                    if response.status_code not in _REDIRECTS or not location:
                        return await _read(response, url, max_chars)
                finally:
                    await response.aclose()
                try:
                    next_url = url.join(location)
                except httpx.InvalidURL as exc:
                    raise ToolError(
                        f"`{url}` redirected to `{location}`, which is not a valid URL ({exc}).",
                        tool=_TOOL,
                        permanent=True,
                    ) from None
                if next_url.scheme not in ("http", "https"):
                    raise ToolRefusedError(
                        f"`{url}` redirected to `{location}`, which uses the `{next_url.scheme}` scheme; "
                        "http_get only follows `http` and `https` URLs.",
                        tool=_TOOL,
                    )
                if (next_url.scheme, next_url.host, next_url.port) != (url.scheme, url.host, url.port):
                    request_headers = {
                        k: v for k, v in request_headers.items() if k.lower() not in _ORIGIN_BOUND_HEADERS
                    }
                url = next_url
        raise ToolError(
            f"`{origin}` redirected more than {MAX_REDIRECTS} times (last to `{url}`); "
            "the URL probably loops, so fetch the final URL directly.",
            tool=_TOOL,
            permanent=True,
        )

    async def _send(
        client: httpx.AsyncClient, url: httpx.URL, request_headers: dict[str, str], origin: httpx.URL
    ) -> httpx.Response:
        if allow_private:
            return await client.send(client.build_request("GET", url, headers=request_headers), stream=True)
        host = url.raw_host.decode("ascii")
        literal = _literal_address(host)
        addresses = [literal] if literal else await _resolve(host, url.port or (443 if url.scheme == "https" else 80))
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason is not None:
                via = f" (redirected from `{origin}`)" if url != origin else ""
                where = f"host `{host}` is" if literal else f"host `{host}` resolves to `{ip}`,"
                raise ToolRefusedError(
                    f"refusing to fetch `{url}`{via}: {where} {_article(reason)} {reason} address. "
                    "http_get blocks private and local addresses so that plans cannot reach internal "
                    f"services; to allow them, {fix_private}.",
                    tool=_TOOL,
                )
        if literal:
            return await client.send(client.build_request("GET", url, headers=request_headers), stream=True)
        # `Host` is set from the URL below; a caller's own `host` header would be sent twice.
        request_headers = {k: v for k, v in request_headers.items() if k.lower() != "host"}
        last_error: httpx.ConnectError | None = None
        for ip in addresses:
            # Connect to the address just checked; keep the name for `Host` and TLS (SNI and
            # certificate checks), so a second DNS answer cannot redirect the connection.
            pinned = url.copy_with(host=str(ip))
            extensions = {"sni_hostname": host} if url.scheme == "https" else {}
            request = client.build_request(
                "GET",
                pinned,
                headers={**request_headers, "Host": url.netloc.decode("ascii")},
                extensions=extensions,
            )
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError as exc:  # try the host's next address, as a browser would
                last_error = exc
        assert last_error is not None  # _resolve never returns an empty list
        raise last_error

    async def _read(response: httpx.Response, url: httpx.URL, max_chars: int | None) -> HttpResponse:
        status = response.status_code
        if status >= 400:
            raise _status_error(response, url, await _snippet(response))
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type in _BINARY_TYPES or media_type.split("/")[0] in _BINARY_MAIN_TYPES:
            raise ToolError(
                f"`{url}` returned `{media_type}` content, which is binary; http_get returns text and JSON only.",
                tool=_TOOL,
                permanent=True,
            )
        body, truncated = await _read_capped(response, max_bytes)
        text = _decode(body, response.charset_encoding, final=not truncated)
        result: HttpResponse = {
            "url": str(url),
            "status": status,
            "content_type": media_type,
            "headers": {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers},
            "truncated": truncated,
        }
        if _is_json(media_type) and not truncated:
            try:
                result["json"] = json.loads(text)
                return result
            except (ValueError, RecursionError):
                pass  # labelled JSON but is not: return the text so the caller can see why
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars]
            result["truncated"] = True
        result["text"] = text
        return result

    description = (
        "Fetch a URL with HTTP GET and return its status, some headers and the body: "
        "JSON responses are decoded into `json`, anything else is returned as `text`. "
        f"Redirects are followed (at most {MAX_REDIRECTS}); bodies over {max_bytes:,} bytes are cut "
        "and marked `truncated`."
    )
    if not allow_private:
        description += " Private, loopback and link-local addresses are refused."
    return Tool.from_function(http_get, name=_TOOL, description=description)


def _parse_url(text: str) -> httpx.URL:
    text = text.strip()
    example = "pass a full URL such as `https://example.com/page`"
    if "://" not in text:
        if text.lower().startswith(("file:", "data:", "javascript:", "mailto:")):
            scheme = text.split(":", 1)[0].lower()
            raise ToolRefusedError(
                f"`{text}` uses the `{scheme}` scheme; http_get only fetches `http` and `https` URLs.", tool=_TOOL
            )
        raise ToolArgumentsError(f"`{text}` has no scheme; {example}.", tool=_TOOL)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ToolArgumentsError(f"`{text}` is not a valid URL ({exc}); {example}.", tool=_TOOL) from None
    if url.scheme not in ("http", "https"):
        raise ToolRefusedError(
            f"`{text}` uses the `{url.scheme}` scheme; http_get only fetches `http` and `https` URLs.", tool=_TOOL
        )
    if not url.host:
        raise ToolArgumentsError(f"`{text}` has no host; {example}.", tool=_TOOL)
    return url


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None  # a name


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in resolver order, without duplicates."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError(
            f"host `{host}` could not be resolved ({exc.strerror}); check the URL.",
            tool=_TOOL,
            # "no such name" will not change on retry; other resolver failures may.
            permanent=exc.errno == socket.EAI_NONAME,
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]))
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise ToolError(f"host `{host}` resolved to no addresses; check the URL.", tool=_TOOL, permanent=True)
    return addresses


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """Up to `max_bytes` of the decoded body, and whether there was more.

    The body is read raw and decompressed here, at most `_DECODE_STEP` bytes at a time, so the
    cap applies to decoded bytes as they arrive (httpx would decode each network chunk whole:
    64 KB of gzip can be 64 MB of text)."""
    decoders = _decoders(response)
    chunks: list[bytes] = []
    size = 0

    def take(pieces: Iterator[bytes]) -> bool:
        """Keep pieces up to the cap; True once it is reached with more to come."""
        nonlocal size
        for piece in pieces:
            if size + len(piece) > max_bytes:
                chunks.append(piece[: max_bytes - size])
                size = max_bytes
                return True
            chunks.append(piece)
            size += len(piece)
        return False

    try:
        async for raw in response.aiter_raw():
            if take(_through(decoders, raw)):
                return b"".join(chunks), True
        if take(_finish(decoders)):
            return b"".join(chunks), True
    except zlib.error as exc:
        raise httpx.DecodingError(f"the body is not valid {response.headers.get('content-encoding')} ({exc})") from None
    return b"".join(chunks), False


class _Inflater:
    """gzip or deflate, decoded at most `_DECODE_STEP` bytes per step (`zlib` with `max_length`)."""

    def __init__(self, encoding: str) -> None:
        self.gzip = encoding in ("gzip", "x-gzip")
        self.started = False
        self.inflate = self._new()

    def _new(self, raw: bool = False) -> zlib._Decompress:
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS | (16 if self.gzip else 0))

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self.inflate.decompress(data, _DECODE_STEP)
            except zlib.error:
                if self.gzip or self.started:
                    raise
                self.inflate = self._new(raw=True)  # "deflate" sent without its zlib header, as some servers do
                self.started = True
                continue
            self.started = True
            data = self.inflate.unconsumed_tail
            if self.inflate.eof:
                data = self.inflate.unused_data + data
                if not self.gzip or not data:
                    if out:
                        yield out
                    return  # deflate has one stream; anything after it is ignored, as httpx does
                self.inflate = self._new()  # the next member of a multi-member gzip body
            if out:
                yield out

    def flush(self) -> Iterator[bytes]:
        if self.started and not self.inflate.eof:
            raise zlib.error("it ends before its compressed stream does")
        out = self.inflate.flush()
        for start in range(0, len(out), _DECODE_STEP):
            yield out[start : start + _DECODE_STEP]


def _decoders(response: httpx.Response) -> list[_Inflater]:
    """The decoders for `Content-Encoding`, in the order they undo it (the last applied first)."""
    names = [n.strip().lower() for n in response.headers.get("content-encoding", "").split(",") if n.strip()]
    decoders = []
    for name in reversed(names):
        if name == "identity":
            continue
        if name not in ("gzip", "x-gzip", "deflate"):
            raise ToolError(
                f"`{response.url}` sent its body with the `{name}` content encoding, which http_get cannot "
                "decode; it asks for gzip or deflate, so do not override `Accept-Encoding`.",
                tool=_TOOL,
                permanent=True,
            )
        decoders.append(_Inflater(name))
    return decoders


def _through(decoders: Sequence[_Inflater], data: bytes) -> Iterator[bytes]:
    if not decoders:
        yield data
        return
    for piece in decoders[0].feed(data):
        yield from _through(decoders[1:], piece)


def _finish(decoders: Sequence[_Inflater]) -> Iterator[bytes]:
    for i, decoder in enumerate(decoders):
        for piece in decoder.flush():
            yield from _through(decoders[i + 1 :], piece)


def _decode(body: bytes, charset: str | None, *, final: bool) -> str:
    """Decode with the response's charset (UTF-8 when absent or unknown).

    A cut body may end inside a multi-byte character; `final=False` drops that
    partial character instead of turning it into a replacement character.
    """
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(body, final=final)


def _is_json(media_type: str) -> bool:
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


async def _snippet(response: httpx.Response) -> str:
    body, _ = await _read_capped(response, _ERROR_SNIPPET_BYTES)
    text = " ".join(_decode(body, response.charset_encoding, final=False).split())
    return text if len(text) <= _ERROR_SNIPPET_CHARS else text[: _ERROR_SNIPPET_CHARS - 3] + "..."


def _status_error(response: httpx.Response, url: httpx.URL, snippet: str) -> ToolError:
    status = response.status_code
    transient = status == 429 or status >= 500
    if status == 429:
        retry_after = response.headers.get("retry-after")
        hint = f"rate limited; retry after {retry_after} s." if retry_after else "rate limited; retry later."
    elif status >= 500:
        hint = "a server error; retrying may help."
    elif status in (401, 403):
        hint = "the server wants credentials; pass them in `headers` if you have them, or use another source."
    elif status in (404, 410):
        hint = "check the URL."
    else:
        hint = "the request was rejected; check the URL and headers."
    body = f" Body: {snippet!r}" if snippet else ""
    return ToolError(
        f"GET `{url}` returned HTTP {status} {response.reason_phrase}: {hint}{body}",
        tool=_TOOL,
        permanent=not transient,
    )


http_get: Final[Tool] = make_http_get()
"""The default `http_get`: public addresses only, 10 s, 2 MB."""
