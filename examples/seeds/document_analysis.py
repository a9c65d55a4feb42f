"""The eight-factor guide's document-analysis workflow, with a model doing the analysis.

    planweave exec examples/seeds/document_analysis.py --input document="$(cat report.txt)"
    planweave show RUN_ID        # each llm step's tokens and cost: the guide's `tokens_used`

Explicit steps and dependencies (`Parallel` for the guide's `ParallelStep`), a retry policy, a
failure handler choosing a `Recovery`, success criteria and resource limits, all declared.
Needs a model: PLANWEAVE_MODEL (e.g. openai/gpt-4o-mini) with its key, or `--model`.
"""

from __future__ import annotations

from planweave.executor import Limits, Parallel, Recovery, RetryPolicy, Step, StepFailure, Workflow

DOCUMENT = (
    "Planweave plans graphs of tool calls. Its executor runs independent steps in parallel, and "
    "Langfuse traces every decision. Early users love the fast executor; nobody misses slow loops."
)


def labelled(*labels: str) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}, "reason": {"type": "string"}},
        "required": ["label", "reason"],
    }


def handle_failure(failure: StepFailure) -> Recovery:
    """A provider's temporary trouble is retried; anything else fails the workflow."""
    if getattr(failure.error, "permanent", False) or failure.attempt >= 3:
        return Recovery.fail()
    return Recovery.retry(max_attempts=3)


workflow = Workflow(
    name="document_analysis",
    description="Summarise a document, extract its topics, sentiment and entities, and compile a report.",
    inputs={"document": DOCUMENT},
    limits=Limits(deadline_s=300, max_concurrency=4),
    success=["len(${topics.topics}) > 0", "${analysis.sentiment.label} != 'unknown'"],
    steps=[
        Step(id="summary", tool="llm", retry=RetryPolicy.exponential(max_attempts=3),
             args={"prompt": "Summarise this document in two sentences.", "context": "${inputs.document}"}),
        Step(id="topics", tool="llm", args={
            "prompt": "List the main topics of this summary.", "context": "${summary}",
            "output_schema": {"type": "object", "properties": {"topics": {"type": "array", "items": {"type": "string"}}},
                              "required": ["topics"]},
        }),
        Parallel(id="analysis", steps=[
            Step(id="sentiment", tool="llm", args={
                "prompt": "What is the sentiment of this document?", "context": "${inputs.document}",
                "output_schema": labelled("positive", "negative", "neutral", "unknown"),
            }),
            Step(id="entities", tool="llm", args={
                "prompt": "List the named entities (products, companies, people) in this document.",
                "context": "${inputs.document}",
                "output_schema": {"type": "object", "properties": {"entities": {"type": "array", "items": {"type": "string"}}},
                                  "required": ["entities"]},
            }),
        ]),
        Step(id="report", tool="llm", depends_on=["topics", "analysis"], args={
            "prompt": "Compile a short report (summary, topics, sentiment, entities) in Markdown.",
            "context": {"summary": "${summary}", "topics": "${topics.topics}", "analysis": "${analysis}"},
        }),
    ],
    on_failure=handle_failure,
)  # fmt: skip
