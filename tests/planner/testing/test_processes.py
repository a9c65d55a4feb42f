"""Child processes started by tests die with their whole group, however the test ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from planweave.planner.testing import ChildProcesses, wait_until

ROOT = Path(__file__).resolve().parents[3]

# A child that starts a grandchild, prints the grandchild's pid, then waits "forever".
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(grandchild.pid, flush=True)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_group_is_killed_when_the_block_exits_with_an_exception() -> None:
    children = ChildProcesses()
    with pytest.raises(RuntimeError, match="the test failed"):
        with children.running([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            grandchild = int(proc.stdout.readline())
            assert alive(proc.pid) and alive(grandchild)
            raise RuntimeError("the test failed")
    assert proc.returncode is not None  # reaped
    wait_until(lambda: not alive(grandchild), f"grandchild {grandchild} was killed with its parent's group")


def test_kill_all_ends_children_that_a_test_did_not_stop() -> None:
    children = ChildProcesses()
    first = children.spawn([sys.executable, "-c", "import time; time.sleep(600)"])
    second = children.spawn([sys.executable, "-c", "print('done')"], stdout=subprocess.PIPE)
    assert second.wait(timeout=60) == 0  # stopped on its own: killing it again is harmless
    children.kill_all()
    assert first.returncode is not None and not alive(first.pid)


def test_children_die_when_pytest_timeout_fails_the_test(tmp_path: Path) -> None:
    """Run a test that hangs past its timeout in a pytest of its own, with this suite's conftest."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    pid_file = tmp_path / "pids"
    (tmp_path / "test_hangs.py").write_text(
        textwrap.dedent(
            f"""
            import subprocess, sys, time
            import pytest

            @pytest.mark.timeout(2)
            def test_hangs(children):
                proc = children.spawn([sys.executable, "-c", {PARENT!r}], stdout=subprocess.PIPE, text=True)
                grandchild = proc.stdout.readline().strip()
                with open({str(pid_file)!r}, "w") as f:
                    f.write(f"{{proc.pid}} {{grandchild}}")
                time.sleep(600)
            """
        )
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert inner.returncode == 1 and "Timeout" in inner.stdout, inner.stdout + inner.stderr
    child, grandchild = (int(pid) for pid in pid_file.read_text().split())
    assert not alive(child)
    wait_until(lambda: not alive(grandchild), f"grandchild {grandchild} was killed when the test timed out")
