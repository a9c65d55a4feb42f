"""The planner's Python API: stream a run's events, then read the recorded run back.

With no model configured this uses the built-in offline model (no key, no network);
set PLANWEAVE_MODEL (e.g. openai/gpt-4o-mini) to plan with a real model.
"""

import asyncio

from planweave import Budget, Planner, open_store


async def main() -> None:
    planner = Planner(budget=Budget(max_seconds=60, max_cost_usd=0.05))
    run_id = ""
    async for event in planner.stream("what is 17 * 23 and compute 2 ** 8"):
        if event.kind == "step_succeeded":
            print(f"step {event.step_id} -> {event.output}")
        elif event.kind == "answer_delta":
            print(event.text, end="", flush=True)
        elif event.kind == "planner_finished":
            run_id = event.run_id
            print(f"\nstatus: {event.status}, LLM calls: {event.usage['llm_calls']}")

    record = open_store().get_run(run_id)  # every run is recorded under $PLANWEAVE_HOME
    print(f"recorded {len(record.events)} events; `planweave show {run_id}` draws the run")


asyncio.run(main())
