"""Who owns a run, shared by every store: this process's owner name and whether a lease is live.

A lease is `owner` = `host:pid:random` with an expiry. Its expiry decides on any host; on
this host a dead owner is seen at once (its PID is gone), without waiting for the expiry.
"""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["HOST", "abandon", "abandoned", "lease_live", "process_owner", "resume"]

HOST = socket.gethostname()
_owner: tuple[int, str] | None = None
_ABANDONED: set[str] = set()
"""Runs this process holds the lease of but stopped executing (their recording failed)."""


def process_owner() -> str:
    """This process's lease owner name, `host:pid:random` (new after a fork)."""
    global _owner
    if _owner is None:  # (cleared in a forked child: asking the PID each time is a system call per batch)
        pid = os.getpid()
        _owner = (pid, f"{HOST}:{pid}:{secrets.token_hex(4)}")
    return _owner[1]


def _forget_owner() -> None:
    global _owner
    _owner = None


os.register_at_fork(after_in_child=_forget_owner)


def abandon(run_id: str) -> None:
    """This process stopped executing `run_id`: its lease no longer counts as live here."""
    _ABANDONED.add(run_id)


def resume(run_id: str) -> None:
    """This process executes `run_id` again (it began or claimed it)."""
    _ABANDONED.discard(run_id)


def abandoned(run_id: str) -> bool:
    return run_id in _ABANDONED


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_live(run_id: str, owner: str, expires: float | None, host: str, pid: int, now: float) -> bool:
    """Whether a run's lease is held by a live process.

    The lease's expiry decides, on any host. On this host a dead owner is seen at once (its
    PID is gone), without waiting for the expiry. A row from schema 1 (no owner) is live
    only while its process, on this host, is.
    """
    if not owner:
        return host == HOST and _alive(pid) and pid != os.getpid()
    if expires is None or expires < now:
        return False
    if owner == process_owner():
        return run_id not in _ABANDONED
    owner_host, _, rest = owner.partition(":")
    if owner_host == HOST:
        owner_pid = rest.partition(":")[0]
        if owner_pid.isdigit() and int(owner_pid) != os.getpid() and not _alive(int(owner_pid)):
            return False
    return True
