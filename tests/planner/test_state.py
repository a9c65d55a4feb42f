"""The planner's fold: the live run and its stored record say the same (steps, rounds, LLM
calls, usage, answer), and a stored run resumes from it."""

from __future__ import annotations

from planweave.planner import Planner
from planweave.planner.state import PlannerState, PlanningRound
from planweave.planner.testing import FakeModelServer, Reply
from planweave.tools import tool


@tool
async def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


async def test_the_stored_run_folds_to_the_live_state() -> None:
    live = PlannerState()
    with FakeModelServer() as server:
        server.enqueue(
            Reply.json_obj({"rationale": "first", "steps": [{"id": "x", "tool": "add", "args": {"a": 1, "b": 2}}],
                            "answer": None}),
            Reply.json_obj({"action": "replan", "answer": None, "reason": "check it"}),
            Reply.json_obj({"rationale": "again", "steps": [{"id": "y", "tool": "add", "args": {"a": "${x}", "b": 1}}],
                            "answer": None}),
            Reply.json_obj({"action": "finish", "answer": "It is 4.", "reason": "done"}),
        )
        p = Planner(model="openai/fake-model", api_base=server.base_url, api_key="sk-fake", tools=[add])
        result = await p.run("add", subscribers=[live.apply])
    assert result.status == "succeeded" and p.store is not None
    record = p.store.get_run(result.run_id)
    stored = record.state(PlannerState)
    for state in (live, stored):
        assert state.status == "succeeded" and state.answer == "It is 4."
        assert state.rounds == [
            PlanningRound(1, "first", ["x"], "replan", "check it"), PlanningRound(2, "again", ["y"], "finish", "done")
        ]
        assert (state.llm_calls, state.input_tokens) == (4, result.usage.input_tokens)
        assert {sid: s.status for sid, s in state.steps.items()} == {"x": "succeeded", "y": "succeeded"}
        assert state.outputs == {"x": 3, "y": 4}
    assert {sid: s.to_dict() for sid, s in stored.steps.items()} == {sid: s.to_dict() for sid, s in live.steps.items()}
    resume = record.resume_state(PlannerState)
    assert (resume.rounds, resume.replans) == (2, 1)
    assert (record.resume_state().rounds, record.resume_state().replans) == (0, 0)  # the executor's fold knows no rounds
