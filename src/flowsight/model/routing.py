"""The routing tree and aggregation groups, with Alertmanager's meanings.

An alert enters at the root and descends: at each level the first child
whose matchers match takes it (and, with ``continue``, the siblings after it
are tried too); a route whose children all decline keeps the alert itself.
Each route gathers its alerts into groups by the values of ``group_by``
(``...`` groups by every label) and decides, as a pure function of the group
and ``now``, when the group is due to be sent:

* ``group_wait`` after a group's first alert (more may join it meanwhile);
* then every ``group_interval`` while something in it changed;
* an unchanged, still-firing group again after ``repeat_interval``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flowsight.model.alerts import Matcher, matches_all


@dataclass(frozen=True)
class Route:
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    continue_: bool = False
    routes: tuple[Route, ...] = ()
    name: str = ""  # a stable id; the path from the root when not given

    def named(self, path: str = "root") -> Route:
        """This tree with every route named by its path (``root.0.1``)."""
        kids = tuple(r.named(f"{path}.{i}") for i, r in enumerate(self.routes))
        return Route(self.receiver, self.matchers, self.group_by, self.group_wait, self.group_interval,
                     self.repeat_interval, self.continue_, kids, self.name or path)


def match_routes(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes (leaves of the descent) that take an alert with ``labels``."""
    if not matches_all(route.matchers, labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        hits = match_routes(child, labels)
        if hits:
            found.extend(hits)
            if not child.continue_:
                break
    return found or [route]


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    """The route's name and the values of its ``group_by`` labels."""
    if "..." in route.group_by:
        keys = sorted(labels)
    else:
        keys = sorted(route.group_by)
    return route.name + "{" + ",".join(f"{k}={labels.get(k, '')!r}" for k in keys) + "}"


@dataclass
class GroupTimer:
    """When one aggregation group was created, last sent, and last changed."""

    created_at: float
    last_sent_at: float | None = None
    changed_since_sent: bool = True
    firing: bool = True  # anything in it still firing
    fingerprints_sent: frozenset[str] = field(default_factory=frozenset)


def next_send(route: Route, g: GroupTimer) -> float | None:
    """When the group is next due; None when there is nothing to send."""
    if g.last_sent_at is None:
        return g.created_at + route.group_wait
    if g.changed_since_sent:
        return g.last_sent_at + route.group_interval
    if g.firing:
        return g.last_sent_at + route.repeat_interval
    return None


def due(route: Route, g: GroupTimer, now: float) -> bool:
    at = next_send(route, g)
    return at is not None and now >= at
