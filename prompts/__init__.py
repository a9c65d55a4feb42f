"""Prompt templates are data: Jinja2 files with a front-matter version, loaded by name at run time.

Each file `NAME.j2` starts with a `{# version: N #}` comment. A user directory
(`PLANWEAVE_PROMPTS_DIR` or `Prompts(user_dir=...)`) overrides files by name.
"""
