"""The ``flowsight`` command."""

from __future__ import annotations

from flowsight.cli.main import main

__all__ = ["main"]
