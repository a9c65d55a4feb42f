"""Crash torture: SIGKILL real `planweave exec` and `planweave run` processes at random points,
resume until done, and check the durability guarantee (README, "Durability").

    python bench/crash_torture.py --workflow-trials 30 --planner-trials 20 --seed 7 --json out.json

Each trial starts a run, kills it (SIGKILL) once a seeded random number of events has been
recorded, then resumes it, killing some resumes too, until a resume finishes. Every tool
call appends `idempotency_key step item` to a log (flushed and fsynced before it returns),
so the log is the ground truth of what ran. After each kill the store says which steps had
recorded their success; any later log line of those steps is a re-run of a recorded
success, which the guarantee forbids. Planner runs stream their plan slowly from a
`FakeModelServer`, so many kills land while the plan streams; the fake model finishes a
cut-off plan with only the steps it was not shown, and a join that sees part of the plan
is counted as a violation too.

Printed: trials, kills (mid plan stream, during resume), re-runs of recorded successes,
steps that ran again after a kill (allowed: they were running), keys that changed between
runs of a step (must be 0), wrong final outputs (must be 0), joins on a partial plan
(must be 0). `run_torture` returns the same numbers (the test in `tests/durability/` calls
it with a few trials).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

TOOLS = textwrap.dedent(
    '''
    import os, time
    from planweave.tools import ToolContext, tool

    LOG = os.environ["PW_TORTURE_LOG"]

    def effect_log(ctx: ToolContext) -> None:
        item = "-" if ctx.item_index is None else str(ctx.item_index)
        with open(LOG, "a") as f:
            f.write(f"{ctx.idempotency_key} {ctx.step_id} {item}\\n")
            f.flush()
            os.fsync(f.fileno())

    @tool
    def fetch(ctx: ToolContext, name: str) -> str:
        """Fetch a named value (a side effect, logged with its idempotency key)."""
        time.sleep(0.02 * (sum(map(ord, name)) % 7))
        effect_log(ctx)
        return name.upper()

    @tool
    def combine(ctx: ToolContext, parts: list) -> str:
        """Join the parts."""
        effect_log(ctx)
        return "+".join(str(p) for p in parts)
    '''
)

WORKFLOW = textwrap.dedent(
    """
    name: torture
    inputs:
      items: [i0, i1, i2, i3, i4]
    steps:
      - {id: a1, tool: fetch, args: {name: a1}}
      - {id: a2, tool: fetch, args: {name: "${a1}-a2"}}
      - {id: a3, tool: fetch, args: {name: "${a2}-a3"}}
      - {id: b1, tool: fetch, args: {name: b1}}
      - {id: b2, tool: fetch, args: {name: b2}}
      - {id: b3, tool: fetch, args: {name: b3}}
      - id: each
        tool: fetch
        for_each: "${inputs.items}"
        args: {name: "${item}"}
      - {id: all, tool: combine, args: {parts: ["${a3}", "${b1}", "${b2}", "${b3}", "${each}"]}}
    """
)
ITEMS = ["i0", "i1", "i2", "i3", "i4"]
WORKFLOW_ANSWER = "A1-A2-A3+B1+B2+B3+" + str([i.upper() for i in ITEMS])

PLAN_STEPS: list[list[Any]] = [[f"s{i}", "fetch", {"name": f"s{i}"}] for i in range(1, 11)]
PLAN_STEPS.append(["all", "combine", {"parts": [f"${{s{i}}}" for i in range(1, 11)]}])
PLANNER_ANSWER = "+".join(f"S{i}" for i in range(1, 11))
PLAN_PAUSE_S = 2.0
"""How long a first plan stream pauses half-way (what a run not killed then waits)."""


@dataclass
class Counts:
    trials: int = 0
    workflow_trials: int = 0
    planner_trials: int = 0
    processes: int = 0
    kills: int = 0
    kills_mid_plan: int = 0
    """Kills that left a planning round cut off (steps streamed, the round not finished)."""
    kills_during_resume: int = 0
    rerun_after_kill: int = 0
    """Steps (or for_each items) that ran again after a kill: allowed, they had not recorded success."""
    reruns_of_recorded_successes: int = 0
    """Must be 0: a step whose success was recorded ran again."""
    changed_keys: int = 0
    """Must be 0: a step ran again with another idempotency key."""
    wrong_outputs: int = 0
    joins_on_partial_plan: int = 0
    failures: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.reruns_of_recorded_successes or self.changed_keys or self.wrong_outputs
                    or self.joins_on_partial_plan or self.failures)  # fmt: skip


def _store(home: Path) -> Any:
    from planweave.executor.store import open_store

    return open_store(home)


def _events(home: Path) -> list[dict[str, Any]]:
    import planweave.planner.events  # noqa: F401  (the planner's event kinds read back as themselves)

    store = _store(home)
    try:
        runs = store.list_runs()
        return store.events(runs[0].id) if runs else []
    finally:
        store.close()


def _events_so_far(home: Path) -> list[dict[str, Any]]:
    """`_events` for polling while the run writes: opened read-only, so a poll never takes the
    write lock (a writable open migrates, in `BEGIN IMMEDIATE`: a poller descheduled there on a
    loaded machine held the run's writes up for the store's whole busy timeout). A store not
    created yet, or half-way, has no events so far."""
    import planweave.planner.events  # noqa: F401
    from planweave.executor.sqlite_store import SQLiteRunStore
    from planweave.executor.store import StoreError

    if not (home / "runs.db").exists():
        return []
    try:
        store = SQLiteRunStore(home / "runs.db", read_only=True)
    except StoreError:
        return []
    try:
        runs = store.list_runs()
        return store.events(runs[0].id) if runs else []
    except StoreError:
        return []
    finally:
        store.close()


def _recorded_successes(events: list[dict[str, Any]]) -> set[str]:
    return {e["step_id"] for e in events if e["kind"] in ("step_succeeded", "step_restored")}


def _cut_off_round(home: Path) -> bool:
    """The run's last planning round was cut off while its plan streamed."""
    from planweave.planner.state import PlannerState

    store = _store(home)
    try:
        [summary] = store.list_runs()
        state = store.get_run(summary.id).state(PlannerState)
    finally:
        store.close()
    return bool(state.unplanned_steps())


def _plan_streaming(events: list[dict[str, Any]]) -> bool:
    """Some steps of a plan are recorded, the end of their round is not: a kill now cuts it off.
    (What `_cut_off_round` reads from the folded state, from the raw events: as cheap to poll
    as counting them.)"""
    added = {e["step_id"] for e in events if e["kind"] == "step_added"}
    planned = {sid for e in events if e["kind"] == "plan_updated" for sid in e["step_ids"]}
    return bool(added - planned)


def _log(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]  # type: ignore[misc]


class _Trial:
    def __init__(self, directory: Path, rng: random.Random, counts: Counts, *, kind: str) -> None:
        self.dir, self.rng, self.counts, self.kind = directory, rng, counts, kind
        directory.mkdir(parents=True)
        self.home = directory / "home"
        self.log = directory / "effects.log"
        self.tools = directory / "torture_tools.py"
        self.tools.write_text(TOOLS)
        self.env = {**os.environ, "PLANWEAVE_HOME": str(self.home), "PW_TORTURE_LOG": str(self.log),
                    "OPENAI_API_KEY": "sk-fake", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # fmt: skip
        for key in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "PLANWEAVE_MODEL"):
            self.env.pop(key, None)
        self.forbidden: list[tuple[int, set[str]]] = []
        """(log length at a kill, steps whose success was recorded by then)."""

    def spawn(self, args: list[str]) -> subprocess.Popen[str]:
        self.counts.processes += 1
        return subprocess.Popen([sys.executable, "-m", "planweave", *args], env=self.env, cwd=self.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip

    def run_until_killed(
        self, proc: subprocess.Popen[str], more_events: int, *, resume: bool, mid_plan: bool = False
    ) -> tuple[bool, str]:
        """Wait until `more_events` more events are recorded (with `mid_plan`, until the plan is
        part-way streamed instead), then SIGKILL; (killed, stdout)."""
        start = len(_events_so_far(self.home))
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if self.home.exists():
                events = _events_so_far(self.home)
                if _plan_streaming(events) if mid_plan else len(events) >= start + more_events:
                    break
            time.sleep(0.01)
        if proc.poll() is not None:
            out, err = proc.communicate()
            if proc.returncode != 0:
                self.counts.failures.append(f"{self.dir.name}: exit {proc.returncode}: {err.strip()[-300:]}")
            return False, out
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        self.counts.kills += 1
        if resume:
            self.counts.kills_during_resume += 1
        events = _events(self.home)
        self.forbidden.append((len(_log(self.log)), _recorded_successes(events)))
        if self.kind == "planner" and _cut_off_round(self.home):
            self.counts.kills_mid_plan += 1
        return True, out

    def recorded_result(self) -> dict[str, Any] | None:
        """The run's result as recorded, if it has ended (the same fields as `--json`)."""
        from planweave.executor.store import FINAL_STATUSES

        store = _store(self.home)
        try:
            [summary] = store.list_runs()
            if summary.status not in FINAL_STATUSES:
                return None
            steps = store.get_run(summary.id).steps()
        finally:
            store.close()
        return {"status": summary.status, "answer": summary.answer, "steps": steps}

    def run_id(self) -> str:
        store = _store(self.home)
        try:
            [summary] = store.list_runs()
            return summary.id
        finally:
            store.close()

    def play(self, first: list[str], resume_extra: list[str], *, mid_plan: bool = False) -> dict[str, Any] | None:
        """Start, kill, resume (killing some resumes) until done; the final result JSON.

        With `mid_plan`, the first kill lands while the plan streams (not at a random event)."""
        more_events = self.rng.randint(2, 30)
        killed, out = self.run_until_killed(self.spawn(first), more_events, resume=False, mid_plan=mid_plan)
        while killed:
            ended = self.recorded_result()
            if ended is not None:  # killed after the run had ended, on its way out: nothing to resume
                return ended
            again = self.rng.random() < 0.4 and self.counts.kills_during_resume < 2 * self.counts.trials
            proc = self.spawn(["resume", self.run_id(), "--json", *resume_extra])
            if again:
                killed, out = self.run_until_killed(proc, self.rng.randint(1, 20), resume=True)
            else:
                out, err = proc.communicate()
                killed = False
                if proc.returncode != 0:
                    self.counts.failures.append(f"{self.dir.name}: resume exit {proc.returncode}: {err[-300:]}")
                    return None
        try:
            return dict(json.loads(out))
        except json.JSONDecodeError:
            self.counts.failures.append(f"{self.dir.name}: no JSON result: {out[-300:]}")
            return None

    def check_effects(self) -> None:
        lines = _log(self.log)
        for offset, recorded in self.forbidden:
            self.counts.reruns_of_recorded_successes += sum(1 for _, step, _ in lines[offset:] if step in recorded)
        keys: dict[tuple[str, str], set[str]] = {}
        for key, step, item in lines:
            keys.setdefault((step, item), set()).add(key)
        self.counts.changed_keys += sum(len(k) - 1 for k in keys.values())
        self.counts.rerun_after_kill += sum(n - 1 for n in Counter((s, i) for _, s, i in lines).values())


def workflow_trial(directory: Path, rng: random.Random, counts: Counts) -> None:
    counts.trials += 1
    counts.workflow_trials += 1
    trial = _Trial(directory, rng, counts, kind="workflow")
    wf = directory / "torture.yaml"
    wf.write_text(WORKFLOW)
    result = trial.play(
        ["exec", str(wf), "--tools", str(trial.tools), "--json"], []
    )
    trial.check_effects()
    if result is not None and (result.get("status") != "succeeded" or _output(result, "all") != WORKFLOW_ANSWER):
        counts.wrong_outputs += 1
        counts.failures.append(f"{directory.name}: wrong result {result.get('status')} {_output(result, 'all')!r}")


def _output(result: dict[str, Any], step: str) -> Any:
    return (result.get("steps") or {}).get(step, {}).get("output")


def planner_trial(directory: Path, rng: random.Random, counts: Counts, server: Any) -> None:
    counts.trials += 1
    counts.planner_trials += 1
    trial = _Trial(directory, rng, counts, kind="planner")
    # The first planner trial is killed while its plan streams (the first plan pauses half-way,
    # `fake_model`), so a kill mid plan stream happens however loaded the machine is; the
    # others at a random event, like the workflow trials.
    result = trial.play(
        ["run", f"torture {directory.name}: fetch ten and combine", "--model", "openai/fake", "--api-base",
         server.base_url, "--tools", str(trial.tools), "--json"],
        [],
        mid_plan=counts.planner_trials == 1,
    )  # fmt: skip
    trial.check_effects()
    if result is None:
        return
    ok = result.get("status") == "succeeded" and _output(result, "all") == PLANNER_ANSWER
    ok = ok and set(result.get("steps") or {}) == {s[0] for s in PLAN_STEPS} and result.get("answer") == "done"
    if not ok:
        counts.wrong_outputs += 1
        counts.failures.append(f"{directory.name}: wrong result {result.get('status')} {_output(result, 'all')!r}")


def fake_model(counts: Counts) -> Any:
    """A slow-streaming fake model: the whole plan, the rest of a cut-off plan, or `finish`."""
    from planweave.planner.testing import FakeModelServer, Reply

    def reply(request: Any) -> Any:
        asked = request.last_user_text
        if request.tools:  # the join decision is the one call with a tool schema (plans come as lines)
            history = json.dumps(request.messages)
            if not all(f"`{s[0]}`" in history for s in PLAN_STEPS):
                counts.joins_on_partial_plan += 1
            return Reply.json_obj({"action": "finish", "answer": "done", "reason": ""})
        if "was cut off" not in asked:  # a first plan round (a cut-off one is finished in a later user message)
            # Half-way, the stream pauses: a window in which a kill lands mid plan on any machine.
            plan = Reply.json_obj({"steps": PLAN_STEPS, "rationale": "fetch ten, then combine"})
            return plan.with_pause_after_json(("steps", len(PLAN_STEPS) // 2), PLAN_PAUSE_S)
        rest = [s for s in PLAN_STEPS if f"`{s[0]}`" not in asked]
        return Reply.json_obj({"steps": rest, "rationale": "the rest"})

    return FakeModelServer(handler=reply, tokens_per_s=400)


def run_torture(
    workflow_trials: int, planner_trials: int, *, seed: int, directory: Path, verbose: bool = False
) -> Counts:
    """Play the trials (alternating kinds) and return the counts."""
    rng = random.Random(seed)
    counts = Counts()
    started = time.monotonic()
    with fake_model(counts) as server:
        kinds = ["workflow"] * workflow_trials + ["planner"] * planner_trials
        rng.shuffle(kinds)
        for n, kind in enumerate(kinds):
            where = directory / f"{kind}-{n}"
            if kind == "workflow":
                workflow_trial(where, rng, counts)
            else:
                planner_trial(where, rng, counts, server)
            if verbose:
                print(f"  trial {n + 1}/{len(kinds)} {kind}: kills so far {counts.kills} "
                      f"({time.monotonic() - started:.0f} s)", file=sys.stderr)  # fmt: skip
    return counts


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow-trials", type=int, default=20)
    parser.add_argument("--planner-trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="Also write the counts to this file.")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pw-torture-") as tmp:
        counts = run_torture(args.workflow_trials, args.planner_trials, seed=args.seed, directory=Path(tmp),
                             verbose=True)  # fmt: skip
    elapsed = time.monotonic() - started
    rows = {k: v for k, v in asdict(counts).items() if k != "failures"}
    width = max(map(len, rows))
    print(f"crash torture (seed {args.seed}, {elapsed:.0f} s)")
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value}")
    for failure in counts.failures:
        print(f"  FAILURE: {failure}")
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(counts), "seed": args.seed, "seconds": elapsed}, indent=2))
    sys.exit(0 if counts.ok() else 1)


if __name__ == "__main__":
    main()
