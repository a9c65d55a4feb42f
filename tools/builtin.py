"""The tools planweave ships with, configured in one call."""

from __future__ import annotations

from pathlib import Path

from tools.base import Tool
from tools.calculator import calculator
from tools.files import workspace_tools
from tools.http import http_get, make_http_get
from tools.search import web_search

__all__ = ["builtin_tools"]


def builtin_tools(*, workspace: str | Path = ".", allow_private_hosts: bool = False) -> list[Tool]:
    """All built-in tools: calculator, http_get, read_file, write_file, list_files, web_search.

        registry = ToolRegistry(builtin_tools(workspace="./work"))

    Args:
        workspace: Directory the file tools are confined to; it must exist.
        allow_private_hosts: Let `http_get` reach private, loopback and link-local
            addresses (off by default: plans are written by a model, and could
            otherwise reach internal services).

    Raises:
        ToolDefinitionError: `workspace` does not exist or is not a directory.
    """
    fetch = make_http_get(allow_private=True) if allow_private_hosts else http_get
    return [calculator, fetch, *workspace_tools(workspace), web_search]
