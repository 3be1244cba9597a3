"""The SDK: instrument Python code with runs and steps."""

from __future__ import annotations

from flowsight.sdk.client import Client, Run, Step, configure, current_run, flush, get_client, step, workflow

__all__ = ["Client", "Run", "Step", "configure", "current_run", "flush", "get_client", "step", "workflow"]
