"""Load the prompt templates in `prompts/` by name, with a version and a content hash.

Every LLM call records the name, version and hash of the prompt it used, so a
trace says exactly which prompt produced which decision.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from planweave.planner.errors import ConfigError

__all__ = ["Prompt", "PromptLibrary"]

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "prompts"
_VERSION_RE = re.compile(r"\{#\s*version:\s*([\w.-]+)\s*#\}")


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    hash: str
    """First 12 hex digits of the SHA-256 of the template file."""
    path: Path
    template: jinja2.Template

    def render(self, **variables: Any) -> str:
        try:
            return self.template.render(**variables).strip() + "\n"
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"prompt `{self.name}` ({self.path}) needs a variable that was not given: {exc}") from exc

    @property
    def ref(self) -> dict[str, str]:
        """What is recorded with every LLM call."""
        return {"name": self.name, "version": self.version, "hash": self.hash}


class PromptLibrary:
    """Templates by name: a user directory first (`PLANWEAVE_PROMPTS_DIR`), then the bundled ones."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        user = user_dir or os.environ.get("PLANWEAVE_PROMPTS_DIR")
        self.dirs = [Path(user)] if user else []
        self.dirs.append(PACKAGE_DIR)
        self._env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True, trim_blocks=False
        )
        self._cache: dict[str, Prompt] = {}

    def get(self, name: str) -> Prompt:
        if name in self._cache:
            return self._cache[name]
        for d in self.dirs:
            path = d / f"{name}.j2"
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

    def names(self) -> list[str]:
        found: set[str] = set()
        for d in self.dirs:
            found.update(p.stem for p in d.glob("*.j2"))
        return sorted(found)
