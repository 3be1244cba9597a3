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
        return Route(
            self.receiver,
            self.matchers,
            self.group_by,
            self.group_wait,
            self.group_interval,
            self.repeat_interval,
            self.continue_,
            kids,
            self.name or path,
        )


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


class Router:
    """:func:`match_routes` compiled for speed: each route's children are
    indexed by one equality matcher each, so an alert is tested only against
    the children that can take it (in their order), not against all of them."""

    def __init__(self, root: Route) -> None:
        self.root = root
        self._index: dict[int, tuple[dict[tuple[str, str], list[int]], list[int], tuple[str, ...]]] = {}
        self._build(root)

    def _build(self, route: Route) -> None:
        by_pair: dict[tuple[str, str], list[int]] = {}
        loose: list[int] = []
        for i, child in enumerate(route.routes):
            eq = next((m for m in child.matchers if m.op == "=" and m.value), None)
            if eq is None:
                loose.append(i)
            else:
                by_pair.setdefault((eq.name, eq.value), []).append(i)
            self._build(child)
        names = tuple(sorted({name for name, _ in by_pair}))
        self._index[id(route)] = (by_pair, loose, names)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        return self._match(self.root, labels)

    def _match(self, route: Route, labels: Mapping[str, str]) -> list[Route]:
        if route.matchers and not matches_all(route.matchers, labels):
            return []
        if not route.routes:
            return [route]
        by_pair, loose, names = self._index[id(route)]
        candidates = list(loose)
        for name in names:
            hit = by_pair.get((name, labels.get(name, "")))
            if hit:
                candidates.extend(hit)
        if len(candidates) > 1:
            candidates.sort()
        found: list[Route] = []
        for i in candidates:
            child = route.routes[i]
            hits = self._match(child, labels)
            if hits:
                found.extend(hits)
                if not child.continue_:
                    break
        return found or [route]
