"""Tools: typed Python functions the executor can call by name.

    @tool
    def add(a: float, b: float) -> float:
        '''Add two numbers.'''
        return a + b

`add` is now a `Tool` with a name, a description (the docstring), a pydantic
argument model and JSON schema derived from the signature, and an output schema
derived from the return annotation.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints, overload

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import PydanticSerializationError, to_jsonable_python

from planweave.tools._schema import SCHEMA_CONTEXT as _SCHEMA_CONTEXT, SchemaProblem, schema_args_model, schema_problems
from planweave.tools.errors import (
    ToolArgumentsError,
    ToolDefinitionError,
    ToolNotFoundError,
    ToolOutputError,
)

__all__ = ["Tool", "ToolContext", "ToolProgress", "ToolRegistry", "tool", "format_validation_error"]

_ATOMS = frozenset({type(None), bool, int, float, str, bytes})
"""Immutable value types: a default of one of these can be shared between calls."""

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")  # what OpenAI and Anthropic accept


@dataclass(frozen=True, slots=True)
class ToolProgress:
    """What a tool reported while running: progress (`done` of `total`) or a partial output."""

    kind: str
    """`progress` (done/total/message) or `partial` (a piece of output before the final one)."""
    done: float | None = None
    total: float | None = None
    message: str | None = None
    partial: Any = None


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may know about the run calling it.

    A tool receives it by declaring a parameter annotated `ToolContext`; that
    parameter is injected by the executor and is not part of the argument schema.
    """

    run_id: str = ""
    step_id: str = ""
    attempt: int = 1
    goal: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """Outputs of the steps finished so far, by step id (read-only view)."""
    item: Any = None
    """The current item when the step runs `for_each`."""
    report: Callable[[ToolProgress], None] | None = None
    """Set by the executor: turns `progress` and `partial` into `step_progress` events."""

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Say how far the tool has got (`done` of `total`, in any unit); shown live and traced.

        Safe to call from a sync tool's worker thread; a no-op outside a run.
        """
        if self.report is not None:
            self.report(ToolProgress("progress", done=done, total=total, message=message))

    def partial(self, value: Any, message: str | None = None) -> None:
        """Hand out a piece of the output before the final one (tokens, rows, a page)."""
        if self.report is not None:
            self.report(ToolProgress("partial", message=message, partial=value))
    item_index: int | None = None
    """The current item's position when the step runs `for_each` (from 0)."""

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this step (retries, and runs again after a resume),
        different for each step and each `for_each` item: send it with a side effect (an
        `Idempotency-Key` header, a unique column) so that the outside world does it once."""
        item = "" if self.item_index is None else str(self.item_index)
        digest = hashlib.sha256(f"{self.run_id}\x1f{self.step_id}\x1f{item}".encode()).hexdigest()
        return f"pw-{digest[:32]}"
    emit: Callable[[Any], None] | None = None
    """Sends an event of the tool's own through the run's bus, in order with the run's events
    (a `RunEvent` of a layer above, e.g. the planner's `LLMCalled` for an `llm` step's usage,
    which the run store adds to the run's totals and the tracer shows under the step).
    Safe from a worker thread too. None outside a run."""
    model: str | None = None
    """The model the workflow names (`model:`), for tools that call one; None: their own default."""


def format_validation_error(exc: ValidationError) -> str:
    """Compact one-line-per-problem rendering of a pydantic error, for humans and LLMs."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        if err["type"] == "missing":
            parts.append(f"`{loc}` is required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"`{loc}` is not an argument of this tool")
        elif isinstance(err.get("ctx", {}).get("error"), SchemaProblem):  # says what it got already
            parts.append(f"`{loc}`: {err['ctx']['error']}")
        else:
            parts.append(f"`{loc}`: {err['msg']} (got {_short(err.get('input'))})")
    return "; ".join(parts)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """A docstring's description and per-parameter help (Google, reST/Sphinx, NumPy or Epydoc style)."""
    parsed = docstring_parser.parse(inspect.cleandoc(doc or ""))
    description = "\n\n".join(part for part in (parsed.short_description, parsed.long_description) if part)
    # Wrapped parameter help becomes one line: it ends up in a JSON schema `description`.
    params = {p.arg_name: " ".join(p.description.split()) for p in parsed.params if p.description}
    return description, params


@dataclass(frozen=True, eq=False)
class Tool:
    """A callable the executor can run by name, with validated arguments.

    Build one with the `@tool` decorator or `Tool.from_function`.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    is_async: bool
    context_param: str | None = None
    output_schema: dict[str, Any] | None = None
    blocking: bool = True
    """Sync tools run in a worker thread when True (the default), so they cannot stall other steps.
    Set False for trivial CPU-only functions to call them directly on the event loop."""
    input_schema: dict[str, Any] | None = None
    """The JSON schema a `from_schema` tool was built from (None for a Python function's tool)."""
    pure: bool = True
    """False for a tool with side effects (writing files, asking a person, approving): its calls
    are never cached, and a step asking to cache one is a plan error."""
    cache: bool | float | None = None
    """Cache this tool's results in every step that does not say otherwise (`Step.cache`):
    True keeps them until `planweave cache clear`, a number for that many seconds."""
    _version: str | None = dataclasses.field(default=None, repr=False)
    """The `version` given when building the tool (None: derived from the function's source)."""
    approval: bool = False
    """A person approves (or edits, or denies) each call before it runs (`planweave.executor.waiting`)."""
    _arg_names: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    _no_args: dict[str, Any] | None = dataclasses.field(default=None, init=False, repr=False)
    """`bind({})`'s keyword arguments once known to be the same every time (defaults that are atoms)."""
    backend: Literal["local", "ray"] = "local"
    """Where the tool asks to run: "ray" sends its calls to a Ray cluster when the executor has a
    `RayBackend` (any other backend runs it locally). Declaring `resources` implies "ray"."""
    resources: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """What one call needs on a Ray worker: `num_cpus`, `num_gpus`, `memory` (bytes) and any custom
    Ray resource by name. Empty: Ray's defaults (one CPU)."""

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        blocking: bool = True,
        pure: bool = True,
        cache: bool | float | None = None,
        version: str | None = None,
        approval: bool = False,
        backend: Literal["local", "ray"] | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> Tool:
        """Derive a tool from a typed function (sync or async).

        `backend`, `num_cpus`, `num_gpus`, `memory` and `resources` say where its calls may run
        (see `Tool.backend` and `Tool.resources`).
        """
        if isinstance(fn, Tool):
            return fn
        if not callable(fn):
            raise ToolDefinitionError(f"`{fn!r}` is not callable; pass a function to `tool`.")
        tool_name: str = name or str(getattr(fn, "__name__", ""))
        _check_cache(tool_name, pure, cache)
        if not _NAME_RE.match(tool_name):
            raise ToolDefinitionError(
                f"`{tool_name}` is not a valid tool name; use letters, digits, `_` or `-`, "
                "starting with a letter or `_`, at most 64 characters (pass `name=`)."
            )
        doc_desc, doc_params = _doc_parts(fn.__doc__ or "")
        try:
            hints = get_type_hints(fn, include_extras=True)
        except Exception as exc:  # unresolvable forward references
            raise ToolDefinitionError(f"tool `{tool_name}`: cannot resolve its type hints ({exc}).") from exc
        sig = inspect.signature(fn)
        fields: dict[str, Any] = {}
        context_param: str | None = None
        for pname, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool `{tool_name}`: `*{pname}`/`**{pname}` parameters are not supported; "
                    "declare each argument with a name and a type."
                )
            if param.kind is param.POSITIONAL_ONLY:
                raise ToolDefinitionError(
                    f"tool `{tool_name}`: parameter `{pname}` is positional-only; tools are called with keywords."
                )
            annotation = hints.get(pname, inspect.Parameter.empty)
            if annotation is ToolContext:
                context_param = pname
                continue
            if annotation is inspect.Parameter.empty:
                raise ToolDefinitionError(
                    f"tool `{tool_name}`: parameter `{pname}` has no type annotation; "
                    f"add one, e.g. `{pname}: str`."
                )
            default = ... if param.default is inspect.Parameter.empty else param.default
            help_text = doc_params.get(pname)
            fields[pname] = (annotation, Field(default, description=help_text) if help_text else default)
        model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", tool_name)) + "Args"
        args_model = create_model(
            model_name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False), **fields
        )
        output_schema: dict[str, Any] | None = None
        ret = hints.get("return", inspect.Parameter.empty)
        if ret not in (inspect.Parameter.empty, Any):
            try:
                if inspect.iscoroutinefunction(fn) and getattr(ret, "__origin__", None) is Awaitable:
                    ret = ret.__args__[0]
                output_schema = TypeAdapter(ret).json_schema(mode="serialization")
            except Exception:
                output_schema = None  # an output type pydantic cannot describe: references stay unchecked
        return cls(
            name=tool_name,
            description=(description or doc_desc or tool_name).strip(),
            fn=fn,
            args_model=args_model,
            is_async=inspect.iscoroutinefunction(fn),
            context_param=context_param,
            output_schema=output_schema,
            blocking=blocking,
            pure=pure,
            cache=cache,
            _version=version,
            approval=approval,
            _arg_names=tuple(fields),
            **_placement(tool_name, backend, num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, resources=resources),
        )

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        input_schema: Mapping[str, Any],
        call: Callable[[dict[str, Any], ToolContext], Awaitable[Any]],
        *,
        output_schema: Mapping[str, Any] | None = None,
    ) -> Tool:
        """A tool with no Python function behind it: its arguments are checked against
        `input_schema` (a JSON schema, e.g. an MCP server's), at plan time like any tool's, and
        `await call(args, context)` runs it with the arguments given.

            echo = Tool.from_schema(
                "echo", "Say it back.",
                {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
                lambda args, ctx: some_client.call("echo", args),
            )
        """
        if not _NAME_RE.match(name):
            raise ToolDefinitionError(
                f"`{name}` is not a valid tool name; use letters, digits, `_` or `-`, "
                "starting with a letter or `_`, at most 64 characters."
            )
        schema = dict(input_schema)
        args_model = schema_args_model(name, schema)

        async def run_call(**kwargs: Any) -> Any:
            context = kwargs.pop(_SCHEMA_CONTEXT)
            return await call(kwargs, context)

        return cls(
            name=name,
            description=(description or name).strip(),
            fn=run_call,
            args_model=args_model,
            is_async=True,
            context_param=_SCHEMA_CONTEXT,
            output_schema=dict(output_schema) if output_schema else None,
            input_schema=schema,
        )

    @property
    def version(self) -> str:
        """Part of a cached result's key: a new version makes earlier results misses. The
        given `version`, else a hash of the function's source (so editing it is a new version)."""
        if self._version is not None:
            return self._version
        try:
            source = inspect.getsource(self.fn).encode()
        except (OSError, TypeError):  # no source (built in a REPL, a C function): the bytecode
            code = getattr(self.fn, "__code__", None)
            source = code.co_code if code is not None else repr(self.fn).encode()
        derived = hashlib.sha256(source).hexdigest()[:16]
        object.__setattr__(self, "_version", derived)
        return derived

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the tool's arguments."""
        if self.input_schema is not None:
            return dict(self.input_schema)
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def describe(self) -> dict[str, Any]:
        """Name, description and argument schema: what a planner shows a model."""
        return {"name": self.name, "description": self.description, "parameters": self.json_schema}

    def validate_args(self, args: Mapping[str, Any]) -> BaseModel:
        """Validate `args` against the schema, raising `ToolArgumentsError` naming every problem."""
        try:
            return self.args_model.model_validate(args)
        except ValidationError as exc:
            raise ToolArgumentsError(
                f"arguments for tool `{self.name}` are invalid: {format_validation_error(exc)}.",
                tool=self.name,
            ) from exc

    def bind(self, args: Mapping[str, Any], context: ToolContext | None = None) -> dict[str, Any]:
        """Validated keyword arguments ready to pass to `fn` (context injected when declared)."""
        if self.input_schema is not None:
            kwargs = self._schema_kwargs(args)
        elif not args and self._no_args is not None:
            kwargs = dict(self._no_args)  # validating `{}` again would give the same defaults
        else:
            model = self.validate_args(args)
            kwargs = {name: getattr(model, name) for name in self._arg_names}
            if not args and self._defaults_are_static(kwargs):
                object.__setattr__(self, "_no_args", dict(kwargs))
        if self.context_param is not None:
            kwargs[self.context_param] = context if context is not None else ToolContext()
        return kwargs

    def _schema_kwargs(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """A `from_schema` tool's arguments, as given, once the whole JSON schema holds."""
        model = self.validate_args(args)
        kwargs = model.model_dump(by_alias=True, exclude_unset=True)
        assert self.input_schema is not None
        problems = schema_problems(self.input_schema, kwargs)
        if problems:
            raise ToolArgumentsError(
                f"arguments for tool `{self.name}` are invalid: {'; '.join(problems)}.", tool=self.name
            )
        return kwargs

    def _defaults_are_static(self, kwargs: Mapping[str, Any]) -> bool:
        """True when every default is a plain immutable value (no factory, no validation)."""
        if self.args_model.model_config.get("validate_default"):
            return False
        fields = self.args_model.model_fields
        return all(type(v) in _ATOMS for v in kwargs.values()) and all(
            f.default_factory is None and not f.validate_default for f in fields.values()
        )

    def to_output(self, value: Any) -> Any:
        """Convert a return value to JSON-compatible data (models become dicts)."""
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        try:
            return to_jsonable_python(value)
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise ToolOutputError(
                f"tool `{self.name}` returned a `{type(value).__name__}`, which is not JSON-serialisable; "
                "return JSON data, a pydantic model or a dataclass.",
                tool=self.name,
            ) from exc

    async def acall(self, args: Mapping[str, Any], context: ToolContext | None = None) -> Any:
        """Validate, call and convert the output; sync functions run in the calling thread."""
        kwargs = self.bind(args, context)
        if self.is_async:
            return self.to_output(await self.fn(**kwargs))
        return self.to_output(self.fn(**kwargs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly, unvalidated (handy in tests)."""
        return self.fn(*args, **kwargs)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    blocking: bool = True,
    pure: bool = True,
    cache: bool | float | None = None,
    version: str | None = None,
    approval: bool = False,
    backend: Literal["local", "ray"] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | None = None,
    resources: Mapping[str, float] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    blocking: bool = True,
    pure: bool = True,
    cache: bool | float | None = None,
    version: str | None = None,
    approval: bool = False,
    backend: Literal["local", "ray"] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | None = None,
    resources: Mapping[str, float] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function into a `Tool`: `@tool`, `@tool(name="...", blocking=False)`,
    `@tool(cache=3600)` (results reused for an hour), `@tool(pure=False)` (side effects: never cached).

    `approval=True`: every call waits until a person approves, edits or denies it (never cached).

    `@tool(num_cpus=2)` (or `num_gpus=`, `memory=` in bytes, `resources={"name": n}`, or just
    `backend="ray"`) asks for the tool's calls to run on a Ray cluster when the executor has a
    `RayBackend`; without one they run locally as usual.
    """
    if fn is not None:
        return Tool.from_function(fn)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            f, name=name, description=description, blocking=blocking, pure=pure and not approval, cache=cache,
            version=version, approval=approval, backend=backend,
            num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, resources=resources,
        )

    return wrap


def _check_cache(name: str, pure: bool, cache: bool | float | None) -> None:
    if cache is None or cache is False:
        return
    if not pure:
        raise ToolDefinitionError(
            f"tool `{name}` has side effects (`pure=False`) and cannot be cached: a cached call would "
            "skip them; remove `cache=`."
        )
    if cache is not True and (isinstance(cache, bool) or not isinstance(cache, (int, float)) or cache <= 0):
        raise ToolDefinitionError(
            f"tool `{name}`: `cache` must be True or a number of seconds above 0, not {cache!r}."
        )


class ToolRegistry:
    """Tools by name. Accepts tools or plain typed functions (wrapped with `@tool`)."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, item: Tool | Callable[..., Any], *, replace: bool = False) -> Tool:
        t = item if isinstance(item, Tool) else Tool.from_function(item)
        if t.name in self._tools and not replace and self._tools[t.name] is not t:
            raise ToolDefinitionError(
                f"a tool named `{t.name}` is already registered; rename one or pass `replace=True`."
            )
        self._tools[t.name] = t
        return t

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFoundError(name, self.suggest(name)) from None

    def suggest(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, list(self._tools), n=3, cutoff=0.7)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def catalogue(self) -> list[dict[str, Any]]:
        """Every tool's name, description and argument schema, sorted by name."""
        return [self._tools[n].describe() for n in self.names()]

    def merged(self, other: Iterable[Tool | Callable[..., Any]]) -> ToolRegistry:
        """A new registry with this one's tools plus `other` (which may replace same-named tools)."""
        new = ToolRegistry(self._tools.values())
        for t in other:
            new.register(t, replace=True)
        return new

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"


def _placement(
    tool_name: str,
    backend: str | None,
    *,
    num_cpus: float | None,
    num_gpus: float | None,
    memory: int | None,
    resources: Mapping[str, float] | None,
) -> dict[str, Any]:
    """`Tool`'s `backend` and `resources` fields from the decorator's arguments, checked."""
    wanted: dict[str, float] = dict(resources or {})
    for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory)):
        if value is not None:
            wanted[key] = value
    for key, value in wanted.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ToolDefinitionError(
                f"tool `{tool_name}`: resource `{key}` must be a number of at least 0, not {value!r}."
            )
    if backend not in (None, "local", "ray"):
        raise ToolDefinitionError(f"tool `{tool_name}`: `backend` must be \"local\" or \"ray\", not {backend!r}.")
    if backend == "local" and wanted:
        raise ToolDefinitionError(
            f"tool `{tool_name}`: resources ({', '.join(f'`{k}`' for k in wanted)}) are for Ray workers, "
            "but `backend` is \"local\"; drop `backend=\"local\"` or the resources."
        )
    if backend is None and not wanted:
        return {}  # the field defaults: a plain local tool
    return {"backend": "ray" if wanted else backend, "resources": wanted}
