"""The replies of the HTTP API: chat completions (whole or streamed), and runs' events as SSE.

`chat_completion` reads a chat request as a turn of its conversation (`turns.read_turn`) and
answers with the run's narration (`chat.Narration`) as OpenAI's chat completion or its chunks;
`event_stream` is `POST /v1/runs`'s stream of typed events; `follow_stream` is
`GET /v1/runs/{id}/events` (`follow.follow`), on any replica. Routes, keys and limits are
`planweave.planner.serve.app`'s; how runs are admitted and driven is `_runs`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from planweave.executor.events import EVENT_TYPES, RunEvent, event_from_dict
from planweave.executor.store import RunLeasedError, RunRecord, RunStore, RunSummary, StoreError
from planweave.planner.core import Planner
from planweave.planner.result import PlannerResult
from planweave.planner.serve._errors import APIError, bug, hide_paths
from planweave.planner.serve._launch import SHUTDOWN_MARGIN_S
from planweave.planner.serve._runs import AdmittedStream, Interrupted, Runs, Slot, Start
from planweave.planner.serve.chat import (
    ChatReply, ConversationError, Narration, completion_usage, conversation_goal, conversation_turns, final_text,
    planweave_fields,
)
from planweave.planner.serve.follow import follow, follow_over
from planweave.planner.serve.tasks import background_task
from planweave.planner.serve.turns import ChatTurn, ask_text, marker, read_turn
from planweave.tools.errors import PlanweaveError

if TYPE_CHECKING:
    from planweave.planner.serve.app import ChatRequest, ServerConfig

__all__ = ["chat_completion", "check_model", "event_stream", "follow_stream", "json_text", "last_event_id",
           "prepend", "stream_grace"]

log = logging.getLogger("planweave.server")


async def chat_completion(runs: Runs, body: ChatRequest, request: Request) -> Response:
    """`POST /v1/chat/completions`: the conversation's last message as a turn (`turns.read_turn`): a new
    goal, the answer a waiting run asked for, or a front end's background task; its run's reply."""
    config, planner = runs.config, runs.planner
    check_model(body.model, config, param="model")
    if body.n not in (None, 1):
        raise APIError(400, f"`n` is {body.n}; planweave writes one reply per request, so use 1.", param="n")
    try:
        goal = conversation_goal(body.messages, max_messages=config.max_messages, max_chars=config.max_chars)
        task = background_task([{"role": m.role, "content": m.content} for m in body.messages]) is not None
        turn = None if task else await runs.metrics.timed(
            "read_turn", read_turn, body.messages, goal, conversation_turns(body.messages), planner.store
        )
    except ConversationError as exc:
        raise APIError(400, exc.message, code=exc.code, param=exc.param) from exc
    slot = runs.admit()  # every model call counts, a front end's background task too
    held: Slot | None = slot
    try:
        if turn is None:
            return await _task_reply(runs, body, config)  # a front end's title/tags/...: one model call
        if turn.reply is not None:  # the waiting run's request was not answered: ask again
            assert turn.waiting_run is not None
            return _direct_reply(
                body, config, turn.reply + marker(turn.waiting_run, turn.session_id, turn.step_id), turn.waiting_run
            )
        if turn.waiting_run is not None and turn.answer is not None and planner.store is not None:
            # Claimed before it continues: of two replicas given the answer at once, one continues
            # the run and the other follows it (as it does a run already going on).
            if not await asyncio.to_thread(_claim_answered, planner.store, turn.waiting_run, turn.step_id):
                turn.followed_run, turn.waiting_run, turn.answer = turn.waiting_run, None, None
        run_id = turn.followed_run or turn.waiting_run or slot.run_id
        reply = ChatReply(body.reasoning_format or config.reasoning)
        events: Callable[[], _ChatEvents]
        if turn.followed_run is not None:
            events = partial(_followed_events, runs, turn.followed_run, turn.session_id, reply)
        else:
            events = partial(_chat_events, runs, goal, run_id, reply, _turn_start(planner, turn, slot.run_id),
                             turn.session_id)
        base = {"id": f"chatcmpl-{run_id}", "created": int(time.time()), "model": config.model_id}
        headers = {"X-Planweave-Run-Id": run_id}
        if body.stream:
            usage_chunk = bool(body.stream_options and body.stream_options.include_usage)
            stream = _chat_stream(run_id, reply, base, usage_chunk, events)
            response = AdmittedStream(stream, slot, headers, grace_s=stream_grace(config))
            held = None  # the response releases it now
            return response
        result: PlannerResult | RunSummary | None = None
        try:
            async with anyio.create_task_group() as tg:

                async def cancel_on_disconnect() -> None:
                    await _wait_disconnect(request)
                    tg.cancel_scope.cancel()

                tg.start_soon(cancel_on_disconnect)
                async with aclosing(events()) as items:
                    async for _, final in items:
                        result = final
                tg.cancel_scope.cancel()
        except Interrupted as exc:
            return APIError(503, str(exc), code="server_shutting_down", type_="server_error").response()
        except Exception as exc:  # answered here, so the connection stays usable for the client's next request
            log.exception("chat run `%s` broke", run_id)
            return bug(exc).response()
    finally:
        if held is not None:
            held.release()
    completion = {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": reply.message(), "finish_reason": "stop", "logprobs": None}],
        "usage": completion_usage(result),
        "planweave": planweave_fields(run_id, result),
    }
    return JSONResponse(completion, headers=headers)



def _claim_answered(store: RunStore, run_id: str, step_id: str | None) -> bool:
    """Claim the waiting run an answer continues; False (and nothing held) when another process
    holds it, or it no longer waits for that step's answer (someone answered it meanwhile)."""
    try:
        store.claim(run_id)
    except RunLeasedError:
        return False
    record = store.get_run(run_id)
    if record.summary.status == "waiting" and (step_id is None or step_id in record.resume_state().requests):
        return True
    store.release(run_id)
    return False


def _turn_start(planner: Planner, turn: ChatTurn, run_id: str) -> Start:
    """How a chat turn's run starts: the answer continues the waiting run (claimed already), else a
    new run of the goal with the earlier turns as its conversation, in the conversation's session."""
    if turn.waiting_run is not None and turn.answer is not None:
        waiting, answer, step, store = turn.waiting_run, turn.answer, turn.step_id, planner.store

        async def respond(subscribers: list[Callable[[RunEvent], object]]) -> PlannerResult:
            try:
                return await planner.respond(waiting, answer, step_id=step, subscribers=subscribers)
            except BaseException:
                if store is not None:  # it did not get going: let go of the claim at once
                    with contextlib.suppress(StoreError):
                        await asyncio.to_thread(store.release, waiting)
                raise

        return respond
    return lambda subscribers: planner.run(
        turn.goal, run_id=run_id, subscribers=subscribers, conversation=turn.conversation, session_id=turn.session_id
    )


async def _task_reply(runs: Runs, body: ChatRequest, config: ServerConfig) -> Response:
    """A front end's background task (`planweave.planner.serve.tasks`): one direct model call, not recorded."""
    from planweave.planner.llm import LLMClient
    from planweave.planner.serve.chat import _text

    await runs.models.ready()
    messages = [{"role": m.role, "content": _text(m, i)} for i, m in enumerate(body.messages)]
    try:
        text = await LLMClient(runs.planner.config).text(messages, prompt={"name": "front_end_task"}, purpose="front_end_task")
    except PlanweaveError as exc:
        raise APIError(502, f"the model could not answer the front end's task: {exc}", type_="server_error") from exc
    return _direct_reply(body, config, text, None)


def _direct_reply(body: ChatRequest, config: ServerConfig, text: str, run_id: str | None) -> Response:
    """A reply that is not a run's: one message (or, streamed, one chunk)."""
    rid = run_id or uuid.uuid4().hex[:16]
    base = {"id": f"chatcmpl-{rid}", "created": int(time.time()), "model": config.model_id}
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if not body.stream:
        message = {"role": "assistant", "content": text}
        return JSONResponse({**base, "object": "chat.completion", "usage": usage,
                             "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]})

    async def chunks() -> AsyncGenerator[str, None]:
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            yield json_text({**base, "object": "chat.completion.chunk", "choices": [choice],
                         **({"usage": usage} if finish else {})})
        yield "[DONE]"

    return EventSourceResponse(chunks(), sep="\n")


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_ChatEvents = AsyncGenerator[tuple[dict[str, str] | None, PlannerResult | RunSummary | None], None]
"""(delta, None) for each piece of a chat reply, then (None, what it ended with)."""


async def _chat_events(
    runs: Runs, goal: str, run_id: str, reply: ChatReply, start: Start | None = None, session_id: str = ""
) -> _ChatEvents:
    """(delta, None) for each piece of the reply, then (None, result); a planweave error that stops
    the run from starting becomes the reply's text (and the result None). The reply of a run left
    waiting ends with the marker that lets the next message answer it (`turns.marker`)."""
    narration = Narration()
    try:
        async with aclosing(runs.drive(goal, run_id, start=start)) as items:
            async for item in items:
                if isinstance(item, PlannerResult):
                    asked = item.requests[0].step_id if item.requests else None
                    waits = marker(run_id, session_id, asked) if item.status == "waiting" else ""
                    for kind, text in narration.finish(final_text(item) + waits):
                        yield reply.delta(kind, text), None
                    yield reply.close(), None
                    yield None, item
                    return
                for kind, text in narration.feed(item):
                    yield reply.delta(kind, text), None
    except PlanweaveError as exc:
        yield reply.delta("answer", f"planweave could not run this request: {exc}"), None
        yield reply.close(), None
        yield None, None


_ALREADY_GOING = (
    "*(This message came after the run had already been answered, so it was not used: it was sent twice, or "
    "from another window. Here is where the run stands.)*\n\n"
)


async def _followed_events(runs: Runs, run_id: str, session_id: str, reply: ChatReply) -> _ChatEvents:
    """The reply to a message whose run went on without it (`ChatTurn.followed_run`): the run
    followed through the store (`follow`), on whichever replica or worker runs it, narrated as its
    own reply is, to where it stops; then what it ended with, or what it asks now (with the marker)."""
    store = runs.planner.store
    assert store is not None
    narration = Narration()
    try:
        record = await runs.metrics.timed("follow", store.get_run, run_id)
        for data in record.events:  # what the reply continues from (narrated before)
            if (event := _event(data)) is not None:
                with contextlib.suppress(Exception):
                    narration.state.apply(event)
        async with aclosing(follow(store, run_id, after=len(record.events), metrics=runs.metrics)) as followed:
            async for _, data in followed:
                if (event := _event(data)) is not None:
                    for kind, text in narration.feed(event):
                        yield reply.delta(kind, text), None
        record = await runs.metrics.timed("follow", store.get_run, run_id)
    except StoreError as exc:
        yield reply.delta("answer", f"planweave could not follow run `{run_id}`: {hide_paths(str(exc))}"), None
        yield reply.close(), None
        yield None, None
        return
    for kind, text in narration.finish(_ALREADY_GOING + _recorded_text(record, session_id)):
        yield reply.delta(kind, text), None
    yield reply.close(), None
    yield None, record.summary


def _event(data: dict[str, Any]) -> RunEvent | None:
    """A recorded event as its class (None for a kind this process does not know)."""
    if data.get("kind") not in EVENT_TYPES:
        return None
    try:
        return event_from_dict(data)
    except Exception:  # a record this version cannot read back: narrate nothing for it
        return None


def _recorded_text(record: RunRecord, session_id: str) -> str:
    """What a run's reply ends with, from its record: its answer, why it failed, or what it asks."""
    summary = record.summary
    if summary.status == "waiting":
        requests = list(record.resume_state().requests.values())
        step = requests[0].step_id if requests else None
        return ask_text(requests) + marker(summary.id, session_id, step)
    if summary.status == "failed":
        return f"The run failed: {summary.error or 'no reason was recorded'}"
    if summary.status == "interrupted":
        return (f"The run was interrupted and no service takes it over; resume it with "
                f"`planweave resume {summary.id}`.")
    return summary.answer or f"The run ended ({summary.status}) without an answer."


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass



def stream_grace(config: ServerConfig) -> float:
    """How long sse_starlette lets a stream go on once shutdown begins (it cancels it after that):
    the runs' grace period, and time for an interrupted run to record itself and say so."""
    return config.shutdown_grace_s + SHUTDOWN_MARGIN_S


def check_model(model_id: str, config: ServerConfig, *, param: str | None) -> None:
    if model_id != config.model_id:
        raise APIError(
            404,
            f"The model `{model_id}` does not exist on this server; use `{config.model_id}` "
            "(`GET /v1/models` lists it).",
            code="model_not_found",
            param=param,
        )


def _store(planner: Planner) -> RunStore:
    store = planner.store
    if store is None:
        raise APIError(404, "this server records no runs (its planner has `store=False`).", code="run_not_found")
    return store


async def _chat_stream(
    run_id: str, reply: ChatReply, base: dict[str, Any], usage_chunk: bool, events: Callable[[], _ChatEvents]
) -> AsyncGenerator[str, None]:
    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return json_text({**base, "object": "chat.completion.chunk", "choices": [choice], **extra})

    yield chunk({"role": "assistant", "content": ""})
    result: PlannerResult | RunSummary | None = None
    try:
        async with aclosing(events()) as items:
            async for delta, final in items:
                if delta:
                    yield chunk(delta)
                result = final or result
    except Interrupted as exc:  # the server shut down: a last chunk saying so, then the end
        yield json_text({"error": {"message": str(exc), "type": "server_error", "param": None,
                               "code": "server_shutting_down"}})  # fmt: skip
        yield "[DONE]"
        return
    except Exception as exc:  # a bug, not a run's failure: tell the client in OpenAI's stream error shape
        log.exception("chat run `%s` broke", run_id)
        error = bug(exc)
        yield json_text({"error": {"message": error.message, "type": error.type, "param": None, "code": None}})
        return
    extension = planweave_fields(run_id, result)
    if usage_chunk:
        yield chunk({}, "stop", planweave=extension)
        yield json_text({**base, "object": "chat.completion.chunk", "choices": [], "usage": completion_usage(result)})
    else:  # not asked for, but harmless: front ends that read `usage` anywhere show it
        yield chunk({}, "stop", usage=completion_usage(result), planweave=extension)
    yield "[DONE]"


def last_event_id(header: str | None) -> int:
    """Where a reconnecting follower left off (`Last-Event-ID`: the number of the last event it got)."""
    if header is None or not header.strip():
        return 0
    try:
        return max(0, int(header))
    except ValueError:
        raise APIError(
            400, f"`Last-Event-ID` is `{header[:40]}`; send the `id` of the last event you got (a number), or none.",
            param="Last-Event-ID",
        ) from None


async def follow_stream(runs: Runs, store: RunStore, run_id: str, after: int) -> AsyncGenerator[ServerSentEvent, None]:
    try:
        async with aclosing(follow(store, run_id, after=after, metrics=runs.metrics)) as events:
            async for number, event in events:
                yield ServerSentEvent(json_text(event), id=str(number))
        summary = await runs.metrics.timed("follow", store.summary, run_id)
    except StoreError as exc:
        yield ServerSentEvent(json_text({"kind": "error", "run_id": run_id, "message": hide_paths(str(exc))}))
        return
    if summary.status == "interrupted" and follow_over(summary):
        message = (f"run `{run_id}` was interrupted and no service takes it over; resume it with "
                   f"`planweave resume {run_id}`.")
        yield ServerSentEvent(json_text({"kind": "error", "run_id": run_id, "message": message, "status": "interrupted"}))


async def prepend(first: str, rest: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    async with aclosing(rest):
        yield first
        async for item in rest:
            yield item


async def event_stream(runs: Runs, goal: str, run_id: str, inputs: dict[str, Any]) -> AsyncGenerator[str, None]:
    try:
        async with aclosing(runs.drive(goal, run_id, inputs)) as items:
            async for item in items:
                if isinstance(item, RunEvent):
                    yield json_text(item.to_dict())
    except Interrupted as exc:
        yield json_text({"kind": "error", "run_id": run_id, "message": str(exc), "status": "interrupted"})
    except Exception as exc:
        if not isinstance(exc, PlanweaveError):
            log.exception("run `%s` broke", run_id)
        yield json_text({"kind": "error", "run_id": run_id, "message": hide_paths(f"{type(exc).__name__}: {exc}")})
