"""The scheduler: readiness without barriers, limits, retries, timeouts, failure policies, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from planweave.executor import (
    Executor,
    PlanError,
    Recovery,
    RunClosedError,
    RunEvent,
    Step,
    StepFailure,
    StepRetrying,
)
from planweave.planner.testing import await_until
from planweave.tools import ToolContext, ToolError, tool

FINAL_KINDS = {"step_succeeded", "step_failed", "step_skipped", "step_cancelled", "step_restored"}


@tool
async def sleep(seconds: float, value: Any = None) -> Any:
    """Sleep, then return `value`."""
    await asyncio.sleep(seconds)
    return value


@tool
async def echo(value: Any) -> Any:
    return value


@tool
def block(seconds: float) -> float:
    """A blocking sync tool: must run in a worker thread."""
    time.sleep(seconds)
    return seconds


class Flaky:
    """Fails `failures` times, then returns 'ok'. Counts calls."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error

    def as_tool(self) -> Any:
        @tool(name="flaky")
        async def flaky() -> str:
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error(f"boom {self.calls}")
            return "ok"

        return flaky


class Rendezvous:
    """A tool whose calls wait until `parties` of them are running at once.

    Proves steps overlap without timing them: run serially, the first call waits
    alone, times out (generously) and the step fails with `not all ... running together`.
    """

    def __init__(self, parties: int, name: str = "meet") -> None:
        self.parties = parties
        self.name = name
        self.running = 0
        self.peak = 0
        self.all_here = asyncio.Event()

    async def arrive(self) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running >= self.parties:
            self.all_here.set()
        try:
            await asyncio.wait_for(self.all_here.wait(), 30)
        except TimeoutError:
            raise AssertionError(f"not all {self.parties} calls were running together") from None
        finally:
            self.running -= 1
        return self.peak

    def as_tool(self) -> Any:
        @tool(name=self.name)
        async def meet() -> int:
            return await self.arrive()

        return meet


def step(id: str, tool: str = "echo", **kw: Any) -> Step:  # noqa: A002
    kw.setdefault("args", {"value": id} if tool == "echo" else {})
    return Step(id=id, tool=tool, **kw)


def finals(events: list[RunEvent]) -> Counter[str]:
    return Counter(getattr(e, "step_id") for e in events if e.kind in FINAL_KINDS)


async def test_outputs_flow_through_references_and_context() -> None:
    ex = Executor([echo])
    result = await ex.run(
        [
            step("a", args={"value": {"items": [1, 2, 3]}}),
            step("b", args={"value": "${a.items}"}),
            step("c", args={"value": "n=${a.items.2} goal=${goal} q=${inputs.q}"}),
        ],
        goal="G",
        inputs={"q": "Q"},
    )
    assert result.status == "succeeded"
    assert result.output("b") == [1, 2, 3]
    assert result.output("c") == "n=3 goal=G q=Q"
    assert result.steps["b"].attempts == 1 and result.steps["b"].duration_s is not None


async def test_no_superstep_barrier() -> None:
    """A slow branch never delays an unrelated fast branch.

    `slow` only finishes once the whole fast chain has; `other` only finishes once
    `after_slow` has started. With a barrier between rounds either wait would never end.
    """
    fast_chain_done = asyncio.Event()
    after_slow_started = asyncio.Event()

    @tool
    async def wait_for(name: str) -> bool:
        event = {"fast_chain_done": fast_chain_done, "after_slow_started": after_slow_started}[name]
        await asyncio.wait_for(event.wait(), 30)
        return True

    @tool
    async def signal(name: str) -> bool:
        {"fast_chain_done": fast_chain_done, "after_slow_started": after_slow_started}[name].set()
        return True

    ex = Executor([wait_for, signal, echo])
    steps = [step("slow", "wait_for", args={"name": "fast_chain_done"})]
    steps.append(step("other", "wait_for", args={"name": "after_slow_started"}))
    prev = None
    for i in range(5):
        steps.append(step(f"f{i}", depends_on=[prev] if prev else []))
        prev = f"f{i}"
    steps.append(step("fast_end", "signal", args={"name": "fast_chain_done"}, depends_on=["f4"]))
    # The dependent of the slow step starts right after it, not after some global round.
    steps.append(step("after_slow", "signal", args={"name": "after_slow_started"}, depends_on=["slow"]))
    result = await ex.run(steps)
    assert result.ok, {k: s.error for k, s in result.steps.items() if s.error}
    assert result.steps["f4"].finished_at <= result.steps["slow"].finished_at  # type: ignore[operator]
    assert result.steps["after_slow"].started_at <= result.steps["other"].finished_at  # type: ignore[operator]


async def test_parallel_steps_overlap() -> None:
    meet = Rendezvous(20)
    result = await Executor([meet.as_tool()]).run([step(f"s{i}", "meet", args={}) for i in range(20)])
    assert result.ok, result.error  # all 20 were running side by side
    assert meet.peak == 20


async def test_blocking_sync_tool_does_not_stall_the_loop() -> None:
    chain_done = threading.Event()

    @tool
    def block_until_chain_done() -> bool:
        """Blocks its thread until the async chain has finished: on the loop, it never would."""
        return chain_done.wait(30)

    @tool
    async def mark_chain_done() -> None:
        chain_done.set()

    ex = Executor([block_until_chain_done, mark_chain_done, sleep])
    result = await ex.run(
        [step("b", "block_until_chain_done", args={})]
        + [step(f"a{i}", "sleep", args={"seconds": 0.01}, depends_on=[f"a{i-1}"] if i else []) for i in range(5)]
        + [step("done", "mark_chain_done", args={}, depends_on=["a4"])]
    )
    assert result.output("b") is True  # the chain ran to the end while `b` blocked its thread
    assert result.steps["a4"].finished_at <= result.steps["b"].finished_at  # type: ignore[operator]
    await ex.aclose()


async def test_concurrency_limits_global_and_per_tool() -> None:
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    def tracked(name: str) -> Any:
        @tool(name=name)
        async def t() -> None:
            running[name] += 1
            running["all"] += 1
            peak[name] = max(peak[name], running[name])
            peak["all"] = max(peak["all"], running["all"])
            await asyncio.sleep(0.02)
            running[name] -= 1
            running["all"] -= 1

        return t

    ex = Executor([tracked("http_get"), tracked("other")], max_concurrency=5, tool_limits={"http_get": 2})
    result = await ex.run(
        [step(f"h{i}", "http_get", args={}) for i in range(10)] + [step(f"o{i}", "other", args={}) for i in range(10)]
    )
    assert result.ok
    assert peak["http_get"] == 2
    assert peak["all"] == 5


async def test_retry_with_backoff_records_delays() -> None:
    flaky = Flaky(2)
    events: list[RunEvent] = []
    ex = Executor([flaky.as_tool()])
    policy = {"max_attempts": 3, "initial_delay_s": 0.05, "backoff_factor": 2, "jitter": 0}
    t0 = time.perf_counter()
    result = await ex.run([Step(id="f", tool="flaky", retry=policy)], subscribers=[events.append])
    elapsed = time.perf_counter() - t0
    assert result.ok and result.steps["f"].attempts == 3 and flaky.calls == 3
    retries = [e for e in events if isinstance(e, StepRetrying)]
    assert [(e.attempt, e.delay_s, e.error) for e in retries] == [(1, 0.05, "boom 1"), (2, 0.1, "boom 2")]
    assert elapsed >= 0.15


async def test_retries_run_out_and_filter_by_error_type() -> None:
    flaky = Flaky(5)
    result = await Executor([flaky.as_tool()]).run(
        [Step(id="f", tool="flaky", retry={"max_attempts": 3, "initial_delay_s": 0, "jitter": 0}, on_failure="continue")]
    )
    assert result.steps["f"].status == "failed" and flaky.calls == 3
    assert result.steps["f"].error == "boom 3" and result.steps["f"].error_type == "ConnectionError"
    only_timeouts = Flaky(5, ValueError)
    result = await Executor([only_timeouts.as_tool()]).run(
        [Step(id="f", tool="flaky", retry={"max_attempts": 3, "retry_on": ["TimeoutError"]}, on_failure="continue")]
    )
    assert only_timeouts.calls == 1


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    @tool
    async def refuse() -> None:
        nonlocal calls
        calls += 1
        raise ToolError("no", permanent=True)

    result = await Executor([refuse]).run([Step(id="r", tool="refuse", retry=5)])
    assert calls == 1 and result.steps["r"].attempts == 1 and result.status == "failed"


async def test_runtime_argument_error_names_the_field() -> None:
    result = await Executor([echo, sleep]).run(
        [step("a", args={"value": "text"}), Step(id="s", tool="sleep", args={"seconds": "${a}"}, retry=5)]
    )
    s = result.steps["s"]
    assert s.status == "failed" and s.attempts == 1 and s.error_type == "ToolArgumentsError"
    assert "`seconds`: Input should be a valid number" in (s.error or "")


async def test_timeout_is_retryable() -> None:
    result = await Executor([sleep]).run(
        [Step(id="t", tool="sleep", args={"seconds": 5}, timeout_s=0.05, retry={"max_attempts": 2, "initial_delay_s": 0})]
    )
    t = result.steps["t"]
    assert t.status == "failed" and t.attempts == 2 and t.error_type == "StepTimeoutError"
    assert t.error == "step `t` timed out after 0.05s (attempt 2); raise its `timeout_s` or make the tool faster."


async def test_on_failure_fail_cancels_the_rest() -> None:
    events: list[RunEvent] = []
    long_started = asyncio.Event()
    interrupted: list[str] = []

    @tool
    async def crash() -> None:
        await long_started.wait()
        raise RuntimeError("disk on fire")

    @tool
    async def long_sleep(seconds: float) -> None:
        long_started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            interrupted.append("long")
            raise

    result = await Executor([crash, sleep, long_sleep]).run(
        [
            Step(id="c", tool="crash"),
            step("long", "long_sleep", args={"seconds": 60}),
            step("after", "sleep", args={"seconds": 0}, depends_on=["long"]),
        ],
        subscribers=[events.append],
    )
    assert result.status == "failed"
    assert result.error == "step `c` failed: disk on fire"
    assert {k: s.status for k, s in result.steps.items()} == {"c": "failed", "long": "cancelled", "after": "cancelled"}
    assert interrupted == ["long"]  # the running step was cancelled, not waited for
    assert all(n == 1 for n in finals(events).values()) and len(finals(events)) == 3


async def test_on_failure_continue_skips_dependents_only() -> None:
    @tool
    async def crash() -> None:
        raise RuntimeError("nope")

    result = await Executor([crash, echo]).run(
        [
            Step(id="c", tool="crash", on_failure="continue"),
            step("needs_c", args={"value": "${c}"}),
            step("needs_needs_c", args={"value": "${needs_c}"}),
            step("independent"),
        ]
    )
    assert result.status == "partial" and result.failed_steps == ["c"] and not result.ok
    assert result.error == "step `c` failed: nope"
    assert result.steps["c"].status == "failed"
    assert result.steps["needs_c"].status == "skipped"
    assert result.steps["needs_c"].error == "needs `c`, which failed"
    assert result.steps["needs_needs_c"].error == "needs `needs_c`, which was skipped"
    assert result.output("independent") == "independent"


async def test_on_failure_replan_is_reported() -> None:
    @tool
    async def crash() -> None:
        raise RuntimeError("nope")

    steps = [Step(id="c", tool="crash", on_failure="replan"), step("x")]
    result = await Executor([crash, echo]).run(steps)
    assert result.status == "failed" and result.replan_requests == ["c"]
    assert "`c` failed with `on_failure: replan`" in (result.error or "")
    handled = await Executor([crash, echo]).run(steps, replans_handled=True)
    assert handled.status == "partial" and handled.replan_requests == ["c"]


async def test_when_condition_skips_step_and_its_dependents() -> None:
    result = await Executor([echo]).run(
        [
            step("n", args={"value": 3}),
            step("big", when="${n} > 10"),
            step("small", when="${n} <= 10 and ${n} != 0"),
            step("uses_big", args={"value": "${big}"}),
        ]
    )
    assert result.steps["big"].status == "skipped" and result.steps["big"].error == "condition `${n} > 10` is false"
    assert result.steps["uses_big"].status == "skipped"
    assert result.steps["small"].status == "succeeded"
    assert result.status == "succeeded"


async def test_for_each_runs_items_in_parallel_and_retries_only_failed_items() -> None:
    seen: Counter[int] = Counter()
    first_round = Rendezvous(4)

    @tool
    async def square(x: int) -> int:
        seen[x] += 1
        if seen[x] == 1:
            await first_round.arrive()  # all four items run at once
        if x == 3 and seen[x] == 1:
            raise ConnectionError("transient")
        return x * x

    result = await Executor([square, echo]).run(
        [
            step("nums", args={"value": [1, 2, 3, 4]}),
            Step(id="sq", tool="square", args={"x": "${item}"}, for_each="${nums}", retry={"max_attempts": 2, "initial_delay_s": 0}),
        ]
    )
    assert result.output("sq") == [1, 4, 9, 16]
    assert seen == Counter({1: 1, 2: 1, 3: 2, 4: 1})
    assert first_round.peak == 4


async def test_for_each_needs_a_list() -> None:
    result = await Executor([echo]).run(
        [step("v", args={"value": 5}), Step(id="e", tool="echo", args={"value": "${item}"}, for_each="${v}")]
    )
    assert result.steps["e"].status == "failed"
    assert "`for_each` needs a list, but `${v}` is a int" in (result.steps["e"].error or "")


async def test_live_run_accepts_steps_while_running() -> None:
    ex = Executor([sleep, echo])
    async with ex.start([step("first", "sleep", args={"seconds": 0.01, "value": 7})], goal="g") as run:
        await await_until(lambda: run.step_status("first") == "succeeded", "`first` succeeded")
        t = time.time()
        run.add_steps([step("second", args={"value": "${first}"})])
        await await_until(lambda: run.step_status("second") == "succeeded", "`second` succeeded")
        with pytest.raises(PlanError, match="there is no step `ghost`"):
            run.add_steps([step("third", args={"value": "${ghost}"})])
        run.close()
        with pytest.raises(RunClosedError):
            run.add_steps([step("late")])
    result = run.result
    assert result.output("second") == 7
    assert result.steps["second"].started_at >= t  # type: ignore[operator]
    assert "third" not in result.steps


async def test_cancel_marks_every_step_final_exactly_once() -> None:
    ex = Executor([sleep])
    events: list[RunEvent] = []
    async with ex.start(
        [step(f"s{i}", "sleep", args={"seconds": 5}) for i in range(3)]
        + [step("later", "sleep", args={"seconds": 0}, depends_on=["s0"])],
        subscribers=[events.append],
    ) as run:
        await await_until(
            lambda: all(run.step_status(f"s{i}") == "running" for i in range(3)), "`s0`..`s2` were running"
        )
        run.cancel("user pressed stop")
    assert run.result.status == "cancelled"
    assert set(s.status for s in run.result.steps.values()) == {"cancelled"}
    assert finals(events) == Counter({"s0": 1, "s1": 1, "s2": 1, "later": 1})
    assert events[-1].kind == "run_finished"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("planweave-step")]


async def test_exception_in_driving_code_cancels_the_run() -> None:
    ex = Executor([sleep])
    with pytest.raises(KeyError):
        async with ex.start([step("s", "sleep", args={"seconds": 5})]) as run:
            await await_until(lambda: run.step_status("s") == "running", "`s` was running")
            raise KeyError("oops")
    assert run.result.status == "cancelled" and run.result.steps["s"].status == "cancelled"


async def test_outer_task_cancellation_cancels_steps() -> None:
    ex = Executor([sleep])
    started = asyncio.Event()

    async def main() -> None:
        async with ex.start([step("s", "sleep", args={"seconds": 5})]) as run:
            started.set()
            holder.append(run)

    holder: list[Any] = []
    task = asyncio.create_task(main())
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert holder[0].result.status == "cancelled"


async def test_events_async_iterator_sees_the_whole_run() -> None:
    ex = Executor([echo])
    async with ex.start([step("a"), step("b", args={"value": "${a}"})]) as run:
        run.close()  # no more steps: the iterator ends when the run does
        kinds = []
        async for ev in run.events():
            kinds.append((ev.kind, getattr(ev, "step_id", None)))
    assert kinds[0] == ("run_started", None)
    assert kinds[-1] == ("run_finished", None)
    assert kinds.index(("step_succeeded", "a")) < kinds.index(("step_started", "b"))
    assert ("step_added", "a") in kinds and ("step_ready", "b") in kinds


async def test_resume_from_recorded_state_does_not_rerun() -> None:
    calls: Counter[str] = Counter()

    @tool
    async def count(name: str, prev: Any = None) -> str:
        calls[name] += 1
        return f"{name}<{prev}>"

    steps = [
        Step(id="a", tool="count", args={"name": "a"}),
        Step(id="b", tool="count", args={"name": "b", "prev": "${a}"}),
        Step(id="c", tool="count", args={"name": "c", "prev": "${b}"}),
    ]
    result = await Executor([count]).run(steps, completed={"a": "A!", "b": "B!"})
    assert calls == Counter({"c": 1})
    assert result.output("c") == "c<B!>"
    assert result.steps["a"].restored and result.steps["a"].status == "succeeded"


async def test_deadline_fails_the_run() -> None:
    result = await Executor([sleep]).run([step("s", "sleep", args={"seconds": 5})], deadline_s=0.05)
    assert result.status == "failed" and "deadline of 0.05s" in (result.error or "")
    assert result.steps["s"].status == "cancelled"


async def test_max_steps_is_checked_before_running() -> None:
    with pytest.raises(PlanError, match="the run allows at most 2 steps and would have 3"):
        Executor([echo]).start([step("a"), step("b"), step("c")], max_steps=2)


async def test_failure_handler_decides_between_retry_and_fail() -> None:
    flaky = Flaky(2)
    decisions: list[tuple[str, int]] = []

    def handle(failure: StepFailure) -> Recovery:
        decisions.append((type(failure.error).__name__, failure.attempt))
        if isinstance(failure.error, ConnectionError):
            return Recovery.retry(delay_s=0, max_attempts=5)
        return Recovery.fail()

    result = await Executor([flaky.as_tool()], failure_handler=handle).run([Step(id="f", tool="flaky")])
    assert result.ok and decisions == [("ConnectionError", 1), ("ConnectionError", 2)]

    bad = Flaky(9, ValueError)
    result = await Executor([bad.as_tool()], failure_handler=handle).run(
        [Step(id="f", tool="flaky", on_failure="continue")]
    )
    assert result.status == "failed" and bad.calls == 1  # Recovery.fail overrides `continue`


async def test_tool_context_is_injected() -> None:
    @tool
    async def whoami(ctx: ToolContext, suffix: str) -> str:
        return f"{ctx.run_id}:{ctx.step_id}:{ctx.attempt}:{ctx.goal}:{sorted(ctx.outputs)}{suffix}"

    result = await Executor([whoami, echo]).run(
        [step("a"), Step(id="w", tool="whoami", args={"suffix": "!"}, depends_on=["a"])], goal="G", run_id="r1"
    )
    assert result.output("w") == "r1:w:1:G:['a']!"


async def test_non_serialisable_output_fails_clearly() -> None:
    @tool
    async def lock() -> Any:
        return threading.Lock()

    result = await Executor([lock]).run([Step(id="l", tool="lock", retry=3)])
    assert result.steps["l"].attempts == 1
    assert result.steps["l"].error_type == "ToolOutputError"


async def test_run_sync_and_raise_for_status() -> None:
    def go() -> Any:
        return Executor([echo]).run_sync([step("a")])

    result = await asyncio.to_thread(go)
    assert result.raise_for_status().output("a") == "a"


# --- steps that need the same set of steps (one shared countdown per set) ------------------------


def layers(n: int, width: int, tool: str = "echo", **kw: Any) -> list[Step]:
    """`n` layers of `width` steps; each step needs every step of the previous layer."""
    out = []
    for k in range(n):
        prev = [f"l{k - 1}_{j}" for j in range(width)] if k else []
        out += [step(f"l{k}_{j}", tool, depends_on=prev, **kw) for j in range(width)]
    return out


async def test_a_layer_starts_only_when_the_whole_previous_layer_succeeded() -> None:
    order: list[str] = []

    @tool
    async def mark(ctx: ToolContext) -> str:
        order.append(ctx.step_id)
        await asyncio.sleep(0.001 * (hash(ctx.step_id) % 5))
        return ctx.step_id

    result = await Executor([mark]).run(layers(3, 6, "mark", args={}))
    assert result.ok
    layer_of = [int(sid[1]) for sid in order]
    assert layer_of == sorted(layer_of)


async def test_failed_step_skips_every_step_sharing_its_dependents_set() -> None:
    @tool
    async def maybe(ctx: ToolContext) -> str:
        if ctx.step_id == "l1_2":
            raise ValueError("no")
        return ctx.step_id

    result = await Executor([maybe]).run(layers(3, 4, "maybe", args={}, on_failure="continue"))
    assert result.by_status("failed") == ["l1_2"]
    assert sorted(result.by_status("skipped")) == [f"l2_{j}" for j in range(4)]
    assert {result.steps[f"l2_{j}"].error for j in range(4)} == {"needs `l1_2`, which failed"}
    assert len(result.by_status("succeeded")) == 7


async def test_steps_added_later_join_a_set_that_is_pending_finished_or_blocked() -> None:
    boom = Flaky(99, ValueError).as_tool()
    release_slow = asyncio.Event()

    @tool
    async def held(value: str) -> str:
        await asyncio.wait_for(release_slow.wait(), 30)
        return value

    ex = Executor([held, echo, boom])
    async with ex.start(
        [
            step("slow", "held", args={"value": "S"}),
            step("fast"),
            step("bad", "flaky", on_failure="continue"),
            step("w1", args={"value": "${slow} ${fast}"}),
        ]
    ) as run:
        await await_until(
            lambda: run.step_status("fast") == "succeeded" and run.step_status("bad") == "failed",
            "`fast` succeeded and `bad` failed",
        )
        assert run.step_status("slow") == "running"  # held until released below
        run.add_steps([step("w2", args={"value": "${fast} ${slow}"})])  # same set as `w1`, still pending
        run.add_steps([step("now", args={"value": "${fast}"})])  # a set that is already done
        run.add_steps([step("never", depends_on=["bad", "fast"])])
        run.add_steps([step("never2", depends_on=["fast", "bad"])])  # the same, blocked, set
        assert run.step_status("never") == "skipped" and run.step_status("never2") == "skipped"
        assert run.step_status("w2") == "pending"
        await asyncio.sleep(0)
        assert run.step_status("now") in ("running", "succeeded")
        release_slow.set()
    result = run.result
    assert result.output("w1") == "S fast" and result.output("w2") == "fast S"
    assert result.steps["never2"].error == "needs `bad`, which failed"
    assert result.steps["w2"].started_at >= result.steps["slow"].finished_at  # type: ignore[operator]


async def test_restored_step_counts_once_for_a_dependent_that_also_waits_for_a_running_step() -> None:
    result = await Executor([sleep, echo]).run(
        [
            step("a"),
            step("b", "sleep", args={"seconds": 0.05, "value": "B"}),
            step("d", args={"value": "${a} ${b}"}),
        ],
        completed={"a": "A"},
    )
    assert result.status == "succeeded", result.steps["d"].error
    assert result.output("d") == "A B"


async def test_large_fan_out_and_chain_finish() -> None:
    steps = [step("root")] + [step(f"s{i}", depends_on=["root"]) for i in range(2000)]
    steps += [step(f"c{i}", depends_on=[f"c{i - 1}" if i else "s0"]) for i in range(2000)]
    result = await Executor([echo]).run(steps, keep_events=False)
    assert result.ok and len(result.by_status("succeeded")) == 4001


async def test_thousands_of_ready_steps_all_run_side_by_side() -> None:
    meet = Rendezvous(1500)
    result = await Executor([sleep, meet.as_tool()]).run(
        [step("root", "sleep", args={"seconds": 0})]
        + [step(f"s{i}", "meet", args={}, depends_on=["root"]) for i in range(1500)]
    )
    assert result.ok, result.error  # one round of 1500, not several
    assert meet.peak == 1500


async def test_cancel_reaches_steps_that_are_ready_but_not_started() -> None:
    ex = Executor([sleep])
    async with ex.start(
        [step("root", "sleep", args={"seconds": 0})]
        + [step(f"s{i}", "sleep", args={"seconds": 5}, depends_on=["root"]) for i in range(1000)]
    ) as run:
        while run.step_status("root") != "succeeded":
            await asyncio.sleep(0)
        assert run.step_status("s999") in ("ready", "running")
        run.cancel()
    assert run.result.status == "cancelled"
    assert len(run.result.by_status("cancelled")) == 1000
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("planweave-step")]


def test_bad_limits_are_config_errors_that_say_the_fix() -> None:
    from planweave.executor import Executor
    from planweave.tools import ConfigError

    with pytest.raises(ConfigError) as info:
        Executor(max_concurrency=0)
    assert str(info.value) == "`max_concurrency` must be at least 1, not 0; pass None for no limit."
    with pytest.raises(ConfigError, match=r"`tool_limits\['http_get'\]` must be at least 1, not 0; leave the tool out"):
        Executor(tool_limits={"http_get": 0})


async def test_idempotency_key_is_stable_across_retries_and_distinct_per_step_and_item() -> None:
    seen: list[tuple[str, int, Any, str]] = []

    @tool
    def effect(ctx: ToolContext, value: Any = None) -> Any:
        """Fails its first attempt, to be retried."""
        seen.append((ctx.step_id, ctx.attempt, ctx.item, ctx.idempotency_key))
        if ctx.attempt == 1:
            raise TimeoutError("try again")
        return value

    retry = {"max_attempts": 2, "initial_delay_s": 0, "jitter": 0}
    result = await Executor([effect]).run(
        [
            Step(id="one", tool="effect", args={"value": 1}, retry=retry),
            Step(id="two", tool="effect", args={"value": 2}, retry=retry),
            Step(id="each", tool="effect", args={"value": "${item}"}, for_each="${inputs.xs}", retry=retry),
        ],
        inputs={"xs": ["p", "q"]},
        run_id="run-1",
    )
    assert result.status == "succeeded"
    keys: dict[tuple[str, Any], set[str]] = {}
    for step_id, _attempt, item, key in seen:
        keys.setdefault((step_id, item), set()).add(key)
    # One key per step and item, the same on its retry; all different from each other.
    assert sorted(keys) == [("each", "p"), ("each", "q"), ("one", None), ("two", None)]
    assert all(len(k) == 1 for k in keys.values()) and len(set.union(*keys.values())) == 4
    # Another run of the same steps gets other keys; the same run id (a resume) the same ones.
    assert ToolContext(run_id="run-1", step_id="one").idempotency_key in keys[("one", None)]
    assert ToolContext(run_id="run-2", step_id="one").idempotency_key not in keys[("one", None)]
