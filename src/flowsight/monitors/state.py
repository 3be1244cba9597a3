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
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Union

from flowsight.errors import TransitionError
from flowsight.model.runs.state import StateTransition, WorkflowState, allowed_next, is_allowed
from flowsight.store.interface import Store

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

    def __init__(
        self,
        store: Store | None = None,
        *,
        handler_timeout: float = 10.0,
        handler_threads: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.handler_timeout = handler_timeout
        self.clock = clock
        self.state_history: dict[str, list[StateTransition]] = {}
        self.state_notifications: dict[WorkflowState, list[Handler]] = {}
        self.handler_failures: list[HandlerFailure] = []
        self._states: dict[str, WorkflowState] = {}
        # sync handlers run here, not in asyncio's default pool: one that hangs
        # keeps its thread, and must not starve the store calls made through to_thread
        self._pool = ThreadPoolExecutor(max_workers=handler_threads, thread_name_prefix="flowsight-handler")

    def on_state(self, state: WorkflowState, handler: Handler) -> Handler:
        """Call ``handler(transition)`` whenever a run enters ``state``."""
        self.state_notifications.setdefault(WorkflowState(state), []).append(handler)
        return handler

    def current_state(self, workflow_id: str) -> WorkflowState:
        """The run's state: the store's when there is one (other writers move
        runs too), else what this monitor has seen; Pending for an unknown run."""
        if self.store is not None:
            run = self.store.runs.get_run(workflow_id)
            return run.state if run is not None else WorkflowState.PENDING
        return self._states.get(workflow_id, WorkflowState.PENDING)

    async def monitor_state_change(
        self,
        workflow_id: str,
        new_state: WorkflowState,
        *,
        reason: str | None = None,
        source: str | None = None,
        workflow: str | None = None,
    ) -> StateTransition:
        """Move a run to ``new_state``: keep the transition, then await every
        handler registered for that state. ``workflow`` names the workflow of a
        run the store has not seen yet.

        Raises:
            TransitionError: the table forbids it (or, with a store, another
                writer moved the run first); it is recorded as refused and not applied.
        """
        new_state = WorkflowState(new_state)
        old = (
            await asyncio.to_thread(self.current_state, workflow_id) if self.store else self.current_state(workflow_id)
        )
        tr = StateTransition(
            workflow_id, self.clock(), old, new_state, reason, source, applied=is_allowed(old, new_state)
        )
        if self.store is not None:
            if not tr.applied:
                tr = await asyncio.to_thread(self.store.runs.record_transition, tr)
            else:
                tr = await asyncio.to_thread(self.store.runs.record_transition, tr, workflow=workflow)
                if not tr.applied and is_allowed(tr.old_state, new_state):
                    # the run moved under us, but the change is legal from where it is now
                    tr = await asyncio.to_thread(
                        self.store.runs.record_transition, replace(tr, applied=True), workflow=workflow
                    )
        self.observe(tr)
        if not tr.applied:
            raise TransitionError(
                workflow_id, tr.old_state.value, new_state.value, allowed=(s.value for s in allowed_next(tr.old_state))
            )
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
                loop = asyncio.get_running_loop()
                result = await asyncio.wait_for(loop.run_in_executor(self._pool, handler, tr), self.handler_timeout)
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self.handler_timeout)
        except asyncio.TimeoutError:
            self._failed(name, tr, f"timed out after {self.handler_timeout}s")
        except Exception as exc:  # a handler's bug must not stop the others
            self._failed(name, tr, f"{type(exc).__name__}: {exc}")

    def _failed(self, name: str, tr: StateTransition, error: str) -> None:
        self.handler_failures.append(HandlerFailure(name, tr, error))
        log.error(
            "state handler %s for %s -> %s of run %s failed: %s",
            name,
            tr.old_state.value,
            tr.new_state.value,
            tr.workflow_id,
            error,
        )
