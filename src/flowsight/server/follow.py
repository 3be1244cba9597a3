"""Events other processes commit to the store, into the server's live stream
and its monitors.

The SDK, ``flowsight run`` and ``flowsight logs watch`` may write to the
store directly (``./flowsight.db``, a shared PostgreSQL), and another replica
commits what it ingests: none of that passes through this server's
:meth:`flowsight.hub.Hub.publish`. :class:`StoreFollower` reads what was
committed after the last seq it saw, every ``interval`` seconds, and hands the
events this server did not commit itself to
:meth:`~flowsight.hub.Hub.observe_followed`: the live stream (the dashboard,
``GET /api/v1/stream``), the alert rules and the performance monitor
(throughput, latency, baselines, step-boundary samples) then see them as they
see events sent over HTTP -- so a run written straight to the store shows on
the dashboard within about a second. When every seq since the last is one
this server committed, nothing is read.

They come a moment after this server's own events, so a live stream gets
them out of seq order (:mod:`flowsight.server.stream` sends each seq once,
whatever the order); what others committed comes in seq order, each once
(their seqs commit in their order on both stores: ``Dialect.seq_turn``). On
PostgreSQL a commit of events also sends a ``NOTIFY``, which wakes the next
round at once; it is only a wake-up (a lost one, behind a pooler in
transaction mode say, costs a round's wait: ``interval``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from flowsight.hub import Hub
from flowsight.model.runs.events import Event

log = logging.getLogger("flowsight.server")

#: events read per round at most (the rest in the next round)
PAGE = 2000


class StoreFollower:
    """``start()`` on the running loop, ``await stop()``."""

    def __init__(self, hub: Hub, *, interval: float = 0.5) -> None:
        self.hub = hub
        self.interval = interval
        self.followed = 0  # outside events published
        self._last = 0
        self._mine: set[int] = set()  # seqs this server committed, above _last
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._unlisten: Callable[[], None] | None = None
        hub.hooks.append(self._committed)

    def _committed(self, events: Sequence[Event], seqs: Mapping[str, int]) -> None:
        self._mine.update(seqs.values())

    async def start(self) -> None:
        self._last = await asyncio.to_thread(self.hub.store.runs.last_seq)
        self._stop.clear()
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()

        # PostgreSQL's NOTIFY wakes the next round at once (another replica committed); polling stays
        def woken() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        self._unlisten = self.hub.store.listen_commits(woken)
        self._task = asyncio.create_task(self._run(), name="flowsight-store-follower")

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._unlisten is not None:
            await asyncio.to_thread(self._unlisten)
            self._unlisten = None

    async def step(self) -> int:
        """One round: what others committed since the last, published to the
        stream and told to the hub's hooks (the alert rules, the performance
        monitor: :meth:`Hub.observe_followed`); how many."""
        store = self.hub.store
        top = await asyncio.to_thread(store.runs.last_seq)
        if top - self._last == sum(1 for s in self._mine if self._last < s <= top):
            self._last = max(self._last, top)  # all of it this server's own: nothing to read
            self._mine = {s for s in self._mine if s > self._last}
            return 0
        page = await asyncio.to_thread(store.runs.events_after, self._last, limit=PAGE)
        theirs = [(seq, ev) for seq, ev in page if seq not in self._mine]
        if page:
            self._last = page[-1][0]
            self._mine = {s for s in self._mine if s > self._last}
        if theirs:
            await self.hub.observe_followed(theirs)
        self.followed += len(theirs)
        return len(theirs)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.step()
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the next round reads again
                log.debug("following the store: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
