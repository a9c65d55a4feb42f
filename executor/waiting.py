"""Steps that wait for people, and runs that stop while everything left waits on them.

Before a step's first attempt, `PersonWaits._wait_for_person` asks: when the step needs a
person (see `planweave.executor.requests`), the run emits `InputRequested` and then

- uses an answer it was started with (`Executor.start(answers=...)`: a resumed run), else
- denies it, or gives a question its default, when its deadline has passed, else
- asks the executor's `responder` (an in-process callback: a terminal prompt, a test, an app)
  and waits for it, up to the deadline, else
- parks the step: it stays `waiting` and holds no task.

Other steps go on meanwhile. When no step is ready or running and at least one is parked, the
run is *stalled*: a closed run then ends with status `waiting` and its open `requests` (the
planner closes its run when its round is stalled). A recorded waiting run continues in any
process through the resume path, with the answers given (`Planner.respond`, `planweave respond`).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from planweave.executor.refs import Ref, resolve
from planweave.executor.requests import (
    InputAnswer,
    InputAnswered,
    InputKind,
    InputRequest,
    InputRequested,
    check_answer,
    expired,
)
from planweave.executor.errors import AnswerError, StepDeniedError
from planweave.tools.ask import QuestionTool
from planweave.tools.base import Tool

if TYPE_CHECKING:
    from planweave.executor._nodes import Node
    from planweave.executor.events import EventBus
    from planweave.executor.graph import CompiledStep
    from planweave.executor.scheduler import Executor

__all__ = ["PersonWaits", "Responder", "until_done_or_stalled"]

Responder = Callable[[InputRequest], "InputAnswer | None | Awaitable[InputAnswer | None]"]
"""An in-process answerer: called with each request as it is made; returns the answer, or None
to leave the step waiting (the run then stops as `waiting` when nothing else can go on)."""

_ACTIVE = frozenset({"ready", "running"})


class PersonWaits:
    """The half of a run that waits for people (a base of `StepAttempts`, so of `Run`)."""

    # Set by `Run.__init__`.
    executor: Executor
    id: str
    _bus: EventBus
    _nodes: dict[str, Node]
    _closed: bool
    _finished: bool
    _parked: dict[str, InputRequest]
    """Steps waiting for a person with nobody in this process to ask, by step id."""
    _answers: dict[str, InputAnswer]
    """Answers given before the step asked (a resumed run's), by step id."""
    _requested: dict[str, InputRequest]
    """Requests recorded by an earlier process of this run, by step id (their time and deadline hold)."""
    _stall: asyncio.Event | None

    # Implemented by `StepAttempts` and `Run`.
    def _lookup(self, ref: Ref, item: Any) -> Any:
        raise NotImplementedError

    def _settle_here(self, node: Node, output: Any = None, exc: BaseException | None = None) -> None:
        raise NotImplementedError

    def _park(self) -> None:
        raise NotImplementedError

    # --- asking ----------------------------------------------------------------------------------

    def _needs_person(self, c: CompiledStep) -> InputKind | None:
        if c.step.approval or c.tool.approval:
            return "approval"
        if type(c.tool) is not Tool and isinstance(c.tool, QuestionTool):
            return "question"
        if c.tool.name in self.executor.approve:
            return "approval"
        return None

    def _request(self, node: Node, kind: InputKind) -> InputRequest:
        c = node.c
        step = c.step
        if c.for_each is None and c.args_dynamic:
            args = resolve(step.args, lambda r: self._lookup(r, None))
        else:
            args = dict(step.args)
        earlier = self._requested.get(step.id)
        now = time.time()
        within = step.answer_within_s if step.answer_within_s is not None else self.executor.answer_within_s
        if kind == "question":
            choices = args.get("choices")
            default = args.get("default")
            question = str(args.get("question", ""))
        else:
            choices, default = None, None
            question = f"Run `{c.tool.name}` with {args}?"
        return InputRequest(
            run_id=self.id,
            step_id=step.id,
            tool=c.tool.name,
            kind=kind,
            args=args,
            question=question,
            choices=[str(x) for x in choices] if isinstance(choices, list) else None,
            default=None if default is None else str(default),
            requested_at=earlier.requested_at if earlier else now,
            deadline_at=earlier.deadline_at if earlier else (now + within if within is not None else None),
        )

    async def _wait_for_person(self, node: Node, kind: InputKind) -> bool:
        """Ask a person about `node` before its first attempt. True: run the attempts (approved,
        perhaps with edited arguments); False: the step is settled (denied, answered) or parked."""
        sid = node.c.step.id
        try:
            request = self._request(node, kind)
        except Exception as exc:  # a reference that cannot be resolved fails the step, as an attempt would
            self._settle_here(node, exc=exc)
            return False
        node.status = "waiting"
        if sid not in self._requested:
            self._requested[sid] = request
            self._bus.emit(InputRequested(run_id=self.id, step_id=sid, request=request.model_dump(mode="json")))
        answer = self._answers.pop(sid, None)
        if answer is None and request.deadline_at is not None and time.time() >= request.deadline_at:
            answer = expired(request)
        if answer is None and self.executor.responder is not None:
            answer = await self._ask(request)
        if answer is None:
            self._parked[sid] = request
            self._check_stalled()
            return False
        try:
            answer = check_answer(request, answer, node.c.tool)
        except AnswerError as exc:
            self._settle_here(node, exc=exc)
            return False
        self._bus.emit(InputAnswered(run_id=self.id, step_id=sid, answer=answer.model_dump(mode="json", exclude_none=True)))
        self._parked.pop(sid, None)
        if answer.action == "deny":
            who = "nobody answered in time" if answer.by == "deadline" else "a person denied it"
            reason = f": {answer.reason}" if answer.reason and answer.by != "deadline" else ""
            self._settle_here(node, exc=StepDeniedError(
                f"step `{sid}` was not run: {who}{reason}", tool=node.c.tool.name, step_id=sid
            ))
            return False
        if answer.action == "answer":
            node.started_at = time.time()
            self._settle_here(node, answer.text)
            return False
        if answer.action == "edit":
            node.args_override = answer.args
        node.status = "ready"
        return True

    async def _ask(self, request: InputRequest) -> InputAnswer | None:
        responder = self.executor.responder
        assert responder is not None
        try:
            async with asyncio.timeout(None if request.deadline_at is None else request.deadline_at - time.time()):
                answer = responder(request)
                if inspect.isawaitable(answer):
                    answer = await answer
        except TimeoutError:
            return expired(request)
        return answer

    # --- stalling ------------------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        """True when at least one step waits for a person and no step is ready or running."""
        if not self._parked or self._finished:
            return False
        parked = self._parked
        for sid, node in self._nodes.items():
            status = node.status
            if status in _ACTIVE or (status == "waiting" and sid not in parked):
                return False
        return True

    def _check_stalled(self) -> None:
        """Called when a step parks, settles while others are parked, or the run closes."""
        if not self.stalled:
            return
        if self._stall is not None:
            self._stall.set()
        if self._closed:
            self._park()

    def stall_event(self) -> asyncio.Event:
        """Set whenever the run becomes stalled (clear it before waiting again)."""
        if self._stall is None:
            self._stall = asyncio.Event()
        return self._stall

    def answer_later(self, step_id: str, answer: InputAnswer) -> None:
        """Give the answer for a step that has not asked yet (it is used when it does)."""
        self._answers[step_id] = answer


async def until_done_or_stalled(run: PersonWaits, done: asyncio.Event) -> bool:
    """Wait until `done` is set (False) or `run` is stalled (True)."""
    stall = run.stall_event()
    while not done.is_set():
        if run.stalled:
            return True
        stall.clear()
        waiters = {asyncio.ensure_future(done.wait()), asyncio.ensure_future(stall.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
    return False
