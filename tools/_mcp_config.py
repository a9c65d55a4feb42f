"""Where MCP servers are: `MCPServer` (a command or a URL), from `--mcp` values, `mcpServers`
JSON files and a workflow's `mcp:` section. Public names are re-exported by `planweave.tools.mcp`."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from planweave.tools.errors import MCPConfigError

__all__ = ["MCPServer", "load_mcp_config", "parse_mcp_servers"]

_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


class MCPServer(BaseModel):
    """Where an MCP server is: a command to start (stdio) or a Streamable HTTP URL.

    `name` labels the server in messages and prefixes its tools' names where they collide
    (default: the server's own name, else the script or host it runs).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment variables of a stdio server (it also gets `PATH`, `HOME`, ...)."""
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """HTTP headers sent to a URL server (an API key, say)."""
    call_timeout_s: float | None = Field(None, gt=0)
    """Longest wait for one tool call's answer (None: the step's own `timeout_s` rules)."""
    start_timeout_s: float = Field(30.0, gt=0)

    @field_validator("env", "headers", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return tuple((str(k), str(v)) for k, v in value.items()) if isinstance(value, Mapping) else value

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give an MCP server either `command` (stdio) or `url` (Streamable HTTP), not both or neither")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server url `{self.url}` must start with http:// or https://")
        return self

    @classmethod
    def stdio(
        cls, command: str, *args: str, env: Mapping[str, str] | None = None, name: str = "", cwd: str | None = None
    ) -> MCPServer:
        """A server started as a subprocess, spoken to over its stdin and stdout."""
        return cls(name=name, command=command, args=tuple(args), env=tuple((env or {}).items()), cwd=cwd)

    @classmethod
    def http(cls, url: str, *, headers: Mapping[str, str] | None = None, name: str = "") -> MCPServer:
        """A server at a Streamable HTTP URL (e.g. `http://127.0.0.1:8000/mcp`)."""
        return cls(name=name, url=url, headers=tuple((headers or {}).items()))

    @classmethod
    def parse(cls, spec: str, *, name: str = "") -> MCPServer:
        """A `--mcp` value: a URL (`http://...`) or a command line (`python server.py --flag`)."""
        spec = spec.strip()
        if spec.startswith(("http://", "https://")):
            return cls.http(spec, name=name)
        try:
            words = shlex.split(spec)
        except ValueError as exc:
            raise MCPConfigError(f"`--mcp {spec}` is not a valid command line ({exc}); check its quotes.") from None
        if not words:
            raise MCPConfigError("`--mcp` is empty; give a command (`--mcp 'python server.py'`) or a URL.")
        return cls.stdio(words[0], *words[1:], name=name)

    @property
    def label(self) -> str:
        """The name in messages: `name`, else the script or the URL's host."""
        if self.name:
            return self.name
        if self.url is not None:
            from urllib.parse import urlsplit

            return urlsplit(self.url).hostname or self.url
        scripts = [a for a in self.args if not a.startswith("-")]
        return Path(scripts[-1] if scripts else str(self.command)).stem or str(self.command)

    @property
    def key(self) -> str:
        """Identity in the per-process pool: the same command or URL is one shared server."""
        return json.dumps(self.model_dump(exclude={"name"}), sort_keys=True)

    def describe(self) -> str:
        if self.url is not None:
            return self.url
        return shlex.join([str(self.command), *self.args])


def parse_mcp_servers(value: Any, *, where: str) -> list[MCPServer]:
    """Servers from an `mcpServers` mapping (name -> command/args/env/url/headers), as desktop
    assistants and editors write it, or a list of `--mcp` strings. `where` names the source."""
    if isinstance(value, Mapping) and "mcpServers" in value:
        value = value["mcpServers"]
    if isinstance(value, str):
        value = [value]
    servers: list[MCPServer] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                servers.append(MCPServer.parse(item))
            elif isinstance(item, Mapping):
                servers.append(_server_entry(str(item.get("name", f"server{i + 1}")), item, where=f"{where}[{i}]"))
            else:
                raise MCPConfigError(f"{where}[{i}] is a {type(item).__name__}; give a command line, a URL or a mapping.")
        return servers
    if not isinstance(value, Mapping):
        raise MCPConfigError(
            f"{where} must map server names to settings, e.g. "
            '`{"mcpServers": {"files": {"command": "npx", "args": ["-y", "server"]}}}`.'
        )
    for name, entry in value.items():
        if not isinstance(entry, Mapping):
            raise MCPConfigError(f"{where}: server `{name}` must be a mapping with `command` or `url`, not {entry!r}.")
        if entry.get("disabled") is True:
            continue
        servers.append(_server_entry(str(name), entry, where=f"{where}: server `{name}`"))
    return servers


_ENTRY_KEYS = {"name", "command", "args", "env", "cwd", "url", "headers", "type", "disabled", "timeout"}


def _server_entry(name: str, entry: Mapping[str, Any], *, where: str) -> MCPServer:
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise MCPConfigError(
            f"{where} has unknown key `{unknown[0]}`; the keys are `command`, `args`, `env`, `cwd` "
            "(a stdio server) or `url`, `headers` (a Streamable HTTP server)."
        )
    kind = entry.get("type")
    if kind == "sse":
        raise MCPConfigError(
            f"{where} uses the old SSE transport (`\"type\": \"sse\"`), which planweave does not speak; "
            "point `url` at the server's Streamable HTTP endpoint (often `/mcp`) and drop `type`."
        )
    if kind not in (None, "stdio", "http", "streamable-http", "streamableHttp", "streamable_http"):
        raise MCPConfigError(f"{where} has `type` `{kind}`; use `stdio` or `http` (or leave `type` out).")
    for key, kinds in (("args", list), ("env", dict), ("headers", dict)):
        if key in entry and not isinstance(entry[key], kinds):
            raise MCPConfigError(f"{where}: `{key}` must be a {'list' if kinds is list else 'mapping'}, not {entry[key]!r}.")
    if "command" not in entry and "url" not in entry:
        raise MCPConfigError(f"{where} has neither `command` nor `url`; add `\"command\": \"...\"` or `\"url\": \"http://...\"`.")
    try:
        return MCPServer(
            name=_NAME_BAD.sub("_", name),
            command=entry.get("command"),
            args=tuple(str(a) for a in entry.get("args", ())),
            env=tuple((str(k), str(v)) for k, v in entry.get("env", {}).items()),
            cwd=entry.get("cwd"),
            url=entry.get("url"),
            headers=tuple((str(k), str(v)) for k, v in entry.get("headers", {}).items()),
            call_timeout_s=entry.get("timeout"),
        )
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in problem["loc"])
        detail = problem["msg"].removeprefix("Value error, ")
        raise MCPConfigError(f"{where}: {f'`{field}`: ' if field else ''}{detail}.") from None


def load_mcp_config(path: str | Path) -> list[MCPServer]:
    """The servers of an `mcpServers` JSON file (the format of desktop assistants and editors)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise MCPConfigError(f"cannot read MCP config `{p}` ({exc.strerror or exc}); check the path.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MCPConfigError(
            f"MCP config `{p}` is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if not isinstance(data, Mapping) or "mcpServers" not in data:
        raise MCPConfigError(
            f"MCP config `{p}` has no `mcpServers` key; write "
            '`{"mcpServers": {"name": {"command": "...", "args": [...]}}}`.'
        )
    return parse_mcp_servers(data["mcpServers"], where=f"`{p}`")
