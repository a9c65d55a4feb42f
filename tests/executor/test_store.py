"""The run stores (SQLite and PostgreSQL, each test on both): recording, queries, export, pruning,
resume state, errors, concurrency."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from dataclasses import dataclass
from typing import ClassVar

from planweave.executor import Executor, RunEvent, Step
from planweave.executor.events import StepSucceeded, SummaryUpdate, register_event_type
from planweave.executor.state import RunState
from planweave.executor.sqlite_store import BLOB_THRESHOLD, SQLiteRunStore
from planweave.executor.store import RunStore, StoreError, StoreLockedError, open_store
from planweave.planner.testing import ChildProcesses
from planweave.tools import tool


@tool
def echo(text: str) -> str:
    """Return the text."""
    return text


@tool
def boom(text: str) -> str:
    """Always fails."""
    raise ValueError(f"boom on {text}")


def record(store: RunStore, steps: list[Step], *, name: str = "wf", **kw: Any) -> str:
    rec = store.recorder(kind="workflow", name=name)
    result = Executor([echo, boom]).run_sync(steps, subscribers=[rec], **kw)
    assert rec.run_id == result.run_id
    return result.run_id


def test_open_store_uses_planweave_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANWEAVE_HOME", str(tmp_path / "home"))
    s = open_store()
    assert s.path == str(tmp_path / "home" / "runs.db")
    assert Path(s.path).exists()
    assert sqlite3.connect(s.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_records_every_event_and_summary(store: RunStore) -> None:
    run_id = record(store, [Step(id="a", tool="echo", args={"text": "hi"}), Step(id="b", tool="echo", args={"text": "${a}!"})])
    summary = store.summary(run_id)
    assert (summary.status, summary.kind, summary.name, summary.steps) == ("succeeded", "workflow", "wf", 2)
    assert summary.duration_s is not None and summary.duration_s >= 0
    kinds = [e["kind"] for e in store.events(run_id)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("step_succeeded") == 2
    steps = store.get_run(run_id).steps()
    assert steps["b"]["output"] == "hi!" and steps["b"]["args"] == {"text": "hi!"}
    assert steps["b"]["deps"] == ["a"] and steps["b"]["attempts"] == 1


def test_large_values_are_stored_once(store: RunStore, backend: Any) -> None:
    big = "x" * (BLOB_THRESHOLD * 4)
    run_id = record(store, [Step(id="a", tool="echo", args={"text": big}), Step(id="b", tool="echo", args={"text": "${a}"})])
    raw = [r[0] for r in backend.sql("SELECT data FROM events WHERE run_id = ?", (run_id,))]
    assert not any(big in text for text in raw)  # events point at the blob
    blobs = backend.sql("SELECT data FROM blobs")
    assert sum(big in b[0] for b in blobs) == 1  # args of a, output of a, args of b, output of b: one copy
    assert store.get_run(run_id).steps()["b"]["output"] == big


def test_failed_run_keeps_error_and_attempts(store: RunStore) -> None:
    run_id = record(store, [Step(id="a", tool="boom", args={"text": "t"}, retry={"max_attempts": 2, "initial_delay_s": 0.001})])
    s = store.summary(run_id)
    assert s.status == "failed" and "boom on t" in (s.error or "")
    step = store.get_run(run_id).steps()["a"]
    assert step["status"] == "failed" and step["attempts"] == 2
    assert step["retries"][0]["error"].endswith("boom on t")


def test_list_filters_and_order(store: RunStore) -> None:
    first = record(store, [Step(id="a", tool="echo", args={"text": "1"})], name="alpha")
    second = record(store, [Step(id="a", tool="boom", args={"text": "2"})], name="beta")
    assert [r.id for r in store.list_runs()] == [second, first]
    assert [r.id for r in store.list_runs(status="failed")] == [second]
    assert [r.id for r in store.list_runs(name="alpha")] == [first]
    assert [r.id for r in store.list_runs(contains="alp")] == [first]
    assert [r.id for r in store.list_runs(contains="%")] == []
    assert store.list_runs(limit=1)[0].id == second
    assert store.list_runs(since=time.time() + 60) == []


def test_unknown_and_prefix_ids(store: RunStore) -> None:
    run_id = record(store, [Step(id="a", tool="echo", args={"text": "1"})])
    assert store.summary(run_id[:6]).id == run_id
    with pytest.raises(StoreError) as err:
        store.summary("nope")
    assert str(err.value) == (
        f"no run `nope` in the store `{store.path}`; `planweave runs` lists the recorded runs."
    )


def test_export_is_json(store: RunStore) -> None:
    run_id = record(store, [Step(id="a", tool="echo", args={"text": "1"})])
    doc = json.loads(json.dumps(store.export(run_id)))
    assert doc["run"]["id"] == run_id
    assert [s["id"] for s in doc["steps"]] == ["a"]
    assert doc["events"][-1]["kind"] == "run_finished"


def test_delete_and_prune(store: RunStore, backend: Any) -> None:
    old = record(store, [Step(id="a", tool="echo", args={"text": "y" * 2000})])
    new = record(store, [Step(id="a", tool="echo", args={"text": "z"})])
    backend.sql("UPDATE runs SET created_at = created_at - 86400 * 10 WHERE id = ?", (old,))
    assert store.prune(86400 * 7) == 1
    assert [r.id for r in store.list_runs()] == [new]
    assert backend.sql("SELECT COUNT(*) FROM blobs")[0][0] == 0  # the old run's blobs went with it
    store.delete(new)
    assert store.list_runs() == []
    assert backend.sql("SELECT COUNT(*) FROM events")[0][0] == 0


def test_prune_keeps_running_runs(store: RunStore, backend: Any) -> None:
    store.begin("live", kind="planner", name="", goal="g", meta={})
    backend.sql("UPDATE runs SET created_at = 0")
    assert store.prune(1) == 0
    assert store.summary("live").status == "running"


def test_dead_process_means_interrupted(store: RunStore, backend: Any) -> None:
    store.begin("dead", kind="planner", name="", goal="g", meta={})
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{socket.gethostname()}:{int(proc.stdout)}:0000"  # its lease is not expired, its owner is gone
    backend.sql("UPDATE runs SET owner = ?, pid = ? WHERE id = 'dead'", (owner, int(proc.stdout)))
    assert store.summary("dead").status == "interrupted"
    assert [r.id for r in store.list_runs(status="interrupted")] == ["dead"]
    store.begin("mine", kind="planner", name="", goal="g", meta={})
    assert store.summary("mine").status == "running"  # this process is alive


def test_resume_state(store: RunStore) -> None:
    run_id = record(
        store,
        [
            Step(id="a", tool="echo", args={"text": "1"}),
            Step(id="b", tool="boom", args={"text": "${a}"}, on_failure="continue"),
            Step(id="c", tool="echo", args={"text": "${b}"}),
        ],
        inputs={"k": 1},
    )
    state = store.get_run(run_id).resume_state()
    assert [s.id for s in state.steps] == ["a", "b", "c"]
    assert state.completed == {"a": "1"}
    assert state.inputs == {"k": 1}


def test_masking_happens_before_storage(backend: Any) -> None:
    def mask(value: Any) -> Any:
        return json.loads(json.dumps(value).replace("sk-secret", "***"))

    s = backend.open(mask=mask)
    run_id = record(s, [Step(id="a", tool="echo", args={"text": "key sk-secret" + "x" * BLOB_THRESHOLD})])
    if backend.name == "sqlite":
        raw = Path(s.path).read_bytes() + Path(s.path + "-wal").read_bytes()
    else:
        raw = repr([backend.sql(f"SELECT * FROM {t}") for t in ("runs", "events", "blobs")]).encode()
    assert b"sk-secret" not in raw and b"key ***" in raw
    assert s.get_run(run_id).steps()["a"]["output"] == "key ***" + "x" * BLOB_THRESHOLD


def test_corrupted_database_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as err:
        SQLiteRunStore(path)
    assert f"`{path}` is corrupted" in str(err.value)
    assert "move the file aside" in str(err.value)
    assert path.read_bytes().startswith(b"this is not sqlite")  # nothing overwritten


def test_locked_database_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    s = SQLiteRunStore(path, busy_timeout_s=0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as err:
            s.begin("x", kind="workflow", name="", goal="", meta={})
        assert f"`{path}` is locked by another process" in str(err.value)
    finally:
        holder.execute("ROLLBACK")
    s.begin("x", kind="workflow", name="", goal="", meta={})  # usable again once released
    assert s.summary("x").status == "running"


def test_a_run_that_cannot_be_recorded_does_not_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "runs.db"
    s = SQLiteRunStore(path, busy_timeout_s=0.05)
    rec = s.recorder()
    calls: list[str] = []

    @tool
    def note(text: str) -> str:
        """Remember the call."""
        calls.append(text)
        return text

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreLockedError) as err:  # fail closed: nothing runs unrecorded
            Executor([note]).run_sync([Step(id="a", tool="note", args={"text": "1"})], subscribers=[rec])
    finally:
        holder.execute("ROLLBACK")
    assert calls == []
    assert f"`{path}` is locked by another process" in str(err.value)
    assert isinstance(rec.failure, StoreLockedError)
    assert not any("is no longer recorded" in r.message for r in caplog.records)  # the error says it


def test_append_without_begin_is_an_error(store: RunStore) -> None:
    with pytest.raises(StoreError, match="was not begun"):
        store.append(StepSucceeded(run_id="zz", step_id="a", output=1, attempts=1, duration_s=0))


def test_stats(store: RunStore) -> None:
    for _ in range(3):
        record(store, [Step(id="a", tool="echo", args={"text": "1"})], name="good")
    record(store, [Step(id="a", tool="boom", args={"text": "1"})], name="flaky")
    record(store, [Step(id="a", tool="echo", args={"text": "1"})], name="flaky")
    report = {g.name: g for g in store.stats()}
    assert report["good"].runs == 3 and report["good"].success_rate == 1.0
    assert report["flaky"].runs == 2 and report["flaky"].success_rate == 0.5
    assert report["good"].p50_s is not None and report["good"].p95_s >= report["good"].p50_s
    assert report["good"].slowest_steps[0].step == "a" and report["good"].slowest_steps[0].runs == 3
    assert report["good"].cost_usd == 0.0


WRITER = textwrap.dedent(
    """
    import sys
    from planweave.executor.store import open_store
    from planweave.executor.events import StepSucceeded, RunStarted
    store = open_store(sys.argv[1])
    run_id = sys.argv[2]
    store.begin(run_id, kind="workflow", name=run_id, goal="", meta={})
    for i in range(int(sys.argv[3])):
        store.append(StepSucceeded(run_id=run_id, step_id=f"s{i}", output={"i": i}, attempts=1, duration_s=0.0))
    """
)


def test_two_processes_write_at_once(backend: Any, children: ChildProcesses) -> None:
    path = backend.target
    backend.open().close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        children.spawn([sys.executable, "-c", WRITER, path, name, "400"], env=env) for name in ("p1", "p2")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    s = backend.open()
    for name in ("p1", "p2"):
        events = s.events(name)
        assert [e["output"]["i"] for e in events] == list(range(400))
    if backend.name == "sqlite":
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_stored_record_is_the_same_fold_as_the_live_run(store: RunStore) -> None:
    live = RunState()
    rec = store.recorder(kind="workflow", name="wf")
    steps = [
        Step(id="a", tool="echo", args={"text": "1"}),
        Step(id="b", tool="boom", args={"text": "${a}"}, on_failure="continue", retry={"max_attempts": 2, "initial_delay_s": 0}),
        Step(id="c", tool="echo", args={"text": "${b}"}),
    ]
    result = Executor([echo, boom]).run_sync(steps, subscribers=[rec, live.apply])
    stored = store.get_run(result.run_id).state(RunState)
    assert {sid: s.to_dict() for sid, s in stored.steps.items()} == {sid: s.to_dict() for sid, s in live.steps.items()}
    assert [s.status for s in stored.steps.values()] == ["succeeded", "failed", "skipped"]
    assert stored.steps["b"].attempt == 2 and stored.steps["b"].last_error == "ValueError: boom on 1"
    assert stored.status == live.status == result.status and stored.outputs == {"a": "1"}
    assert store.get_run(result.run_id).steps() == {sid: s.to_dict() for sid, s in live.steps.items()}


@register_event_type
@dataclass(slots=True, kw_only=True)
class Billed(RunEvent):
    """A layer above the executor (as the planner's `LLMCalled` and `PlannerFinished` do) says
    what its events add to the stored summary; the store names none of them."""

    kind: ClassVar[str] = "test_billed"
    tokens: int
    cost_usd: float | None
    final: str | None = None

    def summary_update(self) -> SummaryUpdate:
        return SummaryUpdate(llm_calls=1, input_tokens=self.tokens, cost_usd=self.cost_usd, status=self.final,
                             answer="done" if self.final else None)


def test_events_of_a_layer_above_contribute_their_own_summary_fields(store: RunStore) -> None:
    store.begin("r", kind="planner", name="", goal="g", meta={})
    for event in (Billed(run_id="r", tokens=5, cost_usd=0.5), Billed(run_id="r", tokens=7, cost_usd=0.25)):
        store.append(event)
    s = store.summary("r")
    assert (s.status, s.llm_calls, s.input_tokens, s.cost_usd) == ("running", 2, 12, 0.75)
    store.append(Billed(run_id="r", tokens=1, cost_usd=None, final="succeeded"))
    s = store.summary("r")
    assert (s.status, s.llm_calls, s.input_tokens, s.cost_usd, s.answer) == ("succeeded", 3, 13, None, "done")
    assert s.finished_at is not None
    assert [ev["kind"] for ev in store.events("r")] == ["test_billed"] * 3
