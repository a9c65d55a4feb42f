"""Secrets never leave masked (issue 12, item 5): through the real planner, store, tracer and CLI.

A run gets a secret input (`api_token`, a value with no known prefix) and a tool that needs it;
the environment holds a provider key with no known prefix (`ACME_API_KEY`); the tool echoes both,
as a provider's error page might. The model must see neither (a placeholder naming
`${inputs.api_token}` instead), the tool must get the real value, and the run store, the
Langfuse trace and the command line's output must show neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planweave.executor.masking import Masker, SecretInputs, is_secret_env_name, secret_env_values
from planweave.executor.store import open_store
from planweave.planner import Planner
from planweave.planner.testing import FakeModelServer, Reply
from planweave.planner.testing.otlp import OTLPReceiver
from planweave.planner.tracing.subscriber import TracingConfig
from planweave.tools import tool

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-9f8e7d6c5b4a39281706"  # a secret input's value: no prefix any pattern knows
ENV_KEY = "acme-7Hq2Lx9Wp4Zr8Tn3"  # ACME_API_KEY's value: no prefix either
DB_PASSWORD = "correct-horse-battery"  # inside a non-secret input, under a `password` key
DB_URL = "postgres://app:s3cr3t-pass-word@db.internal/app"  # a password inside a URL
CALLS: list[dict[str, Any]] = []


@tool
async def call_acme(token: str, db: dict[str, Any], url: str) -> str:
    """Call the ACME API."""
    CALLS.append({"token": token, "db": db, "url": url})
    return f"ACME: token {token} accepted, key {os.environ.get('ACME_API_KEY')} seen; db {url} pw {db['password']}"


PLAN = Reply.json_obj(
    {
        "rationale": "call the API with the token",
        "steps": [
            {
                "id": "call",
                "tool": "call_acme",
                "args": {"token": "${inputs.api_token}", "db": "${inputs.db}", "url": "${inputs.db_url}"},
            }
        ],
    }
)
FINISH = Reply.json_obj({"action": "finish", "answer": "ACME accepted the call.", "reason": ""})
INPUTS = {
    "api_token": TOKEN,
    "db": {"host": "db.internal", "password": DB_PASSWORD},
    "db_url": DB_URL,
    "city": "Paris",
}
SECRETS = (TOKEN, ENV_KEY, DB_PASSWORD, "s3cr3t-pass-word")


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


async def test_a_run_hides_secret_inputs_and_environment_keys_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", ENV_KEY)
    CALLS.clear()
    with FakeModelServer([PLAN, FINISH]) as model, OTLPReceiver() as receiver:
        tracing = TracingConfig(public_key="pk-lf-secrets", secret_key="sk-lf-secrets", base_url=receiver.url)
        planner = Planner(
            model="openai/fake-model", api_base=model.base_url, api_key="sk-fake", tools=[call_acme],
            store=tmp_path / "runs.db", tracing=tracing,
        )
        result = await planner.run("call ACME for me", inputs=INPUTS)
        assert result.ok, result.error
        spans = receiver.wait_for_spans(3)

    # The tool got the real values, through the references.
    assert CALLS == [{"token": TOKEN, "db": INPUTS["db"], "url": DB_URL}]

    # The model saw none of them: a placeholder naming each reference instead.
    plan_prompt, join_prompt = (json.dumps(r.body) for r in model.chat_requests)
    assert leaked(plan_prompt) == [] and leaked(join_prompt) == []
    for name in ("api_token", "db", "db_url"):
        assert f"write `${{inputs.{name}}}` where a tool needs it" in plan_prompt
    assert "Paris" in plan_prompt  # ordinary inputs are shown as they are
    assert "ACME: token [REDACTED] accepted, key [REDACTED] seen" in join_prompt  # the echo, masked

    # Nor the run store (events, outputs, LLM calls), nor the trace.
    exported = json.dumps(open_store(tmp_path / "runs.db").export(result.run_id))
    assert leaked(exported) == [] and "Paris" in exported
    assert leaked(json.dumps(spans, default=str)) == []
    assert leaked(json.dumps(receiver.spans, default=str)) == []


def test_the_command_line_records_and_prints_no_secret(tmp_path: Path) -> None:
    """`planweave exec` of a workflow with secret inputs and a tool that echoes them."""
    tools_py = tmp_path / "acme_tools.py"
    tools_py.write_text(
        "import os\nfrom planweave.tools import tool\n@tool\n"
        "async def call_acme(token: str, db: dict, url: str) -> str:\n"
        '    """Call the ACME API."""\n'
        "    return f\"ACME: token {token} key {os.environ['ACME_API_KEY']} pw {db['password']} {url}\"\n"
    )
    workflow = tmp_path / "acme.yaml"
    workflow.write_text(
        "name: acme\ninputs: {api_token: '', db: {}, db_url: ''}\nsteps:\n  - id: call\n    tool: call_acme\n"
        "    args: {token: '${inputs.api_token}', db: '${inputs.db}', url: '${inputs.db_url}'}\n"
    )
    home = tmp_path / "home"
    env = {**os.environ, "PLANWEAVE_HOME": str(home), "ACME_API_KEY": ENV_KEY}
    args = ["--input", f"api_token={TOKEN}", "--input", f"db={json.dumps(INPUTS['db'])}", "--input", f"db_url={DB_URL}"]
    for output in (["--json"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "planweave", "exec", str(workflow), "--tools", str(tools_py), *args, *output],
            capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert leaked(proc.stdout) == [] and leaked(proc.stderr) == [], proc.stdout
        if output:
            assert json.loads(proc.stdout)["steps"]["call"]["output"].startswith("ACME: token [REDACTED] key [REDACTED]")
    shown = subprocess.run(
        [sys.executable, "-m", "planweave", "runs", "--json"], capture_output=True, text=True, cwd=tmp_path,
        timeout=120, env=env,
    )
    run_ids = [r["id"] for r in json.loads(shown.stdout)]
    assert len(run_ids) == 2
    for run_id in run_ids:
        events = subprocess.run(
            [sys.executable, "-m", "planweave", "show", run_id, "--json"], capture_output=True, text=True,
            cwd=tmp_path, timeout=120, env=env,
        )
        assert events.returncode == 0 and "ACME: token [REDACTED]" in events.stdout
        assert leaked(events.stdout.replace("\\", "")) == [], [l for l in events.stdout.splitlines() if leaked(l)]
    # The store kept no secret input, so resuming the run asks for it instead of running without it.
    open_store(home / "runs.db").set_status(run_ids[0], "interrupted", error="interrupted by Ctrl-C")
    resumed = subprocess.run(
        [sys.executable, "-m", "planweave", "resume", run_ids[0]], capture_output=True, text=True, cwd=tmp_path,
        timeout=120, env=env,
    )
    assert resumed.returncode == 2
    assert resumed.stderr.strip() == (
        f"planweave: error: run `{run_ids[0]}` had secret inputs (`api_token`, `db`, `db_url`), which the run store "
        f"does not keep; run the workflow again with `planweave exec {workflow}` and those `--input`s."
    )


# --- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_AD_TOKEN", "WATSONX_APIKEY", "CLARIFAI_PAT", "SNOWFLAKE_JWT",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "HF_TOKEN", "LANGFUSE_SECRET_KEY",
        "GIGACHAT_CREDENTIALS", "DB_PASSWORD", "PGPASSWORD", "PLANWEAVE_API_KEY", "GITHUB_TOKEN", "ACME_API_KEY",
    ],
)
def test_credential_variables_are_recognised(name: str) -> None:
    assert is_secret_env_name(name)


@pytest.mark.parametrize(
    "name",
    ["MAX_TOKENS", "AWS_WEB_IDENTITY_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "SSH_AUTH_SOCK", "PATH", "HOME",
     "TOKENIZERS_PARALLELISM", "PASSWORD_STORE_DIR", "GENERIC_TOKEN_ENDPOINT", "LITELLM_LOCAL_MODEL_COST_MAP",
     "PWD", "OLDPWD"],
)
def test_other_variables_are_not(name: str) -> None:
    assert not is_secret_env_name(name)


def test_the_environment_keys_are_masked_by_value() -> None:
    env = {"ACME_API_KEY": ENV_KEY, "SHORT_TOKEN": "abc", "MAX_TOKENS": "4096000000", "HOME": "/home/ana"}
    assert secret_env_values(env) == [ENV_KEY]
    masker = Masker.from_env(env)
    assert masker.mask({"note": f"the provider said: key {ENV_KEY} is rate limited"}) == {
        "note": "the provider said: key [REDACTED] is rate limited"
    }
    assert masker.with_values("other-value").mask(ENV_KEY) == "[REDACTED]"


def test_secret_inputs_by_name_and_by_value() -> None:
    masker = Masker()
    secrets = SecretInputs(INPUTS | {"pages": 3, "empty_password": ""}, masker)
    assert secrets.names == {"api_token", "db", "db_url"}
    assert set(secrets.values) == {TOKEN, DB_PASSWORD, DB_URL}
    shown = secrets.for_prompt()
    assert shown["city"] == "Paris" and shown["pages"] == 3
    assert shown["api_token"] == (
        "[secret input: its value is hidden from you; write `${inputs.api_token}` where a tool needs it]"
    )
    assert masker.mask(f"echo {TOKEN}") == f"echo {TOKEN}"  # not yet remembered
    secrets.remember_in(masker)
    assert masker.mask(f"echo {TOKEN} and {DB_PASSWORD}") == "echo [REDACTED] and [REDACTED]"
    assert masker.values_only().mask_text(f"password: {TOKEN}") == "password: [REDACTED]"
    assert masker.values_only().mask_text("password: hunter22") == "password: hunter22"  # known values only
