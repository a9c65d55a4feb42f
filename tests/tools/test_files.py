import os
import stat
from pathlib import Path

import pytest

import planweave.tools.files as tools_files
from planweave.tools.base import Tool
from planweave.tools.errors import ToolArgumentsError, ToolDefinitionError, ToolError, ToolRefusedError
from planweave.tools.files import MAX_LIST_ENTRIES, workspace_tools


@pytest.fixture
def root(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    (workspace / "docs" / "deep").mkdir(parents=True)
    (workspace / "notes.txt").write_text("hello\n")
    (workspace / "docs" / "a.md").write_text("# A\n")
    (workspace / "docs" / "deep" / "b.md").write_text("# B\n")
    (workspace / "docs" / "deep" / "c.txt").write_text("c\n")
    return workspace


@pytest.fixture
def tools(root: Path) -> dict[str, Tool]:
    return {t.name: t for t in workspace_tools(root)}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("top secret")
    return secret


async def read(tools: dict[str, Tool], path: str) -> str:
    result: str = await tools["read_file"].acall({"path": path})
    return result


def test_names_flags_and_schemas(tools: dict[str, Tool]) -> None:
    assert list(tools) == ["read_file", "write_file", "list_files"]
    assert all(t.blocking and not t.is_async for t in tools.values())
    read_schema = tools["read_file"].json_schema
    assert read_schema["required"] == ["path"]
    assert read_schema["properties"]["path"]["type"] == "string"
    assert "relative to the workspace root" in read_schema["properties"]["path"]["description"]
    write_schema = tools["write_file"].json_schema
    assert write_schema["required"] == ["path", "content"]
    assert write_schema["properties"]["overwrite"]["default"] is True
    list_schema = tools["list_files"].json_schema
    assert "required" not in list_schema
    assert {k: v["default"] for k, v in list_schema["properties"].items()} == {
        "path": ".",
        "pattern": "*",
        "recursive": False,
    }
    assert tools["write_file"].output_schema == {
        "type": "object",
        "title": "WriteResult",
        "description": "What `write_file` returns.",
        "properties": {
            "path": {"type": "string", "title": "Path"},
            "bytes_written": {"type": "integer", "title": "Bytes Written"},
        },
        "required": ["path", "bytes_written"],
    }


def test_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ToolDefinitionError) as info:
        workspace_tools(tmp_path / "nope")
    assert str(info.value) == (
        f"workspace root `{tmp_path / 'nope'}` does not exist or is not a directory; create it or pass another `root`."
    )


# -- reading -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reads_text(tools: dict[str, Tool], root: Path) -> None:
    assert await read(tools, "notes.txt") == "hello\n"
    assert await read(tools, "docs/deep/../a.md") == "# A\n"
    assert await read(tools, str(root / "docs" / "a.md")) == "# A\n"  # absolute, but inside


@pytest.mark.asyncio
async def test_keeps_line_endings(tools: dict[str, Tool], root: Path) -> None:
    (root / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    assert await read(tools, "crlf.txt") == "a\r\nb\r\n"


@pytest.mark.asyncio
async def test_missing_file(tools: dict[str, Tool], root: Path) -> None:
    with pytest.raises(ToolError) as info:
        await read(tools, "x.txt")
    assert str(info.value) == f"`x.txt` does not exist in the workspace `{root}`; list files with `list_files`."
    assert info.value.permanent is True
    assert info.value.tool == "read_file"


@pytest.mark.asyncio
async def test_binary_file(tools: dict[str, Tool], root: Path) -> None:
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    for name in ("image.png", "latin1.txt"):
        with pytest.raises(ToolError) as info:
            await read(tools, name)
        assert str(info.value) == f"`{name}` is a binary file (not UTF-8 text); read_file reads text files only."
        assert info.value.permanent


@pytest.mark.asyncio
async def test_directory_is_not_a_file(tools: dict[str, Tool]) -> None:
    with pytest.raises(ToolError, match="`docs` is a directory, not a file; list it with `list_files`"):
        await read(tools, "docs")


@pytest.mark.asyncio
async def test_read_limit(root: Path) -> None:
    (root / "big.txt").write_text("x" * 101)
    (root / "ok.txt").write_text("x" * 100)
    read_file = workspace_tools(root, max_read_bytes=100)[0]
    assert await read_file.acall({"path": "ok.txt"}) == "x" * 100
    with pytest.raises(ToolError) as info:
        await read_file.acall({"path": "big.txt"})
    assert str(info.value) == (
        "`big.txt` is larger than the 100-byte read limit of this workspace; read a smaller file, "
        "or build the tools with a larger `workspace_tools(max_read_bytes=...)`."
    )


# -- confinement -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("tool_name", ["read_file", "write_file", "list_files"])
@pytest.mark.parametrize("path", ["../outside/secret.txt", "docs/../../outside/secret.txt", "..", "/etc/passwd"])
async def test_refuses_paths_outside_the_root(
    tools: dict[str, Tool], root: Path, outside: Path, tool_name: str, path: str
) -> None:
    args = {"path": path, "content": "pwned"} if tool_name == "write_file" else {"path": path}
    with pytest.raises(ToolRefusedError) as info:
        await tools[tool_name].acall(args)
    assert str(info.value) == (
        f"`{path}` is outside the workspace `{root}`; use a path relative to the workspace, e.g. `notes/todo.md`."
    )
    assert info.value.permanent and info.value.tool == tool_name
    assert (outside / "secret.txt").read_text() == "top secret"


@pytest.mark.asyncio
async def test_refuses_absolute_path_to_a_sibling_with_a_common_prefix(tools: dict[str, Tool], root: Path) -> None:
    sibling = root.parent / (root.name + "2")
    sibling.mkdir()
    (sibling / "f.txt").write_text("no")
    with pytest.raises(ToolRefusedError, match="is outside the workspace"):
        await read(tools, str(sibling / "f.txt"))


@pytest.mark.asyncio
async def test_refuses_symlink_escapes(tools: dict[str, Tool], root: Path, outside: Path) -> None:
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "secret-link.txt").symlink_to(outside / "secret.txt")
    for path in ("link/secret.txt", "secret-link.txt", "link"):
        with pytest.raises(ToolRefusedError) as info:
            await read(tools, path)
        resolved = (root / path).resolve()
        assert str(info.value) == (
            f"`{path}` resolves through a symbolic link to `{resolved}`, which is outside the workspace "
            f"`{root}`; only files inside the workspace can be used."
        )
    with pytest.raises(ToolRefusedError, match="resolves through a symbolic link"):
        await tools["write_file"].acall({"path": "link/new.txt", "content": "x"})
    with pytest.raises(ToolRefusedError, match="resolves through a symbolic link"):
        await tools["list_files"].acall({"path": "link"})
    assert not (outside / "new.txt").exists()
    # The listing leaves out links that lead out of the workspace.
    assert await tools["list_files"].acall({}) == ["docs/", "notes.txt"]


@pytest.mark.asyncio
async def test_symlinks_inside_the_root_work(tools: dict[str, Tool], root: Path) -> None:
    (root / "alias.txt").symlink_to(root / "notes.txt")
    (root / "docs-link").symlink_to(root / "docs", target_is_directory=True)
    assert await read(tools, "alias.txt") == "hello\n"
    assert await read(tools, "docs-link/a.md") == "# A\n"
    assert await tools["list_files"].acall({}) == ["alias.txt", "docs-link/", "docs/", "notes.txt"]


@pytest.mark.asyncio
async def test_refuses_nul_characters(tools: dict[str, Tool]) -> None:
    with pytest.raises(ToolArgumentsError, match="contains a NUL character"):
        await read(tools, "notes.txt\x00.png")


# -- writing -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_writes_and_creates_parents(tools: dict[str, Tool], root: Path) -> None:
    result = await tools["write_file"].acall({"path": "out/new/report.md", "content": "café\n"})
    assert result == {"path": "out/new/report.md", "bytes_written": 6}
    assert (root / "out" / "new" / "report.md").read_text(encoding="utf-8") == "café\n"
    assert await read(tools, "out/new/report.md") == "café\n"


@pytest.mark.asyncio
async def test_overwrite(tools: dict[str, Tool], root: Path) -> None:
    await tools["write_file"].acall({"path": "notes.txt", "content": "new"})
    assert (root / "notes.txt").read_text() == "new"
    with pytest.raises(ToolError) as info:
        await tools["write_file"].acall({"path": "notes.txt", "content": "newer", "overwrite": False})
    assert str(info.value) == (
        "`notes.txt` already exists; pass `overwrite: true` to replace it, or choose another path."
    )
    assert info.value.permanent
    assert (root / "notes.txt").read_text() == "new"
    created = await tools["write_file"].acall({"path": "fresh.txt", "content": "", "overwrite": False})
    assert created == {"path": "fresh.txt", "bytes_written": 0}


@pytest.mark.asyncio
async def test_write_is_atomic(tools: dict[str, Tool], root: Path) -> None:
    target = root / "notes.txt"
    target.chmod(0o640)
    with target.open() as reader:  # opened before the write: still sees the old file
        await tools["write_file"].acall({"path": "notes.txt", "content": "replaced"})
        assert reader.read() == "hello\n"
    assert target.read_text() == "replaced"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # permissions of the replaced file are kept
    assert sorted(p.name for p in root.iterdir()) == ["docs", "notes.txt"]  # no temporary file left


@pytest.mark.asyncio
async def test_new_files_get_normal_permissions(tools: dict[str, Tool], root: Path) -> None:
    await tools["write_file"].acall({"path": "new.txt", "content": "x"})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((root / "new.txt").stat().st_mode) == 0o666 & ~umask


@pytest.mark.asyncio
async def test_write_errors(tools: dict[str, Tool]) -> None:
    with pytest.raises(ToolError, match="`docs` is a directory; pass a file path such as `docs/out.txt`."):
        await tools["write_file"].acall({"path": "docs", "content": "x"})
    with pytest.raises(ToolError, match="cannot create the directory for `notes.txt/x.md`: part of its path is a"):
        await tools["write_file"].acall({"path": "notes.txt/x.md", "content": "x"})


# -- listing -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_lists_sorted_with_directories_marked(tools: dict[str, Tool]) -> None:
    list_files = tools["list_files"]
    assert await list_files.acall({}) == ["docs/", "notes.txt"]
    assert await list_files.acall({"path": "docs"}) == ["docs/a.md", "docs/deep/"]
    assert await list_files.acall({"recursive": True}) == [
        "docs/",
        "docs/a.md",
        "docs/deep/",
        "docs/deep/b.md",
        "docs/deep/c.txt",
        "notes.txt",
    ]
    assert await list_files.acall({"pattern": "*.md", "recursive": True}) == ["docs/a.md", "docs/deep/b.md"]
    assert await list_files.acall({"path": "docs/deep", "pattern": "*.txt"}) == ["docs/deep/c.txt"]
    assert await list_files.acall({"pattern": "*.MD", "recursive": True}) == []  # case-sensitive everywhere


@pytest.mark.asyncio
async def test_list_errors(tools: dict[str, Tool], root: Path) -> None:
    with pytest.raises(ToolError) as info:
        await tools["list_files"].acall({"path": "nope"})
    assert str(info.value) == f"`nope` does not exist in the workspace `{root}`; list files with `list_files`."
    with pytest.raises(ToolError, match="`notes.txt` is a file, not a directory; read it with `read_file`."):
        await tools["list_files"].acall({"path": "notes.txt"})


@pytest.mark.asyncio
async def test_list_size_limit(tools: dict[str, Tool], root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_LIST_ENTRIES == 5_000
    monkeypatch.setattr(tools_files, "MAX_LIST_ENTRIES", 20)  # thousands of files would make a slow test
    many = root / "many"
    many.mkdir()
    for i in range(21):
        (many / f"{i}.txt").touch()
    with pytest.raises(ToolError) as info:
        await tools["list_files"].acall({"path": "many"})
    assert str(info.value) == (
        "`many` holds more than 20 matching entries; narrow the listing with `pattern`, "
        "list a subdirectory, or set `recursive` to false."
    )
    assert await tools["list_files"].acall({"path": "many", "pattern": "1?.txt"}) == [
        f"many/1{i}.txt" for i in range(10)
    ]


def test_public_names() -> None:
    from planweave.tools import files

    assert sorted(files.__all__) == ['MAX_LIST_ENTRIES', 'WriteResult', 'workspace_tools']
