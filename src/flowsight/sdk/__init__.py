"""The SDK: instrument Python code with runs and steps."""

from __future__ import annotations

from flowsight.sdk.client import Client, Run, Step, configure, current_run, expect, flush, get_client, step, workflow
from flowsight.sdk.logs import LogHandler

__all__ = [
    "Client",
    "LogHandler",
    "Run",
    "Step",
    "configure",
    "current_run",
    "expect",
    "flush",
    "get_client",
    "step",
    "workflow",
]
