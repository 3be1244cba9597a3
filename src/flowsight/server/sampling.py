"""The performance monitor at work in the server, as a service: every
``[performance] interval`` it samples this host and the process trees of
the runs running on it (the SDK reports each run's pid and host), and a
step's start or end, or a run's end, is sampled at once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from flowsight.config import Config
from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.state import WorkflowState
from flowsight.monitors.performance import PerformanceMonitor
from flowsight.server.services import Loop
from flowsight.store.interface import Store

#: the events at which a run's process tree is sampled at once (a step's start or end, the run's end)
BOUNDARIES = frozenset(
    {
        EventKind.STEP_STARTED,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_FAILED,
        EventKind.COMPLETED,
        EventKind.FAILED,
        EventKind.CANCELLED,
    }
)


class RunSampling:
    def __init__(self, store: Store, perf: PerformanceMonitor, host: str, config: Config) -> None:
        self.store = store
        self.perf = perf
        self.host = host
        self.config = config
        self._loop = Loop("flowsight-performance", self._sample)

    def live_runs(self) -> dict[str, tuple[int, str]]:
        """The running runs of this host: run id -> (pid, workflow)."""
        out = {}
        for m in self.store.runs.list_runs(states=[WorkflowState.RUNNING], limit=1000).runs:
            pid = m.attrs.get("pid")
            if m.attrs.get("host") == self.host and isinstance(pid, int) and pid > 0:
                out[m.workflow_id] = (pid, m.workflow)
        return out

    def run_process(self, run_id: str) -> tuple[int, str] | None:
        """A run's root pid and workflow, when its process is on this host."""
        m = self.store.runs.get_run(run_id)
        pid = m.attrs.get("pid") if m is not None else None
        if m is None or m.attrs.get("host") != self.host or not isinstance(pid, int) or pid <= 0:
            return None
        return pid, m.workflow

    def boundaries(self, events: Sequence[Event], seqs: Mapping[str, int]) -> None:
        """A hub hook: the runs at a step's start or end, or their own end, are sampled at once."""
        for ev in events:
            if ev.kind in BOUNDARIES:
                self.perf.note_boundary(ev.run_id, ev.ts)

    async def _sample(self, stop: asyncio.Event) -> None:
        cfg = self.config
        await self.perf.monitor_performance(
            self.live_runs,
            cfg.performance_interval,
            stop,
            raw_retention=cfg.performance_raw_retention,
            rollup_retention=cfg.performance_rollup_retention,
            run_process=self.run_process,
        )

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
