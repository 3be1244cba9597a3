"""The alert manager's decisions, in memory and with time passed in.

``send_alert`` takes an alert (firing, or resolved when ``ends_at`` is past);
``tick(now)`` returns the notifications due. Delivery (outbox, retries,
receivers) is the caller's. What it guarantees beyond Alertmanager:

* **flapping**: an alert that changes state more than ``max_changes`` times in
  ``window`` is announced once as flapping, then left out until it settles;
  one notification then says how it ended;
* **resolved is never lost**: a receiver told "firing" is told "resolved",
  even when the alert was silenced or inhibited in between;
* **dependencies**: a workflow that declares it depends on a service
  (``depends_on``) has its run and step alerts (sources execution and state)
  muted while a fault alert for that service (source ``fault``, label
  ``service``) fires: the outage is the news, not its echoes.

Its state can be taken (:meth:`snapshot`, or what changed since last time:
:meth:`changes`) and put back (:meth:`restore`), so a restarted server still
owes every receiver the "resolved" it promised.

Every operation costs O(1) or O(log n) per alert it touches, however many
alerts it holds: a flood of 100,000 alerts posted then resolved must not
make a round, a request or a restart quadratic. Hence the indexes: who is
owed each alert's "resolved", each alert's groups, each group's count of
firing members, what mutes what (:mod:`flowsight.alerting.muting`), and
heaps of when something is due (a group to be sent, a firing alert to
end, the flap history of a forgotten alert to be dropped), so that
:meth:`tick` looks only at what is due. Not thread-safe: one thread at a
time (the server gives it a thread of its own).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Generic, TypeVar

from flowsight.alerting.muting import Muting
from flowsight.model.alerts import Alert, AlertState, AlertStatus, InhibitRule, Silence
from flowsight.model.alerts.flapping import FlapPolicy, FlapState, on_change, on_tick
from flowsight.model.alerts.routing import GroupTimer, Route, Router, due, group_key, next_send

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
#: alerts in one notification at most: a bigger group is told in several, so no one send (its
#: payload built on the event loop, its body read by the receiver) grows with a flood of alerts
MAX_ALERTS = 1_000


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about one group (or one flapping alert)."""

    receiver: str
    group_key: str
    status: str  # "firing" when any alert in it fires, else "resolved"
    alerts: tuple[Alert, ...]
    reason: str  # "group" | "flapping" | "settled"
    route: str
    at: float
    group_labels: tuple[tuple[str, str], ...] = ()
    #: 0: the first notification of this content; a repeat (nothing changed for
    #: ``repeat_interval``): the number of repeat intervals since the epoch at ``at``
    sequence: int = 0

    @cached_property
    def idempotency_key(self) -> str:
        """Made of what the notification says, not of when or by whom it was
        made: the receiver, the group, the reason, each alert's fingerprint,
        status and start, and the repeat's sequence. A retried delivery has
        the same key; so has the same notification made again by another
        replica that took over the alerts (the outbox keeps one row a key:
        it is sent once)."""
        h = hashlib.blake2b(digest_size=12)
        h.update(f"{self.receiver}|{self.group_key}|{self.reason}|{self.sequence}".encode())
        for a in self.alerts:
            h.update(f"|{a.fingerprint}:{a.status.value}:{a.starts_at!r}".encode())
        return h.hexdigest()


T = TypeVar("T", bound=tuple[Any, ...])


class _Heap(Generic[T]):
    """A min-heap of (when, ...) items, the lazily deleted kind: its user
    skips the stale items it pops. When they pile up (twice what was live at
    the last rebuild), it is rebuilt from ``live()``: O(log n) a push,
    amortized."""

    def __init__(self, live: Callable[[], list[T]]) -> None:
        self.items: list[T] = []
        self._live = live
        self._limit = 1024

    def push(self, item: T) -> None:
        heapq.heappush(self.items, item)
        if len(self.items) > self._limit:
            self.items = self._live()
            heapq.heapify(self.items)
            self._limit = 2 * len(self.items) + 1024

    def pop_due(self, now: float, *, strictly: bool = False) -> Iterator[T]:
        """Pop the items whose time is at or before ``now`` (before it, ``strictly``)."""
        items = self.items
        while items and (items[0][0] < now if strictly else items[0][0] <= now):
            yield heapq.heappop(items)


@dataclass
class _Entry:
    alert: Alert
    flap: FlapState  # shared with AlertManager.flaps: it outlives the entry
    groups: set[str] = field(default_factory=set)  # the keys of the groups it is a member of


@dataclass
class _Group:
    route: Route
    key: str
    timer: GroupTimer
    order: int  # when it was made, among the groups: due groups are sent in this order
    members: set[str] = field(default_factory=set)
    firing: int = 0  # members firing now
    due_at: float | None = None  # when it is next due, as last scheduled (None: nothing to send)


class AlertManager:
    def __init__(
        self,
        route: Route,
        *,
        inhibit_rules: Iterable[InhibitRule] = (),
        flap_policy: FlapPolicy | None = None,
        clock: Callable[[], float] = time.time,
        dependencies: Mapping[str, Collection[str]] | None = None,
        max_alerts: int = MAX_ALERTS,
    ) -> None:
        self.route = route.named()
        self.max_alerts = max_alerts
        self.router = Router(self.route)
        self.muting = Muting(inhibit_rules, dependencies)
        self.flap_policy = flap_policy or FlapPolicy()
        self.clock = clock
        self.alerts: dict[str, _Entry] = {}
        self.groups: dict[str, _Group] = {}
        # fingerprint -> the receivers told "firing" and not yet told "resolved"
        self.told: dict[str, set[str]] = {}
        # per fingerprint, kept while its changes are recent (a resolved alert
        # that fires again is the same flapping alert)
        self.flaps: dict[str, FlapState] = {}
        self._flapping: dict[str, None] = {}  # fingerprints flapping now, in the order they started
        self._pending_flap: list[tuple[str, str]] = []  # (fingerprint, "flapping" | "settled")
        self._order = itertools.count()
        # when something is due; each skips what changed since it was pushed
        self._due = _Heap[tuple[float, int, str]](self._scheduled)  # (when, group order, group key)
        self._ends = _Heap[tuple[float, str]](self._firing_ends)  # (ends_at, fingerprint) of firing alerts
        self._flap_expiry = _Heap[tuple[float, str]](self._gone_flaps)  # (last change + window, fingerprint)
        self._unsaved: set[str] = set()  # fingerprints changed (or forgotten) since the last changes()

    @property
    def silences(self) -> dict[str, Silence]:
        return self.muting.silences

    @property
    def told_firing(self) -> set[tuple[str, str]]:
        """(receiver, fingerprint) told "firing" and not yet told "resolved" (a copy)."""
        return {(r, fp) for fp, receivers in self.told.items() for r in receivers}

    # ---- input -------------------------------------------------------------
    def send_alert(self, alert: Alert) -> None:
        """Take an alert; the same labels update the same alert (dedup)."""
        now = self.clock()
        if alert.ends_at is not None and alert.ends_at <= now and alert.status is not RESOLVED:
            alert = replace(alert, status=RESOLVED)
        entry, changed = self._keep(alert)
        if entry is None:
            return  # resolving what was never firing: nothing to say
        fp = entry.alert.fingerprint
        if changed and on_change(self.flap_policy, entry.flap, now) == "flapping":
            self._pending_flap.append((fp, "flapping"))
            self._flapping[fp] = None
        for g in self._join(entry, now):
            if changed:
                g.timer.changed_since_sent = True
            self._schedule(g)

    def resolve(self, alert: Alert) -> None:
        self.send_alert(replace(alert, status=RESOLVED, ends_at=self.clock()))

    def add_silence(self, silence: Silence) -> None:
        self.muting.add_silence(silence)

    def expire_silence(self, silence_id: str) -> bool:
        """End a silence now (one not started yet is dropped); False if unknown."""
        return self.muting.expire_silence(silence_id, self.clock())

    def _keep(self, alert: Alert, *, resolved_too: bool = False) -> tuple[_Entry | None, bool]:
        """Store ``alert`` over the one with its labels; the entry (None for
        the resolution of an unknown alert, unless ``resolved_too``) and
        whether its status changed."""
        fp = alert.fingerprint
        entry = self.alerts.get(fp)
        if entry is None:
            if alert.status is RESOLVED and not resolved_too:
                return None, False
            flap = self.flaps.get(fp)
            if flap is None:
                flap = self.flaps[fp] = FlapState()
            entry = self.alerts[fp] = _Entry(alert, flap)
            old, was = None, None
        else:
            old, was = entry.alert, entry.alert.status
            if was is FIRING and old.starts_at < alert.starts_at:
                # a re-send or the resolution of what fires: it started when it first fired
                # (a client resolving it need not remember when that was)
                alert = replace(alert, starts_at=old.starts_at)
            entry.alert = alert
        self._unsaved.add(fp)
        firing = alert.status is FIRING
        if firing != (was is FIRING):
            for key in entry.groups:
                self.groups[key].firing += 1 if firing else -1
        # what it mutes may hang on more than its labels (its source: an outage)
        moved = old is not None and old.source != alert.source
        if old is not None and was is FIRING and (not firing or moved):
            self.muting.not_firing(fp, old)
        if firing and (was is not FIRING or moved):
            self.muting.firing(fp, alert)
        if firing and alert.ends_at is not None:
            self._ends.push((alert.ends_at, fp))
        return entry, alert.status is not was

    def _join(self, entry: _Entry, now: float) -> list[_Group]:
        """The groups of the routes that take ``entry``'s alert, it a member of each."""
        labels, fp = entry.alert.labels, entry.alert.fingerprint
        out = []
        for route in self.router.match(labels):
            key = group_key(route, labels)
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = _Group(route, key, GroupTimer(created_at=now), next(self._order))
            if fp not in g.members:
                g.members.add(fp)
                entry.groups.add(key)
                g.firing += entry.alert.status is FIRING
            out.append(g)
        return out

    # ---- who was told ---------------------------------------------------------
    def is_told(self, receiver: str, fp: str) -> bool:
        return receiver in self.told.get(fp, ())

    def owed(self, fp: str) -> tuple[str, ...]:
        """The receivers still owed the "resolved" of alert ``fp``."""
        return tuple(sorted(self.told.get(fp, ())))

    def _tell(self, receiver: str, fp: str) -> None:
        self.told.setdefault(fp, set()).add(receiver)
        self._unsaved.add(fp)

    def _untell(self, receiver: str, fp: str) -> None:
        receivers = self.told.get(fp)
        if receivers is not None and receiver in receivers:
            receivers.discard(receiver)
            if not receivers:
                del self.told[fp]
            self._unsaved.add(fp)

    # ---- state ---------------------------------------------------------------
    def muted(self, alert: Alert, now: float) -> bool:
        """Silenced or inhibited right now."""
        return self.mute_reason(alert, now) is not None

    def mute_reason(self, alert: Alert, now: float) -> str | None:
        """Why ``alert`` is muted now (``silenced by ID``, ``inhibited by
        FINGERPRINT``), or None."""
        return self.muting.reason(alert, now)

    def status_of(self, fp: str) -> str:
        """firing | pending | resolved | silenced | inhibited | flapping (for people)."""
        e = self.alerts[fp]
        if e.flap.flapping:
            return "flapping"
        if e.alert.status is FIRING:
            reason = self.mute_reason(e.alert, self.clock())
            if reason is not None:
                return reason.split()[0]
        return e.alert.status.value

    def snapshot(self) -> list[AlertState]:
        """Every alert with the receivers still owed its "resolved"."""
        return [AlertState(e.alert, self.owed(fp)) for fp, e in self.alerts.items()]

    def changes(self) -> tuple[list[AlertState], list[str]]:
        """What changed since the last call (or :meth:`restore`): the alerts
        as :meth:`snapshot` has them, and the fingerprints forgotten. A
        caller that fails to keep them gives them back (:meth:`unsaved`)."""
        states, gone = [], []
        for fp in self._unsaved:
            entry = self.alerts.get(fp)
            if entry is None:
                gone.append(fp)
            else:
                states.append(AlertState(entry.alert, self.owed(fp)))
        self._unsaved = set()
        return states, gone

    def unsaved(self, fingerprints: Iterable[str]) -> None:
        """These alerts' changes were not kept: :meth:`changes` gives them again."""
        self._unsaved.update(fingerprints)

    def restore(self, states: Iterable[AlertState]) -> None:
        """Take back a :meth:`snapshot` (after a restart): the alerts rejoin
        their groups, which count as sent now (no repeat of what receivers
        were told before), and what receivers were told is remembered.
        A resolved alert nobody is owed is left out (and is among the
        :meth:`changes`' forgotten)."""
        now = self.clock()
        touched: dict[str, _Group] = {}
        restored: list[str] = []
        for st in states:
            fp = st.alert.fingerprint
            if st.alert.status is RESOLVED and not st.told:
                self._unsaved.add(fp)
                continue
            entry, _ = self._keep(st.alert, resolved_too=True)
            assert entry is not None
            for receiver in st.told:
                self._tell(receiver, fp)
            for g in self._join(entry, now):
                touched[g.key] = g
            restored.append(fp)
        for g in touched.values():
            receiver = g.route.receiver
            told = {fp for fp in g.members if self.is_told(receiver, fp)}
            if told:  # the receiver heard from this group: next is group_interval / repeat_interval
                g.timer.last_sent_at = now
            # something to say: a firing alert not told yet, or a told one now resolved
            g.timer.changed_since_sent = any(
                (self.alerts[fp].alert.status is RESOLVED) == (fp in told) for fp in g.members
            )
            self._schedule(g)
        self._unsaved.difference_update(restored)  # as the store has them

    # ---- output --------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Notification]:
        """The notifications due at ``now``; call it every second or so.
        A firing alert whose ``ends_at`` has passed (one sent with an end, or
        given ``resolve_timeout`` and not sent again) resolves here."""
        now = self.clock() if now is None else now
        self._end_alerts(now)
        self._settle_flaps(now)
        out = self._flap_notifications(now)
        for g in self._due_groups(now):
            out.extend(self._group_notifications(g, now))
            g.timer.last_sent_at = now
            g.timer.changed_since_sent = False
            self._forget_resolved(g)
            if g.members:
                g.due_at = None  # its entry was taken off the heap: schedule it afresh
                self._schedule(g)
            else:
                del self.groups[g.key]
        return out

    def _end_alerts(self, now: float) -> None:
        """Resolve the firing alerts whose end has passed."""
        for ends_at, fp in self._ends.pop_due(now):
            entry = self.alerts.get(fp)
            if entry is not None and entry.alert.status is FIRING and entry.alert.ends_at == ends_at:
                self.send_alert(replace(entry.alert, status=RESOLVED))

    def _settle_flaps(self, now: float) -> None:
        """Flapping alerts quiet long enough settle; the flap history of
        forgotten alerts is dropped once it is older than the window."""
        for fp in list(self._flapping):
            if on_tick(self.flap_policy, self.flaps[fp], now) == "settled":
                del self._flapping[fp]
                if fp in self.alerts:
                    self._pending_flap.append((fp, "settled"))
                else:
                    self._expire_flap(fp)
        window = self.flap_policy.window
        for _, fp in self._flap_expiry.pop_due(now, strictly=True):
            flap = self.flaps.get(fp)
            if flap is not None and fp not in self.alerts and not flap.flapping and now - flap.last_change > window:
                del self.flaps[fp]

    def _expire_flap(self, fp: str) -> None:
        """Alert ``fp`` is gone: its flap history goes once the window has passed."""
        flap = self.flaps.get(fp)
        if flap is not None:
            self._flap_expiry.push((flap.last_change + self.flap_policy.window, fp))

    def _due_groups(self, now: float) -> list[_Group]:
        """The groups due at ``now``, each once, in the order they were made."""
        found: dict[str, _Group] = {}
        for at, order, key in self._due.pop_due(now):
            g = self.groups.get(key)
            if g is not None and g.order == order and g.due_at == at:
                found[key] = g
        out = []
        for g in sorted(found.values(), key=lambda g: g.order):
            g.timer.firing = g.firing > 0
            if due(g.route, g.timer, now):
                out.append(g)
            else:  # cannot happen while due_at follows the timer; kept on the schedule all the same
                g.due_at = None
                self._schedule(g)
        return out

    def _schedule(self, g: _Group) -> None:
        """Put ``g`` on the heap for when it is next due, if that changed."""
        g.timer.firing = g.firing > 0
        at = next_send(g.route, g.timer)
        if at != g.due_at:
            g.due_at = at
            if at is not None:
                self._due.push((at, g.order, g.key))

    def _scheduled(self) -> list[tuple[float, int, str]]:
        return [(g.due_at, g.order, g.key) for g in self.groups.values() if g.due_at is not None]

    def _firing_ends(self) -> list[tuple[float, str]]:
        return [
            (a.ends_at, fp)
            for fp, e in self.alerts.items()
            if (a := e.alert).status is FIRING and a.ends_at is not None
        ]

    def _gone_flaps(self) -> list[tuple[float, str]]:
        window = self.flap_policy.window
        return [(flap.last_change + window, fp) for fp, flap in self.flaps.items() if fp not in self.alerts]

    def _group_notifications(self, g: _Group, now: float) -> list[Notification]:
        """What the group's receiver is to be told: its alerts not muted, and
        the resolved ones it was told fired; in notifications of at most
        ``max_alerts`` alerts (none when there is nothing to tell)."""
        receiver = g.route.receiver
        alerts: list[Alert] = []
        for fp in sorted(g.members):
            entry = self.alerts.get(fp)
            if entry is None or entry.flap.flapping:
                continue
            a = entry.alert
            told = self.is_told(receiver, fp)
            if a.status is RESOLVED:
                if told:  # resolved is guaranteed, muted or not
                    alerts.append(a)
                    self._untell(receiver, fp)
            elif not self.muted(a, now):
                alerts.append(a)
                self._tell(receiver, fp)
        if not alerts:
            return []
        status = "firing" if any(a.status is FIRING for a in alerts) else "resolved"  # the group's, in each part
        labels = _group_labels(g.route, alerts[0])
        repeat = g.timer.last_sent_at is not None and not g.timer.changed_since_sent
        sequence = int(now // g.route.repeat_interval) if repeat and g.route.repeat_interval > 0 else 0
        return [
            Notification(
                receiver,
                g.key,
                status,
                tuple(alerts[i : i + self.max_alerts]),
                "group",
                g.route.name,
                now,
                labels,
                sequence,
            )  # fmt: skip
            for i in range(0, len(alerts), self.max_alerts)
        ]

    def _flap_notifications(self, now: float) -> list[Notification]:
        out = []
        for fp, reason in self._pending_flap:
            entry = self.alerts.get(fp)
            if entry is None:
                continue
            a = entry.alert
            for route in self.router.match(a.labels):
                receiver = route.receiver
                told = self.is_told(receiver, fp)
                if reason == "flapping":
                    if self.muted(a, now) and not told:
                        continue
                    self._tell(receiver, fp)
                    out.append(
                        Notification(
                            receiver,
                            group_key(route, a.labels),
                            "firing",
                            (a,),
                            "flapping",
                            route.name,
                            now,
                            _group_labels(route, a),
                        )
                    )
                else:  # settled: say how it ended
                    if a.status is RESOLVED and not told:
                        continue
                    if a.status is FIRING and self.muted(a, now) and not told:
                        continue
                    if a.status is RESOLVED:
                        self._untell(receiver, fp)
                    else:
                        self._tell(receiver, fp)
                    out.append(
                        Notification(
                            receiver,
                            group_key(route, a.labels),
                            a.status.value,
                            (a,),
                            "settled",
                            route.name,
                            now,
                            _group_labels(route, a),
                        )
                    )
        self._pending_flap.clear()
        return out

    def _forget_resolved(self, g: _Group) -> None:
        """Drop resolved members every receiver has been told about; an
        alert in no group any more is forgotten."""
        for fp in list(g.members):
            entry = self.alerts.get(fp)
            if entry is None:
                g.members.discard(fp)
            elif entry.alert.status is RESOLVED and not entry.flap.flapping and fp not in self.told:
                g.members.discard(fp)
                entry.groups.discard(g.key)
                if not entry.groups:
                    del self.alerts[fp]
                    self._unsaved.add(fp)
                    self._expire_flap(fp)


def _group_labels(route: Route, alert: Alert) -> tuple[tuple[str, str], ...]:
    keys = sorted(alert.labels) if "..." in route.group_by else sorted(route.group_by)
    return tuple((k, alert.labels.get(k, "")) for k in keys)
