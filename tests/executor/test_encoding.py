"""The shared event encoder: a step is stored exactly as pydantic dumps it, whichever way it is dumped."""

from __future__ import annotations

import math
import random
import struct

import pytest
from pydantic_core import PydanticSerializationError, to_json

from planweave.executor._encoding import (
    _encode_data,
    _json_number,
    _spec,
    dump_step,
    dumps,
    encode_events,
    encode_step_runs,
)
from planweave.executor.events import RunEvent, StepAdded, StepStarted, StepSucceeded
from planweave.executor.masking import Masker
from planweave.executor.plan import RetryPolicy, Step


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


STEPS = [
    Step(id="a", tool="t"),
    Step(id="a", tool="t", description="", approval=False, args={}, depends_on=[]),  # defaults given
    Step(id="a", tool="t", depends_on=["x"], args={"q": "${x.y}", "n": [1, 2.5, None, True, {"z": "w"}]}),
    Step(id="a", tool="t", cache=False, approval=True, timeout_s=3, description="d", when="${x} > 1",
         on_failure="continue", answer_within_s=9.5),
    Step(id="a", tool="t", retry=RetryPolicy()),  # a nested model equal to its default
    Step(id="a", tool="t", retry=RetryPolicy.exponential(3)),  # ... and one that is not: pydantic dumps it
    Step(id="a", tool="t", args={"pair": (1, 2)}),  # a tuple: pydantic's JSON mode makes it a list
    Step(id="a", tool="t", args={"inf": float("inf")}),
    Step(id="a", tool="t", args={"deep": [[[[{"k": ["v"]}]]]]}),
    Step(id="a", handler="json:dumps"),
]


@pytest.mark.parametrize("step", STEPS, ids=range(len(STEPS)))
def test_dump_step_is_pydantics_dump(step: Step) -> None:
    expected = step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
    dumped = dump_step(step)
    assert dumped == expected
    assert list(dumped) == list(expected)  # the same key order: the same stored JSON


def changed_after_validation() -> list[Step]:
    assigned = Step(id="a", tool="t")
    assigned.description = "set later"  # (pydantic counts an assigned field as set)
    assigned.approval = False  # assigned its default: still left out
    grown = Step(id="a", tool="t")
    grown.depends_on.append("x")  # a default list changed in place
    grown.args["k"] = "v"
    retried = Step(id="a", tool="t")
    retried.retry = RetryPolicy.exponential(3)
    return [assigned, grown, retried]


@pytest.mark.parametrize("step", changed_after_validation(), ids=range(3))
def test_a_step_changed_after_validation_is_dumped_as_pydantic_dumps_it(step: Step) -> None:
    expected = step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
    assert dump_step(step) == expected and list(dump_step(step)) == list(expected)


def test_a_value_pydantic_cannot_dump_fails_the_same_way() -> None:
    step = Step(id="a", tool="t", args={"obj": Opaque()})
    with pytest.raises(PydanticSerializationError):
        step.model_dump(mode="json", exclude_defaults=True, exclude={"handler"})
    with pytest.raises(PydanticSerializationError):
        dump_step(step)


def test_a_step_added_event_is_stored_as_its_to_dict_says() -> None:
    events = [StepAdded(run_id="r", step_id=s.id, tool=s.action, step=s, deps=["x"]) for s in STEPS[:4]]
    rows = encode_events("r", events, seq=0, added=set(), mask=None, blobs={}).rows
    for event, row in zip(events, rows, strict=True):
        expected = event.to_dict()
        del expected["run_id"], expected["at"], expected["kind"], expected["step_id"]
        assert row[5] == dumps(expected)


FAST_EVENTS = [
    *(StepAdded(run_id="r", step_id=s.id, tool=s.action, step=s, deps=["x"]) for s in STEPS[:6]),
    StepAdded(run_id="r", step_id="a", tool="t", step={"id": "a", "tool": "t"}, deps=[]),  # a plan file's dict
    StepStarted(run_id="r", step_id="a", tool="t", attempt=1),
    StepStarted(run_id="r", step_id="a", tool='odd "tool" \u00e9', attempt=2),
    StepStarted(run_id="r", step_id="a", tool="t", attempt=1, args={"key": "sk-secretsecretsecret1234"}),
    *(StepSucceeded(run_id="r", step_id="a", output=out, attempts=1, duration_s=d)
      for out in (None, True, False, 0, -7, 2**60, 1.5, 1e-5, -2.5e-7, 1e16, float("nan"), "sk-secretsecretsecret1234",
                  [1], {"a": 1})
      for d in (0.0001, 1e-05, 8.58306884765625e-06, 3.0, 12345.678)),
]


@pytest.mark.parametrize("event", FAST_EVENTS, ids=range(len(FAST_EVENTS)))
def test_the_fast_encoders_write_what_the_general_way_writes(event: RunEvent) -> None:
    masker = Masker.from_env()
    spec = _spec(type(event))
    assert spec.fast is not None
    general, step_id, _ = _encode_data(event, spec, masker, lambda value: {"$blob": "x"})
    fast = spec.fast(event)
    if fast is not None:  # (None: the event takes the general way, e.g. to be masked)
        assert fast == (step_id, general)
    rows = encode_events("r", [event], seq=0, added=set(), mask=masker, blobs={}).rows
    assert rows[0][4:] == (step_id, general)
    assert "sk-secret" not in rows[0][5]


def test_a_steps_plain_events_are_one_inserts_parameters_or_none() -> None:
    """`encode_step_runs` (a loop's one-statement commit) writes the rows `encode_events` writes,
    and declines any batch that needs more than rows (masking, a blob, a summary change)."""
    masker = Masker.from_env()
    plain = [e for e in FAST_EVENTS if type(e) in (StepStarted, StepSucceeded) and _spec(type(e)).fast(e) is not None]
    assert len(plain) > 20
    params = encode_step_runs("r", plain, seq=41)
    rows = encode_events("r", plain, seq=41, added=set(), mask=masker, blobs={}).rows
    assert params == [value for row in rows for value in row] and rows[0][1] == 42
    step = Step(id="a", tool="t")
    for odd in (StepStarted(run_id="r", step_id="a", tool="t", attempt=1, args={"q": "x"}),  # masked
                StepSucceeded(run_id="r", step_id="a", output="text", attempts=1, duration_s=1.0),  # masked
                StepAdded(run_id="r", step_id="a", tool="t", step=step, deps=[]),  # adds a step
                ("step_added", 1.0, ("a", "t", step, []))):  # ... unbuilt too
        assert encode_step_runs("r", [plain[0], odd], seq=0) is None


def test_unbuilt_events_are_stored_as_the_events_they_stand_for() -> None:
    """A recorder takes a step's start and success unbuilt (`Noted`): whatever their fields, the
    rows are those of the built events (masked, as blobs, ... the general way when needed)."""
    masker = Masker.from_env()
    built: list[RunEvent] = [e for e in FAST_EVENTS if type(e) in (StepStarted, StepSucceeded)]
    built.append(StepSucceeded(run_id="r", step_id="a", output="x" * 2000, attempts=2, duration_s=1.0))  # a blob
    built += [StepAdded(run_id="r", step_id=f"n{i}", tool=step.tool or "t", step=step, deps=sorted(step.depends_on))
              for i, step in enumerate(STEPS[:-1])]  # (arguments masked, a retry policy, ...: the general way)
    built.append(StepAdded(run_id="r", step_id="n0", tool="t", step=STEPS[0], deps=[]))  # a step counts once
    names = {StepStarted: ("step_id", "tool", "attempt", "args"), StepSucceeded: ("step_id", "output", "attempts", "duration_s"),
             StepAdded: ("step_id", "tool", "step", "deps")}
    unbuilt = [(e.kind, e.at, tuple(getattr(e, n) for n in names[type(e)])) for e in built]
    blobs_built: dict[str, str] = {}
    blobs_unbuilt: dict[str, str] = {}
    added_built, added_unbuilt = {"old"}, {"old"}
    batch = encode_events("r", built, seq=3, added=added_built, mask=masker, blobs=blobs_built)
    again = encode_events("r", unbuilt, seq=3, added=added_unbuilt, mask=masker, blobs=blobs_unbuilt)
    assert again.rows == batch.rows and again.last_seq == batch.last_seq
    assert again.new_steps == batch.new_steps == len(STEPS) - 1 and added_unbuilt == added_built
    assert blobs_unbuilt == blobs_built and len(blobs_built) == 1
    plain = [u for u, e in zip(unbuilt, built) if type(e) is not StepAdded and _spec(type(e)).fast(e) is not None]
    assert len(plain) > 20
    assert encode_step_runs("r", plain, seq=3) == [value for row in encode_events(
        "r", plain, seq=3, added=set(), mask=masker, blobs={}).rows for value in row]


def test_the_fast_encoders_take_the_usual_step_events() -> None:
    step = Step(id="a", tool="t", depends_on=["x"])
    for event in (StepAdded(run_id="r", step_id="a", tool="t", step=step, deps=["x"]),
                  StepStarted(run_id="r", step_id="a", tool="t", attempt=1),
                  StepSucceeded(run_id="r", step_id="a", output=None, attempts=1, duration_s=0.001)):
        fast = _spec(type(event)).fast
        assert fast is not None and fast(event) is not None


def test_numbers_are_written_as_pydantic_writes_them() -> None:
    """The fast encoders write floats themselves (a quick step's duration is often below 1e-4,
    which `repr` writes in exponent notation): the text is pydantic-core's, for any float."""
    rng = random.Random(11)
    values: list[float] = [1e-5, -1.25e-5, 9.999999999999999e-06, 8.58306884765625e-06, 1.5e-7, 1e-4, 1e16,
                           -1e16, 1.2345e20, 5e-324, 1e-300, 1.7976931348623157e308, 0.0, -0.0]
    for _ in range(20_000):
        values.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])  # any bit pattern
        values.append(rng.random() * 10.0 ** rng.randint(-12, 22) * rng.choice((1, -1)))
    for value in values:
        if math.isfinite(value):
            assert _json_number(value) == to_json(value).decode(), repr(value)
        else:
            assert _json_number(value) is None  # (no JSON has inf or nan: the general way decides)
