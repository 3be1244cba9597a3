"""The one piece every engine integration goes through: an engine's facts
as flowsight events, with ids made of the facts.

An integration knows its engine's words (a Celery task, an Airflow task
instance, a Prefect task run); :class:`EngineAdapter` knows flowsight's (a
run and its steps, attempts, states). Each method says one fact, and the
event it makes has an id derived from the fact itself (engine, run, what
happened, step, attempt), so a fact delivered twice (a signal and the
broker's event stream, a message redelivered after a worker died, a retried
send) is a duplicate, never a second run or a second failure.

To add an engine: map its run to ``run_started`` / ``run_ended``, its units
of work to ``step_started`` / ``step_ended`` (``attempt`` counting from 1, a
retry being the next attempt of the same step), and hand the adapter a
``send`` (by default the SDK's client, whose transport spools to disk when
a server is away and never blocks the engine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.ids import fact_id

K = EventKind
#: how a run or a step ended, in flowsight's words
ENDS = {"completed": K.COMPLETED, "failed": K.FAILED, "cancelled": K.CANCELLED}
STEP_ENDS = {"completed": K.STEP_COMPLETED, "failed": K.STEP_FAILED}


class EngineAdapter:
    """Facts of ``engine`` as events, handed to ``send`` (default: the
    SDK's default client, :func:`flowsight.sdk.client.get_client`)."""

    def __init__(self, engine: str, send: Callable[[Event], None] | None = None) -> None:
        self.engine = engine
        self._send = send
        self._default = send is None
        if self._default:  # a forked child (a worker's task process) takes the SDK's client of its own
            os.register_at_fork(after_in_child=self._forget_sender)

    def _forget_sender(self) -> None:
        self._send = None

    def send(self, event: Event) -> None:
        if self._send is None:  # first use in this process: the SDK's default client
            from flowsight.sdk.client import get_client

            client = get_client()
            client.start()
            self._send = client.send
        self._send(event)

    def flush(self, timeout: float) -> None:
        """Wait at most ``timeout`` for what was said to be stored, or safe in
        the spool of a server (sent by the next process): for a process about
        to end without running its exit handlers (a forked task process)."""
        if self._default and self._send is not None:
            from flowsight.sdk.client import get_client

            get_client().flush(timeout, spooled=True)

    def fact_id(self, *parts: object) -> str:
        """The id of one fact: the same fact, the same id (a retry of its
        delivery is a duplicate)."""
        return fact_id(self.engine, *parts)

    def _event(
        self,
        kind: EventKind,
        workflow: str,
        run_id: str,
        step: str | None,
        ts: float | None,
        key: tuple[object, ...],
        attrs: dict[str, Any],
        instance: str | None = None,
    ) -> Event:
        """``attrs``: a dict of the caller's own making (kept as it is, not copied)."""
        return Event(
            id=fact_id(self.engine, run_id, kind._value_, instance or step or "", *key),  # _value_: no enum descriptor
            ts=time.time() if ts is None else ts,
            kind=kind,
            workflow=workflow,
            run_id=run_id,
            step=step,
            attrs=attrs,
        )

    # ---- runs ---------------------------------------------------------------------------
    def run_started(self, workflow: str, run_id: str, *, ts: float | None = None, **attrs: Any) -> None:
        """The engine's run began (a DAG run, a flow run, a chain's first task)."""
        self.send(self._event(K.STARTED, workflow, run_id, None, ts, (), {"engine": self.engine, **attrs}))

    def run_ended(
        self, workflow: str, run_id: str, how: str, *, ts: float | None = None, error: str | None = None, **attrs: Any
    ) -> None:
        """The run ended: ``how`` is ``completed``, ``failed`` or ``cancelled``."""
        if error:
            attrs["error"] = error
        self.send(self._event(ENDS[how], workflow, run_id, None, ts, (), attrs))

    def run_waiting(self, workflow: str, run_id: str, reason: str, *, ts: float | None = None, **attrs: Any) -> None:
        """The engine has the run but has not started it (Prefect's Pending,
        Late): the run shows as pending, ``reason`` saying why."""
        self.send(self._event(K.HEARTBEAT, workflow, run_id, None, ts, (reason,), {"reason": reason, **attrs}))

    def run_suspended(self, workflow: str, run_id: str, reason: str, *, ts: float, **attrs: Any) -> None:
        """The run was paused (it may be paused more than once: ``ts`` tells
        the pauses apart)."""
        self.send(self._event(K.SUSPENDED, workflow, run_id, None, ts, (ts,), {"reason": reason, **attrs}))

    def run_resumed(self, workflow: str, run_id: str, *, ts: float, **attrs: Any) -> None:
        """The paused run goes on."""
        self.send(self._event(K.RESUMED, workflow, run_id, None, ts, (ts,), attrs))

    # ---- steps ----------------------------------------------------------------------------
    def step_started(
        self,
        workflow: str,
        run_id: str,
        step: str,
        *,
        attempt: int = 1,
        ts: float | None = None,
        instance: str | None = None,
        **attrs: Any,
    ) -> None:
        """A unit of the run began: its ``attempt``-th try (a retry is the next attempt).
        ``instance``: the engine's own id of the unit (a Celery task id), where two units
        of a run may have the same name: the fact is told by it, not by the name."""
        self.send(self._event(K.STEP_STARTED, workflow, run_id, step, ts, (attempt,), attrs, instance))

    def step_ended(
        self,
        workflow: str,
        run_id: str,
        step: str,
        how: str,
        *,
        attempt: int = 1,
        ts: float | None = None,
        error: str | None = None,
        retrying: bool = False,
        instance: str | None = None,
        **attrs: Any,
    ) -> None:
        """The attempt ended: ``completed`` or ``failed`` (``retrying``: the
        engine tries it again, so the run goes on)."""
        if error:
            attrs["error"] = error
        if retrying:
            attrs["retrying"] = True
        self.send(self._event(STEP_ENDS[how], workflow, run_id, step, ts, (attempt,), attrs, instance))
