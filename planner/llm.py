"""Model access: every call goes through litellm; structured output through instructor.

litellm is imported lazily (it takes seconds), after `LITELLM_LOCAL_MODEL_COST_MAP`
is set so that importing it never downloads a price list. Transient provider
errors are retried with backoff, fallback models are tried in order, permanent
errors fail at once with what to set. Every call is recorded with its prompt's
name/version/hash, tokens, cost and latency.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from planweave.planner.errors import ConfigError, LLMError

__all__ = ["LLMCall", "LLMClient", "LLMConfig", "Usage", "import_litellm"]

T = TypeVar("T", bound=BaseModel)

OFFLINE_MODEL = "planweave/offline"
_TRANSIENT = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "MidStreamFallbackError",
)
_PERMANENT_HINTS = {
    "AuthenticationError": "the API key was rejected; set the provider's key (e.g. OPENAI_API_KEY) or pass `api_key=`",
    "NotFoundError": "the model was not found; check the model name (`PLANWEAVE_MODEL` or `model=`)",
    "PermissionDeniedError": "the key may not use this model; check the provider account",
    "BadRequestError": "the provider rejected the request",
    "ContextWindowExceededError": "the prompt is too long for this model; use a model with a larger context",
}


def import_litellm() -> Any:
    """Import litellm once, offline-safe, with the offline model registered."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    if not getattr(litellm, "_planweave_ready", False):
        from planweave.planner.offline import OfflineLLM

        litellm.suppress_debug_info = True
        providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "planweave"]
        litellm.custom_provider_map = [*providers, {"provider": "planweave", "custom_handler": OfflineLLM()}]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()  # type: ignore[no-untyped-call]
        litellm._planweave_ready = True
    return litellm


@dataclass
class LLMCall:
    """One model call as recorded in the run (and traced)."""

    purpose: str
    model: str
    prompt: dict[str, str]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    attempts: int = 1
    """Provider attempts (transient retries included)."""
    reasks: int = 0
    """Re-asks after invalid output (each is a full extra call, counted in the tokens)."""
    started_at: float = field(default_factory=time.time)
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None


class Usage(BaseModel):
    """Totals over a run's LLM calls. `cost_usd` is None when any call's price is unknown."""

    input_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    cost_usd: float | None = 0.0
    unpriced_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, call: LLMCall) -> None:
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
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


class LLMClient:
    """Calls models through litellm and records every call. One per planner run."""

    def __init__(self, config: LLMConfig, on_call: Callable[[LLMCall], None] | None = None) -> None:
        self.config = config
        self.on_call = on_call
        self.calls: list[LLMCall] = []
        self.usage = Usage()
        self._rng = random.Random()

    # --- bookkeeping -------------------------------------------------------------------------

    def _record(self, call: LLMCall) -> None:
        self.calls.append(call)
        self.usage.add(call)
        if self.on_call is not None:
            self.on_call(call)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        for name in (model, model.split("/", 1)[-1]):
            if name in self.config.prices:
                pin, pout = self.config.prices[name]
                return (input_tokens * pin + output_tokens * pout) / 1_000_000
        if model.startswith("planweave/"):
            return 0.0
        litellm = import_litellm()
        for name in (model, model.split("/", 1)[-1]):
            try:
                pin, pout = litellm.cost_per_token(model=name, prompt_tokens=input_tokens, completion_tokens=output_tokens)
                return float(pin + pout)
            except Exception:
                continue
        return None

    def _kwargs(self, model: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": model, "timeout": self.config.timeout_s, "num_retries": 0}
        api_base = self.config.resolved_api_base()
        if api_base and not model.startswith("planweave/"):
            kw["api_base"] = api_base
        if self.config.api_key:
            kw["api_key"] = self.config.api_key
        if self.config.temperature is not None and not model.startswith("planweave/"):
            kw["temperature"] = self.config.temperature
        return kw

    def _models(self) -> list[str]:
        return [self.config.resolved_model(), *self.config.fallbacks]

    async def _with_retries(self, fn: Callable[[str, int], Awaitable[Any]], call: LLMCall) -> Any:
        """Run `fn(model, attempt)` with transient retries per model, then the fallbacks."""
        errors: list[str] = []
        for model in self._models():
            call.model = model
            for attempt in range(1, self.config.max_retries + 1):
                try:
                    return await fn(model, attempt)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    name = type(exc).__name__
                    mro = {c.__name__ for c in type(exc).__mro__}
                    status = getattr(exc, "status_code", None)
                    hint = next((h for k, h in _PERMANENT_HINTS.items() if k in mro), None)
                    if status in (401, 403):
                        hint = _PERMANENT_HINTS["AuthenticationError"]
                    transient = hint is None and (bool(mro & set(_TRANSIENT)) or status in (408, 409, 429, 500, 502, 503, 504))
                    if not transient:
                        if hint is None:
                            raise
                        errors.append(f"`{model}`: {hint} ({_short(exc)})")
                        break
                    errors.append(f"`{model}` attempt {attempt}: {name}: {_short(exc)}")
                    if attempt < self.config.max_retries:
                        call.attempts += 1
                        delay = self.config.retry_delay_s * 2 ** (attempt - 1)
                        await asyncio.sleep(delay * self._rng.uniform(0.8, 1.2))
        call.error = "; ".join(errors)
        raise LLMError(
            f"the model call failed: {'; '.join(errors[-3:])}. "
            "Check the model name, key and API base, or add fallback models.",
            model=call.model,
        )

    # --- calls -------------------------------------------------------------------------------

    async def stream_json(
        self,
        messages: list[dict[str, Any]],
        schema_model: type[BaseModel],
        *,
        prompt: Mapping[str, str],
        purpose: str,
        tool_name: str = "plan",
    ) -> AsyncIterator[str]:
        """Stream a structured reply as JSON text deltas (tool-call arguments or content)."""
        litellm = import_litellm()
        call = LLMCall(purpose=purpose, model="", prompt=dict(prompt), messages=list(messages))
        t0 = time.perf_counter()
        tool = {
            "type": "function",
            "function": {
                "name": tool_name,
                "description": (schema_model.__doc__ or tool_name).strip(),
                "parameters": schema_model.model_json_schema(),
            },
        }

        async def open_stream(model: str, attempt: int) -> Any:
            kw = self._kwargs(model)
            if not model.startswith("planweave/"):
                kw["tools"] = [tool]
                kw["tool_choice"] = {"type": "function", "function": {"name": tool_name}}
            stream = await litellm.acompletion(
                messages=messages, stream=True, stream_options={"include_usage": True}, **kw
            )
            return stream

        stream = await self._with_retries(open_stream, call)
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
            raise LLMError(f"the model's stream broke off: {_short(exc)}", model=call.model) from exc
        finally:
            call.latency_s = time.perf_counter() - t0
            full = "".join(text)
            call.output = full
            if usage is not None:
                call.input_tokens = int(usage.prompt_tokens or 0)
                call.output_tokens = int(usage.completion_tokens or 0)
            else:  # the provider sent no usage: estimate, as litellm's token counter does
                call.input_tokens = _estimate_tokens(messages)
                call.output_tokens = max(1, len(full) // 4) if full else 0
            if call.model:
                call.cost_usd = self.cost(call.model, call.input_tokens, call.output_tokens)
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
        """A validated pydantic object, via instructor (which re-asks on invalid output)."""
        litellm = import_litellm()
        import instructor

        call = LLMCall(purpose=purpose, model="", prompt=dict(prompt), messages=list(messages))
        t0 = time.perf_counter()
        responses: list[Any] = []
        parse_errors: list[str] = []

        async def attempt(model: str, _: int) -> T:
            responses.clear()
            parse_errors.clear()
            mode = instructor.Mode.JSON if model.startswith("planweave/") else instructor.Mode.TOOLS
            client = instructor.from_litellm(litellm.acompletion, mode=mode)
            client.on("completion:response", responses.append)
            client.on("parse:error", lambda e: parse_errors.append(_short(e)))
            return await client.chat.completions.create(  # type: ignore[no-any-return]
                response_model=cast(Any, response_model),
                messages=cast(Any, messages),
                max_retries=max_reasks + 1,
                **self._kwargs(model),
            )

        try:
            result: T = await self._with_retries(attempt, call)
        except LLMError:
            raise
        except Exception as exc:
            # instructor gave up re-asking: the model's output never validated.
            call.error = f"{type(exc).__name__}: {_short(exc)}"
            raise LLMError(
                f"the model's {purpose} output stayed invalid after {max_reasks} re-asks: {_short(exc)}",
                model=call.model,
            ) from exc
        finally:
            call.latency_s = time.perf_counter() - t0
            call.reasks = max(0, len(responses) - 1)
            call.attempts = max(1, call.attempts)
            for r in responses:
                u = getattr(r, "usage", None)
                call.input_tokens += int(getattr(u, "prompt_tokens", 0) or 0)
                call.output_tokens += int(getattr(u, "completion_tokens", 0) or 0)
            if call.model:
                call.cost_usd = self.cost(call.model, call.input_tokens, call.output_tokens)
            self._record(call)
        call.output = result.model_dump(mode="json")
        return result

    async def text(self, messages: list[dict[str, Any]], *, prompt: Mapping[str, str], purpose: str) -> str:
        """A plain text completion (the `llm` tool)."""
        litellm = import_litellm()
        call = LLMCall(purpose=purpose, model="", prompt=dict(prompt), messages=list(messages))
        t0 = time.perf_counter()

        async def attempt(model: str, _: int) -> Any:
            return await litellm.acompletion(messages=messages, **self._kwargs(model))

        try:
            resp = await self._with_retries(attempt, call)
        finally:
            call.latency_s = time.perf_counter() - t0
        u = getattr(resp, "usage", None)
        call.input_tokens = int(getattr(u, "prompt_tokens", 0) or 0)
        call.output_tokens = int(getattr(u, "completion_tokens", 0) or 0)
        call.cost_usd = self.cost(call.model, call.input_tokens, call.output_tokens)
        content = resp.choices[0].message.content or ""
        call.output = content
        self._record(call)
        return str(content)


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    return max(1, sum(len(str(m.get("content", ""))) for m in messages) // 4)


def _short(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_model(config: LLMConfig) -> str:
    model = config.resolved_model()
    if not model:
        raise ConfigError("no model configured; set PLANWEAVE_MODEL or pass `model=`.")
    return model
