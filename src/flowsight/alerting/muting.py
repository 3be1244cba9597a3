"""What mutes an alert right now: silences, inhibit rules, dependencies.

Each is looked up through an index, so judging one alert costs the few
entries that can mute it, never a scan of every silence or of every firing
alert (with 100,000 alerts, a scan per alert made each round quadratic):

* silences by one of their equality matchers (those without one are few
  and checked always);
* per inhibit rule, the firing alerts its source matchers take, by their
  values of the rule's ``equal`` labels;
* firing fault alerts by their ``service`` label, for the workflows that
  depend on that service.

The alert manager tells it which alerts start and stop firing
(:meth:`Muting.firing`, :meth:`Muting.not_firing`). Not thread-safe: it is
the manager's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

from flowsight.model.alerts import Alert, InhibitRule, Silence

K = TypeVar("K")

#: the alerts a service outage mutes (of the workflows that depend on it)
ECHO_SOURCES = ("execution", "state")


class Muting:
    def __init__(
        self, inhibit_rules: Iterable[InhibitRule] = (), dependencies: Mapping[str, Collection[str]] | None = None
    ) -> None:
        self.inhibit_rules = tuple(inhibit_rules)
        # workflow -> the services it depends on
        self.dependencies = {wf: tuple(sorted(set(svcs))) for wf, svcs in (dependencies or {}).items() if svcs}
        self.silences: dict[str, Silence] = {}
        self._by_label: dict[tuple[str, str], set[str]] = {}
        self._unindexed: set[str] = set()
        # per inhibit rule: values of its `equal` labels -> firing sources (fingerprint -> None, in order)
        self._sources: list[dict[tuple[str, ...], dict[str, None]]] = [{} for _ in self.inhibit_rules]
        # service -> firing fault alerts naming it (fingerprint -> None, in order)
        self._down: dict[str, dict[str, None]] = {}

    # ---- silences ------------------------------------------------------------
    def add_silence(self, silence: Silence) -> None:
        """Keep ``silence``; the same id replaces it."""
        if silence.id in self.silences:
            self._unindex(self.silences[silence.id])
        self.silences[silence.id] = silence
        key = _index_key(silence)
        if key is None:
            self._unindexed.add(silence.id)
        else:
            self._by_label.setdefault(key, set()).add(silence.id)

    def expire_silence(self, silence_id: str, now: float) -> bool:
        """End a silence at ``now`` (one not started yet is dropped); False if unknown."""
        s = self.silences.get(silence_id)
        if s is None:
            return False
        if s.starts_at >= now:
            self._unindex(s)
            del self.silences[silence_id]
        elif s.ends_at > now:
            self.silences[silence_id] = replace(s, ends_at=now)
        return True

    def _unindex(self, silence: Silence) -> None:
        key = _index_key(silence)
        if key is None:
            self._unindexed.discard(silence.id)
        else:
            ids = self._by_label.get(key)
            if ids is not None:
                ids.discard(silence.id)
                if not ids:
                    del self._by_label[key]

    # ---- what fires ------------------------------------------------------------
    def firing(self, fp: str, alert: Alert) -> None:
        """``alert`` (fingerprint ``fp``) fires from now on."""
        for index, key in self._source_keys(alert):
            index.setdefault(key, {})[fp] = None
        service = self._outage(alert)
        if service is not None:
            self._down.setdefault(service, {})[fp] = None

    def not_firing(self, fp: str, alert: Alert) -> None:
        """``alert`` no longer fires (resolved, or gone)."""
        for index, key in self._source_keys(alert):
            _drop(index, key, fp)
        service = self._outage(alert)
        if service is not None:
            _drop(self._down, service, fp)

    def _source_keys(self, alert: Alert) -> list[tuple[dict[tuple[str, ...], dict[str, None]], tuple[str, ...]]]:
        """(index, key) of each inhibit rule whose source takes ``alert``."""
        return [
            (self._sources[i], rule.equal_values(alert.labels))
            for i, rule in enumerate(self.inhibit_rules)
            if rule.is_source(alert.labels)
        ]

    def _outage(self, alert: Alert) -> str | None:
        """The service ``alert`` says is down, when some workflow depends on services."""
        if self.dependencies and alert.source == "fault":
            return alert.labels.get("service")
        return None

    # ---- the judgement -----------------------------------------------------------
    def reason(self, alert: Alert, now: float) -> str | None:
        """Why ``alert`` is muted at ``now`` (``silenced by ID``, ``inhibited
        by FINGERPRINT``), or None."""
        labels = alert.labels
        if self.silences:
            candidates = set(self._unindexed)
            for item in labels.items():
                ids = self._by_label.get(item)
                if ids:
                    candidates |= ids
            for sid in sorted(candidates):
                if self.silences[sid].mutes(labels, now):
                    return f"silenced by {sid}"
        fp = alert.fingerprint
        for i, rule in enumerate(self.inhibit_rules):
            if not rule.is_target(labels):
                continue
            for src in self._sources[i].get(rule.equal_values(labels), ()):
                if src != fp:  # an alert does not inhibit itself
                    return f"inhibited by {src}"
        if self.dependencies and alert.source in ECHO_SOURCES:
            for service in self.dependencies.get(labels.get("workflow", ""), ()):
                for src in self._down.get(service, ()):
                    return f"inhibited by {src} ({service} is down)"
        return None


def _drop(index: dict[K, dict[str, None]], key: K, fp: str) -> None:
    found = index.get(key)
    if found is not None:
        found.pop(fp, None)
        if not found:
            del index[key]


def _index_key(silence: Silence) -> tuple[str, str] | None:
    """An ``=`` matcher with a non-empty value: any alert it mutes has that label pair."""
    for m in silence.matchers:
        if m.op == "=" and m.value:
            return (m.name, m.value)
    return None
