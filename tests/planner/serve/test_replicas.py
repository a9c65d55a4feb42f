"""Several `planweave serve` replicas on one run store act as one service: real server processes,
one scripted fake model behind them all, the `openai`-shaped HTTP API through httpx.

A conversation's turns may go to any replica, an answer to a waiting run may reach the replica
that did not ask, a run may be followed from a replica that is not running it, and a replica
killed mid-run has its run finished by another, with no recorded success run again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from planweave.executor.store import RunStore, open_store
from planweave.planner.testing import ChildProcesses, FakeModelServer, Reply, wait_until
from planweave.planner.testing.processes import kill_group

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-replicas-test"

# One worker starts the module's replicas once; starting two (seconds of imports each) counts in
# the first test's time, which on a loaded 2-core machine can pass the suite's default 60 s.
pytestmark = [pytest.mark.xdist_group("serve-replicas"), pytest.mark.timeout(240)]

TOOLS = textwrap.dedent(
    '''
    import os, time
    from planweave.tools import tool

    def _log(line: str) -> None:
        with open(os.environ["PW_TEST_LOG"], "a") as f:
            f.write(line + "\\n")

    @tool(approval=True)
    def send(to: str) -> str:
        """Send the report to someone."""
        _log("sent " + to)
        return f"sent to {to}"

    @tool
    def mark(label: str) -> str:
        """Note that a step ran."""
        _log(label)
        return label

    @tool
    def hold(label: str) -> str:
        """Note that a step started, then wait while the hold file exists."""
        _log(label)
        while os.path.exists(os.environ["PW_TEST_HOLD"]):
            time.sleep(0.02)
        return label
    '''
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Replica:
    """One `planweave serve` process on the shared store."""

    root: str
    proc: subprocess.Popen[Any]
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {KEY}"})

    def chat(self, messages: list[dict[str, Any]]) -> tuple[str, str]:
        """The reply's text and its run id."""
        body = {"model": "planweave", "messages": messages}
        response = httpx.post(self.root + "/v1/chat/completions", json=body, headers=self.headers, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"], response.headers["x-planweave-run-id"]

    def metrics(self) -> dict[str, float]:
        response = httpx.get(self.root + "/metrics", headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return parse_metrics(response.text)


@dataclass
class Cluster:
    """The shared store (a SQLite home directory or a PostgreSQL URL), the fake model, and how to
    start replicas on them."""

    store_location: str
    model: FakeModelServer
    children: ChildProcesses
    tmp: Path
    _store: RunStore | None = None
    _pair: tuple[Replica, Replica] | None = None

    def close(self) -> None:
        self.children.kill_all()  # before the database is dropped under them
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> RunStore:
        """The shared store, as this test process reads it."""
        if self._store is None:
            self._store = open_store(self.store_location)
        return self._store

    def start(self, *args: str) -> Replica:
        port = free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("PLANWEAVE_MODEL", "PLANWEAVE_API_KEY", "PLANWEAVE_STORE_URL")}
        if self.store_location.startswith("postgresql://"):
            env.update(PLANWEAVE_STORE_URL=self.store_location, PLANWEAVE_HOME=str(self.tmp / "home"))
        else:
            env.update(PLANWEAVE_HOME=self.store_location)
        env.update(PW_TEST_LOG=str(self.tmp / "side_effects.log"),
                   PW_TEST_HOLD=str(self.tmp / "hold"), OPENAI_API_KEY="sk-fake", LITELLM_LOCAL_MODEL_COST_MAP="True",
                   PLANWEAVE_LEASE_S="5")  # a dead replica's runs are taken over within seconds
        log = (self.tmp / f"serve-{port}.log").open("w")
        proc = self.children.spawn(
            [sys.executable, "-m", "planweave", "serve", "--port", str(port), "--api-key", KEY, "--model", "openai/fake",
             "--api-base", self.model.base_url, "--workspace", str(self.tmp), "--tools", str(self.tmp / "tools.py"),
             "--log-level", "warning", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
        )  # fmt: skip
        log.close()
        replica = Replica(f"http://127.0.0.1:{port}", proc)
        # Ready: the app is built, the model libraries are loaded, the store answers.
        wait_until(lambda: _ready(replica), f"the replica on port {port} is ready", timeout_s=120)
        return replica

    def side_effects(self) -> list[str]:
        log = self.tmp / "side_effects.log"
        return log.read_text().splitlines() if log.exists() else []


def _ready(replica: Replica) -> bool:
    assert replica.proc.poll() is None, "the replica exited while starting"
    try:
        return httpx.get(replica.root + "/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


class Clusters:
    """The clusters of this module's tests, one per store, each started on first use and kept until
    the test session ends (so that however the tests are ordered, each store's replicas start once)."""

    def __init__(self, stack: ExitStack, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.stack = stack
        self.tmp_path_factory = tmp_path_factory
        self.clusters: dict[str, Cluster] = {}

    def get(self, kind: str, request: pytest.FixtureRequest) -> Cluster:
        """Replicas on one SQLite file, or on one PostgreSQL database of their own (other tests'
        runs on the session's database must not be taken over by these replicas, nor theirs by them)."""
        if kind not in self.clusters:
            tmp = self.tmp_path_factory.mktemp(f"replicas-{kind}")
            (tmp / "tools.py").write_text(TOOLS)
            location = str(tmp / "home")
            if kind == "postgresql":
                location = self.stack.enter_context(_own_database(request.getfixturevalue("pg_url")))
            model = self.stack.enter_context(FakeModelServer())
            cluster = Cluster(location, model, ChildProcesses(), tmp)
            self.stack.callback(cluster.close)  # (before the database is dropped and the model stops)
            self.clusters[kind] = cluster
        return self.clusters[kind]


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    """Session-scoped, not module-scoped: under xdist the module's tests may reach their worker
    between other modules' tests, and a module fixture would then start its replicas again."""
    with ExitStack() as stack:
        yield Clusters(stack, tmp_path_factory)


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request: pytest.FixtureRequest, clusters: Clusters) -> Cluster:
    """The replicas' shared store (SQLite, then PostgreSQL), its fake model, and how to start replicas."""
    return clusters.get(request.param, request)


@contextmanager
def _own_database(pg_url: str) -> Iterator[str]:
    import secrets

    import psycopg

    # Through the server's `postgres` database: the session's `pg_url` database may be dropped first
    # (this cluster is set up before it, so it is torn down after it).
    server = pg_url.rsplit("/", 1)[0]
    name = f"replicas_{secrets.token_hex(4)}"
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server + "/" + name
    finally:
        with psycopg.connect(server + "/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pair(cluster: Cluster) -> tuple[Replica, Replica]:
    """Two replicas on the one store (started once per store, for the whole session)."""
    if cluster._pair is None:
        cluster._pair = (cluster.start(), cluster.start())
    return cluster._pair


def visible(content: str) -> str:
    """What a front end shows: the answer after the folded `<think>` block, without the hidden marker."""
    return content.rpartition("</think>\n\n")[2].split("\n\n[//]: #")[0]


def answer(text: str) -> Reply:
    return Reply.json_obj({"steps": [], "answer": text, "rationale": "known"})


def finish(text: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": text, "reason": ""})


ASK_THEN_SEND = Reply.json_obj({
    "rationale": "ask, then send",
    "steps": [
        {"id": "who", "tool": "ask_user", "args": {"question": "Send it to whom?", "choices": ["ann", "bob"]}},
        {"id": "s", "tool": "send", "args": {"to": "${who}"}},
    ],
    "answer": None,
})


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels}` -> value, from the Prometheus text format."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_a_conversation_whose_turns_alternate_between_replicas(cluster: Cluster, pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    calls = len(cluster.model.chat_requests)
    cluster.model.enqueue(answer("17 * 23 = 391"), answer("391 + 100 = 491"), answer("491 * 2 = 982"))
    history: list[dict[str, Any]] = [{"role": "user", "content": "what is 17 × 23"}]
    run_ids = []
    for replica, follow_up in ((a, "now add 100 to it"), (b, "double that"), (a, None)):
        text, run_id = replica.chat(history)
        run_ids.append(run_id)
        if follow_up is not None:
            history += [{"role": "assistant", "content": text}, {"role": "user", "content": follow_up}]
    assert visible(text) == "491 * 2 = 982"
    # Each replica showed the model every earlier turn, whichever replica answered it.
    second, third = (json.dumps(r.messages) for r in cluster.model.chat_requests[calls + 1:calls + 3])
    assert "17 * 23 = 391" in second and "now add 100 to it" in second
    assert "17 * 23 = 391" in third and "391 + 100 = 491" in third and "double that" in third
    store = cluster.store
    runs = [store.summary(run_id) for run_id in run_ids]
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert len({r.meta["session_id"] for r in runs}) == 1  # one conversation, one session, across replicas
    assert all(r.meta["takeover"] is True for r in runs)  # runs a service may take over


def test_an_approval_asked_on_one_replica_is_answered_on_the_other(cluster: Cluster, pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    calls, effects = len(cluster.model.chat_requests), len(cluster.side_effects())
    cluster.model.enqueue(ASK_THEN_SEND, finish("Sent to bob."))
    history: list[dict[str, Any]] = [{"role": "user", "content": "send the report"}]
    asked, run_id = a.chat(history)
    assert visible(asked) == "Send it to whom?\n\nChoices: `ann`, `bob`."
    history += [{"role": "assistant", "content": asked}, {"role": "user", "content": "bob"}]
    approve, answered_run = b.chat(history)  # B continues A's run: the same run, no new plan
    assert answered_run == run_id
    assert visible(approve).startswith('Step `s` wants to run `send` with `{"to": "bob"}`.')
    history += [{"role": "assistant", "content": approve}, {"role": "user", "content": "yes"}]
    done, approved_run = a.chat(history)  # and A continues it again
    assert approved_run == run_id and visible(done) == "Sent to bob."
    assert cluster.side_effects()[effects:] == ["sent bob"]
    assert cluster.store.summary(run_id).status == "succeeded"
    assert len(cluster.model.chat_requests) - calls == 2  # one plan, one join: answering planned nothing again


ASK_HOLD_SEND = Reply.json_obj({
    "rationale": "ask, hold, then send",
    "steps": [
        {"id": "q", "tool": "ask_user", "args": {"question": "Include the appendix?", "choices": ["yes", "no"]}},
        {"id": "h", "tool": "hold", "args": {"label": "${q}"}},
        {"id": "s", "tool": "send", "args": {"to": "bob"}, "depends_on": ["h"]},
    ],
    "answer": None,
})

ALREADY_ANSWERED = (
    "*(This message came after the run had already been answered, so it was not used: it was sent twice, or "
    "from another window. Here is where the run stands.)*\n\n"
)


def test_an_answer_sent_twice_follows_the_run_instead_of_starting_a_goal_or_answering_the_next_question(
    cluster: Cluster, pair: tuple[Replica, Replica]
) -> None:
    a, b = pair
    hold = cluster.tmp / "hold"
    calls, effects = len(cluster.model.chat_requests), len(cluster.side_effects())
    cluster.model.enqueue(ASK_HOLD_SEND, finish("Sent, with the appendix."))
    history: list[dict[str, Any]] = [{"role": "user", "content": "send the report"}]
    asked, run_id = a.chat(history)
    assert visible(asked) == "Include the appendix?\n\nChoices: `yes`, `no`."
    history += [{"role": "assistant", "content": asked}, {"role": "user", "content": "yes"}]
    replies: dict[str, tuple[str, str]] = {}

    def send(name: str, replica: Replica) -> threading.Thread:
        thread = threading.Thread(target=lambda: replies.update({name: replica.chat(history)}), daemon=True)
        thread.start()
        return thread

    hold.touch()
    try:
        first = send("first", a)  # A continues the run with the answer, and holds in step `h`
        wait_until(lambda: cluster.side_effects()[effects:] == ["yes"], "A's run reached step `h`", timeout_s=60)
        follows = 'planweave_store_seconds_count{op="follow"}'
        before = b.metrics().get(follows, 0.0)
        again = send("again", b)  # the same message again (a retry, another window), to B meanwhile
        wait_until(lambda: b.metrics().get(follows, 0.0) > before, "B follows the run A holds", timeout_s=60)
        assert cluster.store.summary(run_id).status == "running"
    finally:
        hold.unlink(missing_ok=True)
    for thread in (first, again):
        thread.join(120)
        assert not thread.is_alive(), "a reply did not come"
    approve = 'Step `s` wants to run `send` with `{"to": "bob"}`.'
    assert replies["first"][1] == replies["again"][1] == run_id
    assert visible(replies["first"][0]).startswith(approve)
    # B followed the run to where it stopped, and says that the message was not used.
    assert visible(replies["again"][0]) == ALREADY_ANSWERED + visible(replies["first"][0])
    assert "[//]: # (planweave run=" in replies["again"][0]  # its reply can be answered, like A's

    # Sent once more, now that the run asks something else: not an approval of `send`.
    late, late_run = a.chat(history)
    assert late_run == run_id and visible(late) == ALREADY_ANSWERED + visible(replies["first"][0])
    assert cluster.store.summary(run_id).status == "waiting"
    assert cluster.side_effects()[effects:] == ["yes"]  # nothing ran again, nothing was sent

    history += [{"role": "assistant", "content": replies["again"][0]}, {"role": "user", "content": "yes"}]
    done, done_run = b.chat(history)  # the approval, answered from B's reply
    assert done_run == run_id and visible(done) == "Sent, with the appendix."
    assert cluster.side_effects()[effects:] == ["yes", "sent bob"]
    assert len(cluster.model.chat_requests) - calls == 2  # one plan, one join: no message became a new goal


HOLD_PLAN = Reply.json_obj({
    "rationale": "mark, then hold",
    "steps": [
        {"id": "one", "tool": "mark", "args": {"label": "one"}},
        {"id": "two", "tool": "hold", "args": {"label": "two"}, "depends_on": ["one"]},
    ],
    "answer": None,
})


class Follower:
    """`GET /v1/runs/{id}/events` read on a thread: each event's SSE id and data."""

    def __init__(self, replica: Replica, run_id: str, last_event_id: int | None = None) -> None:
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.error: BaseException | None = None
        self.status: int | None = None
        headers = dict(replica.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.thread = threading.Thread(
            target=self._read, args=(f"{replica.root}/v1/runs/{run_id}/events", headers), daemon=True
        )
        self.thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=120) as response:
                self.status = response.status_code
                number = 0
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        number = int(line[4:])
                    elif line.startswith("data: "):
                        self.events.append((number, json.loads(line[6:])))
        except BaseException as exc:  # the assertions say what went wrong
            self.error = exc

    def finish(self) -> list[tuple[int, dict[str, Any]]]:
        self.thread.join(120)
        assert not self.thread.is_alive(), "the stream did not end"
        assert self.error is None, f"the stream broke: {self.error!r}"
        return self.events


def test_a_run_started_on_one_replica_is_followed_on_the_other(cluster: Cluster, pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    hold = cluster.tmp / "hold"
    hold.touch()
    cluster.model.enqueue(HOLD_PLAN, finish("held and done"))
    try:
        with httpx.stream("POST", a.root + "/v1/runs", json={"goal": "mark and hold"}, headers=a.headers,
                          timeout=120) as started:
            run_id = started.headers["x-planweave-run-id"]
            follower = Follower(b, run_id)  # B follows the run A is running
            wait_until(lambda: any(e.get("kind") == "step_started" and e.get("step_id") == "two"
                                   for _, e in follower.events), "B saw step `two` start on A", timeout_s=60)
            assert follower.thread.is_alive()  # the run is still going: B is following, not replaying
            hold.unlink()
            live = [json.loads(line[6:]) for line in started.iter_lines() if line.startswith("data: ")]
    finally:
        hold.unlink(missing_ok=True)
    followed = follower.finish()
    assert follower.status == 200
    recorded = cluster.store.events(run_id)
    assert [e for _, e in followed] == recorded  # every recorded event, in order, once
    assert [n for n, _ in followed] == list(range(1, len(recorded) + 1))
    assert followed[-1][1]["kind"] == "planner_finished" and followed[-1][1]["status"] == "succeeded"
    assert {e["kind"] for e in live} >= {e["kind"] for e in recorded}  # A's live stream had them too
    # A client that reconnects with `Last-Event-ID` gets only what it missed.
    rejoined = Follower(b, run_id[:8], last_event_id=len(recorded) - 2).finish()
    assert [e for _, e in rejoined] == recorded[-2:]
    missing = httpx.get(b.root + "/v1/runs/nosuchrun/events", headers=b.headers, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def test_a_replica_killed_mid_run_has_its_run_finished_by_another(cluster: Cluster, pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    doomed = cluster.start()
    hold = cluster.tmp / "hold"
    hold.touch()
    effects = len(cluster.side_effects())
    before = sum(r.metrics().get("planweave_takeovers_total", 0.0) for r in pair)
    cluster.model.enqueue(HOLD_PLAN, finish("finished elsewhere"))
    body = {"model": "planweave", "stream": True, "messages": [{"role": "user", "content": "mark and hold, then die"}]}
    try:
        with httpx.stream("POST", doomed.root + "/v1/chat/completions", json=body, headers=doomed.headers,
                          timeout=120) as response:
            run_id = response.headers["x-planweave-run-id"]
            wait_until(lambda: cluster.side_effects()[effects:] == ["one", "two"], "step `two` started", timeout_s=60)
            # Killed after its plan was recorded whole (a plan cut off mid-stream is finished by the
            # model on resume: another model call, tested elsewhere) and while step `two` runs.
            wait_until(lambda: any(e["kind"] == "llm_called" and e.get("purpose") == "plan"
                                   for e in cluster.store.events(run_id)), "the plan was recorded", timeout_s=60)
            kill_group(doomed.proc)  # SIGKILL: no shutdown, no status written; its lease is all that is left
            with pytest.raises(httpx.HTTPError):
                for _ in response.iter_lines():
                    pass
        hold.unlink()
        store = cluster.store
        # The run's status turns final with the executor's last event, a moment before the
        # planner's own: wait for that, the run's last.
        wait_until(lambda: store.events(run_id)[-1]["kind"] == "planner_finished", "another replica finished the run",
                   timeout_s=150)
    finally:
        hold.unlink(missing_ok=True)
    # `one` succeeded on the killed replica and was recorded: it never ran again. `two` never
    # finished there, so it ran again where the run was taken over.
    assert cluster.side_effects()[effects:] == ["one", "two", "two"]
    record = store.get_run(run_id)
    assert record.summary.status == "succeeded" and record.summary.answer == "finished elsewhere"
    assert sum(r.metrics().get("planweave_takeovers_total", 0.0) for r in pair) == before + 1


def test_metrics_reflect_the_runs_and_the_store(cluster: Cluster, pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    before = a.metrics()
    cluster.model.enqueue(answer("42"), ASK_THEN_SEND)
    a.chat([{"role": "user", "content": "the answer"}])
    waiting_before = len(cluster.store.list_runs(status="waiting", limit=None))
    a.chat([{"role": "user", "content": "send the report, later"}])  # left waiting for its question
    after = a.metrics()
    assert after["planweave_runs_started_total"] == before.get("planweave_runs_started_total", 0.0) + 2
    succeeded = 'planweave_runs_finished_total{status="succeeded"}'
    assert after[succeeded] == before.get(succeeded, 0.0) + 1
    assert after['planweave_runs_finished_total{status="waiting"}'] >= 1
    assert after["planweave_runs_in_flight"] == 0
    # Runs waiting for people are the store's: every replica sees the same count.
    assert after["planweave_store_runs_waiting"] == b.metrics()["planweave_store_runs_waiting"] == waiting_before + 1
    assert after['planweave_store_seconds_count{op="read_turn"}'] >= before.get('planweave_store_seconds_count{op="read_turn"}', 0.0) + 2
    # /health and /ready are for load balancers (no key); /metrics needs the key like the API.
    assert httpx.get(a.root + "/metrics", timeout=30).status_code == 401
    assert httpx.get(a.root + "/health", timeout=30).status_code == 200
    assert httpx.get(a.root + "/ready", timeout=30).json() == {"status": "ready"}


def test_ready_goes_503_once_the_server_is_shutting_down(tmp_path: Path) -> None:
    from planweave import Planner
    from planweave.planner.serve.app import ServerConfig, create_app

    async def scenario() -> None:
        app = create_app(Planner(store=tmp_path / "runs.db"), ServerConfig(takeover=False))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            await _wait_ready(client)
            await app.state.shutdown(0)  # what SIGTERM does (`_launch._Front`)
            response = await client.get("/ready")
            assert response.status_code == 503
            assert response.json() == {"status": "not_ready", "code": "shutting_down",
                                       "reason": "the server is shutting down and takes no new runs."}
            assert (await client.get("/health")).status_code == 200  # alive all the same

    asyncio.run(scenario())


async def _wait_ready(client: httpx.AsyncClient) -> None:
    from planweave.planner.serve.app import _MODEL_LIBRARIES

    _MODEL_LIBRARIES.start()
    await _MODEL_LIBRARIES.ready()
    response = await client.get("/ready")
    assert response.status_code == 200, response.text



def test_ready_goes_503_while_the_store_is_unreachable(tmp_path: Path, children: ChildProcesses) -> None:
    import tempfile

    from planweave.planner.testing.postgres import PostgresCluster

    # A server of its own, stopped under the replica (the session's server is shared). Not under
    # pytest's directory: as root, PostgreSQL runs as `postgres`, which cannot enter it.
    server = PostgresCluster(tempfile.mkdtemp(prefix="planweave-test-pg-"), durable=False)
    url = server.start()
    (tmp_path / "tools.py").write_text(TOOLS)
    try:
        with FakeModelServer() as model:
            replica = Cluster(url, model, children, tmp_path).start("--no-takeover")
            server.stop()
            wait_until(lambda: httpx.get(replica.root + "/ready", timeout=10).status_code == 503,
                       "the replica reads not ready", timeout_s=60)
            ready = httpx.get(replica.root + "/ready", timeout=10).json()
            assert ready["status"] == "not_ready" and ready["code"] == "store_unavailable"
            assert "127.0.0.1" not in ready["reason"] and str(server.port) not in ready["reason"]  # no address leaks
            assert httpx.get(replica.root + "/health", timeout=10).status_code == 200  # alive all the same
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
