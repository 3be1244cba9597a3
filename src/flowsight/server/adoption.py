"""The alerts other processes store (``flowsight run --rules`` beside a
server, another server), taken in by this server's alert manager each
round, as a restart's alerts are (what receivers were told stays told)."""

from __future__ import annotations

from collections import deque

from flowsight.model.alerts import AlertState
from flowsight.store.interface import Store

#: seconds before the last stored time already taken in that alerts of other processes are read again
#: from (their clocks may lag this one's a little; what was taken in is not taken again)
ADOPT_OVERLAP = 5.0


class StoredByOthers:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.since = 0.0  # stored after this (a little overlap: clocks of other processes)
        self._own: deque[float] = deque(maxlen=256)  # the times of this server's own saves
        self._taken: dict[str, float] = {}  # fingerprint -> the stored time taken in last

    def saved(self, now: float) -> None:
        """This server saves its alerts at ``now``: not another process's."""
        self._own.append(now)

    def take(self) -> list[AlertState]:
        """The alerts other processes stored since the last round (``flowsight
        run --rules`` beside this server, another server): one alert state
        per store, whoever raised the alert. They join the manager as a
        restart's alerts do (what receivers were told stays told)."""
        found = self._store.alerts.alerts_stored_since(self.since - ADOPT_OVERLAP, besides=self._own)
        out = []
        for ts, state in found:
            fp = state.alert.fingerprint
            if self._taken.get(fp) != ts:
                self._taken[fp] = ts
                out.append(state)
            self.since = max(self.since, ts)
        if len(self._taken) > 100_000:
            self._taken = {fp: ts for fp, ts in self._taken.items() if ts > self.since - ADOPT_OVERLAP}
        return out
