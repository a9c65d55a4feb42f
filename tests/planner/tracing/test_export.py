"""Where traces go: the configuration from the environment (delivery itself is tested end to
end, through real HTTP to the local OTLP receiver, in `test_tracing.py`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import planweave.planner.tracing.export as langfuse_export
from planweave.planner.testing import ChildProcesses, FakeModelServer, Reply
from planweave.planner.testing.otlp import OTLPReceiver
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


def test_a_hung_langfuse_does_not_hold_up_the_exit_of_planweave_run(tmp_path: Path, children: ChildProcesses) -> None:
    """Langfuse accepts the connection and never answers; each export may take 300 s (its
    timeout). `planweave run` prints its result and exits while the export is still held:
    without the bounded exit it would wait for the export's timeout (or the release)."""
    with OTLPReceiver() as receiver, FakeModelServer([Reply.json_obj({"steps": [], "answer": "42"})]) as model:
        receiver.hold()
        env = {
            **os.environ, "LANGFUSE_PUBLIC_KEY": "pk-lf-exit", "LANGFUSE_SECRET_KEY": "sk-lf-exit",
            "LANGFUSE_BASE_URL": receiver.url, "LANGFUSE_TIMEOUT": "300", "OPENAI_API_KEY": "sk-fake",
            "PLANWEAVE_HOME": str(tmp_path / "home"),
        }  # fmt: skip
        proc = children.spawn(
            [sys.executable, "-m", "planweave", "run", "the answer", "--model", "openai/fake",
             "--api-base", model.base_url, "--json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, line = "", ""
        while line != "}\n":  # the result is printed (its last line) ...
            line = proc.stdout.readline() if proc.stdout is not None else ""
            assert line, f"`planweave run` ended without a result: {proc.communicate()}"
            out += line
        printed = time.monotonic()
        _, err = proc.communicate()  # ... and the process exits
        exited = time.monotonic()
        still_held = receiver.held
        receiver.release()
    assert proc.returncode == 0, err
    assert json.loads(out)["answer"] == "42"
    assert still_held >= 1, "the export was answered before the process exited: nothing was hung"
    print(f"\nexit after the result with Langfuse hung: {exited - printed:.2f} s")
