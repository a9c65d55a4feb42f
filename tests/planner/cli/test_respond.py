"""People in the loop through the real command line: a terminal session driven through a
pseudo-terminal, and without a terminal exit 3, `planweave runs --status waiting`, `planweave respond`."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from planweave.executor.store import open_store
from planweave.planner.testing import FakeModelServer, Reply, wait_until

ROOT = Path(__file__).resolve().parents[3]

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


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "report_tools.py").write_text(TOOLS)
    return {**os.environ, "PLANWEAVE_HOME": str(tmp_path / "home"), "PW_TEST_LOG": str(tmp_path / "sent.log"),
            "OPENAI_API_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_COLOR": "1",
            "PW_TEST_TOOLS": str(tmp_path / "report_tools.py")}


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planweave", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, stdin=subprocess.DEVNULL, timeout=180)


def sent(env: dict[str, str]) -> list[str]:
    log = Path(env["PW_TEST_LOG"])
    return log.read_text().split() if log.exists() else []


def test_without_a_terminal_the_run_waits_exit_3_and_respond_continues_it(env: dict[str, str]) -> None:
    with FakeModelServer() as server:
        server.enqueue(PLAN, finish("sent to bob"))
        base = ["--model", "openai/fake", "--api-base", server.base_url]
        first = cli(["run", "send the report", *base, "--tools", env["PW_TEST_TOOLS"]], env)
        assert first.returncode == 3, first.stderr
        [line] = [ln for ln in first.stderr.splitlines() if ln.startswith("planweave: waiting")]
        waiting = json.loads(cli(["runs", "--status", "waiting", "--json"], env).stdout)
        [run] = waiting
        assert f"planweave respond {run['id']} --step who --answer TEXT" in line
        assert "step `who` asks: Send it to whom? (choices: ann, bob)" in line
        tree = cli(["show", run["id"]], env).stdout
        assert "waiting" in tree and "waits: step `who` asks: Send it to whom?" in tree

        bad = cli(["respond", run["id"], "--answer", "carl"], env)
        assert bad.returncode == 2 and "`carl` is not one of them" in bad.stderr

        second = cli(["respond", run["id"][:8], "--answer", "2", "--json"], env)
        assert second.returncode == 3, second.stderr
        result = json.loads(second.stdout)
        assert result["status"] == "waiting" and result["requests"][0]["args"] == {"to": "bob"}
        assert "step `s` needs approval to run `send`" in result["error"]

        third = cli(["respond", run["id"], "--edit", '{"to": "bob@example.org"}', "--json"], env)
        assert third.returncode == 0, third.stderr
        assert json.loads(third.stdout)["answer"] == "sent to bob"
        assert sent(env) == ["bob@example.org"]
        assert len(server.chat_requests) == 2  # one plan, one join

        shown = cli(["show", run["id"], "--json"], env)
        kinds = [e["kind"] for e in json.loads(shown.stdout)["events"]]
        assert kinds.count("input_requested") == 2 and kinds.count("input_answered") == 2
        tree = " ".join(cli(["show", run["id"]], env).stdout.split())
        assert "person: answered: bob (by respond)" in tree
        assert 'person: approved with {"to": "bob@example.org"} (by respond)' in tree
        assert cli(["respond", run["id"], "--approve"], env).returncode == 2  # not waiting any more


def test_a_denied_step_fails_with_the_reason(env: dict[str, str]) -> None:
    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj({"rationale": "", "steps": [{"id": "s", "tool": "send", "args": {"to": "ann"}}], "answer": None}),
            finish("not sent"),
        )
        first = cli(["run", "send it", "--model", "openai/fake", "--api-base", server.base_url, "--tools", env["PW_TEST_TOOLS"]], env)
        assert first.returncode == 3
        run_id = json.loads(cli(["runs", "--status", "waiting", "--json"], env).stdout)[0]["id"]
        denied = cli(["respond", run_id, "--deny", "wrong day", "--json"], env)
    result = json.loads(denied.stdout)
    assert denied.returncode == 1 and result["status"] == "partial"
    assert result["steps"]["s"]["error"] == "step `s` was not run: a person denied it: wrong day"
    assert sent(env) == []


def _read_until(fd: int, needle: bytes, seen: bytearray) -> None:
    while needle not in seen:
        ready, _, _ = select.select([fd], [], [], 120)
        assert ready, f"no {needle!r} from the terminal; it showed: {seen.decode(errors='replace')[-2000:]}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            chunk = b""
        assert chunk, f"the terminal closed before {needle!r}; it showed: {seen.decode(errors='replace')[-2000:]}"
        seen += chunk


def test_on_a_terminal_the_person_is_asked_inline(env: dict[str, str]) -> None:
    """A real `planweave run` on a pseudo-terminal: the question, then the approval, answered by typing."""
    with FakeModelServer() as server:
        server.enqueue(PLAN, finish("sent to ann"))
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "planweave", "run", "send the report", "--model", "openai/fake",
             "--api-base", server.base_url, "--tools", env["PW_TEST_TOOLS"]],
            stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "dumb", "COLUMNS": "100"}, cwd=ROOT,
            close_fds=True,
        )
        os.close(slave)
        seen = bytearray()
        try:
            _read_until(master, b"answer: ", seen)
            assert b"step `who` asks: Send it to whom?" in seen and b"1. ann" in seen
            os.write(master, b"1\n")
            _read_until(master, b"approve? [y]es, [n]o, [e]dit: ", seen)
            assert b'step `s` wants to run `send` with:' in seen and b'{"to": "ann"}' in seen
            os.write(master, b"y\n")
            assert proc.wait(timeout=120) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            try:
                while True:
                    chunk = os.read(master, 4096)
                    if not chunk:
                        break
                    seen += chunk
            except OSError:
                pass
            os.close(master)
    assert sent(env) == ["ann"]
    assert b"sent to ann" in seen


def test_a_deadline_that_passed_denies_the_request_when_the_run_continues(env: dict[str, str]) -> None:
    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj({"rationale": "", "steps": [{"id": "s", "tool": "send", "args": {"to": "ann"}}], "answer": None}),
            finish("not sent: nobody approved in time"),
        )
        first = cli(["run", "send it", "--model", "openai/fake", "--api-base", server.base_url, "--tools",
                     env["PW_TEST_TOOLS"], "--answer-within", "1"], env)
        assert first.returncode == 3, first.stderr
        run_id = json.loads(cli(["runs", "--status", "waiting", "--json"], env).stdout)[0]["id"]
        [request] = open_store(Path(env["PLANWEAVE_HOME"])).get_run(run_id).resume_state().requests.values()
        assert request.deadline_at is not None
        deadline = request.deadline_at
        wait_until(lambda: time.time() > deadline, "the request's deadline passed", timeout_s=30)
        late = cli(["respond", run_id, "--approve"], env)
        assert late.returncode == 2
        assert f"it is denied when the run continues: `planweave resume {run_id}`" in late.stderr
        resumed = cli(["resume", run_id, "--json"], env)
    result = json.loads(resumed.stdout)
    assert resumed.returncode == 1 and result["status"] == "partial"
    assert result["steps"]["s"]["error"] == "step `s` was not run: nobody answered in time"
    assert sent(env) == []


WORKFLOW = textwrap.dedent(
    """
    name: report
    steps:
      - id: total
        tool: calculator
        args: {expression: "17 * 23"}
      - id: note
        tool: write_file
        args: {path: "total.txt", content: "total ${total}"}
        approval: true
    """
)


def test_a_workflow_step_with_approval_waits_and_respond_continues_it(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "report.yaml").write_text(WORKFLOW)
    first = cli(["exec", str(tmp_path / "report.yaml"), "--workspace", str(tmp_path)], env)
    assert first.returncode == 3, first.stderr
    assert "step `note` needs approval to run `write_file`" in first.stderr
    run_id = json.loads(cli(["runs", "--status", "waiting", "--json"], env).stdout)[0]["id"]
    edited = cli(["respond", run_id, "--edit", '{"path": "total.txt", "content": "391 in all"}', "--json"], env)
    assert edited.returncode == 0, edited.stderr
    result = json.loads(edited.stdout)
    assert result["status"] == "succeeded" and result["steps"]["total"]["restored"]
    assert (tmp_path / "total.txt").read_text() == "391 in all"
