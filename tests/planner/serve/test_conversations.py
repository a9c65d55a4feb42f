"""Conversations with a real `planweave serve` through the `openai` client, replaying the request
shapes Open WebUI sends: its background task prompts, a `tools` array, earlier assistant turns
with and without `<think>` blocks, follow-ups that depend on earlier answers, and questions and
approvals answered in the next chat message."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from planweave.executor.store import open_store
from planweave.planner.testing import FakeModelServer, Reply

from .frontends import (
    OPEN_WEBUI_AUTOCOMPLETE, OPEN_WEBUI_FOLLOW_UPS, OPEN_WEBUI_TAGS, OPEN_WEBUI_TITLE, OPEN_WEBUI_TOOLS, librechat_title,
    open_webui_task,
)

ROOT = Path(__file__).resolve().parents[3]

# One xdist worker runs the whole module, so each module-scoped server starts once, not once per worker.
pytestmark = [pytest.mark.xdist_group("serve-conversations"), pytest.mark.timeout(180)]
# (a server's start counts in its first test's time: on a loaded 2-core machine, past the default 60 s)

TOOLS = textwrap.dedent(
    '''
    import os
    from planweave.tools import tool

    @tool(approval=True)
    def send(to: str) -> str:
        """Send the report to someone."""
        with open(os.environ["PW_TEST_LOG"], "a") as f:
            f.write(to + "\\n")
        return f"sent to {to}"
    '''
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(tmp_path: Path, *args: str) -> Iterator[openai.OpenAI]:
    """`planweave serve` in a subprocess (its store and tools under `tmp_path`), through the openai client."""
    port = free_port()
    (tmp_path / "report_tools.py").write_text(TOOLS)
    env = {k: v for k, v in os.environ.items() if k not in ("PLANWEAVE_MODEL", "PLANWEAVE_API_KEY")}
    env.update(PLANWEAVE_HOME=str(tmp_path / "home"), PW_TEST_LOG=str(tmp_path / "sent.log"), OPENAI_API_KEY="sk-test",
               LITELLM_LOCAL_MODEL_COST_MAP="True")
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "planweave", "serve", "--port", str(port), "--workspace", str(tmp_path),
                             *args], env=env, stderr=log, stdout=subprocess.DEVNULL, cwd=ROOT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # the server says when its model libraries are loaded
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(root + "/health").json()["models"] == "ready":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield openai.OpenAI(base_url=root + "/v1", api_key="unused", timeout=120, max_retries=0)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        log.close()


# The servers are session-scoped, not module-scoped: under xdist this module's tests may reach their
# worker between other modules' tests, and a module fixture would then start its server again.


@pytest.fixture(scope="session")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[openai.OpenAI, Path]]:
    """One server planning with the offline model, for every test (each start costs seconds)."""
    home = tmp_path_factory.mktemp("offline")
    with served(home) as client:
        yield client, home


@pytest.fixture(scope="session")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[openai.OpenAI, Path, FakeModelServer]]:
    """One server planning with a scripted model (each test enqueues its replies) and the `send` tool."""
    home = tmp_path_factory.mktemp("scripted")
    with FakeModelServer() as model:
        with served(home, "--model", "openai/fake", "--api-base", model.base_url, "--tools",
                    str(home / "report_tools.py")) as client:
            yield client, home, model


def chat(client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any) -> str:
    reply = client.chat.completions.create(model="planweave", messages=messages, **extra)  # type: ignore[call-overload]
    return reply.choices[0].message.content or ""


def chat_streamed(client: openai.OpenAI, messages: list[dict[str, Any]]) -> str:
    chunks = client.chat.completions.create(model="planweave", messages=messages, stream=True)  # type: ignore[call-overload]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def sent(home: Path) -> list[str]:
    log = home / "sent.log"
    return log.read_text().split() if log.exists() else []


def visible(content: str) -> str:
    """What a front end shows: the answer after the folded `<think>` block, without the hidden marker."""
    answer = content.rpartition("</think>\n\n")[2]
    return answer.split("\n\n[//]: #")[0]


def test_a_four_turn_conversation_whose_follow_ups_depend_on_earlier_answers(offline: tuple[openai.OpenAI, Path]) -> None:
    client, home = offline
    before = {r.id for r in open_store(home / "home").list_runs(limit=None)}
    history: list[dict[str, Any]] = [{"role": "user", "content": "what is 17 × 23"}]
    first = chat(client, history, tools=OPEN_WEBUI_TOOLS)  # Open WebUI's `tools` array is accepted and ignored
    assert visible(first) == "17 * 23 = 391"
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "now add 100 to it"}]
    second = chat_streamed(client, history)
    assert visible(second) == "391 + 100 = 491"
    # Open WebUI may send the earlier answers without their `<think>` blocks
    history = [*history[:1], {"role": "assistant", "content": visible(first)}, *history[2:]]
    history += [{"role": "assistant", "content": second},
                {"role": "user", "content": "multiply the first result by 2"}]
    third = chat(client, history, stream=False)
    assert visible(third) == "391 * 2 = 782"
    history += [{"role": "assistant", "content": third}, {"role": "user", "content": "write a haiku"}]
    fourth = visible(chat(client, history))
    assert fourth.startswith("I cannot plan this goal offline: 'write a haiku'.")
    assert not any(ch.isdigit() for ch in fourth)  # nothing of the earlier arithmetic
    store = open_store(home / "home")
    runs = [r for r in store.list_runs(limit=None) if r.id not in before]
    assert len(runs) == 4 and all(r.goal in ("what is 17 × 23", "now add 100 to it", "multiply the first result by 2",
                                             "write a haiku") for r in runs)
    assert len({r.meta["session_id"] for r in runs}) == 1  # one conversation, one session
    listed = subprocess.run([sys.executable, "-m", "planweave", "runs", "--session", runs[0].meta["session_id"], "--json"],
                            env={**os.environ, "PLANWEAVE_HOME": str(home / "home")}, capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert len(json.loads(listed.stdout)) == 4


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (open_webui_task(OPEN_WEBUI_TITLE, [{"role": "user", "content": "what is 17 × 23"},
                                            {"role": "assistant", "content": "17 * 23 = 391"}]),
         {"title": "What is 17 × 23"}),
        (open_webui_task(OPEN_WEBUI_TAGS, [{"role": "user", "content": "fetch https://example.org"}]), {"tags": []}),
        (open_webui_task(OPEN_WEBUI_FOLLOW_UPS, [{"role": "user", "content": "fetch https://example.org"}]),
         {"follow_ups": []}),
        (open_webui_task(OPEN_WEBUI_AUTOCOMPLETE, [], prompt="what is"), {"text": ""}),
        (librechat_title("what is 17 × 23", "17 * 23 = 391"), "What is 17 × 23"),
    ],
    ids=["open-webui-title", "open-webui-tags", "open-webui-follow-ups", "open-webui-autocomplete", "librechat-title"],
)
def test_front_end_background_tasks_get_one_direct_answer_and_no_run(
    offline: tuple[openai.OpenAI, Path], messages: list[dict[str, Any]], expected: Any
) -> None:
    client, home = offline
    before = open_store(home / "home").list_runs(limit=None)
    text = chat(client, messages)
    assert (json.loads(text) if isinstance(expected, dict) else text) == expected
    assert chat_streamed(client, messages) == text
    assert open_store(home / "home").list_runs(limit=None) == before  # not a planner run, not a conversation turn


PLAN = Reply.json_obj({
    "rationale": "ask, then send",
    "steps": [
        {"id": "who", "tool": "ask_user", "args": {"question": "Send it to whom?", "choices": ["ann", "bob"]}},
        {"id": "s", "tool": "send", "args": {"to": "${who}"}},
    ],
    "answer": None,
})


def finish(answer: str) -> Reply:
    return Reply.json_obj({"action": "finish", "answer": answer, "reason": ""})


DENIED = "\n\n**Not everything worked:** step `s` failed: step `s` was not run: a person denied it: not before Monday"


@pytest.mark.parametrize(
    ("approval", "sends", "answer"),
    [("yes", ["bob"], "Sent to bob."), ('{"to": "bob@example.org"}', ["bob@example.org"], "Sent to bob@example.org."),
     ("no, not before Monday", [], "Not sent.")],
    ids=["approve", "edit", "deny"],
)
def test_a_question_and_an_approval_are_answered_in_the_next_chat_messages(
    scripted: tuple[openai.OpenAI, Path, FakeModelServer], approval: str, sends: list[str], answer: str
) -> None:
    client, home, model = scripted
    before, calls, sent_before = {r.id for r in open_store(home / "home").list_runs(limit=None)}, len(model.chat_requests), sent(home)
    model.enqueue(PLAN, finish(answer))
    history: list[dict[str, Any]] = [{"role": "user", "content": "send the report"}]
    asked = chat(client, history)
    assert visible(asked) == "Send it to whom?\n\nChoices: `ann`, `bob`."
    history += [{"role": "assistant", "content": asked}, {"role": "user", "content": "carl"}]
    again = chat(client, history)  # not one of the choices: asked again, nothing runs
    assert "`carl` is not one of them" in visible(again) and visible(again).endswith("Choices: `ann`, `bob`.")
    history += [{"role": "assistant", "content": again}, {"role": "user", "content": "Bob"}]
    approve = chat_streamed(client, history)
    assert visible(approve) == (
        'Step `s` wants to run `send` with `{"to": "bob"}`.\n\n'
        "Reply **yes** to run it, **no** (and why) to skip it, or the arguments as JSON to change them."
    )
    history += [{"role": "assistant", "content": approve.replace("<think>", "<think>\n")},
                {"role": "user", "content": approval}]
    done = chat(client, history)
    assert visible(done) == answer + ("" if sends else DENIED)  # a partial failure is said in the answer
    assert sent(home)[len(sent_before):] == sends
    store = open_store(home / "home")
    [run] = [r for r in store.list_runs(limit=None) if r.id not in before]  # first message to last: one run
    assert run.status == ("succeeded" if sends else "partial")
    assert len(model.chat_requests) - calls == 2  # one plan, one join: answering planned nothing again
    if not sends:
        assert store.get_run(run.id).steps()["s"]["error"] == "step `s` was not run: a person denied it: not before Monday"


def test_a_run_left_waiting_by_chat_continues_in_another_process(
    scripted: tuple[openai.OpenAI, Path, FakeModelServer],
) -> None:
    client, home, model = scripted
    sent_before = sent(home)
    model.enqueue(PLAN, finish("Sent to ann."))
    asked = chat(client, [{"role": "user", "content": "send the report to the usual person"}])
    assert visible(asked).startswith("Send it to whom?")
    env = {**os.environ, "PLANWEAVE_HOME": str(home / "home"), "OPENAI_API_KEY": "sk-test",
           "PW_TEST_LOG": str(home / "sent.log")}
    [run] = open_store(home / "home").list_runs(status="waiting")
    cli = [sys.executable, "-m", "planweave", "respond", run.id]
    answered = subprocess.run([*cli, "--answer", "ann"], env=env, capture_output=True, text=True, cwd=ROOT,
                              stdin=subprocess.DEVNULL, timeout=120)
    assert answered.returncode == 3, answered.stderr
    approved = subprocess.run([*cli, "--approve"], env=env, capture_output=True, text=True, cwd=ROOT,
                              stdin=subprocess.DEVNULL, timeout=120)
    assert approved.returncode == 0, approved.stderr
    assert "Sent to ann." in approved.stdout
    assert sent(home)[len(sent_before):] == ["ann"]
