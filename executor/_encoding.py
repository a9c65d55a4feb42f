"""How a run store turns events into rows, and rows back into events (shared by every store).

`encode_events` masks each event, leaves out what the row's columns hold, stores large
values once as blobs (keyed by their SHA-256), and works out what the batch does to the
run's summary row; the store only runs the SQL. `decode_event` is the reverse, and
`blob_refs` finds the blobs a stored document points at (for collecting unused blobs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_json

from planweave.executor._leases import lease_live
from planweave.executor.events import (
    Noted,
    RunEvent,
    RunStarted,
    StepAdded,
    StepReady,
    StepStarted,
    StepSucceeded,
    build_noted,
)
from planweave.executor.plan import Step
from planweave.executor.store import RunSummary

__all__ = [
    "BLOB_FIELDS",
    "BLOB_THRESHOLD",
    "EncodedBatch",
    "Finish",
    "blob_refs",
    "decode_event",
    "dump_step",
    "dumps",
    "encode_events",
    "encode_step_runs",
]

BLOB_THRESHOLD = 512
"""Values whose JSON is longer than this many bytes are stored once, in `blobs`."""
BLOB_FIELDS = ("output", "args", "messages", "inputs", "step")
"""Event fields that may hold large values."""

Row = tuple[str, int, str, float, "str | None", str]
"""An `events` row: run id, seq, kind, at, step id, JSON data."""


@dataclass(slots=True)
class Finish:
    """A run-ending event's change to the summary row (texts already masked)."""

    status: str
    at: float
    error: str | None
    answer: str | None


@dataclass(slots=True)
class EncodedBatch:
    """One run's events of a batch, as rows, and what they change in its summary row."""

    rows: list[Row] = field(default_factory=list)
    last_seq: int = 0
    new_steps: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    """None when a model call's price was unknown."""
    started: tuple[float, str] | None = None
    """(time, goal) of the run's first `run_started` in the batch."""
    finishes: list[Finish] = field(default_factory=list)
    """Run-ending events, in order (the last one wins)."""

    @property
    def counts_changed(self) -> bool:
        return bool(self.new_steps or self.llm_calls or self.input_tokens or self.output_tokens or self.cost_usd != 0.0)


def encode_events(
    run_id: str,
    events: Iterable[RunEvent | Noted],
    *,
    seq: int,
    added: set[str],
    mask: Callable[[Any], Any] | None,
    blobs: dict[str, str],
) -> EncodedBatch:
    """Encode one run's events, numbered from `seq + 1`.

    `added` holds the step ids the run already has (updated in place: a step counts once);
    `blobs` collects new blobs (hash -> JSON) for the caller to insert.
    """

    def put(value: Any) -> dict[str, str]:
        text = dumps(value)
        digest = hashlib.sha256(text.encode()).hexdigest()
        blobs[digest] = text
        return {"$blob": digest}

    out = EncodedBatch()
    rows = out.rows
    specs = _SPECS
    for event in events:
        if isinstance(event, tuple):  # unbuilt (`Noted`): the usual ones are written from their fields
            kind, at, fields = event
            encode = _NOTED_ROWS.get(kind)
            if encode is not None and (row := encode(*fields)) is not None:
                seq += 1
                rows.append((run_id, seq, kind, at, row[0], row[1]))
                if kind == _STEP_ADDED and row[0] not in added:  # (the others change no summary)
                    added.add(row[0])
                    out.new_steps += 1
                continue
            event = build_noted(run_id, event)
        if type(event) is StepReady:
            continue  # transient: not stored (a ready step that never started is pending on resume)
        spec = specs.get(type(event)) or _spec(type(event))
        fast = spec.fast
        step_id: str | None
        if fast is not None and (row := fast(event)) is not None:
            # The usual step event, its JSON written directly (the same text as below).
            step_id, text = row
            data = _NO_DATA
        else:
            text, step_id, data = _encode_data(event, spec, mask, put)
        seq += 1
        at = event.at
        rows.append((run_id, seq, spec.kind, at, step_id, text))
        role = spec.role
        if role == _PLAIN_EVENT:
            continue
        if role == _ADDS_STEP:
            if step_id is not None and step_id not in added:
                added.add(step_id)
                out.new_steps += 1
            continue
        if role == _STARTS_RUN:
            if out.started is None:
                out.started = (at, str(data.get("goal", "") or ""))
            continue
        # Anything else counts as its class says (the planner's LLM calls, the end of a run).
        update = event.summary_update()
        if update is None:
            continue
        out.llm_calls += update.llm_calls
        out.input_tokens += update.input_tokens
        out.output_tokens += update.output_tokens
        cost = out.cost_usd
        out.cost_usd = None if cost is None or update.cost_usd is None else cost + update.cost_usd
        if update.status is not None:
            texts = {"error": update.error, "answer": update.answer}
            if mask is not None:
                texts = mask(texts)
            out.finishes.append(Finish(update.status, at, texts["error"], texts["answer"]))
    out.last_seq = seq
    return out


def encode_step_runs(run_id: str, events: Iterable[RunEvent | Noted], *, seq: int) -> list[Any] | None:
    """The rows of a few plain events of a step's run (its start and success), numbered from
    `seq + 1`, flattened into one INSERT's parameters (run id, seq, kind, at, step id, data per
    row): the rows `encode_events` writes, when they need nothing else (no masking, no blob, no
    summary change). None when one of them does: then `encode_events` is the way."""
    params: list[Any] = []
    for event in events:
        if isinstance(event, tuple):  # unbuilt (`Noted`): a step's start or success only
            kind, at, fields = event
            if kind == _STARTED:
                row = _started_row(*fields)
            elif kind == _SUCCEEDED:
                row = _succeeded_row(*fields)
            else:
                return None  # (`step_added` changes the summary: `encode_events` counts it)
        elif type(event) is StepStarted:  # (exactly: a subclass may have more fields)
            kind, at, row = event.kind, event.at, _fast_step_started(event)
        elif type(event) is StepSucceeded:
            kind, at, row = event.kind, event.at, _fast_step_succeeded(event)
        else:
            return None
        if row is None:
            return None
        seq += 1
        params += (run_id, seq, kind, at, row[0], row[1])
    return params


def _encode_data(
    event: RunEvent, spec: _Spec, mask: Callable[[Any], Any] | None, put: Callable[[Any], dict[str, str]]
) -> tuple[str, str | None, dict[str, Any]]:
    """An event's JSON text, its step id (a column) and its fields as stored (masked)."""
    if spec.custom:
        data = event.to_dict()
        del data["run_id"], data["at"], data["kind"]
    else:
        data = {name: getattr(event, name) for name in spec.names}
        if spec.step:
            step = data["step"]
            if isinstance(step, Step):  # as `RunEvent.to_dict` dumps it
                data["step"] = dump_step(step)
    # The columns hold the run id, kind, time and step id: the JSON keeps the rest.
    step_id = data.get("step_id")
    if isinstance(step_id, str):
        del data["step_id"]
    else:
        step_id = None
    if mask is not None and spec.content:
        _mask_content(data, spec.content, mask)
    if data:
        text = dumps(data)
        if len(text) > BLOB_THRESHOLD and spec.blobs:
            # Long strings first (the same text in a step's args, output and plan is kept
            # once), then whatever is still large as one piece.
            for key in spec.blobs:
                value = data.get(key)
                if value is not None and type(value) not in (int, float, bool) and _large(value):
                    value = _outline(value, put)
                    data[key] = put(value) if _large(value) else value
            text = dumps(data)
    else:
        text = "{}"
    return text, step_id, data


def summary_from_row(row: Sequence[Any], now: float) -> RunSummary:
    """A run's summary from its `runs` row, in the column order both stores select: a `running`
    run whose lease is not live (its owner died) reads `interrupted`."""
    (rid, kind, name, goal, status, created, finished, duration, steps, calls, tin, tout, cost, answer, error,
     meta, host, pid, owner, expires) = row
    if status == "running" and not lease_live(rid, owner, expires, host, pid, now):
        status = "interrupted"
    return RunSummary(
        id=rid, kind=kind, name=name, goal=goal, status=status, created_at=created, finished_at=finished,
        duration_s=duration, steps=steps, llm_calls=calls, input_tokens=tin, output_tokens=tout, cost_usd=cost,
        answer=answer, error=error, meta=json.loads(meta),
    )


def escape_like(text: str) -> str:
    """`text` matched literally by `LIKE ... ESCAPE '\\'`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def run_filters(
    mark: str, *, status: str | None, kind: str | None, name: str | None, contains: str | None, since: float | None
) -> tuple[str, list[Any]]:
    """The `WHERE` clause (or "") and parameters of `RunStore.list_runs`'s filters; `mark` is the
    driver's placeholder (`?`, `%s`). `running` and `interrupted` need `keep_status` afterwards."""
    where: list[str] = []
    params: list[Any] = []
    if kind:
        where.append(f"kind = {mark}")
        params.append(kind)
    if name:
        where.append(f"name = {mark}")
        params.append(name)
    if contains:
        where.append(f"(goal LIKE {mark} ESCAPE '\\' OR name LIKE {mark} ESCAPE '\\')")
        like = "%" + escape_like(contains) + "%"
        params += [like, like]
    if since is not None:
        where.append(f"created_at >= {mark}")
        params.append(since)
    if status == "interrupted":
        where.append("status IN ('running', 'interrupted')")
    elif status:
        where.append(f"status = {mark}")
        params.append(status)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def keep_status(runs: list[RunSummary], status: str | None, limit: int | None) -> list[RunSummary]:
    """`list_runs`'s result: a `running` row whose lease expired reads `interrupted`, so those two
    statuses are filtered on the summaries; then at most `limit`."""
    if status in ("running", "interrupted"):
        runs = [r for r in runs if r.status == status]
    return runs if limit is None else runs[:limit]


def decode_event(
    run_id: str, kind: str, at: float, step_id: str | None, text: str, get: Callable[[str], Any]
) -> dict[str, Any]:
    """An event's dict from its row; `get(hash)` returns a blob's value (already decoded)."""
    # Rows since schema 2 keep the run id, time, step id and kind in columns only; older
    # rows have them in the JSON too (the same values).
    data: dict[str, Any] = {"run_id": run_id, "at": at, "step_id": step_id} if step_id is not None else {"run_id": run_id, "at": at}
    data.update(json.loads(text))
    data["kind"] = kind
    for key in BLOB_FIELDS:
        if data.get(key) is not None:
            data[key] = inline(data[key], get)
    return data


def decode_blob(text: str, get: Callable[[str], Any]) -> Any:
    """A blob's value from its stored JSON (blobs may point at other blobs)."""
    return inline(json.loads(text), get)


def blob_refs(texts: Iterable[str]) -> set[str]:
    """The blob hashes the JSON documents `texts` point at."""
    used: set[str] = set()

    def walk(value: Any) -> None:
        if _is_ref(value):
            used.add(value["$blob"])
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for text in texts:
        walk(json.loads(text))
    return used


_PLAIN = frozenset(
    {"run_id", "at", "kind", "step_id", "tool", "attempt", "attempts", "duration_s", "delay_s", "deps", "error_type",
     "on_failure", "status", "round"}
)
"""Event fields that hold identifiers, numbers and states, never a user's text: not masked."""

_STEP_PLAIN = frozenset({"id", "tool", "depends_on", "retry", "timeout_s", "on_failure"})
"""Keys of a step (in `StepAdded`) that hold no user text: the rest (its arguments, ...) is masked."""

_PLAIN_EVENT, _ADDS_STEP, _STARTS_RUN, _COUNTS = range(4)
_STEP_ADDED, _STARTED, _SUCCEEDED = StepAdded.kind, StepStarted.kind, StepSucceeded.kind


class _Spec(NamedTuple):
    """How the writer stores events of one class (worked out once per class)."""

    kind: str
    names: tuple[str, ...]
    """Fields copied into the JSON (all but `run_id` and `at`, which have columns)."""
    custom: bool
    """The class has its own `to_dict` (called; the other fields are read directly)."""
    step: bool
    """The class has a `step` field (a `Step` is dumped as `RunEvent.to_dict` dumps it)."""
    content: tuple[str, ...]
    """Fields that may hold a secret: masked."""
    blobs: tuple[str, ...]
    """Fields that may hold a large value: stored once in `blobs` when they do."""
    role: int
    """What the event does to the run's summary row."""
    fast: Callable[[Any], tuple[str, str] | None] | None = None
    """Writes the usual event of the class directly: (step id, JSON text), the same text as the
    general way, or None when the event needs the general way (masking, blobs, odd values)."""


_SPECS: dict[type[RunEvent], _Spec] = {}


def _spec(cls: type[RunEvent]) -> _Spec:
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("run_id", "at"))
    if issubclass(cls, StepAdded):
        role = _ADDS_STEP
    elif issubclass(cls, RunStarted):
        role = _STARTS_RUN
    elif cls.summary_update is not RunEvent.summary_update:
        role = _COUNTS
    else:
        role = _PLAIN_EVENT
    spec = _SPECS[cls] = _Spec(
        kind=cls.kind,
        names=names,
        custom=cls.to_dict is not RunEvent.to_dict,
        step="step" in names,
        content=tuple(n for n in names if n not in _PLAIN),
        blobs=tuple(n for n in BLOB_FIELDS if n in names),
        role=role,
        fast=_FAST.get(cls),
    )
    return spec


# Fast encoders of the three events every step records (a step of a large graph records them
# thousands of times): they write the text the general way would, without building the dict,
# masking nothing (they decline any field that could hold a user's text) and calling the JSON
# encoder only for what is not an identifier or a plain number.

_JSON_STR: dict[str, str] = {}


def _json_str(text: str) -> str:
    """`dumps(text)`, remembered for the few short names a run repeats (tools)."""
    out = _JSON_STR.get(text)
    if out is None:
        out = dumps(text)
        if len(text) <= 64:
            if len(_JSON_STR) >= 4096:
                _JSON_STR.clear()
            _JSON_STR[text] = out
    return out


def _json_number(value: Any) -> str | None:
    """`dumps(value)` for None, a bool, an int or a float written the same by `repr`; else None."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value) if -(1 << 53) < value < (1 << 53) else None
    if kind is float:
        if 1e-4 <= value < 1e16:  # (the usual duration: `repr` writes it as pydantic-core does)
            return repr(value)
        text = repr(value)
        if "n" in text:
            return None  # (no JSON has inf or nan)
        return _exponent(text) if "e" in text else text  # (pydantic-core's shortest digits, its notation)
    return None


def _exponent(text: str) -> str:
    """A float's `repr` in exponent notation as pydantic-core writes it: `1e-6` for `1e-06`,
    `0.00001` for `1e-05`, `1e+16` as it is."""
    if text.endswith("e-05"):  # 1.25e-05 -> 0.0000125
        mantissa = text[:-4]
        if mantissa[0] == "-":
            return f"-0.0000{mantissa[1:].replace('.', '')}"
        return f"0.0000{mantissa.replace('.', '')}"
    return text.replace("e-0", "e-")


def _fast_step_added(event: StepAdded) -> tuple[str, str] | None:
    return _added_row(event.step_id, event.tool, event.step, event.deps)


def _added_row(step_id: Any, tool: Any, step: Any, deps: Any) -> tuple[str, str] | None:
    if type(step_id) is not str or type(tool) is not str or type(step) is not Step or type(deps) is not list:
        return None
    dumped = dump_step(step)
    if not _STEP_PLAIN.issuperset(dumped):
        return None  # arguments, a description, ...: masked the general way
    text = dumps({"tool": tool, "step": dumped, "deps": deps})
    return None if len(text) > BLOB_THRESHOLD else (step_id, text)


def _fast_step_started(event: StepStarted) -> tuple[str, str] | None:
    return _started_row(event.step_id, event.tool, event.attempt, event.args)


def _started_row(step_id: Any, tool: Any, attempt: Any, args: Any) -> tuple[str, str] | None:
    if type(step_id) is not str or type(tool) is not str or type(attempt) is not int or type(args) is not dict or args:
        return None  # (arguments are masked: the general way)
    text = f'{{"tool":{_json_str(tool)},"attempt":{attempt},"args":{{}}}}'
    return None if len(text) > BLOB_THRESHOLD else (step_id, text)


def _fast_step_succeeded(event: StepSucceeded) -> tuple[str, str] | None:
    return _succeeded_row(event.step_id, event.output, event.attempts, event.duration_s)


def _succeeded_row(step_id: Any, output: Any, attempts: Any, duration_s: Any) -> tuple[str, str] | None:
    if type(step_id) is not str or type(attempts) is not int:
        return None
    out = _json_number(output)  # (text, lists, ...: masked, perhaps a blob: the general way)
    duration = _json_number(duration_s)
    if out is None or duration is None:
        return None
    return step_id, f'{{"output":{out},"attempts":{attempts},"duration_s":{duration}}}'


_NOTED_ROWS: dict[str, Callable[..., tuple[str, str] | None]] = {
    StepAdded.kind: _added_row,
    StepStarted.kind: _started_row,
    StepSucceeded.kind: _succeeded_row,
}
"""The fast encoders of the kinds a recorder takes unbuilt (`Recorder.noted_kinds`), from the fields."""


_FAST: dict[type[RunEvent], Callable[[Any], tuple[str, str] | None]] = {
    StepAdded: _fast_step_added,
    StepStarted: _fast_step_started,
    StepSucceeded: _fast_step_succeeded,
}


def dump_step(step: Step) -> dict[str, Any]:
    """`step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})`, the same dict,
    several times faster for the usual step (fields of plain JSON values: read directly); any
    other value (a nested model, a tuple, an object, a non-finite float) takes pydantic's way."""
    given = frozenset(step.model_fields_set)
    fields = _FIELDS_TO_DUMP.get(given)
    if fields is None:
        fields = _fields_to_dump(given)
    values = step.__dict__
    out: dict[str, Any] = {}
    for name, default, model in fields:
        value = values[name]
        if model:
            if type(value) is type(default) and value.__dict__ == default.__dict__:
                continue
            return _pydantic_dump(step)
        if value is default or (value == default and type(value) is type(default)):
            continue
        if type(value) is not str and not _plain(value, 0):
            return _pydantic_dump(step)
        out[name] = value
    return out


def _pydantic_dump(step: Step) -> dict[str, Any]:
    return step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})


_REQUIRED = object()
_FIELDS_TO_DUMP: dict[frozenset[str], tuple[tuple[str, Any, bool], ...]] = {}


def _fields_to_dump(given: frozenset[str]) -> tuple[tuple[str, Any, bool], ...]:
    """(name, default, default is a pydantic model) of the fields of `Step` that a step whose
    set fields are `given` may hold other than their default, in declaration order: those set
    (assigning a field later adds it to the set), and those whose default could have been
    changed in place (a list, a dict). Worked out once for each set of fields."""
    fields = []
    for name, info in Step.model_fields.items():
        if name == "handler":
            continue
        default = info.get_default(call_default_factory=True)
        if default is PydanticUndefined:
            default = _REQUIRED
        immutable = isinstance(default, (str, int, float, bool, type(None), tuple, frozenset))
        if name in given or not immutable:
            fields.append((name, default, isinstance(default, BaseModel)))
    if len(_FIELDS_TO_DUMP) >= 1024:  # (a few shapes in practice)
        _FIELDS_TO_DUMP.clear()
    _FIELDS_TO_DUMP[given] = out = tuple(fields)
    return out


def _plain(value: Any, depth: int) -> bool:
    """Whether `value` is JSON as it is (pydantic's JSON mode would return it unchanged)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth > 32:
        return False
    if kind is list:
        for v in value:
            if type(v) is not str and not _plain(v, depth + 1):
                return False
        return True
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str or (type(v) is not str and not _plain(v, depth + 1)):
                return False
        return True
    return False


def _mask_content(data: dict[str, Any], content: tuple[str, ...], mask: Callable[[Any], Any]) -> None:
    """Mask, in place, the fields of `data` that can hold a secret (text, containers, objects)."""
    found: dict[str, Any] = {}
    for key in content:
        value = data.get(key)
        if value is None or type(value) in (int, float, bool) or (not value and type(value) in _EMPTY_OK):
            continue
        if key == "step" and type(value) is dict:
            rest = {k: v for k, v in value.items() if k not in _STEP_PLAIN}
            if rest:
                data[key] = {**value, **mask(rest)}
            continue
        found[key] = value
    if found:
        data.update(mask(found))


_EMPTY_OK = (str, dict, list, tuple)
_NO_DATA: dict[str, Any] = {}


def _large(value: Any) -> bool:
    """Whether `value`'s JSON is over `BLOB_THRESHOLD` bytes (then it holds what goes to `blobs`)."""
    if isinstance(value, str):
        return len(value) > BLOB_THRESHOLD
    if not value:
        return False
    try:
        return len(to_json(value, fallback=repr)) > BLOB_THRESHOLD
    except (ValueError, TypeError):
        return True



def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$blob"), str)


def _outline(value: Any, put: Callable[[Any], dict[str, str]]) -> Any:
    """`value` with every long string replaced by a blob reference."""
    if isinstance(value, str):
        return put(value) if len(value) > BLOB_THRESHOLD else value
    if isinstance(value, dict):
        return {k: _outline(v, put) for k, v in value.items()}
    if isinstance(value, list):
        return [_outline(v, put) for v in value]
    return value


def inline(value: Any, get: Callable[[str], Any]) -> Any:
    if _is_ref(value):
        return get(value["$blob"])
    if isinstance(value, dict):
        return {k: inline(v, get) for k, v in value.items()}
    if isinstance(value, list):
        return [inline(v, get) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON (pydantic-core's encoder: several times faster than `json.dumps` on the
    writer thread's small documents); anything JSON has no type for is stored as its repr."""
    try:
        return to_json(value, fallback=repr).decode()
    except (ValueError, TypeError):  # e.g. a circular container
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
