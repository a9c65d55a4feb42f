"""Errors raised by the planner. The whole tree is drawn in `planweave.tools.errors`.

Each way a model can fail has its own class, so that callers (and the run loop) act on the
type, never on the message; every message says the cause and the fix in one line, naming the
CLI flag and environment variable to change (`--model`/`PLANWEAVE_MODEL`,
`--api-base`/`PLANWEAVE_API_BASE`) or the provider's key variable.
"""

from __future__ import annotations

from planweave.tools.errors import ConfigError, RuntimeFailure

__all__ = [
    "APIKeyRejectedError",
    "BudgetExceededError",
    "ConfigError",
    "LLMError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "ModelStreamError",
    "PlanningError",
    "ProviderError",
    "ProviderUnreachableError",
    "UnknownProviderError",
    "UnpricedBudgetError",
]

_PICK_MODEL = "pick another model with `--model` or `PLANWEAVE_MODEL`"


class MissingAPIKeyError(ConfigError):
    """The model's provider needs a key that is not set; found before any call is made."""

    def __init__(self, model: str, env_vars: list[str], api_base: str | None = None) -> None:
        self.model = model
        self.env_vars = list(env_vars)
        self.env_var = self.env_vars[0]
        self.api_base = api_base
        names = " or ".join(self.env_vars)
        local = " (any non-empty value for a local server that needs no key)" if api_base else ""
        super().__init__(
            f"model `{model}` needs {names}, which is not set; set it{local}, or {_PICK_MODEL}."
        )


class UnknownProviderError(ConfigError):
    """litellm knows no provider for the model name; found before any call is made."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"model `{model}` names no provider litellm knows; write it as `provider/model` "
            f"(e.g. `openai/gpt-4o-mini`, `anthropic/claude-3-5-haiku-latest`, `ollama/llama3.1`) "
            f"with `--model` or `PLANWEAVE_MODEL`."
        )


class UnpricedBudgetError(ConfigError):
    """A cost budget was set for a model whose price is unknown, so it could not be kept."""

    def __init__(self, model: str, max_cost_usd: float) -> None:
        self.model = model
        self.max_cost_usd = max_cost_usd
        super().__init__(
            f"the cost budget of ${max_cost_usd:g} cannot be kept: planweave knows no price for model `{model}`; "
            f"register one with `Planner(prices={{'{model}': (usd_per_million_input, usd_per_million_output)}})`, "
            f"or limit tokens instead (`--max-tokens`, `Budget(max_tokens=...)`)."
        )


class LLMError(RuntimeFailure):
    """A model call failed for good: retries and fallbacks are exhausted, or the error is permanent."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        status_code: int | None = None,
        api_base: str | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.status_code = status_code
        self.api_base = api_base


def _at(api_base: str | None) -> str:
    return f" at `{api_base}`" if api_base else ""


class APIKeyRejectedError(LLMError):
    """The provider refused the key (HTTP 401 or 403). Never retried."""

    def __init__(
        self, model: str, *, status_code: int | None, env_var: str | None, api_base: str | None = None
    ) -> None:
        self.env_var = env_var
        key = f"check {env_var}" if env_var else "check the key given as `api_key=`"
        super().__init__(
            f"the provider{_at(api_base)} rejected the API key for model `{model}` (HTTP {status_code}); "
            f"{key}, or {_PICK_MODEL}.",
            model=model,
            status_code=status_code,
            api_base=api_base,
        )


class ModelNotFoundError(LLMError):
    """The provider answered that it has no such model (HTTP 404)."""

    def __init__(self, model: str, *, api_base: str | None = None) -> None:
        super().__init__(
            f"the provider{_at(api_base)} has no model `{model}` (HTTP 404); check the name given "
            f"with `--model` or `PLANWEAVE_MODEL`.",
            model=model,
            status_code=404,
            api_base=api_base,
        )


class ProviderUnreachableError(LLMError):
    """No connection to the provider could be made (refused, unknown host), retries included."""

    def __init__(self, model: str, *, api_base: str | None, attempts: int) -> None:
        self.attempts = attempts
        where = f"`{api_base}`" if api_base else f"the provider of `{model}`"
        fix = (
            "start the server or fix the URL given with `--api-base` or `PLANWEAVE_API_BASE`"
            if api_base
            else "check the network, or set the provider's URL with `--api-base` or `PLANWEAVE_API_BASE`"
        )
        super().__init__(
            f"cannot connect to {where} for model `{model}` ({_tries(attempts)}); {fix}.",
            model=model,
            api_base=api_base,
        )


class ProviderError(LLMError):
    """The provider kept failing (5xx, rate limit, timeout) or refused the request (4xx)."""

    def __init__(
        self, model: str, *, status_code: int | None, attempts: int, detail: str, api_base: str | None = None
    ) -> None:
        self.attempts = attempts
        self.detail = detail
        http = f"HTTP {status_code}" if status_code else "no answer"
        super().__init__(
            f"the provider{_at(api_base)} failed for model `{model}` ({http}, {_tries(attempts)}: {detail}); "
            f"try again later, add fallback models, or {_PICK_MODEL}.",
            model=model,
            status_code=status_code,
            api_base=api_base,
        )


class ModelStreamError(LLMError):
    """The model's streamed reply broke off part-way; the planner re-asks."""


def _tries(attempts: int) -> str:
    return f"{attempts} attempt{'' if attempts == 1 else 's'}"


class PlanningError(RuntimeFailure):
    """The model did not produce a valid plan within the allowed re-asks. `errors` holds the last problems."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class BudgetExceededError(RuntimeFailure):
    """A run reached one of its budgets: `budget` names which (`max_llm_calls`, `max_tokens`,
    `max_cost_usd`, `max_steps`, `max_replans`, `max_seconds`), `limit` is the budget and `used`
    what the run had used. The run ends with status `budget_exceeded` and a best-effort answer."""

    permanent = True
    """Never worth another attempt: a step whose `llm` call hit the budget is not retried."""

    def __init__(self, budget: str, *, message: str, limit: float | None = None, used: float | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.limit = limit
        self.used = used
