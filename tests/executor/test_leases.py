"""Lease owners: one name per process, a new one in a forked child."""

from __future__ import annotations

import os

from planweave.executor._leases import HOST, process_owner


def test_the_owner_name_is_stable_in_a_process_and_new_after_a_fork() -> None:
    owner = process_owner()
    assert owner == process_owner()
    host, pid, tag = owner.rsplit(":", 2)
    assert host == HOST and int(pid) == os.getpid() and len(tag) == 8
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: write its owner name and leave at once
        try:
            os.write(write, process_owner().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_owner = pipe.read()
    os.waitpid(child, 0)
    assert child_owner != owner and child_owner.split(":")[1] == str(child)
    assert process_owner() == owner  # (the parent's is unchanged)
