"""Where a store is by default, and what a batch write of events did."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from flowsight.model.runs.state import StateTransition

DEFAULT_PATH = "flowsight.db"
ENV_URL = "FLOWSIGHT_DATABASE_URL"


@dataclass(slots=True)
class WriteResult:
    """What a batch write did, per event id."""

    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    transitions: list[StateTransition] = field(default_factory=list)
    #: accepted id -> its place in the store's global order (the stream's resume point)
    seqs: dict[str, int] = field(default_factory=dict)
    #: (workflow, step, seconds) of every step attempt these events completed
    step_durations: list[tuple[str, str, float]] = field(default_factory=list)
    #: (workflow, final state, seconds) of every run these events ended
    run_durations: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def refused_transitions(self) -> list[StateTransition]:
        return [t for t in self.transitions if not t.applied]


def resolve_url(url: str | None = None) -> str:
    """The store URL from an argument, ``FLOWSIGHT_DATABASE_URL``, or the default file."""
    return url or os.environ.get(ENV_URL) or DEFAULT_PATH
