"""Model access: every call goes through litellm; structured output through instructor.

litellm is imported lazily (it takes seconds), after `LITELLM_LOCAL_MODEL_COST_MAP`
is set so that importing it never downloads a price list.

What can never work is refused before any call (`LLMClient.check_ready`): a provider key
that is not set, a model name with no known provider, a cost budget on a model with no price.
Errors are classified by exception *type* (litellm's and the openai client's, found anywhere
in the exception's cause chain): transient ones (rate limit, timeout, 5xx, connection) are
retried with backoff by tenacity, then the fallback models are tried; a rejected key, an
unknown model or a refused request are never retried. Each failure becomes one planweave
error class saying the cause and the fix.

Every request sent to a provider gets its own `LLMCall` record (first tries, transient
retries, fallbacks, re-asks and failed requests alike) with its prompt's name/version/hash,
tokens, cost and latency, so `Usage.llm_calls` is what the provider received.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from planweave.planner.budget import check_usage
from planweave.planner.caching import mark_cache_prefix
from planweave.planner.tokens import count_tokens
from planweave.planner.errors import (
    APIKeyRejectedError,
    BudgetExceededError,
    LLMError,
    MissingAPIKeyError,
    ModelNotFoundError,
    ModelStreamError,
    ProviderError,
    ProviderUnreachableError,
    UnknownProviderError,
    UnpricedBudgetError,
)

if TYPE_CHECKING:
    from planweave.planner.budget import Budget

__all__ = ["LLMCall", "LLMClient", "LLMConfig", "Usage", "cache_tokens", "import_litellm"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

OFFLINE_MODEL = "planweave/offline"
OFFLINE_HINT = (
    "Answered by planweave's offline rule-based planner. To plan with a real model, set PLANWEAVE_MODEL "
    "or pass `--model` (for example `openai/gpt-4o-mini` with OPENAI_API_KEY, "
    "`anthropic/claude-3-5-haiku-latest` with ANTHROPIC_API_KEY, or `ollama/llama3.1` for a local Ollama)."
)
"""Said once per run by the CLI when the offline model answered; never part of the answer."""


_litellm_setup = threading.Lock()
_litellm_ready = False


def import_litellm() -> Any:
    """Import litellm once, offline-safe, with the offline model registered.

    Safe from several threads at once (the CLI and `serve` preload it on a worker thread)."""
    global _litellm_ready
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    with _litellm_setup:
        if not _litellm_ready:
            from planweave.planner.offline import OfflineLLM

            litellm.suppress_debug_info = True
            providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "planweave"]
            litellm.custom_provider_map = [*providers, {"provider": "planweave", "custom_handler": OfflineLLM()}]
            from litellm.utils import custom_llm_setup

            custom_llm_setup()  # type: ignore[no-untyped-call]
            _litellm_ready = True
    return litellm


# --- error classification, by type ---------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it was raised from. litellm wraps the openai client's errors (a refused
    connection arrives as litellm's `InternalServerError` raised from `openai.APIConnectionError`),
    and instructor wraps both, so the telling type may sit anywhere in the chain."""
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _find(exc: BaseException, types: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, types)), None)


def _provider_error(exc: BaseException) -> BaseException | None:
    """The provider's error behind `exc` (an `openai.APIError`, which litellm's errors subclass), if any."""
    import openai

    return _find(exc, openai.APIError)


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying the same model: a rate limit, a timeout, a 5xx or a connection failure, and
    never a rejected key or refused request (which litellm may also wrap in a 5xx type)."""
    import openai

    litellm = import_litellm()
    if _find(exc, BudgetExceededError) is not None or _permanent(exc):
        return False
    transient = (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
        openai.APIConnectionError,
        openai.RateLimitError,
        openai.InternalServerError,
    )
    return _find(exc, transient) is not None


def _permanent(exc: BaseException) -> bool:
    import openai

    permanent = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError, openai.BadRequestError)
    return _find(exc, permanent) is not None


@dataclass
class LLMCall:
    """One request sent to a model provider, as recorded in the run (and traced).

    Every request has its own record (first tries, transient retries, fallbacks, re-asks and
    failed requests alike), so counting records counts what the provider received."""

    purpose: str
    model: str
    prompt: dict[str, str]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    cached_input_tokens: int = 0
    """Of `input_tokens`, those read from the provider's prompt cache (billed at a discount)."""
    cache_write_tokens: int = 0
    """Of `input_tokens`, those written to the provider's prompt cache (Anthropic bills them at a premium)."""
    attempt: int = 1
    """Which try this request was for its model (2 and up: transient retries)."""
    reask: int = 0
    """0 for the first ask; n for the n-th re-ask after invalid output."""
    started_at: float = field(default_factory=time.time)
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None

    attempts: int = 1
    """Requests this record counts: always 1 (one record per request). Kept, with `reasks`,
    because event and result consumers add up `attempts + reasks`."""
    reasks: int = 0
    """Always 0: a re-ask is a request with its own record (see `reask`)."""
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    """Pairs the request's start (`on_start`, before it is sent) with its record (`on_call`)."""


class Usage(BaseModel):
    """Totals over a run's LLM requests. `cost_usd` is None when any request's price is unknown."""

    input_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    cost_usd: float | None = 0.0
    unpriced_calls: int = 0
    cached_input_tokens: int = 0
    """Of `input_tokens`, those read from a provider's prompt cache."""
    cache_write_tokens: int = 0
    """Of `input_tokens`, those written to a provider's prompt cache."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, call: LLMCall) -> None:
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.cached_input_tokens += call.cached_input_tokens
        self.cache_write_tokens += call.cache_write_tokens
        self.llm_calls += call.attempts + call.reasks
        if call.cost_usd is None:
            self.unpriced_calls += 1
            self.cost_usd = None
        elif self.cost_usd is not None:
            self.cost_usd += call.cost_usd


@dataclass
class LLMConfig:
    """Which model to call and how. Unset fields come from the environment."""

    model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    timeout_s: float = 120.0
    max_retries: int = 3
    """Tries per model for transient errors (rate limit, timeout, 5xx, connection reset)."""
    retry_delay_s: float = 0.5
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    """USD per million input and output tokens, for models litellm has no price for."""
    temperature: float | None = 0.0

    def resolved_model(self) -> str:
        return self.model or os.environ.get("PLANWEAVE_MODEL") or OFFLINE_MODEL

    def resolved_api_base(self) -> str | None:
        return self.api_base or os.environ.get("PLANWEAVE_API_BASE") or None


def _offline(model: str) -> bool:
    return model.startswith("planweave/")


class LLMClient:
    """Calls models through litellm and records every request. One per planner run.

    Creating one checks what can be checked without a call (`check_ready`): a missing key or an
    unknown provider fails here, at once, with no retries. `budget` (the run's) caps each
    request's `max_tokens` and stops retries and re-asks that would go over it.
    """

    def __init__(
        self,
        config: LLMConfig,
        on_call: Callable[[LLMCall], None] | None = None,
        *,
        budget: Budget | None = None,
        redact: Callable[[str], str] | None = None,
        on_start: Callable[[LLMCall], None] | None = None,
    ) -> None:
        self.config = config
        self.on_call = on_call
        self.on_start = on_start
        """Called with each request's record just before it is sent (a run records it first, so a
        request cut off by a crash is still counted)."""
        self.budget = budget
        self.redact = redact
        """Applied to the text of every message before it is sent (and recorded): the run's known
        secrets (`Masker.values_only`) never reach the model, whatever prompt they got into."""
        self.calls: list[LLMCall] = []
        self.usage = Usage()
        self.check_ready()

    def check_ready(self) -> None:
        """Refuse what can never work, before any call: raises `UnknownProviderError`,
        `MissingAPIKeyError` or `UnpricedBudgetError` (all `ConfigError`s)."""
        api_base = self.config.resolved_api_base()
        for model in self._models():
            if _offline(model):
                continue
            litellm = import_litellm()
            try:
                litellm.get_llm_provider(model, api_base=api_base)
            except litellm.BadRequestError as exc:
                raise UnknownProviderError(model) from exc
            if not self.config.api_key:
                env = litellm.validate_environment(model, api_base=api_base)
                # Only API keys: a provider's missing base URL or cloud credentials may have
                # defaults (Ollama's localhost, an AWS profile) that litellm does not check here.
                keys = [k for k in env.get("missing_keys", []) if k.endswith("_API_KEY")]
                if keys and not env.get("keys_in_environment"):
                    raise MissingAPIKeyError(model, keys, api_base)
            budget = self.budget
            if budget is not None and budget.max_cost_usd is not None and self.cost(model, 1000, 1000) is None:
                raise UnpricedBudgetError(model, budget.max_cost_usd)

    def _redacted(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        redact = self.redact
        if redact is None:
            return messages
        return [{**m, "content": redact(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]

    # --- bookkeeping -------------------------------------------------------------------------

    def _record(self, call: LLMCall) -> None:
        self.calls.append(call)
        self.usage.add(call)
        if self.on_call is not None:
            self.on_call(call)

    def _start(
        self, purpose: str, model: str, prompt: Mapping[str, str], messages: list[dict[str, Any]], attempt: int,
        reask: int = 0,
    ) -> LLMCall:
        """A record for a request about to be sent. A retry or re-ask that the budget has no
        room for raises `BudgetExceededError` instead (the first try is the run's to check)."""
        if self.budget is not None and (attempt > 1 or reask > 0):
            check_usage(self.budget, self.usage, before_call=True)
        return LLMCall(purpose=purpose, model=model, prompt=dict(prompt), messages=list(messages),
                       attempt=attempt, reask=reask)

    def _sending(self, call: LLMCall) -> None:
        """The request is about to go out: say so (nothing before this point was sent)."""
        call.started_at = time.time()
        if self.on_start is not None:
            self.on_start(call)

    def _fill(self, call: LLMCall, response: Any) -> None:
        usage = getattr(response, "usage", None)
        call.input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        call.output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        call.cached_input_tokens, call.cache_write_tokens = cache_tokens(usage)
        call.cost_usd = self.cost(call.model, call.input_tokens, call.output_tokens, usage=usage)
        call.latency_s = time.time() - call.started_at

    def _failed(self, call: LLMCall, exc: BaseException) -> None:
        """Record a request that got no answer: nothing was billed for it."""
        call.error = f"{type(exc).__name__}: {_short(exc)}"
        call.cost_usd = 0.0
        call.latency_s = time.time() - call.started_at
        self._record(call)

    def cost(self, model: str, input_tokens: int, output_tokens: int, *, usage: Any = None) -> float | None:
        """USD for one request; with the provider's `usage` (a litellm `Usage`), litellm's price map
        applies its prompt-cache discounts (cache reads cheaper, Anthropic's cache writes dearer)."""
        for name in (model, model.split("/", 1)[-1]):
            if name in self.config.prices:
                pin, pout = self.config.prices[name]
                return (input_tokens * pin + output_tokens * pout) / 1_000_000
        if _offline(model):
            return 0.0
        litellm = import_litellm()
        cache: dict[str, Any] = {}
        if usage is not None and any(cache_tokens(usage)):
            cache = {"usage_object": usage}
        for name in (model, model.split("/", 1)[-1]):
            try:
                pin, pout = litellm.cost_per_token(
                    model=name, prompt_tokens=input_tokens, completion_tokens=output_tokens, **cache
                )
                return float(pin + pout)
            except Exception:  # litellm raises a bare Exception for a model it has no price for
                continue
        return None

    def max_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        """The most output tokens the run's token and cost budgets still allow for one request
        (None: no such budget). A request whose prompt alone leaves no room for one output token
        is not sent: `BudgetExceededError` instead. So calls made one after another end a run over
        its token budget by no more than the provider's count of the last prompt exceeds the
        estimate (`_estimate_tokens`). Calls made at the same time (an `llm` step while the plan
        still streams, parallel `llm` steps) are each capped by what was left when they were sent,
        so together they may pass the budget by up to the others' caps."""
        budget = self.budget
        if budget is None or _offline(model):
            return None
        prompt_tokens = _estimate_tokens(messages)
        caps: list[int] = []
        if budget.max_tokens is not None:
            caps.append(budget.max_tokens - self.usage.total_tokens - prompt_tokens)
            if caps[-1] < 1:
                raise BudgetExceededError(
                    "max_tokens", limit=budget.max_tokens, used=self.usage.total_tokens,
                    message=f"the run used {self.usage.total_tokens} tokens; the next LLM call's prompt "
                            f"(about {prompt_tokens} tokens) would pass its budget of {budget.max_tokens}; "
                            "raise it (`--max-tokens`, `Budget(max_tokens=...)`)",
                )
        if budget.max_cost_usd is not None and self.usage.cost_usd is not None:
            per_million_out = self.cost(model, 0, 1_000_000)
            prompt_cost = self.cost(model, prompt_tokens, 0)
            if per_million_out and prompt_cost is not None:
                left = budget.max_cost_usd - self.usage.cost_usd - prompt_cost
                caps.append(int(left / per_million_out * 1_000_000))
                if caps[-1] < 1:
                    raise BudgetExceededError(
                        "max_cost_usd", limit=budget.max_cost_usd, used=self.usage.cost_usd,
                        message=f"the run cost ${self.usage.cost_usd:.4f}; the next LLM call's prompt "
                                f"would pass its budget of ${budget.max_cost_usd:.4f}; "
                                "raise it (`--max-cost`, `Budget(max_cost_usd=...)`)",
                    )
        return min(caps) if caps else None

    def _kwargs(self, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": model, "timeout": self.config.timeout_s, "num_retries": 0}
        api_base = self.config.resolved_api_base()
        if api_base and not _offline(model):
            kw["api_base"] = api_base
        if self.config.api_key:
            kw["api_key"] = self.config.api_key
        if self.config.temperature is not None and not _offline(model):
            kw["temperature"] = self.config.temperature
        cap = self.max_tokens(model, messages)
        if cap is not None:
            kw["max_tokens"] = cap
        return kw

    def _models(self) -> list[str]:
        return [self.config.resolved_model(), *self.config.fallbacks]

    # --- retries and fallbacks ---------------------------------------------------------------

    async def _retrying(self, send: Callable[[str, int], Awaitable[R]]) -> R:
        """`send(model, attempt)` with transient retries per model (tenacity), then the fallbacks.

        When every model failed, the configured model's failure is raised."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        failures: list[LLMError] = []
        for model in self._models():
            tries = 0
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(max(1, self.config.max_retries)),
                    wait=wait_exponential(multiplier=self.config.retry_delay_s, max=30)
                    + wait_random(0, self.config.retry_delay_s * 0.2),
                    retry=retry_if_exception(_is_transient),
                    reraise=True,
                ):
                    with attempt:
                        tries = attempt.retry_state.attempt_number
                        return await send(model, tries)
            except Exception as exc:
                stop = _find(exc, BudgetExceededError)
                if stop is not None:
                    raise stop from None
                if _provider_error(exc) is None:
                    raise
                failures.append(self._classify(model, exc, tries))
        raise failures[0]

    def _classify(self, model: str, exc: BaseException, attempts: int) -> LLMError:
        """The planweave error for a provider failure, chosen by the types in its cause chain."""
        import openai

        api_base = None if _offline(model) else self.config.resolved_api_base()
        provider = _provider_error(exc)
        status = getattr(provider, "status_code", None)
        error: LLMError
        if _find(exc, (openai.AuthenticationError, openai.PermissionDeniedError)) is not None:
            error = APIKeyRejectedError(model, status_code=status, env_var=self._key_var(model), api_base=api_base)
        elif _find(exc, openai.NotFoundError) is not None:
            error = ModelNotFoundError(model, api_base=api_base)
        elif _find(exc, openai.APITimeoutError) is not None:
            error = ProviderError(model, status_code=None, attempts=attempts, api_base=api_base,
                                  detail=f"no answer within {self.config.timeout_s:g}s")
        elif _find(exc, openai.APIConnectionError) is not None:
            error = ProviderUnreachableError(model, api_base=api_base, attempts=attempts)
        else:
            error = ProviderError(model, status_code=status, attempts=attempts, api_base=api_base,
                                  detail=_short(provider or exc, 160))
        error.__cause__ = exc
        return error

    def _key_var(self, model: str) -> str | None:
        """The variable the key most likely came from, for the message (None: given as `api_key=`)."""
        if self.config.api_key:
            return None
        try:
            provider = import_litellm().get_llm_provider(model)[1]
        except Exception:  # only for a message: any failure just leaves the variable unnamed
            return None
        return f"{str(provider).upper()}_API_KEY"

    # --- calls -------------------------------------------------------------------------------

    async def stream_json(
        self,
        messages: list[dict[str, Any]],
        schema_model: type[BaseModel],
        *,
        prompt: Mapping[str, str],
        purpose: str,
        tool_name: str = "plan",
        structured: bool = True,
    ) -> AsyncIterator[str]:
        """Stream a structured reply as JSON text deltas (tool-call arguments or content).

        With `structured=False` no tool schema is sent: the reply is the message content, in a
        syntax the prompt describes (plans written as lines). A stream that breaks off part-way
        raises `ModelStreamError` (the caller re-asks)."""
        messages = self._redacted(messages)
        litellm = import_litellm()
        tool = {
            "type": "function",
            "function": {
                "name": tool_name,
                "description": (schema_model.__doc__ or tool_name).strip(),
                "parameters": schema_model.model_json_schema(),
            },
        }

        async def open_stream(model: str, attempt: int) -> tuple[LLMCall, Any]:
            call = self._start(purpose, model, prompt, messages, attempt)
            kw = self._kwargs(model, messages)
            if structured and not _offline(model):
                kw["tools"] = [tool]
                kw["tool_choice"] = {"type": "function", "function": {"name": tool_name}}
            self._sending(call)
            try:
                stream = await litellm.acompletion(
                    messages=mark_cache_prefix(messages, model), stream=True, stream_options={"include_usage": True},
                    **kw,
                )
            except BaseException as exc:
                self._failed(call, exc)
                raise
            return call, stream

        call, stream = await self._retrying(open_stream)
        text: list[str] = []
        usage = None
        try:
            async for chunk in stream:
                u = getattr(chunk, "usage", None)
                if u is not None and getattr(u, "prompt_tokens", None):
                    usage = u
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                piece = ""
                if getattr(delta, "tool_calls", None):
                    for tc in delta.tool_calls:
                        fn = getattr(tc, "function", None)
                        if fn is not None and fn.arguments:
                            piece += fn.arguments
                if getattr(delta, "content", None):
                    piece += delta.content
                if piece:
                    text.append(piece)
                    yield piece
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            call.error = f"the stream broke: {type(exc).__name__}: {_short(exc)}"
            raise ModelStreamError(
                f"the reply of model `{call.model}` broke off part-way ({_short(exc, 160)}); re-asking.",
                model=call.model,
            ) from exc
        finally:
            call.latency_s = time.time() - call.started_at
            full = "".join(text)
            call.output = full
            if usage is not None:
                call.input_tokens = int(usage.prompt_tokens or 0)
                call.output_tokens = int(usage.completion_tokens or 0)
                call.cached_input_tokens, call.cache_write_tokens = cache_tokens(usage)
            else:  # the provider sent no usage: count with the model's tokenizer
                call.input_tokens = count_tokens(call.model, messages=messages)
                call.output_tokens = count_tokens(call.model, text=full) if full else 0
            call.cost_usd = self.cost(call.model, call.input_tokens, call.output_tokens, usage=usage)
            self._record(call)

    async def structured(
        self,
        messages: list[dict[str, Any]],
        response_model: type[T],
        *,
        prompt: Mapping[str, str],
        purpose: str,
        max_reasks: int = 2,
    ) -> T:
        """A validated pydantic object, via instructor (which re-asks on invalid output).

        Every request instructor sends (re-asks included) goes through this client, so each is
        recorded and capped by the budget."""
        messages = self._redacted(messages)
        litellm = import_litellm()
        import instructor

        async def send(model: str, attempt: int) -> T:
            pending: list[LLMCall] = []  # answered requests, recorded once their parse result is known
            sent = 0

            def flush() -> None:
                while pending:
                    self._record(pending.pop(0))

            def parse_failed(exc: Exception) -> None:
                if pending:
                    pending[-1].error = f"the reply did not validate: {_short(exc)}"

            async def completion(*args: Any, **kwargs: Any) -> Any:
                nonlocal sent
                flush()
                sent_messages = list(kwargs.get("messages") or messages)
                call = self._start(purpose, model, prompt, sent_messages, attempt, reask=sent)
                sent += 1
                cap = self.max_tokens(model, sent_messages)
                if cap is not None:
                    kwargs["max_tokens"] = cap
                self._sending(call)
                if isinstance(kwargs.get("messages"), list):
                    kwargs["messages"] = mark_cache_prefix(kwargs["messages"], model)
                try:
                    response = await litellm.acompletion(*args, **kwargs)
                except BaseException as exc:
                    self._failed(call, exc)
                    raise
                self._fill(call, response)
                pending.append(call)
                return response

            mode = instructor.Mode.JSON if _offline(model) else instructor.Mode.TOOLS
            client = instructor.from_litellm(completion, mode=mode)
            client.on("parse:error", parse_failed)
            try:
                result = await client.chat.completions.create(
                    response_model=cast(Any, response_model),
                    messages=cast(Any, messages),
                    max_retries=max_reasks + 1,
                    **self._kwargs(model, messages),
                )
                if pending:
                    pending[-1].output = result.model_dump(mode="json")
            finally:
                flush()
            return cast(T, result)

        try:
            return await self._retrying(send)
        except (LLMError, BudgetExceededError):
            raise
        except Exception as exc:
            # instructor gave up re-asking: the model's output never validated.
            raise LLMError(
                f"the model's {purpose} output stayed invalid after {max_reasks} re-asks: {_short(exc)}",
                model=self.config.resolved_model(),
            ) from exc

    async def text(self, messages: list[dict[str, Any]], *, prompt: Mapping[str, str], purpose: str) -> str:
        """A plain text completion (the `llm` tool)."""
        messages = self._redacted(messages)
        litellm = import_litellm()

        async def send(model: str, attempt: int) -> str:
            call = self._start(purpose, model, prompt, messages, attempt)
            kw = self._kwargs(model, messages)  # outside the `try`: a budget stop here sent nothing
            self._sending(call)
            try:
                response = await litellm.acompletion(messages=mark_cache_prefix(messages, model), **kw)
            except BaseException as exc:
                self._failed(call, exc)
                raise
            self._fill(call, response)
            content = str(response.choices[0].message.content or "")
            call.output = content
            self._record(call)
            return content

        return await self._retrying(send)


def cache_tokens(usage: Any) -> tuple[int, int]:
    """The prompt tokens read from and written to the provider's cache, from litellm's `Usage`.

    litellm normalises providers' shapes: OpenAI's `prompt_tokens_details.cached_tokens`, and
    Anthropic's `cache_read_input_tokens` / `cache_creation_input_tokens` (which it also keeps
    as attributes of the same names)."""
    if usage is None:
        return 0, 0
    details = getattr(usage, "prompt_tokens_details", None)
    read = getattr(usage, "cache_read_input_tokens", None) or getattr(details, "cached_tokens", None) or 0
    written = getattr(usage, "cache_creation_input_tokens", None) or getattr(details, "cache_creation_tokens", None) or 0
    return int(read), int(written)


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """About 4 characters a token, rounded up, over what a provider counts as the prompt: each
    message's text and the tool calls it carries (instructor's re-asks send them back)."""
    chars = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
        elif content is not None:
            chars += len(str(content))
        for call in m.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else getattr(call, "function", None)
            for key in ("name", "arguments"):
                value = function.get(key) if isinstance(function, dict) else getattr(function, key, None)
                chars += len(value) if isinstance(value, str) else 0
    return max(1, -(-chars // 4))


def _short(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."

