"""Shared fixtures. Tests never reach the internet and never need an API key."""

from __future__ import annotations

import os

# Must be set before litellm is first imported anywhere in the test session.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _key in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "PLANWEAVE_MODEL"):
    os.environ.pop(_key, None)


import pytest


@pytest.fixture(autouse=True)
def _planweave_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs recorded by a test go to a fresh directory, never to the user's ~/.planweave."""
    monkeypatch.setenv("PLANWEAVE_HOME", str(tmp_path_factory.mktemp("home")))
