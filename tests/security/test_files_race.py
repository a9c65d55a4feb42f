"""File tools immune to symlink races (issue 12, item 7): while another thread keeps swapping a
directory of the workspace for a symbolic link to a directory outside it, `read_file`,
`write_file` and `list_files` never read, write or list anything outside."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from planweave.tools.errors import ToolError
from planweave.tools.files import workspace_tools

ROUNDS = 400


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "data.txt").write_text("inside")
    (outside / "data.txt").write_text("SECRET")
    (outside / "only-outside.txt").write_text("SECRET")
    return root, outside


class Swapper(threading.Thread):
    """Swaps `root/sub` between the real directory and a link to `outside`, until stopped."""

    def __init__(self, root: Path, outside: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.sub, self.real, self.link = root, root / "sub", root / ".sub-real", root / ".sub-link"
        os.symlink(outside, self.link, target_is_directory=True)
        self.stop = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                os.rename(self.sub, self.real)  # the directory steps aside...
                os.rename(self.link, self.sub)  # ...a link to outside takes its name...
                os.rename(self.sub, self.link)
                os.rename(self.real, self.sub)  # ...and the directory comes back
                self.swaps += 1
            except OSError:
                try:
                    self.heal()
                except OSError:
                    pass  # the tools moved something meanwhile; the next round heals it

    def heal(self) -> None:
        """`write_file` creates missing parents, so it can make a fresh `sub` in a gap: set it aside."""
        if self.sub.is_symlink():
            os.rename(self.sub, self.link)
        elif self.sub.is_dir() and self.real.is_dir():
            os.rename(self.sub, self.root / f".made-{self.swaps}-{time.monotonic_ns()}")
        if self.real.is_dir() and not self.sub.exists():
            os.rename(self.real, self.sub)

    def __enter__(self) -> Swapper:
        self.start()
        while self.swaps == 0:  # racing from the first call on
            time.sleep(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def test_nothing_outside_is_read_written_or_listed_during_a_race(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    tools = {t.name: t for t in workspace_tools(root)}
    read, write, listing = tools["read_file"].fn, tools["write_file"].fn, tools["list_files"].fn
    seen: dict[str, int] = {"read": 0, "written": 0, "listed": 0, "refused": 0}
    with Swapper(root, outside) as swapper:
        for i in range(ROUNDS):
            try:
                assert read(path="sub/data.txt") == "inside"
                seen["read"] += 1
            except ToolError:
                seen["refused"] += 1
            try:
                write(path=f"sub/out-{i}.txt", content="x")
                seen["written"] += 1
            except ToolError:
                seen["refused"] += 1
            try:
                names = listing(path="sub", recursive=bool(i % 2))
                assert "sub/only-outside.txt" not in names
                seen["listed"] += 1
            except ToolError:
                seen["refused"] += 1
            assert sorted(p.name for p in outside.iterdir()) == ["data.txt", "only-outside.txt"]
        assert swapper.swaps > 1 and swapper.is_alive()
    assert (outside / "data.txt").read_text() == "SECRET"
    # Every write that succeeded landed in the workspace.
    assert len(list(root.rglob("out-*.txt"))) == seen["written"]
    assert seen["read"] + seen["written"] + seen["listed"] > 0  # the tools did work between the swaps
