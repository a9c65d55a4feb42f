"""Records of the requests received by :class:`planweave.planner.testing.FakeModelServer`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from planweave.planner.testing.replies import Reply

__all__ = ["CHAT_PATH", "MODELS_PATH", "RecordedRequest"]

#: Path of the chat-completions endpoint.
CHAT_PATH = "/v1/chat/completions"
#: Path of the models endpoint.
MODELS_PATH = "/v1/models"


@dataclass(eq=False)
class RecordedRequest:
    """One HTTP request received by the server, and how it was answered.

    Request fields are set before any handler sees the request.  Response
    fields are updated by the serving thread while it responds; the times
    are recorded *just before* the corresponding bytes are written, so once a
    client has read the last byte, ``last_byte_monotonic`` is final.  Use
    :meth:`wait_finished` to wait until the server is done with the request.

    ``headers`` keys are lower-cased.  ``body`` is the parsed JSON body
    (``None`` if absent or not valid JSON).  ``first_byte_monotonic`` /
    ``last_byte_monotonic`` are :func:`time.monotonic` values of the first and
    last response bytes (``None`` if nothing was sent); the first byte is the
    status line, which for streams is sent right away (before ``ttft_s``).
    ``first_body_monotonic`` is the time of the first body byte (for streams,
    the first SSE event).  ``status`` is the HTTP status sent (``None`` if the
    connection was closed before any), ``chunks_sent`` the number of SSE
    ``data:`` events sent (``[DONE]`` excluded), ``completed`` whether the whole
    response was sent, ``client_disconnected`` whether a write failed because
    the client went away, and ``reply`` the :class:`Reply` used (``None`` for
    non-chat requests and for "no reply left"/handler errors).
    """

    number: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any
    received_monotonic: float
    received_time: float
    reply: Reply | None = None
    status: int | None = None
    first_byte_monotonic: float | None = None
    first_body_monotonic: float | None = None
    last_byte_monotonic: float | None = None
    chunks_sent: int = 0
    completed: bool = False
    client_disconnected: bool = False
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def is_chat(self) -> bool:
        """True for ``POST /v1/chat/completions``."""
        return self.method == "POST" and self.path == CHAT_PATH

    @property
    def json(self) -> dict[str, Any]:
        """The body if it is a JSON object, else an empty dict."""
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        """The requested ``model``."""
        value = self.json.get("model")
        return value if isinstance(value, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request ``messages`` (empty list if absent)."""
        value = self.json.get("messages")
        return value if isinstance(value, list) else []

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed response."""
        return bool(self.json.get("stream"))

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The request ``tools`` (empty list if absent)."""
        value = self.json.get("tools")
        return value if isinstance(value, list) else []

    @property
    def tool_choice(self) -> Any:
        """The request ``tool_choice`` (``None`` if absent)."""
        return self.json.get("tool_choice")

    @property
    def last_user_text(self) -> str:
        """Text of the last ``user`` message ("" if none)."""
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return "".join(
                        part.get("text", "")
                        for part in content
                        if isinstance(part, dict) and isinstance(part.get("text"), str)
                    )
                return ""
        return ""

    @property
    def finished(self) -> bool:
        """True once the server has finished responding to this request."""
        return self._finished.is_set()

    def wait_finished(self, timeout: float | None = 5.0) -> bool:
        """Wait until the server has finished responding; return ``finished``."""
        return self._finished.wait(timeout)
