"""Celery runs from the broker's event stream, without touching the workers:
``flowsight celery watch --broker URL`` (workers started with ``-E``, or
``worker_send_task_events = True``).

The events say less than the worker's signals
(:mod:`flowsight.integrations.celery`), so two things are inferred:

* the workflow of a chain is the name of its first task when this watcher
  saw it; a watcher started in the middle of a chain names the run after the
  first task it sees of it;
* the events do not say which task is a chain's last: a run completes when
  every task of it that started has ended well and no new one has come for
  ``settle`` seconds (5 s by default; the next task of a chain is sent as the
  previous one ends, so it comes well within).

Both paths make the same facts with the same ids: a worker with the
integration imported and a watcher on the same broker report each fact once.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowsight.integrations.adapter import EngineAdapter

log = logging.getLogger("flowsight.celery")
#: a run with a task started and no news for this long is forgotten by the watcher (its worker was lost)
FORGET = 86400.0


@dataclass
class _Task:
    name: str
    run_id: str
    workflow: str
    attempt: int = 1


@dataclass
class _Run:
    workflow: str
    pending: set[str] = field(default_factory=set)  # tasks started (or to be retried) and not ended
    quiet_since: float = 0.0  # when its last task ended
    seen: float = 0.0  # its last event
    ended: bool = False


class EventMapper:
    """Celery task events (dicts, as ``EventReceiver`` hands them) as the
    adapter's facts. ``stall_timeout``: given to each run it starts."""

    def __init__(
        self,
        adapter: EngineAdapter,
        *,
        settle: float = 5.0,
        stall_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.adapter = adapter
        self.settle = settle
        self.stall_timeout = stall_timeout
        self.clock = clock
        self.tasks: dict[str, _Task] = {}
        self.runs: dict[str, _Run] = {}

    def on_event(self, ev: Mapping[str, Any]) -> None:
        kind = str(ev.get("type", ""))
        uuid = ev.get("uuid")
        if not kind.startswith("task-") or not uuid:
            return
        uuid = str(uuid)
        ts = float(ev.get("timestamp") or self.clock())
        if kind == "task-received":
            self._received(uuid, ev)
            return
        task = self.tasks.get(uuid)
        if task is None:  # received before this watcher started: what the event says
            task = self._received(uuid, ev)
        run = self.runs.setdefault(task.run_id, _Run(task.workflow))
        a = self.adapter
        run.seen = self.clock()
        if kind == "task-started":
            if task.run_id == uuid and task.attempt == 1:
                extra = {"stall_timeout": self.stall_timeout} if self.stall_timeout else {}
                a.run_started(task.workflow, task.run_id, ts=ts, celery_root_id=task.run_id, **extra)
            a.step_started(
                task.workflow, task.run_id, task.name, attempt=task.attempt, ts=ts, instance=uuid, celery_task_id=uuid
            )
            run.pending.add(uuid)
        elif kind == "task-succeeded":
            a.step_ended(task.workflow, task.run_id, task.name, "completed", attempt=task.attempt, ts=ts, instance=uuid)
            self._done(run, uuid)
        elif kind == "task-retried":
            error = str(ev.get("exception") or "retried")
            a.step_ended(
                task.workflow,
                task.run_id,
                task.name,
                "failed",
                attempt=task.attempt,
                ts=ts,
                error=error,
                retrying=True,
                instance=uuid,
            )
            task.attempt += 1  # still pending: its retry may come after a delay longer than settle
        elif kind == "task-failed":
            error = str(ev.get("exception") or "failed")
            a.step_ended(
                task.workflow, task.run_id, task.name, "failed", attempt=task.attempt, ts=ts, error=error, instance=uuid
            )
            a.run_ended(task.workflow, task.run_id, "failed", ts=ts, error=f"task {task.name} failed: {error}")
            run.ended = True
        elif kind == "task-revoked":
            why = f"terminated by signal {ev.get('signum')}" if ev.get("terminated") else "revoked"
            a.run_ended(task.workflow, task.run_id, "cancelled", ts=ts, reason=f"task {task.name} {why}")
            run.ended = True

    def _received(self, uuid: str, ev: Mapping[str, Any]) -> _Task:
        root = str(ev.get("root_id") or uuid)
        known = self.tasks.get(uuid)
        name = str(ev.get("name") or (known.name if known else "task"))
        run = self.runs.get(root)
        workflow = run.workflow if run is not None else name
        attempt = int(ev.get("retries") or 0) + 1
        task = self.tasks[uuid] = _Task(name, root, workflow, max(attempt, known.attempt if known else 1))
        if run is None:
            run = self.runs[root] = _Run(workflow)
        run.seen = self.clock()
        return task

    def _done(self, run: _Run, uuid: str) -> None:
        run.pending.discard(uuid)
        run.quiet_since = self.clock()

    def tick(self, now: float | None = None) -> None:
        """Complete the runs whose tasks all ended well and stayed quiet ``settle`` seconds; forget ended runs."""
        now = self.clock() if now is None else now
        for run_id, run in list(self.runs.items()):
            if not run.ended and not run.pending and run.quiet_since and now - run.quiet_since >= self.settle:
                self.adapter.run_ended(run.workflow, run_id, "completed", ts=run.quiet_since)
                run.ended = True
            if run.ended or now - run.seen > FORGET:  # a lost worker's run: stalled in the store; forgotten here
                del self.runs[run_id]
                for uuid in [u for u, t in self.tasks.items() if t.run_id == run_id]:
                    del self.tasks[uuid]


def watch(broker: str, mapper: EventMapper, *, stop: Callable[[], bool] = lambda: False) -> None:
    """Follow ``broker``'s task events into ``mapper`` until ``stop()``;
    reconnects when the broker goes away."""
    from celery import Celery  # type: ignore[import-untyped]  # celery ships no type information

    app = Celery("flowsight-watch", broker=broker)
    said = False
    while not stop():
        try:
            with app.connection() as conn:
                receiver = app.events.Receiver(conn, handlers={"*": mapper.on_event})
                said = False
                while not stop():
                    try:
                        for _ in receiver.itercapture(limit=None, timeout=1.0, wakeup=False):
                            mapper.tick()
                            if stop():
                                return
                    except socket.timeout:
                        pass
                    mapper.tick()
        except Exception as exc:  # noqa: BLE001 - the broker away (kombu's errors, OSError): try again
            if not said:
                log.warning("celery watch: the broker %s is not answering (%s); retrying", broker, exc)
                said = True
            time.sleep(1.0)
