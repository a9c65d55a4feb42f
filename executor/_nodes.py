"""The run's bookkeeping per step: its mutable state, and the joins that count its inputs down.

`Run` keeps one `Node` per step and one `Join` per distinct dependency set; a step becomes
ready when its join reaches zero, and is skipped when a step of the set did not succeed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from planweave.executor.graph import CompiledStep
from planweave.executor.result import StepStatus

__all__ = ["BLOCKING", "FINAL", "Join", "Node", "needs_reason", "new_join"]

FINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})
"""States a step never leaves."""

BLOCKING = frozenset({"failed", "skipped", "cancelled"})
"""Final states that skip the steps needing this one."""


class Node:
    """Mutable runtime state of one step (slotted: there may be tens of thousands)."""

    __slots__ = (
        "c",
        "status",
        "output",
        "error",
        "error_type",
        "attempts",
        "started_at",
        "finished_at",
        "joins",
        "task",
        "restored",
        "policy",
        "item_outputs",
        "mark",
        "args_override",
    )

    def __init__(self, c: CompiledStep) -> None:
        self.c = c
        self.status: StepStatus = "pending"
        self.output: Any = None
        self.error: str | None = None
        self.error_type: str | None = None
        self.attempts = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.joins: list[Join] | None = None
        """The joins counting on this step (None when nothing waits for it)."""
        self.task: asyncio.Task[None] | None = None
        self.restored = False
        self.policy = c.step.on_failure
        self.item_outputs: dict[int, Any] | None = None
        self.mark = 0
        """The run journal's number of this step's success event (0: none, or restored)."""
        self.args_override: dict[str, Any] | None = None
        """Arguments a person gave when approving the step with an edit (used instead of `step.args`)."""


class Join:
    """The pending steps that need exactly the same set of steps, counting down together.

    One counter per distinct dependency set rather than one per step: when every step of a
    layer needs the whole previous layer, a finishing step decrements one counter instead of
    one per dependent (a 200 x 200 layer transition is 200 decrements, not 40,000).
    """

    __slots__ = ("waiting", "blocked", "members")

    def __init__(self) -> None:
        self.waiting = 0
        """Steps of the set that have not finished yet."""
        self.blocked: str | None = None
        """A step of the set that failed, was skipped or was cancelled: the members are skipped."""
        self.members: list[Node] = []
        """Steps waiting for the count to reach zero (emptied when it does or when blocked)."""


def new_join(nodes: dict[str, Node], deps: frozenset[str]) -> Join:
    """A join for `deps`, counting the steps of the set that have not finished."""
    join = Join()
    for dep in deps:
        producer = nodes[dep]
        status = producer.status
        if status == "succeeded":
            continue
        if status in BLOCKING:
            join.blocked = dep
            return join
        join.waiting += 1
        if producer.joins is None:
            producer.joins = [join]
        else:
            producer.joins.append(join)
    return join


def needs_reason(nodes: dict[str, Node], dep: str) -> str:
    """Why a step that needs `dep` is skipped (`dep` has failed, was skipped or was cancelled)."""
    state = nodes[dep].status
    verb = {"failed": "failed", "skipped": "was skipped", "cancelled": "was cancelled"}[state]
    return f"needs `{dep}`, which {verb}"
