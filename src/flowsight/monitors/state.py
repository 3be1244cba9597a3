"""The specification's state monitor: every transition kept, handlers notified.

Handlers are registered per state (``on_state(WorkflowState.FAILED, fn)``),
sync or async. Each runs under a timeout; one that raises or hangs is cut off
and logged, the others still run, and the transition stands.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Union

from flowsight.errors import TransitionError
from flowsight.model.state import StateTransition, WorkflowState, is_allowed
from flowsight.store.sql import SqlStore

log = logging.getLogger("flowsight.state")

Handler = Callable[[StateTransition], Union[None, Awaitable[None]]]


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    handler: str
    transition: StateTransition
    error: str


class StateMonitor:
    """``state_history``: run id -> transitions (refused ones kept, marked);
    ``state_notifications``: state -> handlers."""

    def __init__(self, store: SqlStore | None = None, *, handler_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.handler_timeout = handler_timeout
        self.clock = clock
        self.state_history: dict[str, list[StateTransition]] = {}
        self.state_notifications: dict[WorkflowState, list[Handler]] = {}
        self.handler_failures: list[HandlerFailure] = []
        self._states: dict[str, WorkflowState] = {}

    def on_state(self, state: WorkflowState, handler: Handler) -> Handler:
        """Call ``handler(transition)`` whenever a run enters ``state``."""
        self.state_notifications.setdefault(WorkflowState(state), []).append(handler)
        return handler

    def current_state(self, workflow_id: str) -> WorkflowState:
        state = self._states.get(workflow_id)
        if state is None and self.store is not None:
            run = self.store.get_run(workflow_id)
            state = run.state if run is not None else None
        return state or WorkflowState.PENDING

    async def monitor_state_change(self, workflow_id: str, new_state: WorkflowState, *,
                                   reason: str | None = None, source: str | None = None) -> StateTransition:
        """Move a run to ``new_state``: keep the transition, then await every
        handler registered for that state.

        Raises:
            TransitionError: the table forbids it; it is recorded as refused and not applied.
        """
        new_state = WorkflowState(new_state)
        old = self.current_state(workflow_id)
        tr = StateTransition(workflow_id, self.clock(), old, new_state, reason, source,
                             applied=is_allowed(old, new_state))
        if self.store is not None:
            await asyncio.to_thread(self.store.record_transition, tr)
        self.observe(tr)
        if not tr.applied:
            raise TransitionError(workflow_id, old.value, new_state.value)
        await self.notify(tr)
        return tr

    def observe(self, tr: StateTransition) -> None:
        """Add a transition that is already stored (e.g. one an event caused)."""
        self.state_history.setdefault(tr.workflow_id, []).append(tr)
        if tr.applied:
            self._states[tr.workflow_id] = tr.new_state

    async def notify(self, tr: StateTransition) -> None:
        handlers = self.state_notifications.get(tr.new_state, [])
        if handlers:
            await asyncio.gather(*(self._call(h, tr) for h in handlers))

    async def _call(self, handler: Handler, tr: StateTransition) -> None:
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            if inspect.iscoroutinefunction(handler):
                await asyncio.wait_for(handler(tr), self.handler_timeout)
            else:
                # in a thread, so a hanging sync handler can be cut off too
                result = await asyncio.wait_for(asyncio.to_thread(handler, tr), self.handler_timeout)
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self.handler_timeout)
        except asyncio.TimeoutError:
            self._failed(name, tr, f"timed out after {self.handler_timeout}s")
        except Exception as exc:  # a handler's bug must not stop the others
            self._failed(name, tr, f"{type(exc).__name__}: {exc}")

    def _failed(self, name: str, tr: StateTransition, error: str) -> None:
        self.handler_failures.append(HandlerFailure(name, tr, error))
        log.error("state handler %s for %s -> %s of run %s failed: %s",
                  name, tr.old_state.value, tr.new_state.value, tr.workflow_id, error)
