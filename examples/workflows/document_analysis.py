"""The eight-factor guide's document-analysis workflow, runnable offline.

    planweave exec examples/workflows/document_analysis.py

Steps call plain Python handlers; `Parallel` runs sentiment and entity extraction
side by side; a failure handler decides between retrying and failing.
"""

from __future__ import annotations

import re
from collections import Counter

from planweave.executor import Parallel, Recovery, RetryPolicy, Step, StepFailure, Workflow

DOCUMENT = (
    "Planweave plans graphs of tool calls. The executor runs independent steps in parallel, "
    "and Langfuse traces every decision. Users love the fast executor; nobody misses slow loops."
)
POSITIVE = {"love", "fast", "good", "great", "parallel"}
NEGATIVE = {"slow", "bad", "misses", "broken"}


def summarize(text: str) -> str:
    """First sentence of the text."""
    return re.split(r"(?<=[.!?])\s+", text.strip())[0]


def extract_topics(summary: str, top: int = 3) -> list[str]:
    """Most frequent long words of the summary."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]{5,}", summary)]
    return [w for w, _ in Counter(words).most_common(top)]


def analyze_sentiment(text: str) -> dict[str, int | str]:
    words = re.findall(r"[a-z]+", text.lower())
    score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    return {"score": score, "label": "positive" if score > 0 else "negative" if score < 0 else "neutral"}


def extract_entities(text: str) -> list[str]:
    return sorted(set(re.findall(r"\b[A-Z][a-z]+\b", text)) - {"The", "Users"})


def compile_report(topics: list[str], analysis: dict[str, object]) -> str:
    sentiment = analysis["sentiment"]
    entities = analysis["entities"]
    return f"topics: {', '.join(topics)} | sentiment: {sentiment} | entities: {entities}"


def handle_failure(failure: StepFailure) -> Recovery:
    """Retry what may pass on a second try; fail the workflow on anything else."""
    if isinstance(failure.error, (ConnectionError, TimeoutError)):
        return Recovery.retry(max_attempts=3, delay_s=0.1)
    return Recovery.fail()


workflow = Workflow(
    name="document_analysis",
    description="Summarise a document, then analyse it in parallel and compile a report.",
    inputs={"document": DOCUMENT},
    steps=[
        Step(
            id="summary",
            handler=summarize,
            args={"text": "${inputs.document}"},
            retry=RetryPolicy.exponential(max_attempts=3),
        ),
        Step(id="topics", handler=extract_topics, args={"summary": "${summary}"}),
        Parallel(
            id="analysis",
            steps=[
                Step(id="sentiment", handler=analyze_sentiment, args={"text": "${inputs.document}"}),
                Step(id="entities", handler=extract_entities, args={"text": "${inputs.document}"}),
            ],
        ),
        Step(id="report", handler=compile_report, args={"topics": "${topics}", "analysis": "${analysis}"}),
    ],
    success=["${report} != ''", "${analysis.sentiment.label} != 'negative'"],
    on_failure=handle_failure,
)
