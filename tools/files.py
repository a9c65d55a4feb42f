"""File tools confined to a workspace directory: `read_file`, `write_file`, `list_files`.

    tools = workspace_tools("./work")   # [read_file, write_file, list_files]

Every path a plan passes is resolved against the workspace root, symbolic links
included, and refused with `ToolRefusedError` when the result lies outside the
root: absolute paths elsewhere, `..` escapes, and links pointing out of the
workspace. Writes are atomic (a temporary file in the same directory, then
`os.replace`), so a reader sees the old content or the new, never half a file.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from typing_extensions import TypedDict

from planweave.tools.base import Tool
from planweave.tools.errors import ToolArgumentsError, ToolDefinitionError, ToolError, ToolRefusedError

__all__ = ["MAX_LIST_ENTRIES", "WriteResult", "workspace_tools"]

MAX_LIST_ENTRIES: Final = 5_000
"""`list_files` refuses listings longer than this rather than flood the plan's context."""


class WriteResult(TypedDict):
    """What `write_file` returns."""

    path: str
    """The file written, relative to the workspace root (POSIX separators)."""
    bytes_written: int
    """Size of the UTF-8 encoded content."""


def workspace_tools(root: str | Path = ".", *, max_read_bytes: int = 1_000_000) -> list[Tool]:
    """Build `read_file`, `write_file` and `list_files`, confined to `root`.

    Args:
        root: The workspace directory; it must exist. Paths given to the tools are
            relative to it (absolute paths inside it are accepted too).
        max_read_bytes: Larger files are refused by `read_file`.

    Raises:
        ToolDefinitionError: `root` does not exist or is not a directory.
    """
    workspace = _Workspace(Path(root), max_read_bytes)

    def read_file(path: str) -> str:
        """Read a UTF-8 text file from the workspace and return its content.

        Args:
            path: File path relative to the workspace root, e.g. `notes/todo.md`.
        """
        return workspace.read(path)

    def write_file(path: str, content: str, overwrite: bool = True) -> WriteResult:
        """Write text to a file in the workspace (UTF-8), creating parent directories as needed.

        Args:
            path: File path relative to the workspace root, e.g. `out/report.md`.
            content: The complete new content of the file.
            overwrite: Replace the file if it exists; when false, an existing file is an error.
        """
        return workspace.write(path, content, overwrite)

    def list_files(path: str = ".", pattern: str = "*", recursive: bool = False) -> list[str]:
        """List files and directories in the workspace, sorted; directories end with `/`.

        Args:
            path: Directory to list, relative to the workspace root.
            pattern: Shell-style pattern matched against entry names, e.g. `*.md`.
            recursive: Also list the contents of subdirectories.
        """
        return workspace.list(path, pattern, recursive)

    # write_file changes the workspace: never cached (`pure=False`).
    return [Tool.from_function(read_file), Tool.from_function(write_file, pure=False), Tool.from_function(list_files)]


class _Workspace:
    """Path confinement and the file operations behind the three tools."""

    def __init__(self, root: Path, max_read_bytes: int) -> None:
        if not root.is_dir():
            raise ToolDefinitionError(
                f"workspace root `{root}` does not exist or is not a directory; create it or pass another `root`."
            )
        if max_read_bytes <= 0:
            raise ToolDefinitionError(f"`max_read_bytes` must be positive, got {max_read_bytes}.")
        self.root = root.resolve()
        # The root as given (absolute, links unresolved): absolute paths a plan builds
        # from it are inside the workspace too.
        self.root_as_given = Path(os.path.abspath(root))
        self.max_read_bytes = max_read_bytes

    def _inside(self, path: Path, roots: tuple[Path, ...]) -> bool:
        return any(path == r or path.is_relative_to(r) for r in roots)

    def locate(self, path: str, tool: str) -> Path:
        """The real path `path` names, refusing anything outside the root."""
        if "\x00" in path:
            raise ToolArgumentsError(f"`{path!r}` contains a NUL character; pass a plain path.", tool=tool)
        given = Path(path.strip() or ".")
        candidate = given if given.is_absolute() else self.root / given
        if not self._inside(Path(os.path.normpath(candidate)), (self.root, self.root_as_given)):
            raise ToolRefusedError(
                f"`{path}` is outside the workspace `{self.root}`; use a path relative to the workspace, "
                "e.g. `notes/todo.md`.",
                tool=tool,
            )
        resolved = candidate.resolve()
        if not self._inside(resolved, (self.root,)):
            raise ToolRefusedError(
                f"`{path}` resolves through a symbolic link to `{resolved}`, which is outside the workspace "
                f"`{self.root}`; only files inside the workspace can be used.",
                tool=tool,
            )
        return resolved

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path != self.root else "."

    def missing(self, path: str, tool: str) -> ToolError:
        return ToolError(
            f"`{path}` does not exist in the workspace `{self.root}`; list files with `list_files`.",
            tool=tool,
            permanent=True,
        )

    def read(self, path: str) -> str:
        target = self.locate(path, "read_file")
        if not target.exists():
            raise self.missing(path, "read_file")
        if target.is_dir():
            raise ToolError(
                f"`{path}` is a directory, not a file; list it with `list_files` (path `{path}`).",
                tool="read_file",
                permanent=True,
            )
        if not target.is_file():  # a FIFO or device would block or never end
            raise ToolError(f"`{path}` is not a regular file.", tool="read_file", permanent=True)
        with target.open("rb") as f:
            data = f.read(self.max_read_bytes + 1)  # never more than the cap, even if the file grows
        if len(data) > self.max_read_bytes:
            raise ToolError(
                f"`{path}` is larger than the {self.max_read_bytes:,}-byte read limit of this workspace; "
                "read a smaller file, or build the tools with a larger `workspace_tools(max_read_bytes=...)`.",
                tool="read_file",
                permanent=True,
            )
        try:
            if b"\x00" in data:
                raise UnicodeError
            return data.decode("utf-8")
        except UnicodeError:
            raise ToolError(
                f"`{path}` is a binary file (not UTF-8 text); read_file reads text files only.",
                tool="read_file",
                permanent=True,
            ) from None

    def write(self, path: str, content: str, overwrite: bool) -> WriteResult:
        target = self.locate(path, "write_file")
        if target.is_dir():
            raise ToolError(
                f"`{path}` is a directory; pass a file path such as `{path.rstrip('/')}/out.txt`.",
                tool="write_file",
                permanent=True,
            )
        if not overwrite and target.exists():
            raise self._exists(path)
        data = content.encode("utf-8")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ToolError(
                f"cannot create the directory for `{path}`: part of its path is a file.",
                tool="write_file",
                permanent=True,
            ) from None
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        # O_EXCL: never write through a file or link someone else placed at this name.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if target.exists():  # keep the permissions of the file being replaced
                os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
            if overwrite:
                os.replace(temp, target)
            else:
                try:
                    os.link(temp, target)  # fails if the file appeared since the check above
                except FileExistsError:
                    raise self._exists(path) from None
        finally:
            temp.unlink(missing_ok=True)
        return {"path": self.relative(target), "bytes_written": len(data)}

    def _exists(self, path: str) -> ToolError:
        return ToolError(
            f"`{path}` already exists; pass `overwrite: true` to replace it, or choose another path.",
            tool="write_file",
            permanent=True,
        )

    def list(self, path: str, pattern: str, recursive: bool) -> list[str]:
        base = self.locate(path, "list_files")
        if not base.exists():
            raise self.missing(path, "list_files")
        if not base.is_dir():
            raise ToolError(
                f"`{path}` is a file, not a directory; read it with `read_file`.", tool="list_files", permanent=True
            )
        entries: list[str] = []
        if recursive:
            children = (
                Path(dirpath) / name
                for dirpath, dirnames, filenames in os.walk(base)  # does not descend into linked directories
                for name in (*dirnames, *filenames)
            )
        else:
            children = base.iterdir()
        for child in children:
            if not fnmatch.fnmatchcase(child.name, pattern):
                continue
            if child.is_symlink() and not self._inside(child.resolve(), (self.root,)):
                continue  # a link out of the workspace could not be read anyway
            entries.append(self.relative(child) + ("/" if child.is_dir() else ""))
            if len(entries) > MAX_LIST_ENTRIES:
                raise ToolError(
                    f"`{path}` holds more than {MAX_LIST_ENTRIES:,} matching entries; narrow the listing "
                    "with `pattern`, list a subdirectory, or set `recursive` to false.",
                    tool="list_files",
                    permanent=True,
                )
        return sorted(entries)
