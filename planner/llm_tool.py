"""The `llm` tool for hand-written workflows and saved plans: text, or JSON of a given shape.

    tools = [*builtin_tools(), llm_tool()]            # model: the workflow's `model:`, else
    result = await workflow.run(tools)                 #   PLANWEAVE_MODEL, else the offline model

Each call makes its own `LLMClient` for the model it resolves (this tool's `model`, else the
workflow's, passed in `ToolContext.model`, else PLANWEAVE_MODEL, else the offline model) and
reports every request it sends as an `LLMCalled` event through `ToolContext.emit`, naming its
step: the run store adds the tokens and cost to the run's totals and the tracer draws a
generation under the step. The executor never imports this module; the CLI and the Python API
hand the tool to it like any other.

With `output_schema` (a JSON schema of an object), the answer is a JSON object of that shape,
validated through instructor, which re-asks the model when its output does not fit.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from planweave.executor.plan import Step
from planweave.planner.events import LLMCalled
from planweave.planner.llm import LLMCall, LLMClient, LLMConfig
from planweave.planner.prompts import PromptLibrary, as_data, new_data_tag
from planweave.tools.base import Tool, ToolContext
from planweave.tools.errors import ToolArgumentsError

__all__ = ["check_llm_steps", "llm_called", "llm_tool", "schema_model"]

_TOOL = "llm"
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}
_TYPES = ", ".join(["object", "array", *_SCALARS])


def llm_called(call: LLMCall, *, run_id: str, step_id: str | None = None) -> LLMCalled:
    """The event that records one request to a model (its tokens, cost and messages)."""
    output = call.output.model_dump(mode="json") if isinstance(call.output, BaseModel) else call.output
    return LLMCalled(
        run_id=run_id,
        step_id=step_id,
        purpose=call.purpose,
        model=call.model,
        prompt=call.prompt,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cost_usd=call.cost_usd,
        latency_s=call.latency_s,
        attempts=call.attempts,
        reasks=call.reasks,
        error=call.error,
        started_at=call.started_at,
        messages=call.messages,
        output=output,
    )


def llm_tool(
    model: str | None = None,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
    prompts: PromptLibrary | None = None,
    retry_delay_s: float = 0.5,
) -> Tool:
    """Build the `llm` tool for workflows and saved plans.

    Args:
        model: litellm model name; None: the workflow's `model:`, else PLANWEAVE_MODEL, else
            the offline model. Given, it overrides the workflow's (the CLI's `--model`).
        api_base: Base URL of an OpenAI-compatible server (else PLANWEAVE_API_BASE).
        api_key: The provider's key (else the provider's usual environment variable).
        prompts: Where the `llm_tool` prompt template comes from.
        retry_delay_s: First delay before retrying a transient provider error.
    """
    template = (prompts or PromptLibrary()).get("llm_tool")

    async def llm(
        prompt: str,
        context: Any = None,
        output_schema: dict[str, Any] | None = None,
        *,
        ctx: ToolContext,
    ) -> Any:
        """Ask a language model to summarise, compare, extract, analyse or write; pass earlier outputs as `context`.

        Args:
            prompt: What to do, in words.
            context: Data the model works on, typically `${step}` outputs.
            output_schema: A JSON schema of an object: the answer is then a JSON object of that shape, not text.
        """
        response_model = schema_model(output_schema) if output_schema is not None else None
        shown = None if context is None else as_data(_describe(context, 20_000), entry=False)  # context is data
        messages = template.messages(prompt=prompt, context=shown, data_tag=new_data_tag())
        config = LLMConfig(model=model or ctx.model, api_base=api_base, api_key=api_key, retry_delay_s=retry_delay_s)
        client = LLMClient(config, on_call=_reporter(ctx))
        if response_model is None:
            return await client.text(messages, prompt=template.ref, purpose="llm_tool")
        answer = await client.structured(messages, response_model, prompt=template.ref, purpose="llm_tool")
        return answer.model_dump(mode="json")

    # A cached `llm` step's key must change with the model: the one fixed here is part of the
    # tool's version, and the workflow's is part of the key (`planweave.executor.cache`).
    source_version = Tool.from_function(llm, name=_TOOL).version
    return Tool.from_function(llm, name=_TOOL, version=f"{source_version}:{model or ''}@{api_base or ''}")


def check_llm_steps(steps: Iterable[Step], *, model: str | None, workflow_model: str | None,
                    api_base: str | None = None) -> None:
    """Refuse, before anything runs, `llm` steps whose model can never answer (no key, no
    provider): `MissingAPIKeyError` or `UnknownProviderError` (`ConfigError`s). Nothing to check
    without `llm` steps: a workflow that calls no model needs no key."""
    if any(step.tool == _TOOL for step in steps):
        LLMClient(LLMConfig(model=model or workflow_model, api_base=api_base))


def _describe(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f" ... [truncated: {len(text) - limit} more characters]"


def _reporter(ctx: ToolContext) -> Callable[[LLMCall], None]:
    def report(call: LLMCall) -> None:
        if ctx.emit is not None:
            ctx.emit(llm_called(call, run_id=ctx.run_id, step_id=ctx.step_id or None))

    return report


# --- a JSON schema as a pydantic model, for instructor -------------------------------------------


def schema_model(schema: Mapping[str, Any], name: str = "Answer") -> type[BaseModel]:
    """A pydantic model accepting what `schema` (a JSON schema of an object) describes.

    Covers what an answer's shape needs: objects with `properties` and `required`, arrays with
    `items`, the scalar types, `enum`, a list of types, and `description`s (shown to the model).
    Raises `ToolArgumentsError` naming the part of the schema at fault.
    """
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping) or not schema["properties"]:
        raise ToolArgumentsError(
            "`output_schema` must be a JSON schema of an object with `properties`, e.g. "
            '{"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}.',
            tool=_TOOL,
        )
    model = _object(schema, name, "output_schema")
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model


def _object(schema: Mapping[str, Any], name: str, where: str) -> Any:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return dict[str, Any]
    required = schema.get("required", [])
    if not isinstance(required, list):
        raise ToolArgumentsError(f"`{where}.required` must be a list of property names.", tool=_TOOL)
    fields: dict[str, Any] = {}
    for key, sub in properties.items():
        if not isinstance(sub, Mapping):
            raise ToolArgumentsError(f"`{where}.properties.{key}` must be a schema (a mapping).", tool=_TOOL)
        annotation = _annotation(sub, f"{name}_{key}", f"{where}.properties.{key}")
        description = sub.get("description")
        if key in required:
            fields[str(key)] = (annotation, Field(..., description=description))
        else:
            fields[str(key)] = (annotation | None, Field(None, description=description))
    safe_name = "".join(ch if ch.isalnum() else "_" for ch in name) or "Answer"
    return create_model(safe_name, __config__=ConfigDict(extra="ignore"), **fields)


def _annotation(schema: Mapping[str, Any], name: str, where: str) -> Any:
    enum = schema.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not enum:
            raise ToolArgumentsError(f"`{where}.enum` must be a non-empty list of values.", tool=_TOOL)
        return Literal[tuple(enum)]
    kind = schema.get("type")
    if isinstance(kind, list):
        parts = [_annotation({**schema, "type": k}, name, where) for k in kind]
        union = parts[0]
        for part in parts[1:]:
            union = union | part
        return union
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(schema, name, where)
    if kind == "array":
        items = schema.get("items")
        inner = _annotation(items, name, f"{where}.items") if isinstance(items, Mapping) else Any
        return types.GenericAlias(list, (inner,))
    if kind is None:
        return Any
    if kind not in _SCALARS:
        raise ToolArgumentsError(f"`{where}`: unknown type `{kind}`; use one of {_TYPES}.", tool=_TOOL)
    return _SCALARS[kind]
