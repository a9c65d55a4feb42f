"""Test utilities for planweave and for users testing their own agents.

:class:`FakeModelServer` is an OpenAI-compatible chat-completions server that
answers with scripted :class:`Reply` objects over real HTTP on 127.0.0.1.
This package only depends on the standard library and pydantic (importing it
does not import litellm, openai or instructor).

Example::

    from planweave.planner.testing import FakeModelServer, Reply

    with FakeModelServer([Reply.json_obj({"steps": []}), Reply.rate_limited(2)]) as server:
        run_my_agent(api_base=server.base_url)
        assert len(server.chat_requests) == 2
"""

from planweave.planner.testing.fake_server import FakeModelServer, ReplyHandler, ReplyLike
from planweave.planner.testing.gated_server import GatedServer
from planweave.planner.testing.processes import ChildProcesses
from planweave.planner.testing.records import RecordedRequest
from planweave.planner.testing.search_server import FakeSearchServer, SearchRequest
from planweave.planner.testing.replies import (
    DEFAULT_MALFORMED_BODY,
    HttpError,
    JsonPath,
    Reply,
    ToolCall,
    json_spans,
    tokenize,
)
from planweave.planner.testing.waiting import WaitTimeoutError, await_until, wait_until

__all__ = [
    "ChildProcesses",
    "DEFAULT_MALFORMED_BODY",
    "FakeModelServer",
    "FakeSearchServer",
    "GatedServer",
    "HttpError",
    "JsonPath",
    "RecordedRequest",
    "Reply",
    "ReplyHandler",
    "ReplyLike",
    "SearchRequest",
    "ToolCall",
    "WaitTimeoutError",
    "await_until",
    "json_spans",
    "tokenize",
    "wait_until",
]
