"""Real instrumented workflows for ``flowsight demo`` (each runs in its own process)."""
