"""Tests of planner.testing.FakeModelServer, all through real HTTP on 127.0.0.1.

Raw httpx checks the exact wire format; the real openai, litellm and instructor
clients check that the fake is good enough for the libraries planweave uses.
"""

from __future__ import annotations

import os

# Must happen before litellm is first imported (it would fetch a price list).
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import importlib.util
import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import instructor
import litellm
import openai
import pytest
from pydantic import BaseModel

from planweave.planner.testing import (
    FakeModelServer,
    HttpError,
    RecordedRequest,
    Reply,
    ToolCall,
    json_spans,
    tokenize,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[3]
USER: list[Any] = [{"role": "user", "content": "Plan a trip"}]  # 11 chars: 3 prompt tokens

# litellm 1.106 imports its MCP gateway (which needs the optional `mcp` package)
# whenever `tools` is non-empty; `_skip_mcp_handler` is litellm's own switch to
# bypass that code path.  Only needed while `mcp` is not installed.
TOOL_KW: dict[str, Any] = (
    {} if importlib.util.find_spec("mcp") is not None else {"_skip_mcp_handler": True}
)

# litellm's own __init__ ignores two pydantic warnings with warnings.filterwarnings,
# but pytest's per-test "error" filter takes precedence over that.  So we
# re-ignore them, narrowly:
# 1. pydantic 2.14 UserWarning "Item 'summary' on TypedDict class
#    'ChatCompletionReasoningItem' is using the `ReadOnly` qualifier ...", emitted when
#    litellm lazily builds its response models on the first call (litellm then
#    re-raises it as APIConnectionError).
litellm_warnings = pytest.mark.filterwarnings(
    "ignore:Item .* on TypedDict class .* is using the `ReadOnly` qualifier:UserWarning"
)
# 2. litellm's streaming handler getattr()s every name in dir(choice) of a chunk
#    that carries usage (stream_options.include_usage), which trips pydantic's
#    PydanticDeprecatedSince211 "Accessing the 'model_computed_fields' (and
#    'model_fields') attribute on the instance is deprecated"; the stream then dies
#    with MidStreamFallbackError.
litellm_usage_warnings = pytest.mark.filterwarnings(
    "ignore:Accessing the 'model_(computed_)?fields' attribute on the instance"
    ":pydantic.warnings.PydanticDeprecatedSince211"
)


class Step(BaseModel):
    id: str
    action: str


class Plan(BaseModel):
    goal: str
    steps: list[Step]


PLAN = {
    "goal": "trip",
    "steps": [{"id": "s1", "action": "search flights"}, {"id": "s2", "action": "book hotel"}],
}
PLAN_TOOL = {"type": "function", "function": {"name": "Plan", "parameters": {}}}
OTHER_TOOL = {"type": "function", "function": {"name": "Other", "parameters": {}}}


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as srv:
        yield srv


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def chat(
    http: httpx.Client, server: FakeModelServer, **body: Any
) -> httpx.Response:
    body.setdefault("model", "fake-model")
    body.setdefault("messages", USER)
    return http.post(f"{server.base_url}/chat/completions", json=body)


def stream_lines(
    http: httpx.Client, server: FakeModelServer, **body: Any
) -> tuple[httpx.Response, list[tuple[float, str]]]:
    """POST a streaming request; return the response and (arrival time, line) pairs."""
    body.setdefault("model", "fake-model")
    body.setdefault("messages", USER)
    body["stream"] = True
    lines: list[tuple[float, str]] = []
    with http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
        for line in response.iter_lines():
            lines.append((time.monotonic(), line))
    return response, lines


def payloads(lines: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """Parsed JSON of every ``data:`` line except ``[DONE]``."""
    out = []
    for _, line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: ") :]))
    return out


def streamed_content(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )


# --------------------------------------------------------------------- pure helpers


def test_import_is_light() -> None:
    code = (
        "import sys, planner.testing; "
        "heavy = {'litellm', 'openai', 'instructor'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, check=True)


def test_tokenize_rule() -> None:
    assert tokenize("") == []
    assert tokenize("Hello there, world!") == ["Hell", "o", " ther", "e", ",", " worl", "d", "!"]
    assert tokenize('{"a": [1]}') == ['{"', "a", '":', " [", "1", "]}"]
    text = "Some text,  with   spaces\nand: punctuation!!!"
    assert "".join(tokenize(text)) == text
    assert tokenize("abcdef", boundaries=[1, 0, 6, 99]) == ["a", "bcd", "ef"]


def test_json_spans_match_json_dumps() -> None:
    text, spans = json_spans(PLAN)
    assert text == json.dumps(PLAN)
    start, end = spans[("steps", 0)]
    assert json.loads(text[start:end]) == PLAN["steps"][0]
    assert spans[()] == (0, len(text))
    assert text[slice(*spans[("goal",)])] == '"trip"'


def test_reply_validation_and_modifiers() -> None:
    with pytest.raises(ValueError):
        Reply(content="x", structured={"a": 1})
    with pytest.raises(ValueError):
        Reply(structured={"a": 1}, tool_calls=(ToolCall(name="f"),))
    with pytest.raises(ValueError):
        Reply.text("abc", pause_after={4: 1.0})
    with pytest.raises(ValueError):
        Reply.text("abc").with_pause_after("zzz", 1.0)
    with pytest.raises(KeyError):
        Reply.json_obj(PLAN).with_pause_after_json(("nope",), 1.0)
    assert ToolCall(name="f", arguments={"a": 1}).arguments == '{"a": 1}'
    assert ToolCall.of("f", {"a": 1}) == ToolCall(name="f", arguments='{"a": 1}')
    reply = Reply.text("one two one two").with_pause_after("two", 0.5, occurrence=2)
    assert reply.pause_after == {15: 0.5}
    reply = reply.with_latency(ttft_s=0.1).with_latency(tokens_per_s=50).with_delay(0.2)
    assert (reply.ttft_s, reply.tokens_per_s, reply.delay_s) == (0.1, 50, 0.2)
    calls = Reply.parallel_tool_calls(ToolCall.of("a", {"x": 1}), ToolCall.of("b", "raw"))
    assert calls.stream_text == '{"x": 1}raw'
    assert Reply.rate_limited(2).error == HttpError(status=429, retry_after=2)


# ------------------------------------------------------------------- lifecycle & misc


def test_lifecycle_and_urls(http: httpx.Client) -> None:
    srv = FakeModelServer()
    with pytest.raises(RuntimeError):
        _ = srv.base_url
    srv.start()
    port = srv.port
    assert srv.url == f"http://127.0.0.1:{port}"
    assert srv.base_url == f"http://127.0.0.1:{port}/v1"
    assert srv.running
    assert http.get(f"{srv.base_url}/models").status_code == 200
    srv.stop()
    srv.stop()  # idempotent
    assert not srv.running
    # (its own threads: another test's server may still run in this process)
    assert not [t for t in threading.enumerate() if t.name == f"fake-model-server-{port}"]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    with pytest.raises(RuntimeError):
        srv.start()


def test_models_endpoint_and_errors(server: FakeModelServer, http: httpx.Client) -> None:
    listing = http.get(f"{server.base_url}/models").json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["fake-model"]
    assert http.get(f"{server.base_url}/models/fake-model").json()["object"] == "model"

    missing = http.get(f"{server.base_url}/models/gpt-9")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"

    for response in (http.get(f"{server.url}/nope"), http.post(f"{server.base_url}/embeddings")):
        assert response.status_code == 404
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert "Invalid URL" in error["message"]

    assert http.get(f"{server.base_url}/chat/completions").status_code == 405
    bad = http.post(
        f"{server.base_url}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400
    assert [r.path for r in server.requests][:2] == ["/v1/models", "/v1/models/fake-model"]
    assert server.chat_requests[-1].raw_body == b"{not json"
    assert server.chat_requests[-1].body is None


def test_no_reply_left_is_500(server: FakeModelServer, http: httpx.Client) -> None:
    http.get(f"{server.base_url}/models")
    server.enqueue("only one")
    assert chat(http, server).status_code == 200
    response = chat(http, server)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == (
        "fake model server: no scripted reply left for request #3"
    )
    assert server.pending_replies == 0


# ------------------------------------------------------------------ non-streamed


def test_text_reply_full_shape(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.text("Hello there, world!", headers={"x-extra": "1"}))
    response = chat(http, server, model="my-model")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-extra"] == "1"
    assert response.headers["x-request-id"] == "req_fake_1"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "my-model"
    assert body["id"] == "chatcmpl-fake-1"
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant", "content": "Hello there, world!", "refusal": None
    }
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}


def test_usage_prompt_estimate_and_overrides(server: FakeModelServer, http: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "a" * 10},
        {"role": "user", "content": [{"type": "text", "text": "b" * 5}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "fn", "arguments": "{}"}}
            ],
        },
    ]
    server.enqueue("x", Reply.text("x", prompt_tokens=100, completion_tokens=7))
    assert chat(http, server, messages=messages).json()["usage"]["prompt_tokens"] == 5  # 19/4
    usage = chat(http, server).json()["usage"]
    assert usage == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}


def test_json_obj_is_tool_call_or_content(server: FakeModelServer, http: httpx.Client) -> None:
    named = {"type": "function", "function": {"name": "Plan"}}
    server.enqueue(*[Reply.json_obj(PLAN)] * 4)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"tools": [OTHER_TOOL, PLAN_TOOL], "tool_choice": named}, "Plan"),
        ({"tools": [OTHER_TOOL, PLAN_TOOL], "tool_choice": "auto"}, "Other"),
        ({"tools": [PLAN_TOOL], "tool_choice": "none"}, None),
        ({"response_format": {"type": "json_object"}}, None),
    ]
    for extra, tool_name in cases:
        choice = chat(http, server, **extra).json()["choices"][0]
        message = choice["message"]
        if tool_name is None:
            assert json.loads(message["content"]) == PLAN
            assert "tool_calls" not in message
            assert choice["finish_reason"] == "stop"
        else:
            assert message["content"] is None
            (call,) = message["tool_calls"]
            assert call["type"] == "function"
            assert call["function"]["name"] == tool_name
            assert json.loads(call["function"]["arguments"]) == PLAN
            assert choice["finish_reason"] == "tool_calls"


def test_explicit_tool_calls_non_streamed(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(
        Reply.parallel_tool_calls(
            ToolCall.of("search", {"q": "x"}, id="call_a"), ToolCall.of("fetch", "{bad json")
        )
    )
    message = chat(http, server).json()["choices"][0]["message"]
    assert [c["id"] for c in message["tool_calls"]] == ["call_a", "call_fake_1_1"]
    arguments = [c["function"]["arguments"] for c in message["tool_calls"]]
    assert arguments == ['{"q": "x"}', "{bad json"]


# ---------------------------------------------------------------------- streamed


def test_stream_sse_framing(server: FakeModelServer, http: httpx.Client) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    server.enqueue(text)
    with http.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json={"model": "m-1", "messages": USER, "stream": True},
    ) as response:
        raw = response.read().decode()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])
    chunks = [json.loads(e[6:]) for e in events[:-2]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m-1" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]] == tokenize(text)
    assert chunks[-1]["choices"][0] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"
    }
    assert server.last_request.chunks_sent == len(chunks)
    assert server.last_request.completed


def test_stream_include_usage(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue("four token text!")
    _, lines = stream_lines(http, server, stream_options={"include_usage": True})
    chunks = payloads(lines)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    completion_tokens = len(tokenize("four token text!"))
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": completion_tokens,
        "total_tokens": 3 + completion_tokens,
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_tool_call_delta_format(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.json_obj(PLAN))
    _, lines = stream_lines(http, server, tools=[PLAN_TOOL])
    chunks = payloads(lines)
    first = chunks[0]["choices"][0]["delta"]
    assert first == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_fake_1_0",
                "type": "function",
                "function": {"name": "Plan", "arguments": ""},
            }
        ],
    }
    pieces = []
    for chunk in chunks[1:-1]:
        (delta_call,) = chunk["choices"][0]["delta"]["tool_calls"]
        assert set(chunk["choices"][0]["delta"]) == {"tool_calls"}
        assert set(delta_call) == {"index", "function"} and delta_call["index"] == 0
        assert set(delta_call["function"]) == {"arguments"}
        pieces.append(delta_call["function"]["arguments"])
    assert "".join(pieces) == json.dumps(PLAN)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert [line for _, line in lines if line][-1] == "data: [DONE]"


def test_stream_content_then_parallel_tool_calls(
    server: FakeModelServer, http: httpx.Client
) -> None:
    server.enqueue(
        Reply(
            content="Let me check.",
            tool_calls=(ToolCall.of("a", {"x": 1}), ToolCall.of("b", {"y": 2})),
        )
    )
    chunks = payloads(stream_lines(http, server)[1])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert streamed_content(chunks) == "Let me check."
    headers = [
        call
        for c in chunks
        for call in c["choices"][0]["delta"].get("tool_calls", [])
        if "id" in call
    ]
    assert [(h["index"], h["function"]["name"]) for h in headers] == [(0, "a"), (1, "b")]
    args: dict[int, str] = {}
    for c in chunks:
        for call in c["choices"][0]["delta"].get("tool_calls", []):
            args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    assert args == {0: '{"x": 1}', 1: '{"y": 2}'}


# ------------------------------------------------------------------- max_tokens


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


def test_max_tokens_cuts_a_reply_like_a_provider(server: FakeModelServer, http: httpx.Client) -> None:
    text = "Hello there, world!"  # 8 tokens: Hell|o| ther|e|,| worl|d|!
    server.enqueue(text, text, text)
    body = chat(http, server, max_tokens=3).json()
    assert body["choices"][0]["message"]["content"] == "Hello ther"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    exact = chat(http, server, max_tokens=8).json()  # a limit the reply just fits is no cut
    assert exact["choices"][0]["message"]["content"] == text
    assert exact["choices"][0]["finish_reason"] == "stop" and exact["usage"]["completion_tokens"] == 8
    smaller = chat(http, server, max_tokens=5, max_completion_tokens=2).json()  # the smaller one counts
    assert smaller["choices"][0]["message"]["content"] == "Hello"
    assert smaller["usage"]["completion_tokens"] == 2


def test_max_tokens_cuts_a_stream_and_its_usage(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue("Hello there, world!")
    _, lines = stream_lines(http, server, max_tokens=3, stream_options={"include_usage": True})
    chunks = payloads(lines)
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:4]] == ["Hell", "o", " ther"]
    assert streamed_content(chunks) == "Hello ther"
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert finish_reasons(chunks) == ["length"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert [line for _, line in lines if line][-1] == "data: [DONE]"
    assert server.last_request.completed


def test_max_tokens_cuts_tool_call_arguments(server: FakeModelServer, http: httpx.Client) -> None:
    arguments = json.dumps(PLAN)
    server.enqueue(Reply.json_obj(PLAN), Reply.json_obj(PLAN))
    limit = 5
    cut = "".join(tokenize(arguments)[:limit])
    body = chat(http, server, tools=[PLAN_TOOL], max_tokens=limit).json()
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "Plan", "arguments": cut}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == limit

    _, lines = stream_lines(http, server, tools=[PLAN_TOOL], max_tokens=limit)
    chunks = payloads(lines)
    streamed = "".join(
        call["function"]["arguments"] for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert streamed == cut and finish_reasons(chunks) == ["length"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(streamed)


def test_max_tokens_leaves_out_the_tool_calls_after_the_cut(server: FakeModelServer, http: httpx.Client) -> None:
    reply = Reply(content="Let me check.", tool_calls=(ToolCall.of("a", {"x": 1}), ToolCall.of("b", {"y": 2})))
    content_tokens = len(tokenize("Let me check."))
    server.enqueue(reply, reply)
    in_content = chat(http, server, max_tokens=content_tokens).json()["choices"][0]
    assert in_content["message"]["content"] == "Let me check." and "tool_calls" not in in_content["message"]
    assert in_content["finish_reason"] == "length"
    chunks = payloads(stream_lines(http, server, max_tokens=content_tokens + 2)[1])
    names = [call["function"]["name"] for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])
             if "id" in call]
    assert names == ["a"] and finish_reasons(chunks) == ["length"]


def test_max_tokens_caps_a_scripted_usage_and_keeps_a_scripted_finish_reason(
    server: FakeModelServer, http: httpx.Client
) -> None:
    server.enqueue(Reply.text("short", completion_tokens=500), Reply.text("Hello there, world!", finish_reason="stop"))
    capped = chat(http, server, max_tokens=10).json()
    assert capped["choices"][0]["message"]["content"] == "short"
    assert capped["usage"]["completion_tokens"] == 10
    scripted = chat(http, server, max_tokens=1).json()["choices"][0]
    assert (scripted["message"]["content"], scripted["finish_reason"]) == ("Hell", "stop")


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"max_tokens": 0}, "max_tokens",
         "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."),
        ({"max_completion_tokens": "10"}, "max_completion_tokens",
         "Invalid type for 'max_completion_tokens': expected an integer, but got str instead."),
        ({"max_tokens": True}, "max_tokens", "Invalid type for 'max_tokens': expected an integer, but got bool instead."),
    ],
    ids=["zero", "string", "bool"],
)
def test_an_invalid_max_tokens_is_a_400_that_uses_no_reply(
    server: FakeModelServer, http: httpx.Client, body: dict[str, Any], param: str, message: str
) -> None:
    server.enqueue("kept")
    response = chat(http, server, **body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param and response.json()["error"]["message"] == message
    assert server.pending_replies == 1
    assert chat(http, server).json()["choices"][0]["message"]["content"] == "kept"


def test_openai_client_sees_a_cut_reply(server: FakeModelServer) -> None:
    server.enqueue("Hello there, world!", "Hello there, world!")
    with openai.OpenAI(base_url=server.base_url, api_key="sk-fake", max_retries=0) as client:
        completion = client.chat.completions.create(model="fake-model", messages=USER, max_tokens=2)
        assert completion.choices[0].finish_reason == "length"
        assert completion.choices[0].message.content == "Hello"
        assert completion.usage is not None and completion.usage.completion_tokens == 2
        stream = client.chat.completions.create(
            model="fake-model", messages=USER, max_tokens=2, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


# ------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, "requests"), (500, "server_error"), (503, "server_error"),
     (401, "invalid_request_error"), (404, "invalid_request_error")],
)
def test_http_errors(
    server: FakeModelServer, http: httpx.Client, status: int, error_type: str
) -> None:
    server.enqueue(Reply.http_error(status, "boom", retry_after=3 if status == 429 else None))
    for stream in (False, True):
        if stream:
            server.enqueue(Reply.http_error(status, "boom"))
        response = chat(http, server, stream=stream)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": {"message": "boom", "type": error_type, "param": None,
                      "code": response.json()["error"]["code"]}
        }
    assert server.chat_requests[0].headers.get("content-type") == "application/json"
    if status == 429:
        assert chat(http, server).status_code == 500  # queue exhausted
        assert server.chat_requests[0].reply == Reply.http_error(status, "boom", retry_after=3)


def test_rate_limit_retry_after_header(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.rate_limited(retry_after=2), Reply.rate_limited(retry_after=0.5))
    first, second = chat(http, server), chat(http, server)
    assert (first.headers["retry-after"], second.headers["retry-after"]) == ("2", "0.5")
    assert first.json()["error"]["code"] == "rate_limit_exceeded"


def test_malformed_body(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.malformed(), Reply.malformed('{"oops"'))
    response = chat(http, server)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    _, lines = stream_lines(http, server)
    assert [line for _, line in lines if line] == ['data: {"oops"', "data: [DONE]"]


def test_dropped_stream(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.dropped(after_chunks=3))
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream(
            "POST",
            f"{server.base_url}/chat/completions",
            json={"model": "m", "messages": USER, "stream": True},
        ) as response:
            for line in response.iter_lines():
                received.append(line)
    data = [line for line in received if line.startswith("data:")]
    assert len(data) == 3
    assert "data: [DONE]" not in data
    record = server.last_request
    assert record.wait_finished()
    assert (record.chunks_sent, record.completed) == (3, False)


def test_dropped_non_streamed_and_disconnect(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.dropped(after_chunks=0), Reply.disconnected(), "still alive")
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message"):
        chat(http, server)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        chat(http, server)
    assert chat(http, server).json()["choices"][0]["message"]["content"] == "still alive"
    assert [r.status for r in server.requests] == [200, None, 200]


def test_delay_before_response(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.text("late", delay_s=0.3), Reply.http_error(503, delay_s=0.3))
    for expected in (200, 503):
        start = time.monotonic()
        assert chat(http, server).status_code == expected
        assert time.monotonic() - start >= 0.28  # the server waited (how precisely is for bench/)


# --------------------------------------------------------------------- timing


def test_ttft_and_token_rate(http: httpx.Client) -> None:
    text = "one two three four five six seven eight nine ten"  # 10 tokens
    with FakeModelServer([text, text], ttft_s=0.2, tokens_per_s=50) as srv:
        start = time.monotonic()
        _, lines = stream_lines(http, srv)
        times = [t for t, line in lines if line.startswith("data: {")]
        assert times[0] - start >= 0.18  # first event at ttft, not before
        assert times[-1] - times[0] >= 0.16  # 9 gaps of 20 ms at least
        record = srv.last_request
        assert record.first_byte_monotonic is not None and record.first_body_monotonic is not None
        assert record.first_body_monotonic - record.first_byte_monotonic >= 0.18

        start = time.monotonic()
        chat(http, srv)  # non-streamed: ttft + 9 / 50
        assert time.monotonic() - start >= 0.36

    # The server's own latency would take hours: the reply's latency overrides it, or this never returns.
    with FakeModelServer([Reply.text(text).with_latency(ttft_s=0.0, tokens_per_s=math.inf)],
                         ttft_s=3600.0, tokens_per_s=0.001) as srv:
        _, lines = stream_lines(http, srv)
        assert "data: [DONE]" in [line for _, line in lines]


def test_pause_after_first_step(server: FakeModelServer, http: httpx.Client) -> None:
    reply = Reply.json_obj(PLAN).with_pause_after_json(("steps", 0), 1.0)
    server.enqueue(reply, reply)
    _, lines = stream_lines(http, server, tools=[PLAN_TOOL])
    timed = [(t, json.loads(line[6:])) for t, line in lines if line.startswith("data: {")]
    sent = ""
    gaps = []
    for (t0, chunk), (t1, _) in zip(timed, timed[1:]):
        calls = chunk["choices"][0]["delta"].get("tool_calls") or [{"function": {}}]
        sent += calls[0]["function"].get("arguments", "")
        gaps.append((t1 - t0, sent))
    longest, text_before = max(gaps)
    assert longest >= 0.95
    expected_prefix = json.dumps(PLAN).split("}, ")[0] + "}"  # first complete step object
    assert text_before == expected_prefix
    assert [g for g, _ in gaps if g >= 0.95] == [longest]  # only one pause

    _, lines = stream_lines(http, server)  # same script as content when no tools
    chunks = payloads(lines)
    assert json.loads(streamed_content(chunks)) == PLAN


def test_pause_at_offsets_zero_and_end(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.text("abc def", pause_after={0: 0.2, 7: 0.2}))
    _, lines = stream_lines(http, server)
    times = [t for t, line in lines if line.startswith("data:")]
    assert times[1] - times[0] >= 0.18  # after the role chunk
    assert times[-2] - times[-3] >= 0.18  # before the finish chunk


def test_records_and_overlap(server: FakeModelServer, http: httpx.Client) -> None:
    server.enqueue(Reply.text("first part. second part.").with_pause_after("first part.", 0.5), "b")
    sent_at = time.time()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(stream_lines, http, server)
        wait_until(lambda: server.requests and server.requests[0].first_body_monotonic is not None,
                   "the first stream started")
        chat(http, server, messages=[{"role": "user", "content": "second"}])
        future.result()
    first, second = server.chat_requests
    assert first.wait_finished() and second.wait_finished()
    assert first.first_byte_monotonic is not None and first.last_byte_monotonic is not None
    assert first.received_monotonic <= first.first_byte_monotonic <= first.last_byte_monotonic
    assert second.received_monotonic < first.last_byte_monotonic  # started before the stream ended
    assert sent_at <= first.received_time <= time.time()  # wall-clock time, unlike the monotonic ones
    assert first.stream and not second.stream
    assert second.last_user_text == "second"
    assert first.headers["content-type"] == "application/json"
    assert first.model == "fake-model" and first.messages == USER
    assert (first.status, first.completed, first.client_disconnected) == (200, True, False)


# ----------------------------------------------------------------- handler & concurrency


def test_handler_and_queue_priority(http: httpx.Client) -> None:
    def handler(request: RecordedRequest) -> Reply:
        if request.last_user_text == "explode":
            raise ValueError("bad input")
        return Reply.text(f"echo: {request.last_user_text}")

    with FakeModelServer(["queued first"], handler=handler) as srv:
        def ask(text: str) -> httpx.Response:
            return chat(http, srv, messages=[{"role": "user", "content": text}])

        assert ask("a").json()["choices"][0]["message"]["content"] == "queued first"
        assert ask("b").json()["choices"][0]["message"]["content"] == "echo: b"
        failed = ask("explode")
        assert failed.status_code == 500
        assert "handler raised ValueError: bad input" in failed.json()["error"]["message"]
        assert [type(e) for e in srv.handler_errors] == [ValueError]
        srv.handler = lambda request: "plain string reply"
        assert ask("c").json()["choices"][0]["message"]["content"] == "plain string reply"


def test_many_concurrent_requests() -> None:
    count = 48
    # Every handler call waits until all `count` requests are in flight at once:
    # this only succeeds if the server really serves them concurrently.
    barrier = threading.Barrier(count)

    def handler(request: RecordedRequest) -> Reply:
        barrier.wait(timeout=10)
        return Reply.text(request.last_user_text)

    limits = httpx.Limits(max_connections=count)
    with FakeModelServer(handler=handler) as srv, httpx.Client(timeout=20, limits=limits) as client:

        def one(i: int) -> tuple[str, str]:
            messages = [{"role": "user", "content": f"req {i}"}]
            body: dict[str, Any] = {"model": "m", "messages": messages}
            url = f"{srv.base_url}/chat/completions"
            if i % 2:
                body["stream"] = True
                with client.stream("POST", url, json=body) as response:
                    lines = [(0.0, line) for line in response.iter_lines()]
                return f"req {i}", streamed_content(payloads(lines))
            message = client.post(url, json=body).json()["choices"][0]["message"]
            return f"req {i}", message["content"]

        with ThreadPoolExecutor(count) as pool:
            results = list(pool.map(one, range(count)))
        assert all(expected == got for expected, got in results)
        assert len(srv.wait_for_requests(count)) == count
        assert not srv.handler_errors


def test_stop_aborts_slow_responses(http: httpx.Client) -> None:
    srv = FakeModelServer([Reply.text("never", delay_s=30)]).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            chat(http, srv)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    wait_until(lambda: srv.requests, "the server received the request")
    srv.stop()
    thread.join(10)
    assert not thread.is_alive()  # the 30 s answer was aborted, not waited for
    assert len(errors) == 1 and isinstance(errors[0], httpx.RemoteProtocolError)
    assert srv.requests[0].status is None


# ------------------------------------------------------------------------- openai


def test_openai_client_sync(server: FakeModelServer) -> None:
    server.enqueue(
        "plain",
        Reply.text("streamed words here"),
        Reply.tool_call("lookup", {"city": "Paris"}),
        Reply.rate_limited(retry_after=1),
    )
    with openai.OpenAI(base_url=server.base_url, api_key="sk-fake", max_retries=0) as client:
        completion = client.chat.completions.create(model="fake-model", messages=USER)
        assert completion.choices[0].message.content == "plain"
        assert completion.usage is not None
        assert completion.usage.total_tokens == 3 + len(tokenize("plain"))

        stream = client.chat.completions.create(
            model="fake-model",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            "streamed words here"
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5

        stream = client.chat.completions.create(
            model="fake-model", messages=USER, stream=True
        )
        arguments = ""
        for chunk in stream:
            for call in chunk.choices[0].delta.tool_calls or []:
                if call.function and call.function.name:
                    assert call.function.name == "lookup" and call.id == "call_fake_3_0"
                arguments += (call.function.arguments or "") if call.function else ""
        assert json.loads(arguments) == {"city": "Paris"}

        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="fake-model", messages=USER)
        assert info.value.response.headers["retry-after"] == "1"
        assert info.value.code == "rate_limit_exceeded"


async def test_openai_client_async_dropped_stream(server: FakeModelServer) -> None:
    server.enqueue(Reply.dropped(after_chunks=2))
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-fake", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="m", messages=USER, stream=True
        )
        received = []
        # The exception's class belongs to whichever HTTP library the openai client
        # uses underneath (httpx, httpx2, ...); what matters is that the stream fails.
        with pytest.raises(Exception) as info:
            async for chunk in stream:
                received.append(chunk)
        assert "protocol" in type(info.value).__name__.lower() or isinstance(
            info.value, openai.APIError
        )
    assert len(received) == 2
    record = server.last_request
    assert record.wait_finished()
    assert record.completed is False


# ------------------------------------------------------------------------ litellm


def litellm_kwargs(server: FakeModelServer) -> dict[str, Any]:
    # num_retries=0: litellm otherwise retries 429/5xx/dropped connections twice.
    # (max_retries=0 works for litellm too, but instructor consumes max_retries.)
    return {
        "model": "openai/fake-model",
        "api_base": server.base_url,
        "api_key": "sk-fake",
        "num_retries": 0,
    }


@litellm_warnings
@litellm_usage_warnings
async def test_litellm_text(server: FakeModelServer) -> None:
    server.enqueue("hello from litellm", "streamed hello", "streamed hello")
    response = await litellm.acompletion(messages=USER, **litellm_kwargs(server))
    assert response.choices[0].message.content == "hello from litellm"
    assert response.model == "fake-model"
    assert response.usage.prompt_tokens == 3 and response.usage.completion_tokens == 5

    stream = await litellm.acompletion(messages=USER, stream=True, **litellm_kwargs(server))
    pieces = [chunk.choices[0].delta.content async for chunk in stream]
    assert "".join(p or "" for p in pieces) == "streamed hello"
    assert "stream_options" not in server.last_request.json  # litellm adds none by default

    stream = await litellm.acompletion(
        messages=USER, stream=True, stream_options={"include_usage": True},
        **litellm_kwargs(server),
    )
    last = None
    async for chunk in stream:
        last = chunk
    assert last is not None and last.usage.completion_tokens == len(tokenize("streamed hello"))


@litellm_warnings
async def test_litellm_stream_tool_calls(server: FakeModelServer) -> None:
    server.enqueue(Reply.json_obj(PLAN))
    stream = await litellm.acompletion(
        messages=USER, stream=True, tools=[PLAN_TOOL], **litellm_kwargs(server), **TOOL_KW
    )
    arguments, names, finish = "", [], None
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            if call.function.name:
                names.append(call.function.name)
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["Plan"]
    assert json.loads(arguments) == PLAN
    assert finish == "tool_calls"


@litellm_warnings
async def test_litellm_errors(server: FakeModelServer) -> None:
    server.enqueue(Reply.rate_limited(retry_after=1), Reply.http_error(401), "unused")
    with pytest.raises(litellm.exceptions.RateLimitError):
        await litellm.acompletion(messages=USER, **litellm_kwargs(server))
    with pytest.raises(litellm.exceptions.AuthenticationError):
        await litellm.acompletion(messages=USER, **litellm_kwargs(server))
    assert server.pending_replies == 1  # no hidden retries with max_retries=0


# --------------------------------------------------------------------- instructor


@litellm_warnings
async def test_instructor_litellm_tools_mode(server: FakeModelServer) -> None:
    client = instructor.from_litellm(litellm.acompletion, async_client=True)
    assert client.mode == instructor.Mode.TOOLS
    server.enqueue(Reply.json_obj(PLAN))
    plan = await client.create(
        response_model=Plan, messages=USER, max_retries=0, **litellm_kwargs(server), **TOOL_KW
    )
    assert plan.model_dump() == PLAN  # (plan carries instructor's private _raw_response)
    request = server.last_request
    assert request.tool_choice == {"type": "function", "function": {"name": "Plan"}}
    assert [t["function"]["name"] for t in request.tools] == ["Plan"]


@litellm_warnings
async def test_instructor_litellm_partial_streaming_with_pause(server: FakeModelServer) -> None:
    client = instructor.from_litellm(litellm.acompletion, async_client=True)
    server.enqueue(Reply.json_obj(PLAN).with_pause_after_json(("steps", 0), 0.6))
    partials: list[tuple[float, Any]] = []
    async for partial in client.create_partial(
        response_model=Plan, messages=USER, max_retries=0, **litellm_kwargs(server), **TOOL_KW
    ):
        partials.append((time.monotonic(), partial))
    end = time.monotonic()
    request = server.last_request
    assert request.stream
    assert request.tool_choice == {"type": "function", "function": {"name": "PartialPlan"}}
    final = partials[-1][1]
    assert final.model_dump() == PLAN
    assert len(partials) > 5
    # The first complete step is visible while the model is still "thinking".
    seen = next(t for t, p in partials if p.steps and p.steps[0].action == "search flights")
    assert end - seen >= 0.35  # pause is 0.6 s; generous for loaded machines
    assert all(len(p.steps or []) <= 1 for t, p in partials if t <= seen)


@litellm_warnings
async def test_instructor_litellm_iterable_and_json_mode(server: FakeModelServer) -> None:
    client = instructor.from_litellm(litellm.acompletion, async_client=True)
    # create_iterable asks for a tool named Iterable<Model> wrapping a "tasks" list.
    server.enqueue(Reply.json_obj({"tasks": PLAN["steps"]}))
    steps = [
        step
        async for step in client.create_iterable(
            response_model=Step, messages=USER, max_retries=0, **litellm_kwargs(server), **TOOL_KW
        )
    ]
    assert [s.id for s in steps] == ["s1", "s2"]
    assert server.last_request.tool_choice["function"]["name"] == "IterableStep"

    json_client = instructor.from_litellm(
        litellm.acompletion, mode=instructor.Mode.JSON, async_client=True
    )
    server.enqueue(Reply.json_obj(PLAN), Reply.json_obj(PLAN))
    plan = await json_client.create(
        response_model=Plan, messages=USER, max_retries=0, **litellm_kwargs(server)
    )
    assert plan.model_dump() == PLAN
    assert server.last_request.json["response_format"] == {"type": "json_object"}
    assert not server.last_request.tools
    partials = [
        p
        async for p in json_client.create_partial(
            response_model=Plan, messages=USER, max_retries=0, **litellm_kwargs(server)
        )
    ]
    assert partials[-1].model_dump() == PLAN


# --- prompt-cache usage shapes ------------------------------------------------------------------


def test_prompt_cache_usage_in_each_providers_shape() -> None:
    body = {"model": "fake-model", "messages": [{"role": "system", "content": "s" * 400}, {"role": "user", "content": "hi"}]}
    with FakeModelServer(handler=lambda r: Reply.text("ok"), prompt_cache="anthropic") as server:
        usages = [httpx.post(f"{server.base_url}/chat/completions", json=body).json()["usage"] for _ in range(2)]
    assert (usages[0]["cache_creation_input_tokens"], usages[0]["cache_read_input_tokens"]) == (100, 0)
    assert (usages[1]["cache_creation_input_tokens"], usages[1]["cache_read_input_tokens"]) == (0, 100)
    with FakeModelServer(handler=lambda r: Reply.text("ok"), prompt_cache="openai") as server:
        usages = [httpx.post(f"{server.base_url}/chat/completions", json=body).json()["usage"] for _ in range(2)]
        streamed = httpx.post(
            f"{server.base_url}/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
        ).text
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, 100]
    assert '"prompt_tokens_details": {"cached_tokens": 100}' in streamed
    with FakeModelServer([Reply.text("ok", cached_tokens=7), Reply.text("ok")]) as server:  # per reply, no simulation
        usages = [httpx.post(f"{server.base_url}/chat/completions", json=body).json()["usage"] for _ in range(2)]
    assert usages[0]["prompt_tokens_details"] == {"cached_tokens": 7} and "prompt_tokens_details" not in usages[1]


def test_a_custom_tokenizer_sets_the_streamed_tokens_and_their_count() -> None:
    words = lambda text: [w for w in text.replace(" ", " \0").split("\0") if w]  # noqa: E731 - "a b" -> "a ", "b"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with FakeModelServer([Reply.text("one two three", pause_after={5: 0.0})], tokenizer=words) as server:
        events = [json.loads(line[6:]) for line in httpx.post(f"{server.base_url}/chat/completions", json=body).text.splitlines()
                  if line.startswith("data: {")]  # fmt: skip
    pieces = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    assert [p for p in pieces if p] == ["one ", "t", "wo ", "three"]  # a pause offset is a cut too
    assert events[-1]["usage"]["completion_tokens"] == 4
