"""File tools confined to a workspace directory: `read_file`, `write_file`, `list_files`.

    tools = workspace_tools("./work")   # [read_file, write_file, list_files]

Every path a plan passes is resolved against the workspace root, symbolic links
included, and refused with `ToolRefusedError` when the result lies outside the
root: absolute paths elsewhere, `..` escapes, and links pointing out of the
workspace. Writes are atomic (a temporary file in the same directory, then
`os.replace`), so a reader sees the old content or the new, never half a file.

The check and the use cannot be raced apart: after the check, the file is opened
from a descriptor of the workspace root one path component at a time, each with
`O_NOFOLLOW` (`O_DIRECTORY` for directories), along the real path the check
found. A component swapped for a symbolic link in between makes the open fail
(and the call is refused) instead of following the link out of the workspace.
Listings walk directory descriptors the same way (`os.scandir` on a descriptor,
`os.fwalk`).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from typing_extensions import TypedDict

from planweave.tools.base import Tool
from planweave.tools.errors import ToolArgumentsError, ToolDefinitionError, ToolError, ToolRefusedError

__all__ = ["MAX_LIST_ENTRIES", "WriteResult", "workspace_tools"]

MAX_LIST_ENTRIES: Final = 5_000
"""`list_files` refuses listings longer than this rather than flood the plan's context."""

_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_RACED: Final = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)
"""What `open(O_NOFOLLOW | O_DIRECTORY)` gives when a component became a link or a file."""


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
        try:
            resolved = candidate.resolve()
        except OSError:  # a link in the path vanished while it was being read
            raise self._changed(path, tool) from None
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

    # -- descriptors -----------------------------------------------------------------------

    def _parts(self, target: Path) -> tuple[str, ...]:
        return target.relative_to(self.root).parts if target != self.root else ()

    def _changed(self, path: str, tool: str) -> ToolRefusedError:
        return ToolRefusedError(
            f"`{path}` changed while it was being opened (a part of it became a symbolic link or a file); "
            "it was not used. Try again once the workspace is not being changed.",
            tool=tool,
        )

    @contextmanager
    def _directory(self, parts: Sequence[str], path: str, tool: str, *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory `root/parts...`, each component opened without following links.

        `create` makes missing directories (for writes). Yields the descriptor; closes it after.
        """
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                        child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except (FileExistsError, FileNotFoundError):  # someone else is changing this directory
                        raise self._changed(path, tool) from None
                os.close(fd)
                fd = child
            yield fd
        except OSError as exc:
            if exc.errno not in _RACED:
                raise
            if _is_link(fd, exc):
                raise self._changed(path, tool) from None
            if create:
                raise ToolError(
                    f"cannot create the directory for `{path}`: part of its path is a file.",
                    tool=tool,
                    permanent=True,
                ) from None
            raise NotADirectoryError(exc.errno, exc.strerror, exc.filename) from None
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        target = self.locate(path, "read_file")
        parts = self._parts(target)
        if not parts:
            raise self._not_a_file(path)
        try:
            with self._directory(parts[:-1], path, "read_file") as dir_fd:
                # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            raise self.missing(path, "read_file") from None
        except OSError as exc:
            if exc.errno in _RACED:
                raise self._changed(path, "read_file") from None
            raise
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise self._not_a_file(path)
            raise ToolError(f"`{path}` is not a regular file.", tool="read_file", permanent=True)  # a FIFO, a device
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
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

    def _not_a_file(self, path: str) -> ToolError:
        return ToolError(
            f"`{path}` is a directory, not a file; list it with `list_files` (path `{path}`).",
            tool="read_file",
            permanent=True,
        )

    def write(self, path: str, content: str, overwrite: bool) -> WriteResult:
        target = self.locate(path, "write_file")
        parts = self._parts(target)
        if not parts or target.is_dir():
            raise ToolError(
                f"`{path}` is a directory; pass a file path such as `{path.rstrip('/')}/out.txt`.",
                tool="write_file",
                permanent=True,
            )
        if not overwrite and target.exists():
            raise self._exists(path)
        data = content.encode("utf-8")
        name = parts[-1]
        with self._directory(parts[:-1], path, "write_file", create=True) as dir_fd:
            try:
                existing: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise ToolError(
                    f"`{path}` is a directory; pass a file path such as `{path.rstrip('/')}/out.txt`.",
                    tool="write_file",
                    permanent=True,
                )
            temp = f".{name}.{secrets.token_hex(6)}.tmp"
            # O_EXCL | O_NOFOLLOW: never write through a file or link someone else placed at this name.
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o666, dir_fd=dir_fd)
            except FileNotFoundError:  # the directory was removed since it was opened
                raise self._changed(path, "write_file") from None
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    if existing is not None and stat.S_ISREG(existing.st_mode):
                        os.fchmod(f.fileno(), stat.S_IMODE(existing.st_mode))  # keep the replaced file's mode
                    os.fsync(f.fileno())
                # rename and link act on the name in this directory: a link placed there is replaced, not followed.
                if overwrite:
                    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                else:
                    try:
                        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                    except FileExistsError:  # the file appeared since the check above
                        raise self._exists(path) from None
            finally:
                try:
                    os.unlink(temp, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
        return {"path": self.relative(target), "bytes_written": len(data)}

    def _exists(self, path: str) -> ToolError:
        return ToolError(
            f"`{path}` already exists; pass `overwrite: true` to replace it, or choose another path.",
            tool="write_file",
            permanent=True,
        )

    def list(self, path: str, pattern: str, recursive: bool) -> list[str]:
        base = self.locate(path, "list_files")
        entries: list[str] = []
        try:
            with self._directory(self._parts(base), path, "list_files") as dir_fd:
                for relative, is_dir, is_link in self._entries(dir_fd, recursive):
                    name = relative.rpartition("/")[2]
                    if not fnmatch.fnmatchcase(name, pattern):
                        continue
                    child = base / relative
                    if is_link:
                        # Only the name is shown; whatever it points to is opened (and checked) by the other tools.
                        real = child.resolve()
                        if not self._inside(real, (self.root,)):
                            continue  # a link out of the workspace could not be read anyway
                        is_dir = real.is_dir()
                    entries.append(self.relative(child) + ("/" if is_dir else ""))
                    if len(entries) > MAX_LIST_ENTRIES:
                        raise ToolError(
                            f"`{path}` holds more than {MAX_LIST_ENTRIES:,} matching entries; narrow the listing "
                            "with `pattern`, list a subdirectory, or set `recursive` to false.",
                            tool="list_files",
                            permanent=True,
                        )
        except FileNotFoundError:
            raise self.missing(path, "list_files") from None
        except NotADirectoryError:
            raise ToolError(
                f"`{path}` is a file, not a directory; read it with `read_file`.", tool="list_files", permanent=True
            ) from None
        return sorted(entries)

    @staticmethod
    def _entries(dir_fd: int, recursive: bool) -> Iterator[tuple[str, bool, bool]]:
        """(path relative to the listed directory, is a directory, is a link), from its descriptor."""
        if not recursive:
            with os.scandir(dir_fd) as it:
                for entry in it:
                    yield entry.name, entry.is_dir(follow_symlinks=False), entry.is_symlink()
            return
        # fwalk opens each subdirectory from its parent's descriptor and never follows links.
        for dirpath, dirnames, filenames, fd in os.fwalk(".", dir_fd=dir_fd):
            prefix = "" if dirpath == "." else dirpath[2:] + "/"
            for name in dirnames:
                yield prefix + name, True, False
            for name in filenames:
                yield prefix + name, False, stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)


def _is_link(dir_fd: int, exc: OSError) -> bool:
    """Whether the component `exc` is about is a symbolic link (a race) rather than a plain file."""
    name = exc.filename if isinstance(exc.filename, str) else None
    if name is None:
        return True
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return True
