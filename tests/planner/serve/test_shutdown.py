"""`planweave serve` shut down with runs in flight: a real server process, a fake model that
holds its replies, SSE clients, and SIGTERM.

A run that finishes within the grace period answers as usual; one that does not is recorded
`interrupted` (resumable, not `cancelled`), and its client's stream ends with an error chunk
and `[DONE]` rather than a broken connection.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from planweave.executor.store import open_store
from planweave.planner.testing import ChildProcesses, FakeModelServer, RecordedRequest, Reply, wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stream:
    """One streamed chat request read on a thread: its run id and every `data:` payload."""

    def __init__(self, root: str, goal: str) -> None:
        self.run_id: str | None = None
        self.data: list[str] = []
        self.error: BaseException | None = None
        self.started = threading.Event()
        body = {"model": "planweave", "stream": True, "messages": [{"role": "user", "content": goal}]}
        self.thread = threading.Thread(target=self._read, args=(root, body), daemon=True)
        self.thread.start()

    def _read(self, root: str, body: dict[str, Any]) -> None:
        try:
            with httpx.stream("POST", root + "/v1/chat/completions", json=body, timeout=120) as response:
                self.run_id = response.headers["x-planweave-run-id"]
                self.started.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.data.append(line[len("data: "):])
        except BaseException as exc:  # the assertions below say what went wrong
            self.error = exc
        finally:
            self.started.set()

    def finish(self) -> list[str]:
        self.thread.join(120)
        assert not self.thread.is_alive(), "the stream did not end"
        assert self.error is None, f"the stream broke: {self.error!r}"
        return self.data


def test_sigterm_lets_runs_finish_within_the_grace_period_then_interrupts_the_rest(
    tmp_path: Path, children: ChildProcesses
) -> None:
    release_quick = threading.Event()
    release_stuck = threading.Event()

    def model(request: RecordedRequest) -> Reply:
        system = json.dumps(request.messages)
        if "quick goal" in system:
            release_quick.wait(120)
            return Reply.json_obj({"steps": [], "answer": "the quick answer", "rationale": "known"})
        release_stuck.wait(120)  # Langfuse-like: a model that never answers while the server stops
        return Reply.json_obj({"steps": [], "answer": "too late", "rationale": "known"})

    port = free_port()
    root = f"http://127.0.0.1:{port}"
    home = tmp_path / "home"
    with FakeModelServer(handler=model) as fake:
        env = {**os.environ, "PLANWEAVE_HOME": str(home), "OPENAI_API_KEY": "sk-fake"}
        env.pop("PLANWEAVE_API_KEY", None)
        proc = children.spawn(
            [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--model", "openai/fake",
             "--api-base", fake.base_url, "--workspace", str(tmp_path), "--shutdown-grace", "5",
             "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_until(lambda: _healthy(root), "the server answers /health", timeout_s=60)
            quick, stuck = Stream(root, "quick goal"), Stream(root, "stuck goal")
            wait_until(lambda: len(fake.chat_requests) == 2, "both runs are waiting for the model", timeout_s=60)

            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: _refused(root), "the server stops accepting connections", timeout_s=30)
            release_quick.set()  # within the grace period: this run finishes as usual
            quick_data, stuck_data = quick.finish(), stuck.finish()
            _, stderr = proc.communicate(timeout=60)
        finally:
            release_quick.set()
            release_stuck.set()

    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr, stderr
    # The quick run answered normally, to the end.
    assert quick_data[-1] == "[DONE]"
    assert "the quick answer" in "".join(
        json.loads(d)["choices"][0]["delta"].get("content") or "" for d in quick_data[:-1] if json.loads(d)["choices"]
    )
    # The stuck run's stream ended with an error chunk, then [DONE].
    assert stuck_data[-1] == "[DONE]"
    error = json.loads(stuck_data[-2])["error"]
    assert error["code"] == "server_shutting_down" and f"planweave resume {stuck.run_id}" in error["message"]
    store = open_store(home)
    assert store.summary(str(quick.run_id)).status == "succeeded"
    assert store.summary(str(stuck.run_id)).status == "interrupted"  # resumable, not `cancelled`


def _healthy(root: str) -> bool:
    try:
        return httpx.get(root + "/health").status_code == 200
    except httpx.TransportError:
        return False


def _refused(root: str) -> bool:
    try:
        httpx.get(root + "/health")
    except httpx.ConnectError:
        return True
    return False
