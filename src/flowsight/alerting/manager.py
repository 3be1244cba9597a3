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

Its state can be taken (:meth:`snapshot`) and put back (:meth:`restore`), so
a restarted server still owes every receiver the "resolved" it promised.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from flowsight.model.alerts import Alert, AlertState, AlertStatus, InhibitRule, Silence
from flowsight.model.flapping import FlapPolicy, FlapState, on_change, on_tick
from flowsight.model.routing import GroupTimer, Route, Router, due, group_key

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


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

    @property
    def idempotency_key(self) -> str:
        """Stable for the same content: a retried delivery can be recognised."""
        h = hashlib.blake2b(digest_size=12)
        h.update(f"{self.receiver}|{self.group_key}|{self.reason}|{self.at!r}".encode())
        for a in self.alerts:
            h.update(f"|{a.fingerprint}:{a.status.value}".encode())
        return h.hexdigest()


@dataclass
class _Entry:
    alert: Alert
    flap: FlapState  # shared with AlertManager.flaps: it outlives the entry


@dataclass
class _Group:
    route: Route
    key: str
    timer: GroupTimer
    members: set[str] = field(default_factory=set)


class AlertManager:
    def __init__(self, route: Route, *, inhibit_rules: Iterable[InhibitRule] = (),
                 flap_policy: FlapPolicy | None = None, clock: Callable[[], float] = time.time,
                 dependencies: Mapping[str, Collection[str]] | None = None) -> None:
        self.route = route.named()
        # workflow -> the services it depends on
        self.dependencies = {wf: frozenset(svcs) for wf, svcs in (dependencies or {}).items() if svcs}
        self.router = Router(self.route)
        self.inhibit_rules = tuple(inhibit_rules)
        self.flap_policy = flap_policy or FlapPolicy()
        self.clock = clock
        self.alerts: dict[str, _Entry] = {}
        self.silences: dict[str, Silence] = {}
        self.groups: dict[str, _Group] = {}
        # (receiver, fingerprint) told "firing" and not yet told "resolved"
        self.told_firing: set[tuple[str, str]] = set()
        # per fingerprint, kept while its changes are recent (a resolved alert
        # that fires again is the same flapping alert)
        self.flaps: dict[str, FlapState] = {}
        self._pending_flap: list[tuple[str, str]] = []  # (fingerprint, "flapping" | "settled")
        # silences indexed by one of their equality matchers, so muting looks
        # at the few that can match, not at every silence
        self._by_label: dict[tuple[str, str], set[str]] = {}
        self._unindexed: set[str] = set()

    # ---- input -------------------------------------------------------------
    def send_alert(self, alert: Alert) -> None:
        """Take an alert; the same labels update the same alert (dedup)."""
        now = self.clock()
        if alert.ends_at is not None and alert.ends_at <= now and alert.status is not RESOLVED:
            alert = replace(alert, status=RESOLVED)
        fp = alert.fingerprint
        entry = self.alerts.get(fp)
        if entry is None:
            if alert.status is RESOLVED:
                return  # resolving what was never firing: nothing to say
            flap = self.flaps.get(fp)
            if flap is None:
                flap = self.flaps[fp] = FlapState()
            entry = self.alerts[fp] = _Entry(alert, flap)
            changed = True
        else:
            changed = entry.alert.status is not alert.status
            if entry.alert.status is FIRING and entry.alert.starts_at < alert.starts_at:
                # a re-send or the resolution of what fires: it started when it first fired
                # (a client resolving it need not remember when that was)
                alert = replace(alert, starts_at=entry.alert.starts_at)
            entry.alert = alert
        if changed:
            if on_change(self.flap_policy, entry.flap, now) == "flapping":
                self._pending_flap.append((fp, "flapping"))
        for route in self.router.match(alert.labels):
            key = group_key(route, alert.labels)
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = _Group(route, key, GroupTimer(created_at=now))
            g.members.add(fp)
            if changed:
                g.timer.changed_since_sent = True

    def resolve(self, alert: Alert) -> None:
        self.send_alert(replace(alert, status=RESOLVED, ends_at=self.clock()))

    def add_silence(self, silence: Silence) -> None:
        if silence.id in self.silences:
            self._unindex(self.silences[silence.id])
        self.silences[silence.id] = silence
        key = _index_key(silence)
        if key is None:
            self._unindexed.add(silence.id)
        else:
            self._by_label.setdefault(key, set()).add(silence.id)

    def _unindex(self, silence: Silence) -> None:
        key = _index_key(silence)
        if key is None:
            self._unindexed.discard(silence.id)
        else:
            self._by_label.get(key, set()).discard(silence.id)

    def expire_silence(self, silence_id: str) -> bool:
        """End a silence now (one not started yet is dropped); False if unknown."""
        s = self.silences.get(silence_id)
        if s is None:
            return False
        now = self.clock()
        if s.starts_at >= now:
            self._unindex(s)
            del self.silences[silence_id]
        elif s.ends_at > now:
            self.silences[silence_id] = replace(s, ends_at=now)
        return True

    # ---- state ---------------------------------------------------------------
    def muted(self, alert: Alert, now: float) -> bool:
        """Silenced or inhibited right now."""
        return self.mute_reason(alert, now) is not None

    def mute_reason(self, alert: Alert, now: float) -> str | None:
        """Why ``alert`` is muted now (``silenced by ID``, ``inhibited by
        FINGERPRINT``), or None."""
        labels = alert.labels
        candidates = set(self._unindexed)
        for item in labels.items():
            ids = self._by_label.get(item)
            if ids:
                candidates |= ids
        silences = self.silences
        for sid in sorted(candidates):
            if silences[sid].mutes(labels, now):
                return f"silenced by {sid}"
        if self.inhibit_rules:
            firing = [e.alert for e in self.alerts.values() if e.alert.status is FIRING]
            for rule in self.inhibit_rules:
                src = rule.inhibitor(labels, firing)
                if src is not None:
                    return f"inhibited by {src.fingerprint}"
        if self.dependencies and alert.source in ("execution", "state"):
            services = self.dependencies.get(labels.get("workflow", ""))
            if services:
                for e in self.alerts.values():
                    a = e.alert
                    if a.status is FIRING and a.source == "fault" and a.labels.get("service") in services:
                        return f"inhibited by {a.fingerprint} ({a.labels['service']} is down)"
        return None

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
        owed: dict[str, list[str]] = {}
        for receiver, fp in self.told_firing:
            owed.setdefault(fp, []).append(receiver)
        return [AlertState(e.alert, tuple(sorted(owed.get(fp, ())))) for fp, e in self.alerts.items()]

    def restore(self, states: Iterable[AlertState]) -> None:
        """Take back a :meth:`snapshot` (after a restart): the alerts rejoin
        their groups, which count as sent now (no repeat of what receivers
        were told before), and what receivers were told is remembered."""
        now = self.clock()
        touched: set[str] = set()
        for st in states:
            fp = st.alert.fingerprint
            if st.alert.status is RESOLVED and not st.told:
                continue
            flap = self.flaps.setdefault(fp, FlapState())
            self.alerts[fp] = _Entry(st.alert, flap)
            self.told_firing.update((r, fp) for r in st.told)
            for route in self.router.match(st.alert.labels):
                key = group_key(route, st.alert.labels)
                if key not in self.groups:
                    self.groups[key] = _Group(route, key, GroupTimer(created_at=now))
                self.groups[key].members.add(fp)
                touched.add(key)
        for key in touched:
            g = self.groups[key]
            told = [fp for fp in g.members if (g.route.receiver, fp) in self.told_firing]
            if told:  # the receiver heard from this group: next is group_interval / repeat_interval
                g.timer.last_sent_at = now
            # something to say: a firing alert not told yet, or a told one now resolved
            g.timer.changed_since_sent = any(
                (self.alerts[fp].alert.status is RESOLVED) == (fp in told) for fp in g.members)

    # ---- output --------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Notification]:
        """The notifications due at ``now``; call it every second or so.
        A firing alert whose ``ends_at`` has passed (one sent with an end, or
        given ``resolve_timeout`` and not sent again) resolves here."""
        now = self.clock() if now is None else now
        out: list[Notification] = []
        ended = [e.alert for e in self.alerts.values()
                 if e.alert.status is FIRING and e.alert.ends_at is not None and e.alert.ends_at <= now]
        for alert in ended:
            self.send_alert(replace(alert, status=RESOLVED))
        for fp, flap in list(self.flaps.items()):
            if on_tick(self.flap_policy, flap, now) == "settled" and fp in self.alerts:
                self._pending_flap.append((fp, "settled"))
            elif not flap.flapping and fp not in self.alerts and now - flap.last_change > self.flap_policy.window:
                del self.flaps[fp]
        out.extend(self._flap_notifications(now))
        for key, g in list(self.groups.items()):
            g.timer.firing = any(self.alerts[fp].alert.status is FIRING for fp in g.members if fp in self.alerts)
            if not due(g.route, g.timer, now):
                continue
            note = self._group_notification(g, now)
            g.timer.last_sent_at = now
            g.timer.changed_since_sent = False
            if note is not None:
                out.append(note)
            self._forget_resolved(g)
            if not g.members:
                del self.groups[key]
        return out

    def _group_notification(self, g: _Group, now: float) -> Notification | None:
        receiver = g.route.receiver
        alerts: list[Alert] = []
        for fp in sorted(g.members):
            entry = self.alerts.get(fp)
            if entry is None or entry.flap.flapping:
                continue
            a = entry.alert
            told = (receiver, fp) in self.told_firing
            if a.status is RESOLVED:
                if told:  # resolved is guaranteed, muted or not
                    alerts.append(a)
                    self.told_firing.discard((receiver, fp))
            elif not self.muted(a, now):
                alerts.append(a)
                self.told_firing.add((receiver, fp))
        if not alerts:
            return None
        status = "firing" if any(a.status is FIRING for a in alerts) else "resolved"
        return Notification(receiver, g.key, status, tuple(alerts), "group", g.route.name, now,
                            _group_labels(g.route, alerts[0]))

    def _flap_notifications(self, now: float) -> list[Notification]:
        out = []
        for fp, reason in self._pending_flap:
            entry = self.alerts.get(fp)
            if entry is None:
                continue
            a = entry.alert
            for route in self.router.match(a.labels):
                receiver = route.receiver
                if reason == "flapping":
                    if self.muted(a, now) and (receiver, fp) not in self.told_firing:
                        continue
                    self.told_firing.add((receiver, fp))
                    out.append(Notification(receiver, group_key(route, a.labels), "firing", (a,), "flapping",
                                            route.name, now, _group_labels(route, a)))
                else:  # settled: say how it ended
                    if a.status is RESOLVED and (receiver, fp) not in self.told_firing:
                        continue
                    if a.status is FIRING and self.muted(a, now) and (receiver, fp) not in self.told_firing:
                        continue
                    if a.status is RESOLVED:
                        self.told_firing.discard((receiver, fp))
                    else:
                        self.told_firing.add((receiver, fp))
                    out.append(Notification(receiver, group_key(route, a.labels), a.status.value, (a,),
                                            "settled", route.name, now, _group_labels(route, a)))
        self._pending_flap.clear()
        return out

    def _forget_resolved(self, g: _Group) -> None:
        """Drop resolved members every receiver has been told about."""
        for fp in list(g.members):
            entry = self.alerts.get(fp)
            if entry is None:
                g.members.discard(fp)
            elif entry.alert.status is RESOLVED and not entry.flap.flapping and not any(
                    f == fp for _, f in self.told_firing):
                g.members.discard(fp)
                if not any(fp in other.members for other in self.groups.values()):
                    del self.alerts[fp]


def _group_labels(route: Route, alert: Alert) -> tuple[tuple[str, str], ...]:
    keys = sorted(alert.labels) if "..." in route.group_by else sorted(route.group_by)
    return tuple((k, alert.labels.get(k, "")) for k in keys)


def _index_key(silence: Silence) -> tuple[str, str] | None:
    """An ``=`` matcher with a non-empty value: any alert it mutes has that label pair."""
    for m in silence.matchers:
        if m.op == "=" and m.value:
            return (m.name, m.value)
    return None
