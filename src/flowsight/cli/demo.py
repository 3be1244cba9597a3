"""``flowsight demo``: real workflows in real processes, shown as they run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rich.console import Console, RenderableType
from rich.live import Live

from flowsight.cli.render import runs_table
from flowsight.demo.workflows import WORKFLOWS
from flowsight.query import Views
from flowsight.store.base import ENV_URL
from flowsight.store.database import safe_url
from flowsight.store.interface import Store

STALLER = "partner-sync"


def run_demo(store: Store, out: Console, *, live: bool = True, settle: float = 5.0) -> int:
    """Start every demo workflow in its own process, show them until all but
    the stalling one have ended and it is flagged stalled, then kill it
    (as an operator would) and print the final table."""
    env = {**os.environ, ENV_URL: store.url}
    started = time.time()
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "flowsight.demo.workflows", name], env=env) for name in WORKFLOWS
    }
    out.print(
        f"[bold]flowsight demo[/bold]: {len(procs)} workflows running in their own processes, "
        f"writing to [cyan]{safe_url(store.url)}[/cyan]"
    )

    def frame(title: str = "flowsight demo · live") -> RenderableType:
        page = store.runs.list_runs(since=started - 1, limit=30)
        return runs_table(Views(store, time.time()).views(page.runs), title=title, width=out.width)

    def done() -> bool:
        if any(p.poll() is None for n, p in procs.items() if n != STALLER):
            return False
        stuck = store.runs.list_runs(workflow=STALLER, since=started - 1, limit=1).runs
        return bool(stuck) and Views(store, time.time()).view(stuck[0]).stalled

    deadline = time.monotonic() + 120
    try:
        if live:
            with Live(frame(), console=out, refresh_per_second=4, transient=True) as view:
                while not done() and time.monotonic() < deadline:
                    time.sleep(0.25)
                    view.update(frame())
        else:
            while not done() and time.monotonic() < deadline:
                time.sleep(0.25)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
    out.print()
    out.print(frame("flowsight demo · the runs it made"))
    failed = [n for n, p in procs.items() if n not in (STALLER, "flaky-report") and p.returncode != 0]
    out.print(
        f"[dim]{STALLER} was killed with SIGKILL after going quiet: it stays 'running' in the store "
        "and is flagged STALLED.[/dim]"
    )
    out.print(
        "Next: [bold].venv/bin/flowsight runs[/bold], [bold].venv/bin/flowsight show RUN[/bold], "
        "[bold].venv/bin/flowsight watch[/bold] (or activate the venv: source .venv/bin/activate)"
    )
    if failed:
        out.print(f"[red]demo workflows exited badly: {', '.join(failed)}[/red]")
        return 1
    return 0
