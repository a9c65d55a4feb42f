"""Where traces go: the configuration from the environment (delivery itself is tested end to
end, through real HTTP to the local OTLP receiver, in `test_tracing.py`)."""

from __future__ import annotations

import logging

import pytest

import planweave.planner.tracing.export as langfuse_export
from planweave.planner.tracing.export import TracingConfig


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk"}, ("https://cloud.langfuse.com", None, 5.0)),
        (
            {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_HOST": "http://lf.local:3000/"},
            ("http://lf.local:3000", None, 5.0),
        ),
        (
            {"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_HOST": "http://old",
             "LANGFUSE_BASE_URL": "http://new", "LANGFUSE_PROJECT_ID": "p1", "LANGFUSE_TIMEOUT": "2.5"},
            ("http://new", "p1", 2.5),
        ),
        ({"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_TRACING_ENABLED": "false"}, None),
    ],
)  # fmt: skip
def test_configuration_from_the_environment(env: dict[str, str], expected: tuple[str, str | None, float] | None) -> None:
    config = TracingConfig.from_env(env)
    if expected is None:
        assert config is None
    else:
        assert config is not None and (config.base_url, config.project_id, config.timeout_s) == expected
        assert (config.public_key, config.secret_key) == ("pk", "sk") and "sk" not in repr(config)


def test_one_key_without_the_other_warns_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(langfuse_export, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="planweave.tracing"):
        assert TracingConfig.from_env({"LANGFUSE_PUBLIC_KEY": "pk"}) is None
        assert TracingConfig.from_env({"LANGFUSE_PUBLIC_KEY": "pk"}) is None
    assert caplog.messages == [
        "Langfuse tracing is off: `LANGFUSE_SECRET_KEY` is not set; set both keys to trace runs."
    ]
