from __future__ import annotations

import json

import pytest

from pydantic import ValidationError

from planweave.executor import Plan, RetryPolicy, Step, load_workflow

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
    again = Plan.model_validate_json(PLAN.to_json())
    assert again == PLAN
    assert again.to_json() == PLAN.to_json()


def test_saved_plans_load_back_through_the_one_loader(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plan.yaml"
    PLAN.save(path)
    assert load_workflow(path).plan == PLAN
    (tmp_path / "plan.json").write_text(PLAN.to_json())
    assert load_workflow(tmp_path / "plan.json").plan == PLAN


def test_saved_form_leaves_defaults_out() -> None:
    data = json.loads(PLAN.to_json())
    assert data["steps"][0] == {
        "id": "fetch",
        "tool": "http_get",
        "args": {"url": "https://example.org"},
        "retry": {"max_attempts": 3, "jitter": 0.0},
    }


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
    with pytest.raises(ValidationError, match="handler `no_such_module_zz:f` cannot be imported"):
        Step.model_validate({"id": "x", "handler": "no_such_module_zz:f"})
