"""Asking a person on the terminal: the command line's `Responder` for steps that wait for people.

The live view stops while the question is on screen (one question at a time), then draws again.
Approvals show the step, the tool and the arguments, and take `y` (approve), `n` (deny, with an
optional reason) or `e` (edit the arguments as JSON); questions take the answer, a choice's
number, or nothing for the default.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

from planweave.executor.errors import AnswerError
from planweave.executor.requests import InputAnswer, InputRequest, check_answer
from planweave.executor.waiting import Responder

__all__ = ["can_ask", "terminal_responder"]


def can_ask() -> bool:
    """True when a person is at this terminal (stdin and stderr are both terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _read(out: TextIO, prompt: str) -> str:
    out.write(prompt)
    out.flush()
    line = sys.stdin.readline()
    if not line:  # end of input: nobody will answer here
        raise EOFError
    return line.strip()


def _approval(request: InputRequest, out: TextIO) -> InputAnswer:
    out.write(f"\nstep `{request.step_id}` wants to run `{request.tool}` with:\n")
    out.write("  " + json.dumps(request.args, ensure_ascii=False) + "\n")
    while True:
        choice = _read(out, "approve? [y]es, [n]o, [e]dit: ").lower()
        if choice in ("y", "yes"):
            return InputAnswer.approve(by="terminal")
        if choice in ("n", "no"):
            return InputAnswer.deny(_read(out, "reason (optional): "), by="terminal")
        if choice in ("e", "edit"):
            text = _read(out, "arguments as JSON: ")
            try:
                args = json.loads(text)
            except json.JSONDecodeError as exc:
                out.write(f"not JSON ({exc.msg}); try again.\n")
                continue
            if not isinstance(args, dict):
                out.write("give a JSON object, e.g. {\"path\": \"notes.txt\"}.\n")
                continue
            return InputAnswer.edit(args, by="terminal")
        out.write("answer y, n or e.\n")


def _question(request: InputRequest, out: TextIO) -> InputAnswer:
    out.write(f"\nstep `{request.step_id}` asks: {request.question}\n")
    for i, choice in enumerate(request.choices or [], 1):
        out.write(f"  {i}. {choice}\n")
    default = f" [{request.default}]" if request.default is not None else ""
    while True:
        text = _read(out, f"answer{default}: ")
        if not text and request.default is not None:
            text = request.default
        try:
            return check_answer(request, InputAnswer.reply(text, by="terminal"))
        except AnswerError as exc:
            out.write(f"{exc}\n")


def terminal_responder(view: Any | None) -> Responder:
    """Ask on this terminal; `view` (the live view, if any) stops drawing while a question is open."""
    lock = asyncio.Lock()

    def ask(request: InputRequest) -> InputAnswer | None:
        out = sys.stderr
        try:
            return _question(request, out) if request.kind == "question" else _approval(request, out)
        except EOFError:
            return None  # no more input: the request stays open (`planweave respond` answers it)

    async def respond(request: InputRequest) -> InputAnswer | None:
        async with lock:
            if view is not None:
                view.stop()
            try:
                return await asyncio.to_thread(ask, request)
            finally:
                if view is not None:
                    view.start()

    return respond
