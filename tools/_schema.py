"""Tools described by a JSON schema instead of a Python signature (`Tool.from_schema`).

The executor checks a step's static arguments at plan time with the tool's pydantic
`args_model`, dropping the problems of arguments that are `${...}` references (known only
at run time). So a schema tool gets a pydantic model too: one field per schema property,
each checked against that property's subschema by `jsonschema` (a maintained validator,
not a hand-written one), and required when the schema says so. The whole schema (its
`oneOf`, `dependentRequired`, ...) is checked again once every argument is known, just
before the call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from planweave.tools.errors import ToolDefinitionError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["SCHEMA_CONTEXT", "SchemaProblem", "schema_args_model", "schema_problems"]

SCHEMA_CONTEXT = "__planweave_context__"
"""The keyword a schema tool's function receives its `ToolContext` under (not a schema property)."""


@functools.lru_cache(maxsize=1024)
def _validator_for_text(schema_json: str) -> Validator:
    import json

    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _validator(schema: Mapping[str, Any]) -> Validator:
    import json

    return _validator_for_text(json.dumps(schema, sort_keys=True, default=str))


def schema_problems(schema: Mapping[str, Any], value: Any) -> list[str]:
    """Every way `value` breaks `schema`, one line each, naming the argument at fault."""
    problems = []
    for error in sorted(_validator(schema).iter_errors(value), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"`{where}`: {error.message}" if where else error.message)
    return problems


class SchemaProblem(ValueError):
    """A value breaks its JSON schema (a pydantic `value_error` whose text needs no prefix)."""


def _check_property(subschema: Mapping[str, Any], value: Any) -> Any:
    problems = schema_problems(subschema, value)
    if problems:
        raise SchemaProblem("; ".join(problems))
    return value


def schema_args_model(tool_name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model checking arguments property by property against `schema`."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ToolDefinitionError(
            f"tool `{tool_name}`: its input schema is not a valid JSON schema ({exc.message}); "
            "fix the schema the tool is declared with."
        ) from exc
    if schema.get("type", "object") != "object":
        raise ToolDefinitionError(
            f"tool `{tool_name}`: its input schema has type `{schema.get('type')}`; "
            "tool arguments are an object, so declare `\"type\": \"object\"` with `properties`."
        )
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    fields: dict[str, Any] = {}
    for i, (prop, subschema) in enumerate(properties.items()):
        check = functools.partial(_check_property, subschema if isinstance(subschema, Mapping) else {})
        annotation = Annotated[Any, AfterValidator(check)]
        # Field names are positional: a property may be named `schema`, `model_config` or `a-b`.
        default = ... if prop in required else None
        fields[f"p{i}"] = (annotation, Field(default, alias=prop))
    config = ConfigDict(extra="forbid" if schema.get("additionalProperties") is False else "allow")
    model_name = "".join(part.capitalize() for part in tool_name.replace("-", "_").split("_")) + "Args"
    return create_model(model_name, __config__=config, **fields)
