"""Load the prompt templates in `prompts/` by name, with a version and a content hash.

Every LLM call records the name, version and hash of the prompt it used, so a
trace says exactly which prompt produced which decision.

A template made of a `system` block and a `user` block renders to two messages
(`Prompt.messages`): the static part (role, rules, tools, examples) first, so a provider's
prompt cache can reuse it, then the part that changes. Untrusted text (tool output, run
inputs) only ever goes into the user message, inside a data block whose closing line it
cannot forge (`as_data`, `new_data_tag`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2

from planweave.planner.errors import ConfigError

__all__ = ["Prompt", "PromptLibrary", "as_data", "describe", "new_data_tag", "prompt_inputs"]

PACKAGE_DIR: Traversable = resources.files("planweave.prompts")
"""The bundled templates, wherever the package is installed (a wheel, an editable install, a zip)."""
_VERSION_RE = re.compile(r"\{#\s*version:\s*([\w.-]+)\s*#\}")
_DELIMITER_RE = re.compile(r"<(?=\s*/?\s*data\b)", re.IGNORECASE)
"""The `<` of anything that reads like a data delimiter (`<data-…>`, `</ data-…>`, any case)."""


def new_data_tag() -> str:
    """A fresh random id for one request's data blocks (`<data-ID>` … `</data-ID>`)."""
    return secrets.token_hex(4)


def as_data(text: str, *, entry: bool = True) -> str:
    """Untrusted `text`, made safe to place inside a data block.

    Whatever reads like a delimiter has its `<` written as `&lt;`, so no line of it can end the
    block (whose id is also random per request, unknown to the data). As an `entry` (a `- ` line
    of a list), every line after the first is also indented, so it cannot start a new entry."""
    text = _DELIMITER_RE.sub("&lt;", text)
    if not entry:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\n  ")


def describe(value: Any, limit: int) -> str:
    """`value` as text for a prompt, cut at `limit` characters (the whole value stays in the context)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > limit:
        return text[:limit] + f" ... [truncated: {len(text) - limit} more characters; the full value is in the context]"
    return text


def prompt_inputs(inputs: Mapping[str, Any], limit: int) -> list[dict[str, str]]:
    """The run's inputs as the plan and join prompts show them: the one place where input values
    are rendered into a prompt (long values cut, each one data)."""
    return [{"name": name, "text": as_data(describe(value, limit))} for name, value in inputs.items()]


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    hash: str
    """First 12 hex digits of the SHA-256 of the template file."""
    path: Traversable
    """Where the template was read from: a file in the user's directory or in `planweave.prompts`."""
    template: jinja2.Template

    def render(self, **variables: Any) -> str:
        try:
            return self.template.render(**variables).strip() + "\n"
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"prompt `{self.name}` ({self.path}) needs a variable that was not given: {exc}") from exc

    def messages(self, **variables: Any) -> list[dict[str, Any]]:
        """The chat messages: the `system` block as the system message, the `user` block as the user
        message. A template without those blocks (an older user override) becomes one user message,
        so whatever data it shows never reaches the system message."""
        blocks = self.template.blocks
        if "system" not in blocks or "user" not in blocks:
            return [{"role": "user", "content": self.render(**variables)}]
        try:
            context = self.template.new_context(variables)
            system = "".join(blocks["system"](context)).strip() + "\n"
            user = "".join(blocks["user"](self.template.new_context(variables))).strip() + "\n"
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"prompt `{self.name}` ({self.path}) needs a variable that was not given: {exc}") from exc
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    @property
    def ref(self) -> dict[str, str]:
        """What is recorded with every LLM call."""
        return {"name": self.name, "version": self.version, "hash": self.hash}


class PromptLibrary:
    """Templates by name: a user directory first (`PLANWEAVE_PROMPTS_DIR`), then the bundled ones."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        user = user_dir or os.environ.get("PLANWEAVE_PROMPTS_DIR")
        self.dirs: list[Traversable] = [Path(user)] if user else []
        self.dirs.append(PACKAGE_DIR)
        self._env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True, trim_blocks=False
        )
        self._cache: dict[str, Prompt] = {}

    def get(self, name: str) -> Prompt:
        if name in self._cache:
            return self._cache[name]
        for d in self.dirs:
            path = d.joinpath(*f"{name}.j2".split("/"))  # `examples/http_get` is in a subdirectory
            if path.is_file():
                source = path.read_text(encoding="utf-8")
                m = _VERSION_RE.search(source.split("\n", 1)[0])
                if m is None:
                    raise ConfigError(
                        f"prompt `{path}` has no version; start it with a line like `{{# version: 1 #}}`."
                    )
                try:
                    template = self._env.from_string(source)
                except jinja2.TemplateSyntaxError as exc:
                    raise ConfigError(f"prompt `{path}` line {exc.lineno}: {exc.message}") from exc
                prompt = Prompt(
                    name=name,
                    version=m.group(1),
                    hash=hashlib.sha256(source.encode()).hexdigest()[:12],
                    path=path,
                    template=template,
                )
                self._cache[name] = prompt
                return prompt
        searched = ", ".join(str(d) for d in self.dirs)
        raise ConfigError(f"no prompt named `{name}` (looked for `{name}.j2` in {searched}).")

    def examples(self, tools: Iterable[str]) -> list[Prompt]:
        """The few-shot examples for `tools`, in the order given: `examples/<tool>.j2` in the user
        directory or the bundled ones (versioned and hashed like every prompt); a tool with no
        example file has none."""
        found = []
        for name in tools:
            key = f"examples/{name}"
            if any((d / "examples" / f"{name}.j2").is_file() for d in self.dirs):
                found.append(self.get(key))
        return found

    def names(self) -> list[str]:
        found: set[str] = set()
        for d in self.dirs:
            if d.is_dir():
                found.update(p.name[: -len(".j2")] for p in d.iterdir() if p.name.endswith(".j2"))
        return sorted(found)
