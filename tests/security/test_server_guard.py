"""A web page cannot use the local server (issue 12, item 1), through the real server over real HTTP.

The attacks are the ones a page in the user's browser can make against `planweave serve` on
127.0.0.1 with no key: a "simple" cross-site POST (`text/plain` or a form, so no CORS preflight),
a request carrying the page's `Origin` or `Sec-Fetch-Site: cross-site`, and DNS rebinding (the
page's own name resolving to 127.0.0.1, so the browser sends `Host: evil.example:PORT` and lets
the page read the answer). Non-browser clients send none of those headers and are served.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from planweave.executor.sqlite_store import SQLiteRunStore
from planweave.planner import Planner
from planweave.planner.errors import ConfigError
from planweave.planner.serve.app import ServerConfig, create_app, serve
from planweave.planner.testing import FakeModelServer, Reply, wait_until

ROOT = Path(__file__).resolve().parents[2]
GOAL = b'{"goal": "write the user\'s files somewhere else"}'


@contextmanager
def running(app: Any) -> Iterator[int]:
    """uvicorn serving `app` on a free 127.0.0.1 port, in a thread; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "the server to start")
    assert server.started, "the server did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Server:
    def __init__(self, port: int, model: FakeModelServer, store: SQLiteRunStore) -> None:
        self.port, self.model, self.store = port, model, store
        self.url = f"http://127.0.0.1:{port}"

    def runs_started(self) -> int:
        return len(self.store.list_runs())


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    with FakeModelServer() as model:
        stack: list[Any] = []

        def _start(**config: Any) -> Server:
            model.handler = lambda _: Reply.json_obj({"rationale": "r", "steps": [], "answer": "done"})
            store = SQLiteRunStore(tmp_path / "runs.db")
            planner = Planner(
                model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", store=store, tools=[],
                workspace=tmp_path,
            )
            cm = running(create_app(planner, ServerConfig(**config)))
            port = cm.__enter__()
            stack.append(cm)
            return Server(port, model, store)

        try:
            yield _start
        finally:
            for cm in reversed(stack):
                cm.__exit__(None, None, None)


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


# --- bodies a page can send without asking first ------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_body_that_is_not_declared_json_is_refused_with_415(
    start: Callable[..., Server], content_type: str | None
) -> None:
    server = start()
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/runs", "/v1/chat/completions"):
        response = httpx.post(server.url + path, content=GOAL, headers=headers)
        assert response.status_code == 415
        shown = f"is sent as `{content_type.split(';')[0]}`" if content_type else "has no `Content-Type`"
        assert error(response)["message"] == (
            f"the request body {shown}; planweave reads JSON only: send it with `Content-Type: application/json`."
        )
        assert error(response)["code"] == "unsupported_media_type"
    assert server.runs_started() == 0 and server.model.chat_requests == []


def test_a_form_post_from_a_page_runs_nothing(start: Callable[..., Server]) -> None:
    """What `<form method=post enctype=text/plain action=http://127.0.0.1:PORT/v1/runs>` sends."""
    server = start()
    form = httpx.post(
        server.url + "/v1/runs",
        content=b'{"goal": "x", "ignore": "=1"}',
        headers={"content-type": "text/plain", "origin": "http://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert form.status_code == 403 and error(form)["code"] == "cross_site_request"
    assert server.runs_started() == 0 and server.model.chat_requests == []


def test_json_from_a_non_browser_client_is_served(start: Callable[..., Server]) -> None:
    server = start()
    with httpx.stream("POST", server.url + "/v1/runs", json={"goal": "say done"}, timeout=60) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"planner_finished"' in lines[-1]
    plus_json = httpx.post(
        server.url + "/v1/chat/completions", content=b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
        headers={"content-type": "application/vnd.api+json; charset=utf-8"},
    )
    assert plus_json.status_code == 404 and error(plus_json)["code"] == "model_not_found"  # parsed as JSON


# --- Origin and Sec-Fetch-Site ------------------------------------------------------------------


def test_a_cross_site_origin_is_refused_and_told_how_to_allow_it(start: Callable[..., Server]) -> None:
    server = start()
    response = httpx.post(server.url + "/v1/runs", json={"goal": "x"}, headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    assert error(response)["message"] == (
        "refusing a cross-site request from the web page at `https://evil.example`: any page you visit could "
        "otherwise use this server (and its tools and model budget). If that page is a front end you trust, "
        "start planweave with `--cors-origin https://evil.example`."
    )
    assert error(response)["type"] == "permission_error"
    assert httpx.get(server.url + "/v1/runs", headers={"origin": "null"}).status_code == 403  # sandboxed frame
    # No Origin (an `<img>` or `<script>` GET), but the browser says who sent it:
    assert httpx.get(server.url + "/v1/runs", headers={"sec-fetch-site": "cross-site"}).status_code == 403
    # The page's port differs from the server's: another origin, even on localhost.
    other_port = httpx.get(server.url + "/v1/runs", headers={"origin": "http://127.0.0.1:1"})
    assert other_port.status_code == 403
    assert server.runs_started() == 0


def test_what_the_browser_says_is_same_origin_or_user_typed_is_served(start: Callable[..., Server]) -> None:
    server = start()
    for headers in (
        {"sec-fetch-site": "none"},  # typed in the address bar
        {"sec-fetch-site": "same-origin", "origin": server.url},
        {"origin": f"http://localhost:{server.port}", "host": f"localhost:{server.port}"},
    ):
        assert httpx.get(server.url + "/v1/runs", headers=headers).status_code == 200, headers


def test_cors_origin_lets_one_front_end_in_and_no_other(start: Callable[..., Server]) -> None:
    server = start(cors_origins=["http://localhost:3000"])
    ui = {"origin": "http://localhost:3000", "sec-fetch-site": "same-site"}
    preflight = httpx.options(
        server.url + "/v1/runs",
        headers={**ui, "access-control-request-method": "POST", "access-control-request-headers": "content-type"},
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    listed = httpx.get(server.url + "/v1/runs", headers=ui)
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "http://localhost:3000"
    evil = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    refused = httpx.get(server.url + "/v1/runs", headers=evil)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    evil_preflight = httpx.options(
        server.url + "/v1/runs", headers={**evil, "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in evil_preflight.headers


def test_without_cors_origin_no_browser_may_read_the_answers(start: Callable[..., Server]) -> None:
    server = start()
    preflight = httpx.options(
        server.url + "/v1/runs", headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("origin", ["http://localhost:3000/", "localhost:3000", "http://ui.example/app"])
def test_a_cors_origin_that_is_not_an_origin_is_a_config_error(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not a browser origin; write it as the page's `scheme://host"):
        ServerConfig(cors_origins=[origin])


# --- Host: DNS rebinding ------------------------------------------------------------------------


def test_a_rebound_host_name_cannot_read_the_runs(start: Callable[..., Server]) -> None:
    """After DNS rebinding, the page's requests reach 127.0.0.1 with the page's own name as `Host`."""
    server = start()
    httpx.post(server.url + "/v1/runs", json={"goal": "a secret goal"}, timeout=60).read()
    wait_until(lambda: server.runs_started() == 1, "the run to be recorded")
    rebound = httpx.get(server.url + "/v1/runs", headers={"host": f"evil.example:{server.port}"})
    assert rebound.status_code == 400 and "a secret goal" not in rebound.text
    assert error(rebound)["code"] == "host_not_allowed"
    assert error(rebound)["message"] == (
        f"this server does not answer to the host `evil.example:{server.port}` (its `Host` header); it answers "
        f"to localhost, 127.0.0.1 and [::1] on port {server.port}. A web page can reach a local server through "
        "a name it controls (DNS rebinding), so other names are refused: if you reach planweave by this name on "
        f"purpose (a reverse proxy, another machine), start it with `--allowed-host evil.example:{server.port}` "
        "(or `PLANWEAVE_ALLOWED_HOSTS`)."
    )
    posted = httpx.post(server.url + "/v1/runs", json={"goal": "x"}, headers={"host": "evil.example"})
    assert posted.status_code == 400
    assert server.runs_started() == 1


def test_loopback_names_with_the_bound_port_are_served(start: Callable[..., Server]) -> None:
    server = start()
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}", f"LOCALHOST:{server.port}"):
        assert httpx.get(server.url + "/v1/runs", headers={"host": host}).status_code == 200, host
    for host in ("localhost", f"localhost:{server.port + 1}", "127.0.0.1.evil.example", f"localhost.:{server.port}"):
        assert httpx.get(server.url + "/v1/runs", headers={"host": host}).status_code == 400, host
    assert httpx.get(server.url + "/health", headers={"host": "anything"}).status_code == 200  # says only "ok"


def test_allowed_hosts_and_the_environment_add_names(start: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANWEAVE_ALLOWED_HOSTS", "proxy.lan, planweave.internal:8443")
    server = start()
    ok = {"proxy.lan", "proxy.lan:1234", "planweave.internal:8443"}
    for host in ok:
        assert httpx.get(server.url + "/v1/runs", headers={"host": host}).status_code == 200, host
    assert httpx.get(server.url + "/v1/runs", headers={"host": "planweave.internal:80"}).status_code == 400
    anything = start(allowed_hosts=["*"])
    assert httpx.get(anything.url + "/v1/runs", headers={"host": "whatever.example"}).status_code == 200


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", " ", "\t \n"])
def test_a_blank_key_is_refused_by_the_config_and_serve(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="the API key is blank; pass a real key with `--api-key`"):
        ServerConfig(api_key=key)
    monkeypatch.setenv("PLANWEAVE_API_KEY", key)
    with pytest.raises(ValidationError, match="the API key is blank"):
        ServerConfig()
    with pytest.raises(ConfigError, match="the API key is blank"):
        serve(Planner(model="openai/fake-model", store=False), config=ServerConfig.model_construct(api_key=key))


def test_a_key_with_blanks_around_it_means_the_key(start: Callable[..., Server]) -> None:
    server = start(api_key="  s3cret-key \n")
    assert httpx.get(server.url + "/v1/runs", headers={"authorization": "Bearer s3cret-key"}).status_code == 200
    assert httpx.get(server.url + "/v1/runs", headers={"authorization": "Bearer s3cret-key-"}).status_code == 401


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_cli_exits_2_on_a_blank_key(how: str, tmp_path: Path) -> None:
    env = {**os.environ, "PLANWEAVE_API_KEY": " "} if how == "env" else dict(os.environ)
    args = ["--api-key", "  "] if how == "option" else []
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "serve", "--port", "0", *args], capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "planweave: error: the API key is blank; pass a real key with `--api-key` (or `PLANWEAVE_API_KEY`), "
        "or leave it unset to serve loopback clients without one."
    )


def test_the_cli_exits_2_on_a_bad_allowed_host(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "planweave", "serve", "--allowed-host", "http://proxy.lan/"], capture_output=True,
        text=True, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2 and "`http://proxy.lan/` is not a host name" in proc.stderr


# --- no filesystem paths in errors --------------------------------------------------------------


def test_errors_name_no_paths_of_this_machine(start: Callable[..., Server], tmp_path: Path) -> None:
    server = start()
    for path in ("/v1/runs/nope", "/v1/runs/a"):
        missing = httpx.get(server.url + path)
        assert missing.status_code == 404 and error(missing)["code"] == "run_not_found"
        assert str(tmp_path) not in missing.text and "runs.db" not in missing.text
        assert str(Path.home()) not in missing.text
    assert "no run `nope` in the store `<run store>`" in error(httpx.get(server.url + "/v1/runs/nope"))["message"]
