"""Real subprocesses for tests that cannot outlive the test that started them.

A test that starts `planweave serve` and then fails (or is stopped by pytest-timeout)
must not leave the server running. :class:`ChildProcesses` starts each child in its own
process group and kills the whole group (the child and anything it started) when asked,
when its ``with`` block exits, or, failing all that, when the interpreter exits.

Example::

    from planweave.planner.testing import ChildProcesses

    children = ChildProcesses()
    try:
        proc = children.spawn([sys.executable, "-m", "planweave", "serve", "--port", "8123"])
        ...
    finally:
        children.kill_all()
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_LIVE: set[subprocess.Popen[Any]] = set()
"""Every child started here and not yet killed: the last line of defence at exit."""


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's whole process group, then reap the child and close its pipes.

    Harmless for a child that has already exited (a test may stop it gracefully first).
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group has exited already
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be caught
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    _LIVE.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    # Reached when the test runner exits without running a test's teardown (Ctrl-C, sys.exit).
    for proc in list(_LIVE):
        kill_group(proc)


class ChildProcesses:
    """Starts subprocesses in their own process groups and kills those groups on request."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[Any]] = []

    def spawn(self, args: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """`subprocess.Popen(args, **popen)` in a new process group, killed by :meth:`kill_all`."""
        proc: subprocess.Popen[Any] = subprocess.Popen(list(args), start_new_session=True, **popen)
        self.started.append(proc)
        _LIVE.add(proc)
        return proc

    @contextmanager
    def running(self, args: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen[Any]]:
        """A child whose group is killed when the block exits, however it exits."""
        proc = self.spawn(args, **popen)
        try:
            yield proc
        finally:
            kill_group(proc)

    def kill_all(self) -> None:
        """Kill every group started here (those already killed are skipped quickly)."""
        for proc in self.started:
            kill_group(proc)
