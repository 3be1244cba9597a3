"""Rich renderings of runs: the table, the live view, one run in detail;
the console for messages on stderr."""

from __future__ import annotations

import time
from datetime import datetime
from typing import IO, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from flowsight.errors import FlowsightError
from flowsight.model.durations import format_duration
from flowsight.model.state import WorkflowState
from flowsight.query import RunDetail, RunView
from flowsight.store.sql import SqlStore

STATE_STYLE = {
    WorkflowState.PENDING: "dim",
    WorkflowState.RUNNING: "bold cyan",
    WorkflowState.COMPLETED: "bold green",
    WorkflowState.FAILED: "bold red",
    WorkflowState.SUSPENDED: "bold yellow",
    WorkflowState.CANCELLED: "magenta",
}


def stderr_console(file: IO[str] | None = None) -> Console:
    """The console for messages on stderr (``file`` instead, for tests).

    On a terminal it wraps long lines for people. Anywhere else (a pipe, a
    file, a CI log) it never wraps: rich would break lines at 80 columns
    there, and a ``FILE:LINE: FIELD: message`` line must stay one line for
    grep, editors and CI annotations.
    """
    console = Console(stderr=True, file=file)
    if not console.is_terminal:
        console.soft_wrap = True
    return console


def print_error(console: Console, message: str) -> None:
    """``flowsight: MESSAGE`` -- the message as plain text, never as markup, so
    ``[[alerting.receivers]]`` in it is printed as written."""
    console.print(Text.assemble(("flowsight:", "bold red"), " ", message), highlight=False)


def state_text(v: RunView) -> Text:
    m = v.run
    text = Text(m.state.value, style=STATE_STYLE[m.state])
    if v.stalled:
        text.append(" STALLED", style="bold white on red")
    return text


def progress_cell(v: RunView) -> Table:
    m = v.run
    grid = Table.grid(padding=(0, 1))
    pct = m.percent_done
    total = m.total_steps
    label = f"{m.completed_steps}/{total}" if total else f"{m.completed_steps}"
    if pct is None:
        grid.add_row(Text(label + " steps", style="dim"))
        return grid
    style = "red" if m.state is WorkflowState.FAILED else "green" if m.state is WorkflowState.COMPLETED else "cyan"
    grid.add_row(ProgressBar(total=100, completed=pct, width=16, complete_style=style, finished_style=style),
                 Text(f"{label} {pct:3.0f}%"))
    return grid


def eta_text(v: RunView) -> Text:
    if v.eta is None:
        return Text("-", style="dim")
    conf = v.eta.confidence
    style = "green" if conf >= 0.6 else "yellow" if conf >= 0.3 else "dim"
    return Text(f"{format_duration(v.eta.seconds)} ({conf:.0%})", style=style)


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(ts)
    return dt.strftime("%H:%M:%S") if time.time() - ts < 86400 else dt.strftime("%Y-%m-%d %H:%M")


def runs_table(views: list[RunView], title: str | None = None, empty: str = "no runs yet") -> Table:
    table = Table(title=title, header_style="bold", expand=False)
    for col in ("run", "workflow", "state", "progress", "step", "duration", "eta", "started"):
        table.add_column(col, no_wrap=col in ("run", "state", "started"))
    for v in views:
        m = v.run
        dur = m.duration(v.now)
        dur_text = Text(format_duration(dur))
        if v.usual_duration and dur and m.state is WorkflowState.RUNNING and dur > 1.5 * v.usual_duration:
            dur_text.stylize("yellow")
        step = m.current_step or ("" if m.state.terminal else "-")
        if m.state is WorkflowState.FAILED and m.error:
            step = m.error.splitlines()[0][:40]
        table.add_row(m.workflow_id, m.workflow, state_text(v), progress_cell(v), step, dur_text,
                      eta_text(v), when(m.start_time))
    if not views:
        table.add_row("", Text(empty, style="dim"), "", "", "", "", "", "")
    return table


def detail_panel(d: RunDetail) -> Group:
    v = d.view
    m = v.run
    head = Table.grid(padding=(0, 2))
    head.add_row("run", m.workflow_id)
    head.add_row("workflow", m.workflow)
    head.add_row("state", state_text(v))
    head.add_row("progress", progress_cell(v))
    head.add_row("started", when(m.start_time))
    head.add_row("duration", format_duration(m.duration(v.now))
                 + (f"  (usual {format_duration(v.usual_duration)})" if v.usual_duration else ""))
    if v.eta is not None:
        head.add_row("eta", Text.assemble(eta_text(v), f"  from {v.eta.basis}"))
    if v.stall is not None:
        head.add_row("idle", f"{format_duration(v.stall.idle_for)} (stall bound {format_duration(v.stall.bound)}, "
                             f"{v.stall.basis})")
    if m.retries:
        head.add_row("retries", str(m.retries))
    if m.error:
        head.add_row("error", Text(m.error, style="red"))
    shown = {k: v for k, v in d.attrs.items() if k not in ("total_steps", "pid", "host")}
    if "host" in d.attrs or "pid" in d.attrs:
        head.add_row("process", f"{d.attrs.get('host', '?')} pid {d.attrs.get('pid', '?')}")
    if shown:
        head.add_row("attrs", ", ".join(f"{k}={v}" for k, v in sorted(shown.items())))

    steps = Table(title="steps", header_style="bold", title_justify="left")
    for col in ("step", "attempt", "status", "started", "duration", "error"):
        steps.add_column(col)
    for s in d.steps:
        style = {"completed": "green", "failed": "red", "running": "cyan"}.get(s.status, "")
        dur = s.duration if s.duration is not None else (v.now - s.started_at if s.started_at else None)
        steps.add_row(s.step, str(s.attempt), Text(s.status, style=style), when(s.started_at),
                      format_duration(dur), (s.error or "").splitlines()[0][:120] if s.error else "")

    trans = Table(title="state history", header_style="bold", title_justify="left")
    for col in ("time", "from", "to", "reason", "source", "applied"):
        trans.add_column(col)
    for t in d.transitions:
        trans.add_row(datetime.fromtimestamp(t.timestamp).strftime("%H:%M:%S.%f")[:-3], t.old_state.value,
                      Text(t.new_state.value, style=STATE_STYLE[t.new_state]), t.reason or "", t.source or "",
                      "yes" if t.applied else Text("REFUSED", style="bold red"))
    parts: list[Any] = [Panel(head, title=f"{m.workflow} run", expand=False), steps, trans]
    if d.faults:
        hurt = Table(title="faults around this run", header_style="bold", title_justify="left")
        for col in ("fault", "target", "severity", "opened", "resolved", "message"):
            hurt.add_column(col)
        for f in d.faults:
            hurt.add_row(Text(f.fault.kind.alertname, style="red" if f.resolved_at is None else ""),
                         f.fault.target, f.severity.value, when(f.timestamp),
                         when(f.resolved_at) if f.resolved_at is not None else Text("open", style="red"),
                         f.fault.message.splitlines()[0][:120] if f.fault.message else "")
        parts.append(hurt)
    failed = [s for s in d.steps if s.status == "failed" and s.traceback]
    if failed:
        last = failed[-1]
        parts.append(Panel(Text(last.traceback.rstrip(), style="red"),  # type: ignore[union-attr]
                           title=f"traceback of step '{last.step}' (attempt {last.attempt})", expand=False))
    return Group(*parts)


def find_run_id(store: SqlStore, given: str) -> str | None:
    """The id of the run ``given`` names: itself, or the one run whose id it
    begins (a short id typed at the command line); None when no run has it.

    Raises:
        FlowsightError: the prefix fits several runs (they are listed).
    """
    if store.get_run(given) is not None:
        return given
    found = store.find_runs(given, limit=5)
    if len(found) > 1:
        ids = ", ".join(r.workflow_id for r in found)
        raise FlowsightError(f"run {given!r} is ambiguous: it could be any of {ids}; type more of it")
    return found[0].workflow_id if found else None
