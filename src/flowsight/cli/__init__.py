"""The ``flowsight`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``flowsight`` command. ``flowsight run`` starts without loading the
    rest of the command line (it runs in front of cron lines: its start is
    every run's cost)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "run" in args[:3]:
        from flowsight.cli.run import cmd_run, early_dispatch

        run_args = early_dispatch(args)
        if run_args is not None:
            return cmd_run(run_args)
    from flowsight.cli.main import main as full

    try:
        return full(args)
    except BrokenPipeError:  # `flowsight runs --json | head`: the reader left; so do we, without a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
