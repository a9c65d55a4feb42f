"""Langfuse tracing of planner and workflow runs (OpenTelemetry spans built from run events)."""
