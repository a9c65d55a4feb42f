"""The tools planweave ships with, configured in one call."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from planweave.tools.base import Tool
from planweave.tools.errors import ToolDefinitionError
from planweave.tools.calculator import calculator
from planweave.tools.files import workspace_tools
from planweave.tools.http import http_get, make_http_get
from planweave.tools.page import fetch_page, make_fetch_page
from planweave.tools.search import web_search

__all__ = ["builtin_tools", "select_tools"]


def builtin_tools(
    *,
    workspace: str | Path = ".",
    allow_private_hosts: bool = False,
    http_timeout_s: float = 10.0,
    fixes: Mapping[str, str] | None = None,
) -> list[Tool]:
    """All built-in tools: calculator, http_get, read_file, write_file, list_files, web_search, fetch_page.

        registry = ToolRegistry(builtin_tools(workspace="./work"))

    Args:
        workspace: Directory the file tools are confined to; it must exist.
        allow_private_hosts: Let `http_get` reach private, loopback and link-local
            addresses (off by default: plans are written by a model, and could
            otherwise reach internal services).
        http_timeout_s: Limit of each `http_get` call, in seconds.
        fixes: How `http_get`'s errors say to change `allow_private` or `timeout_s`
            (see `make_http_get`); the command line names its flags here.

    Raises:
        ToolDefinitionError: `workspace` does not exist or is not a directory.
    """
    if allow_private_hosts or http_timeout_s != 10.0 or fixes:
        fetch = make_http_get(allow_private=allow_private_hosts, timeout_s=http_timeout_s, fixes=fixes)
        page = make_fetch_page(allow_private=allow_private_hosts, timeout_s=http_timeout_s, fixes=fixes)
    else:
        fetch, page = http_get, fetch_page
    return [calculator, fetch, *workspace_tools(workspace), web_search, page]


def _load_module(spec: str) -> Any:
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise ToolDefinitionError(f"tool file `{spec}` does not exist; give a path to a Python file.")
        mod_spec = importlib.util.spec_from_file_location(f"planweave_user_tools_{path.stem}", path)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise ToolDefinitionError(f"tool module `{spec}` cannot be imported ({exc}); check it is on PYTHONPATH.") from exc


def select_tools(
    specs: Iterable[str] = (),
    *,
    workspace: str | Path = ".",
    allow_private_hosts: bool = False,
    http_timeout_s: float = 10.0,
    fixes: Mapping[str, str] | None = None,
    extra: Iterable[Tool] = (),
) -> list[Tool]:
    """Tools chosen by name, as the CLI's `--tools` does.

    Each spec is a built-in tool's name (`calculator`), `builtin` for all of them, a Python
    module or `.py` file (every `Tool` defined at its top level), or `module:attribute` (one
    tool, or a list of tools). No specs means every built-in tool. `extra` tools count as
    built-in ones (the command line adds the planner's `llm` tool this way, which this
    package cannot build: it sits below the planner).
    """
    specs = [s.strip() for spec in specs for s in spec.split(",") if s.strip()]
    builtins = {
        t.name: t
        for t in builtin_tools(
            workspace=workspace, allow_private_hosts=allow_private_hosts, http_timeout_s=http_timeout_s, fixes=fixes
        )
    }
    builtins.update({t.name: t for t in extra})
    if not specs:
        return list(builtins.values())
    chosen: dict[str, Tool] = {}
    for spec in specs:
        if spec == "builtin":
            chosen.update(builtins)
        elif spec in builtins:
            chosen[spec] = builtins[spec]
        elif ":" in spec or "." in spec or spec.endswith(".py"):
            module_name, _, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
            module = _load_module(module_name)
            if attr:
                if not hasattr(module, attr):
                    raise ToolDefinitionError(f"`{module_name}` has no attribute `{attr}`; check the tool spec `{spec}`.")
                found = getattr(module, attr)
                items = found if isinstance(found, (list, tuple)) else [found]
            else:
                items = [v for v in vars(module).values() if isinstance(v, Tool)]
            tools = [t if isinstance(t, Tool) else Tool.from_function(t) for t in items]
            if not tools:
                raise ToolDefinitionError(f"`{spec}` defines no tools; decorate functions with `@tool`.")
            chosen.update({t.name: t for t in tools})
        else:
            raise ToolDefinitionError(
                f"unknown tool `{spec}`; built-in tools are {', '.join(f'`{n}`' for n in sorted(builtins))}, "
                "or give a module, a .py file or `module:attribute`."
            )
    return list(chosen.values())
