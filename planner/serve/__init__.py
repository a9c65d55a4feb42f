"""`planweave serve`: the OpenAI-compatible chat endpoint and the run-event stream over HTTP."""
