"""Rich renderings of runs: the table, the live view, one run in detail;
the console for messages on stderr."""

from __future__ import annotations

import time
from datetime import datetime
from typing import IO, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from flowsight.errors import FlowsightError, NoSuchRun
from flowsight.model.durations import format_duration
from flowsight.model.runs.state import WorkflowState
from flowsight.model.runs.stall import BASIS_MEANS
from flowsight.query import RunDetail, RunView
from flowsight.store.database import safe_url
from flowsight.store.interface import Store

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


def state_text(v: RunView, short: bool = False) -> Text:
    """The run's state, STALLED after it; ``short``: STALLED alone (only a running run stalls)."""
    m = v.run
    if short and v.stalled:
        return Text("STALLED", style="bold white on red")
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
    grid.add_row(
        ProgressBar(total=100, completed=pct, width=16, complete_style=style, finished_style=style),
        Text(f"{label} {pct:3.0f}%"),
    )
    return grid


def progress_text(v: RunView) -> Text:
    """Progress without its bar: ``3/5 60%`` (``3 steps`` with no total)."""
    m = v.run
    if m.total_steps:
        pct = f" {m.percent_done:.0f}%" if m.percent_done is not None else ""
        return Text(f"{m.completed_steps}/{m.total_steps}{pct}")
    return Text(f"{m.completed_steps} steps", style="dim")


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


#: below this many columns the runs table shows short run ids and a narrower progress bar
NARROW = 120


#: what stands between the head and the tail of a shortened run id (``flowsight show`` takes ``..`` too)
ELLIPSIS = "…"


def short_ids(ids: list[str], least: int = 8, most: int = 12) -> dict[str, str]:
    """Each id cut to the shortest prefix (at least ``least`` characters) that
    no other id in ``ids`` begins with, as git shortens hashes. Where that
    would pass ``most`` characters (ids made in the same millisecond by one
    process differ only at their end) it is the first ``least`` characters,
    an ellipsis and the shortest tail that tells it apart. ``flowsight show``
    takes either form back."""
    out = {}
    for rid in ids:
        n = min(least, len(rid))
        while n < len(rid) and any(o != rid and o.startswith(rid[:n]) for o in ids):
            n += 1
        if n <= most or len(rid) <= most:
            out[rid] = rid[:n]
            continue
        head, alike = rid[:least], [o for o in ids if o != rid and o.startswith(rid[:least])]
        k = 4
        while k < len(rid) - least and any(o.endswith(rid[-k:]) for o in alike):
            k += 1
        out[rid] = head + ELLIPSIS + rid[-k:]
    return out


def clip(text: str, most: int) -> str:
    """``text`` cut to ``most`` characters at a word's end, with an ellipsis."""
    if len(text) <= most:
        return text
    cut = text[: most - 1].rsplit(" ", 1)[0] if " " in text[: most - 1] else text[: most - 1]
    return cut.rstrip(" ,;:") + "…"


def runs_table(
    views: list[RunView], title: str | None = None, empty: str = "no runs yet", width: int | None = None
) -> RenderableType:
    """The runs, one a row. ``width``: the console's columns; below
    :data:`NARROW` the run ids are shortened to a prefix unique among the
    rows (``flowsight show`` takes it), progress is written without its bar,
    the start time is left out, and the step or error column takes what is
    left and folds, so no other column collapses to an ellipsis. No runs:
    the ``empty`` line alone (under the title)."""
    if not views:
        line = Text(empty, style="dim")
        return Group(Text(title, style="italic"), line) if title else line
    narrow = width is not None and width < NARROW
    ids = short_ids([v.run.workflow_id for v in views]) if narrow else {}
    rows: list[list[Any]] = []
    for v in views:
        m = v.run
        dur = m.duration(v.now)
        dur_text = Text(format_duration(dur))
        if v.usual_duration and dur and m.state is WorkflowState.RUNNING and dur > 1.5 * v.usual_duration:
            dur_text.stylize("yellow")
        step = m.current_step or ("" if m.state.terminal else "-")
        if m.state is WorkflowState.FAILED and m.error:
            step = clip(m.error.splitlines()[0], 120 if narrow else 60)
        if narrow:
            rows.append(
                [
                    ids[m.workflow_id],
                    Text(m.workflow),
                    state_text(v, short=True),
                    progress_text(v),
                    step,
                    dur_text,
                    eta_text(v),
                ]
            )
        else:
            rows.append(
                [
                    m.workflow_id,
                    m.workflow,
                    state_text(v),
                    progress_cell(v),
                    step,
                    dur_text,
                    eta_text(v),
                    when(m.start_time),
                ]
            )
    columns = ("run", "workflow", "state", "progress", "step", "duration", "eta", "started")[: 7 if narrow else 8]
    if not narrow:
        table = Table(title=title, header_style="bold", expand=False)
        for col in columns:
            table.add_column(col, no_wrap=col in ("run", "state", "started"))
    else:
        # every column but the step keeps its text whole, the workflow's name as much
        # of it as leaves the step 20 columns; the step or error takes the rest and folds
        table = Table(
            title=title, header_style="bold", expand=True, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0)
        )
        fits = [
            max([len(col), *(c.cell_len if isinstance(c, Text) else len(c) for c in (r[i] for r in rows))])
            for i, col in enumerate(columns)
        ]
        others = sum(f for col, f in zip(columns, fits) if col not in ("workflow", "step"))
        room = (width or NARROW) - 2 * (len(columns) - 1) - others - 20
        for col, fit in zip(columns, fits):
            if col == "step":
                table.add_column(col, ratio=1, min_width=8, overflow="fold")
            elif col == "workflow":
                table.add_column(col, no_wrap=True, width=max(12, min(fit, room)), overflow="ellipsis")
            else:
                table.add_column(col, no_wrap=True, min_width=fit)
    for cells in rows:
        table.add_row(*cells)
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
    head.add_row(
        "duration",
        format_duration(m.duration(v.now))
        + (f"  (usual {format_duration(v.usual_duration)})" if v.usual_duration else ""),
    )
    if v.eta is not None:
        head.add_row("eta", Text.assemble(eta_text(v), f"  from {v.eta.basis}"))
    if v.stall is not None:
        basis = BASIS_MEANS.get(v.stall.basis, v.stall.basis)
        head.add_row(
            "idle", f"{format_duration(v.stall.idle_for)} (stall bound {format_duration(v.stall.bound)}: {basis})"
        )
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
        steps.add_row(
            s.step,
            str(s.attempt),
            Text(s.status, style=style),
            when(s.started_at),
            format_duration(dur),
            (s.error or "").splitlines()[0][:120] if s.error else "",
        )

    trans = Table(title="state history", header_style="bold", title_justify="left")
    for col in ("time", "from", "to", "reason", "source", "applied"):
        trans.add_column(col)
    for t in d.transitions:
        trans.add_row(
            datetime.fromtimestamp(t.timestamp).strftime("%H:%M:%S.%f")[:-3],
            t.old_state.value,
            Text(t.new_state.value, style=STATE_STYLE[t.new_state]),
            t.reason or "",
            t.source or "",
            "yes" if t.applied else Text("REFUSED", style="bold red"),
        )
    parts: list[Any] = [Panel(head, title=f"{m.workflow} run", expand=False), steps, trans]
    if d.faults:
        hurt = Table(title="faults around this run", header_style="bold", title_justify="left")
        for col in ("fault", "target", "severity", "opened", "resolved", "message"):
            hurt.add_column(col)
        for f in d.faults:
            hurt.add_row(
                Text(f.fault.kind.alertname, style="red" if f.resolved_at is None else ""),
                f.fault.target,
                f.severity.value,
                when(f.timestamp),
                when(f.resolved_at) if f.resolved_at is not None else Text("open", style="red"),
                f.fault.message.splitlines()[0][:120] if f.fault.message else "",
            )
        parts.append(hurt)
    failed = [s for s in d.steps if s.status == "failed" and s.traceback]
    if failed:
        last = failed[-1]
        parts.append(
            Panel(
                Text(last.traceback.rstrip(), style="red"),  # type: ignore[union-attr]
                title=f"traceback of step '{last.step}' (attempt {last.attempt})",
                expand=False,
            )
        )
    return Group(*parts)


def require_run_id(store: Store, given: str) -> str:
    """The id of the run ``given`` names (itself or a unique prefix).

    Raises:
        NoSuchRun: no run has it (the store is named).
        FlowsightError: the prefix fits several runs.
    """
    found = find_run_id(store, given)
    if found is None:
        raise NoSuchRun(
            f"no run {given!r} in the {store.dialect} store {safe_url(store.url)}; `flowsight runs` "
            "lists them (--db or FLOWSIGHT_DATABASE_URL picks the store)"
        )
    return found


def find_run_id(store: Store, given: str) -> str | None:
    """The id of the run ``given`` names: itself, or the one run whose id it
    begins (a short id typed at the command line); None when no run has it.

    Raises:
        FlowsightError: the prefix fits several runs (they are listed).
    """
    if store.runs.get_run(given) is not None:
        return given
    for mark in (ELLIPSIS, ".."):  # a shortened id: its head and its tail
        if mark in given:
            head, _, tail = given.partition(mark)
            found = store.runs.find_runs(head, limit=5, suffix=tail)
            break
    else:
        found = store.runs.find_runs(given, limit=5)
    if len(found) > 1:
        ids = ", ".join(r.workflow_id for r in found)
        raise FlowsightError(f"run {given!r} is ambiguous: it could be any of {ids}; type more of it")
    return found[0].workflow_id if found else None
