"""Masking secrets: default rules, secret-looking keys, user rules, and what is left alone."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from planweave.executor.masking import REDACTED, Masker
from planweave.tools import SetupError

R = REDACTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-abcdefghijklmnop1234 here", f"key {R} here"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstuv", f"anthropic {R}"),
        ("langfuse sk-lf-1234abcd-5678-90ef", f"langfuse {R}"),
        ("aws AKIAIOSFODNN7EXAMPLE", f"aws {R}"),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", f"google {R}"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", f"gh {R}"),
        ("slack xoxb-1234567890-abcdefghij", f"slack {R}"),
        ("hf hf_abcdefghijklmnopqrstuvwxyz", f"hf {R}"),
        ("Authorization: Bearer abcDEF123456789.xyz", f"Authorization: Bearer {R}"),
        ("authorization: basic dXNlcjpwYXNzd29yZA==", f"authorization: basic {R}"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", f"jwt {R}"),
        ("postgres://app:hunter2@db.internal:5432/x", f"postgres://app:{R}@db.internal:5432/x"),
        ("GET /v1/x?api_key=abcd1234&q=weather", f"GET /v1/x?api_key={R}&q=weather"),
        ('config {"password": "hunter2", "max_tokens": 5}', f'config {{"password": "{R}", "max_tokens": 5}}'),
        ("export CLIENT_SECRET=s3cr3t-value", f"export CLIENT_SECRET={R}"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY----- done",
            f"{R} done",
        ),
    ],
)
def test_default_rules_mask_secrets_in_text(text: str, expected: str) -> None:
    assert Masker().mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a basic understanding of Bearer tokens",
        "the token limit is 100 and max_tokens=200",
        "sk-short",
        "https://example.org/path?q=1",
        "password=",
        "risk-assessment-of-the-project",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Masker().mask(text) == text


def test_values_of_secret_looking_keys_are_masked_whatever_their_type() -> None:
    value = {
        "api_key": "plain",
        "password": 1234,
        "credentials": {"user": "ana", "pass": "x"},
        "headers": {"Authorization": "whatever", "X-Api-Key": "k", "Cookie": "c", "Accept": "text/html"},
        "accessToken": "t",
        "OPENAI_API_KEY": "z",
        "client_secret": "s",
        "basic_auth": ["a", "b"],
        "empty_token": "",
        "missing_password": None,
    }
    assert Masker().mask(value) == {
        "api_key": R,
        "password": R,
        "credentials": R,
        "headers": {"Authorization": R, "X-Api-Key": R, "Cookie": R, "Accept": "text/html"},
        "accessToken": R,
        "OPENAI_API_KEY": R,
        "client_secret": R,
        "basic_auth": R,
        "empty_token": "",  # nothing to hide
        "missing_password": None,
    }


def test_counters_and_ordinary_keys_are_not_secrets() -> None:
    value = {"max_tokens": 100, "input_tokens": 3, "token_count": 4, "token_type": "bearer", "author": "me",
             "session_id": "s1", "keyword": "k", "tokenizer": "bpe"}  # fmt: skip
    assert Masker().mask(value) == value


class Args(BaseModel):
    url: str
    api_key: str


@dataclass
class Call:
    args: Args
    note: str


def test_walks_lists_tuples_sets_models_and_dataclasses_without_changing_the_input() -> None:
    original: dict[str, Any] = {
        "calls": [Call(Args(url="https://x?token=abc123", api_key="k"), "Bearer abcdef123456")],
        "pair": ("sk-proj-abcdefghijklmnop1234", 1),
        "tags": {"ok"},
        "n": 1.5,
        "flag": True,
    }
    masked = Masker().mask(original)
    assert masked == {
        "calls": [{"args": {"url": f"https://x?token={R}", "api_key": R}, "note": f"Bearer {R}"}],
        "pair": (R, 1),
        "tags": ["ok"],
        "n": 1.5,
        "flag": True,
    }
    assert original["pair"][0] == "sk-proj-abcdefghijklmnop1234"
    assert original["calls"][0].args.api_key == "k"


def test_other_objects_are_returned_unchanged() -> None:
    marker = object()
    assert Masker().mask({"x": marker})["x"] is marker
    assert Masker().mask(b"bytes") == b"bytes"


def test_cycles_and_deep_nesting_end_at_max_depth() -> None:
    loop: list[Any] = []
    loop.append(loop)
    masked = Masker(max_depth=3).mask(loop)
    assert masked == [[[R]]]


def test_user_patterns_keys_and_values() -> None:
    masker = Masker(
        patterns=[r"ACME-\d{6}", r"order (?P<secret>\d+)"],
        keys=[r"^x-acme-"],
        values=["my-literal-secret", "abc"],  # "abc" is too short to be masked anywhere
    )
    text = "ref ACME-123456, order 991, my-literal-secret and abc"
    assert masker.mask(text) == f"ref {R}, order {R}, {R} and abc"
    assert masker.mask({"X-Acme-Tenant": "t1", "x-other": "t2"}) == {"X-Acme-Tenant": R, "x-other": "t2"}


def test_with_values_adds_literal_secrets_and_keeps_the_rest() -> None:
    base = Masker(patterns=[r"ACME-\d+"], replacement="***")
    masker = base.with_values("configured-key-123", None)
    assert masker.mask("ACME-1 configured-key-123") == "*** ***"
    assert base.mask("configured-key-123") == "configured-key-123"


def test_defaults_can_be_turned_off() -> None:
    masker = Masker(patterns=[r"ACME-\d+"], defaults=False)
    assert masker.mask({"password": "p", "text": "sk-proj-abcdefghijklmnop1234 ACME-1"}) == {
        "password": "p",
        "text": f"sk-proj-abcdefghijklmnop1234 {R}",
    }


def test_a_masker_is_callable_like_a_mask_function() -> None:
    masker = Masker()
    assert masker({"token": "t"}) == {"token": R}


def test_patterns_from_the_environment() -> None:
    assert Masker.from_env({"PLANWEAVE_MASK_PATTERNS": r"ACME-\d+"}).mask("ACME-7") == R
    masker = Masker.from_env({"PLANWEAVE_MASK_PATTERNS": r'["ACME-\\d+", "ZED-\\w+"]'})
    assert masker.mask("ACME-7 ZED-x") == f"{R} {R}"
    assert Masker.from_env({}).mask("ACME-7") == "ACME-7"


def test_bad_patterns_say_which_and_how_to_fix() -> None:
    with pytest.raises(SetupError) as exc:
        Masker(patterns=["(unclosed"])
    assert str(exc.value) == (
        "mask pattern `(unclosed` is not a valid regular expression (missing ), unterminated subpattern at "
        "position 0); fix it, or escape it with `re.escape`."
    )
    with pytest.raises(SetupError, match="is not a JSON list"):
        Masker.from_env({"PLANWEAVE_MASK_PATTERNS": "[not json"})
    with pytest.raises(SetupError, match="must be a JSON list of strings"):
        Masker.from_env({"PLANWEAVE_MASK_PATTERNS": "[1, 2]"})


def test_masking_imports_neither_the_planner_nor_an_llm_library() -> None:
    code = (
        "import sys, executor.masking\n"
        "bad = [m for m in sys.modules if m.startswith('planweave.planner') or m.split('.')[0] in ('litellm', 'instructor', 'langfuse', 'openai')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
