from __future__ import annotations

import json

import pytest

from planweave.executor import Plan, RetryPolicy, Step, WorkflowFileError

PLAN = Plan.of(
    [
        {"id": "fetch", "tool": "http_get", "args": {"url": "https://example.org"}, "retry": {"max_attempts": 3, "jitter": 0}},
        {
            "id": "summarize",
            "tool": "llm",
            "args": {"prompt": "Summarise ${fetch.text}", "n": [1, 2.5, None, True], "nested": {"a": {"b": "$${x}"}}},
            "depends_on": ["fetch"],
            "description": "summary",
            "when": "${fetch.status} == 200",
            "timeout_s": 2.5,
            "on_failure": "replan",
        },
        {"id": "each", "tool": "http_get", "args": {"url": "${item}"}, "for_each": "${fetch.links}", "on_failure": "continue"},
    ]
)


def test_json_round_trip_is_lossless() -> None:
    again = Plan.from_json(PLAN.to_json())
    assert again == PLAN
    assert again.to_json() == PLAN.to_json()


def test_yaml_round_trip_is_lossless(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plan.yaml"
    PLAN.save(path)
    assert Plan.load(path) == PLAN
    (tmp_path / "plan.json").write_text(PLAN.to_json())
    assert Plan.load(tmp_path / "plan.json") == PLAN


def test_saved_form_leaves_defaults_out() -> None:
    data = json.loads(PLAN.to_json())
    assert data["steps"][0] == {
        "id": "fetch",
        "tool": "http_get",
        "args": {"url": "https://example.org"},
        "retry": {"max_attempts": 3, "jitter": 0.0},
    }


def test_bad_files_give_clear_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WorkflowFileError, match="cannot read"):
        Plan.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [ {id: a, tool: x")
    with pytest.raises(WorkflowFileError, match="is not valid YAML"):
        Plan.load(bad)
    bad.write_text("steps:\n  - {id: 'has space', tool: x}\n  - {id: b}\n")
    with pytest.raises(WorkflowFileError) as info:
        Plan.load(bad)
    msg = str(info.value)
    assert "steps.0.id" in msg and "steps.1" in msg and "exactly one of `tool`" in msg
    with pytest.raises(WorkflowFileError, match="unknown file type"):
        (tmp_path / "p.txt").write_text("{}")
        Plan.load(tmp_path / "p.txt")


def test_retry_policy_delays() -> None:
    p = RetryPolicy(max_attempts=5, initial_delay_s=1, backoff_factor=2, max_delay_s=5, jitter=0)
    assert [p.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    j = RetryPolicy(initial_delay_s=1, jitter=0.5)
    import random

    rng = random.Random(1)
    delays = [j.delay(1, rng) for _ in range(50)]
    assert all(0.5 <= d <= 1.5 for d in delays) and len(set(delays)) > 1
    assert RetryPolicy.exponential().max_attempts == 3


def test_retry_policy_error_filter() -> None:
    class Flaky(ConnectionError):
        pass

    class Permanent(Exception):
        permanent = True

    any_error = RetryPolicy(max_attempts=3)
    assert any_error.retries(ValueError()) and not any_error.retries(Permanent())
    only_conn = RetryPolicy(max_attempts=3, retry_on=["ConnectionError"])
    assert only_conn.retries(Flaky()) and not only_conn.retries(ValueError())


def test_step_shorthands_and_handler_import() -> None:
    s = Step.model_validate({"id": "x", "handler": "json:dumps", "depends_on": "y", "retry": 4})
    assert s.handler is json.dumps and s.depends_on == ["y"] and s.retry.max_attempts == 4
    assert Plan(steps=[s]).to_data()["steps"][0]["handler"] == "json:dumps"
    with pytest.raises(WorkflowFileError, match="cannot be imported"):
        Step.model_validate({"id": "x", "handler": "no_such_module_zz:f"})
