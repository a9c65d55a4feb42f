"""Errors of requests in OpenAI's shape, and the machine's paths kept out of them.

    raise APIError(404, "no run `x` ...", code="run_not_found", param="run_id")   # in a route
    install_error_handlers(app)     # every error, FastAPI's and Starlette's too, in that shape

A request planweave will not serve is answered `{"error": {"message", "type", "param", "code"}}`;
a run's own failure is not an error here (it is a reply saying so). Messages never name this
machine's directories (`hide_path`): the run store, the working directory, the home directory
and Python's prefix read as labels (`<run store>`, `<working directory>`, `~`, ...).
"""

from __future__ import annotations

import os
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["APIError", "bug", "hide_machine_paths", "hide_path", "hide_paths", "install_error_handlers"]


class APIError(Exception):
    """A request planweave will not serve, answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        message = hide_paths(message)
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type_
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


_HIDDEN_PATHS: dict[str, str] = {}
"""Directories and files of this machine that error messages name instead by a label (`hide_path`)."""


def hide_path(path: str | os.PathLike[str] | None, label: str) -> None:
    """Say `label` instead of `path` in every HTTP error from now on: a client has no business
    learning where the run store, the working directory or the user's home are."""
    if path is None:
        return
    text = os.fspath(path)
    if len(text) > 1 and os.path.isabs(text):
        _HIDDEN_PATHS[text.rstrip(os.sep) or text] = label


def hide_paths(text: str) -> str:
    """`text` with every registered path (longest first) replaced by its label; only whole path
    components, so `/app` is hidden in `/app/runs.db` but not in `/application`."""
    for path in sorted(_HIDDEN_PATHS, key=len, reverse=True):
        if path in text:
            pattern = r"(?<![\w.~-])" + re.escape(path) + r"(?![\w.~-])"
            text = re.sub(pattern, _HIDDEN_PATHS[path].replace("\\", "\\\\"), text)
    return text


def hide_machine_paths() -> None:
    import sys
    import tempfile
    from pathlib import Path

    hide_path(sys.prefix, "<python>")
    hide_path(tempfile.gettempdir(), "<temp>")
    hide_path(Path.home(), "~")
    hide_path(Path.cwd(), "<working directory>")


def bug(exc: Exception) -> APIError:
    """A bug, not a run's failure (those are replies), in OpenAI's shape all the same."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return APIError(500, f"planweave failed: {type(exc).__name__}: {exc}", type_="server_error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` in OpenAI's shape."""
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return exc.response()


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON ({detail}); send a JSON object.").response()
    problems = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"`{loc}`: {e.get('msg')}" if loc else str(e.get("msg")))
    first = errors[0].get("loc", ()) if errors else ()
    param = ".".join(str(p) for p in first if p not in ("body", "query", "path")) or None
    return APIError(422, "invalid request: " + "; ".join(problems), param=param).response()


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    return bug(exc).response()  # Starlette logs the exception


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path}); see `docs/chat-endpoint.md` for the endpoints."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return APIError(exc.status_code, message, headers=dict(exc.headers or {})).response()
