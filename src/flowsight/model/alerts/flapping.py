"""Flap detection: an alert that changes state too often stops paging.

More than ``max_changes`` state changes (firing <-> resolved) within
``window`` seconds make an alert *flapping*: one notification says so, then
nothing until it settles; it settles when it has not changed for ``settle``
seconds, and one notification says how it ended (firing or resolved).
A pure state machine over (history, change, now).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FlapPolicy:
    max_changes: int = 4
    window: float = 600.0
    settle: float = 600.0


@dataclass
class FlapState:
    changes: list[float] = field(default_factory=list)
    flapping: bool = False
    last_change: float = 0.0


def on_change(policy: FlapPolicy, st: FlapState, now: float) -> str | None:
    """Record a state change; returns ``"flapping"`` when it starts to flap
    (notify once), None otherwise (notify normally unless ``st.flapping``)."""
    st.changes = [t for t in st.changes if t > now - policy.window]
    st.changes.append(now)
    st.last_change = now
    if not st.flapping and len(st.changes) > policy.max_changes:
        st.flapping = True
        return "flapping"
    return None


def on_tick(policy: FlapPolicy, st: FlapState, now: float) -> str | None:
    """Returns ``"settled"`` once a flapping alert has been quiet for ``settle``."""
    if st.flapping and now - st.last_change >= policy.settle:
        st.flapping = False
        st.changes.clear()
        return "settled"
    return None
