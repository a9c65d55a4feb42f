"""What every request to `planweave serve` must pass before the app sees it (see `docs/security.md`).

    check_api_key(" ")                      # ConfigError: a blank key is no key
    check_cors_origins(["http://ui:3000"])  # ConfigError unless each is `scheme://host[:port]` or `*`
    check_allowed_hosts(["proxy.lan"])      # ConfigError unless each is `name[:port]` or `*`
    app = Guard(app, api_key=..., max_body_bytes=..., allowed_hosts=[...], cors_origins=[...])

The threat is a web page in the user's browser: it can send requests to 127.0.0.1 (no CORS
preflight for `text/plain` or form bodies), and through DNS rebinding read the answers under a
name it controls. So the guard checks `Host`, `Origin` and `Sec-Fetch-Site` and wants JSON bodies;
non-browser clients (curl, SDKs, front-end servers) send none of those headers and pass.

This module imports only the standard library, so the command line can check its options
before it imports FastAPI.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

from planweave.planner.errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ALLOWED_HOSTS_ENV", "API_KEY_ENV", "Guard", "GuardError", "check_allowed_hosts", "check_api_key",
    "check_cors_origins",
]

API_KEY_ENV = "PLANWEAVE_API_KEY"
ALLOWED_HOSTS_ENV = "PLANWEAVE_ALLOWED_HOSTS"
"""Extra `Host` names the server answers to, comma-separated (like `--allowed-host`, repeatable)."""


class GuardError(Exception):
    """A request the guard turns away, answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.headers = status, message, code, type_, headers or {}

    async def send(self, send: Send) -> None:
        body = {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}
        payload = json.dumps(body, ensure_ascii=False).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


# --- checking the settings ---------------------------------------------------------------------


def check_api_key(key: str | None) -> str | None:
    """The key without surrounding blanks; `ConfigError` when it is blank (None: no key)."""
    if key is not None and not key.strip():
        raise ConfigError(
            f"the API key is blank; pass a real key with `--api-key` (or `{API_KEY_ENV}`), "
            "or leave it unset to serve loopback clients without one."
        )
    return None if key is None else key.strip()


def check_cors_origins(origins: list[str]) -> list[str]:
    for origin in origins:
        if origin != "*" and _origin_key(origin) is None:
            raise ConfigError(
                f"`{origin}` is not a browser origin; write it as the page's `scheme://host[:port]`, "
                "with no path or trailing slash, e.g. `http://localhost:3000`."
            )
    return origins


def check_allowed_hosts(hosts: list[str]) -> list[str]:
    for host in hosts:
        if host != "*" and (any(c in host for c in "/ @?#") or _split_host(host) is None):
            raise ConfigError(
                f"`{host}` is not a host name; give the name clients use in URLs, with an optional port "
                "(`planweave.local` or `planweave.local:8000`), without scheme or path."
            )
    return hosts


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_host(host: str) -> tuple[str, int | None] | None:
    """`Host` (or an allowed host) as (lower-case name, port or None); None when it cannot be a host."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    elif host.count(":") > 1:  # a bare IPv6 address, without port
        name, port_text = host, ""
    else:
        name, _, port_text = host.partition(":")
    if not name:
        return None
    if not port_text:
        return name, None
    return (name, int(port_text)) if port_text.isdigit() and int(port_text) < 65536 else None


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """`scheme://host[:port]` as (scheme, host, port), default ports filled in; None when it is not an origin."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or not rest or any(c in rest for c in "/?#@ "):
        return None
    split = _split_host(rest)
    if split is None:
        return None
    name, port = split
    return scheme, name, port if port is not None else _DEFAULT_PORTS[scheme]


_PROBES = frozenset({"/health", "/ready"})
"""Paths a load balancer probes without a key (`planweave.planner.serve.ops`)."""


class Guard:
    """What a request must pass before FastAPI parses anything, in this order:

    1. `Host` names this server (DNS rebinding: a hostile page's own name resolving to 127.0.0.1);
    2. no other site sent it (`Origin`, `Sec-Fetch-Site`), unless its origin is in `cors_origins`;
    3. the bearer key, when one is configured;
    4. a body is `application/json` (browsers send `text/plain` and form bodies cross-site without
       asking first) and no larger than `max_body_bytes`.

    `/health` and `/ready` are exempt (for load balancers: they say only whether the server is
    up and ready, never what it holds). Pure ASGI, so streamed responses
    and the disconnect message pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body_bytes: int,
        allowed_hosts: list[str] | None = None,
        cors_origins: list[str] | None = None,
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        hosts = allowed_hosts or []
        self.any_host = "*" in hosts
        self.allowed_hosts = {split for h in hosts if h != "*" and (split := _split_host(h)) is not None}
        origins = cors_origins or []
        self.any_origin = "*" in origins
        self.cors_origins = {key for o in origins if o != "*" and (key := _origin_key(o)) is not None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBES:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._host_problem(headers.get("host"), scope) or self._site_problem(headers, scope)
        if problem is None and scope["method"] != "OPTIONS":  # a CORS preflight carries no key
            problem = self._auth_problem(headers.get("authorization", ""))
        if problem is not None:
            await problem.send(send)
            return
        if scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(int(length)).send(send)
            return
        has_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers
        if has_body and (wrong := self._content_type_problem(headers.get("content-type"))) is not None:
            await wrong.send(send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._too_large(None).send(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # then `http.disconnect`, which cancels the run

        await self.app(scope, replay, send)

    def _host_problem(self, host: str | None, scope: Scope) -> GuardError | None:
        if host is None or self.any_host:  # HTTP/1.0 clients may omit it; browsers never do
            return None
        split = _split_host(host)
        server = scope.get("server") or (None, None)
        bound_port = server[1]
        if split is not None:
            name, port = split
            name = name.strip("[]")
            if (name, port) in self.allowed_hosts or (name, None) in self.allowed_hosts:
                return None
            effective = port if port is not None else _DEFAULT_PORTS.get(scope.get("scheme", "http"), 80)
            bound = str(server[0] or "").lower().strip("[]")
            # The address it listens on is a name it answers to, unless that is "every address".
            own_names = _LOOPBACK_NAMES | ({bound} if bound not in ("", "0.0.0.0", "::") else set())
            if name in own_names and (bound_port is None or effective == bound_port):
                return None
        shown = host if len(host) <= 100 else host[:100] + "..."
        return GuardError(
            400,
            f"this server does not answer to the host `{shown}` (its `Host` header); it answers to "
            f"localhost, 127.0.0.1 and [::1]{f' on port {bound_port}' if bound_port else ''}. A web page can "
            "reach a local server through a name it controls (DNS rebinding), so other names are refused: "
            "if you reach planweave by this name on purpose (a reverse proxy, another machine), start it "
            f"with `--allowed-host {shown}` (or `{ALLOWED_HOSTS_ENV}`).",
            code="host_not_allowed",
        )

    def _site_problem(self, headers: dict[str, str], scope: Scope) -> GuardError | None:
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site", "").strip().lower()
        if origin is None and site != "cross-site":
            return None  # not sent by a browser on behalf of another site: curl, SDKs, front-end servers
        if self.any_origin:
            return None
        if origin is not None:
            key = _origin_key(origin)
            if key is not None and key in self.cors_origins:
                return None
            if key is not None and site != "cross-site" and self._same_origin(key, headers.get("host"), scope):
                return None
        who = f"the web page at `{origin}`" if origin else "a web page on another site"
        fix = f"`--cors-origin {origin}`" if origin and origin != "null" else "`--cors-origin ORIGIN`"
        return GuardError(
            403,
            f"refusing a cross-site request from {who}: any page you visit could otherwise use this server "
            f"(and its tools and model budget). If that page is a front end you trust, start planweave with {fix}.",
            code="cross_site_request",
            type_="permission_error",
        )

    @staticmethod
    def _same_origin(origin: tuple[str, str, int], host: str | None, scope: Scope) -> bool:
        split = _split_host(host or "")
        if split is None:
            return False
        scheme = str(scope.get("scheme", "http"))
        name, port = split
        return origin == (scheme, name, port if port is not None else _DEFAULT_PORTS.get(scheme, 80))

    @staticmethod
    def _content_type_problem(content_type: str | None) -> GuardError | None:
        media = (content_type or "").split(";")[0].strip().lower()
        if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
            return None
        sent = f"is sent as `{media}`" if media else "has no `Content-Type`"
        return GuardError(
            415,
            f"the request body {sent}; planweave reads JSON only: send it with `Content-Type: application/json`.",
            code="unsupported_media_type",
        )

    def _auth_problem(self, authorization: str) -> GuardError | None:
        if self.api_key is None:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            message = ("no API key: send `Authorization: Bearer <key>` with the key this server was started with "
                       "(`PLANWEAVE_API_KEY` or `--api-key`).")
        elif not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            message = ("the API key is not valid for this server; use the key it was started with "
                       "(`PLANWEAVE_API_KEY` or `--api-key`).")
        else:
            return None
        return GuardError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def _too_large(self, size: int | None) -> GuardError:
        what = f"is {size} bytes" if size is not None else "is too large"
        return GuardError(
            413,
            f"the request body {what}; this server accepts at most {self.max_body_bytes} bytes "
            "(`--max-body-bytes`); send a shorter conversation.",
            code="request_too_large",
        )
