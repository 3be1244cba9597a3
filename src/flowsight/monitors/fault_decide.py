"""The fault monitor's decisions, with no I/O: :func:`decide` takes what the
monitor knows of one detector (:class:`DetectorState`), one check's result
and the time, and returns what it knows next and what is to be done
(:data:`Action`): declare a fault, reassess the open one, resolve it, say the
detector is broken, or that it works again. :class:`~flowsight.monitors.fault.FaultMonitor`
does the actions (the store, the alerts), as the alert manager's decisions are
made in memory and carried out by its service.

A failed check is not yet a fault: ``retries`` failures in a row are
tolerated; the next one declares it. A check that could not look (the
detector raised or outlived its watchdog) counts towards *broken* the same
way, and never as a fault of its target.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from flowsight.detectors.base import Schedule
from flowsight.model.alerts import Alert
from flowsight.model.faults import Fault, FaultRecord


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: the fault found (None: all well), or ``error`` when the
    detector could not look (it raised, or outlived its watchdog)."""

    detector: str
    fault: Fault | None = None
    error: str | None = None
    started_at: float = 0.0
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.fault is None and self.error is None


@dataclass
class DetectorState:
    """What the monitor knows of one detector. ``status``: pending (not
    checked yet), ok, failing (failed, within its retries), fault (a fault
    is open), broken (it cannot look)."""

    name: str
    schedule: Schedule
    status: str = "pending"
    failures: int = 0
    errors: int = 0
    checks: int = 0
    last_check: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    last_fault: Fault | None = None
    record: FaultRecord | None = None
    broken_alert: Alert | None = None
    touched_at: float = 0.0
    #: the worst delay of a check's start past its scheduled time, in seconds
    max_lateness: float = 0.0
    lateness: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Declare:
    """The retries are used up: open ``fault`` (record it, alert)."""

    fault: Fault


@dataclass(frozen=True, slots=True)
class Reassess:
    """The open fault seen again, as ``fault``: assess it again."""

    fault: Fault


@dataclass(frozen=True, slots=True)
class Resolve:
    """The detector passes again: the open fault ends."""


@dataclass(frozen=True, slots=True)
class Broken:
    """The detector could not look ``retries`` + 1 times in a row: say so."""

    error: str


@dataclass(frozen=True, slots=True)
class Mended:
    """The detector said broken looks again: what was said is resolved."""


Action = Declare | Reassess | Resolve | Broken | Mended


def decide(state: DetectorState, result: CheckResult, now: float) -> tuple[DetectorState, list[Action]]:
    """What the monitor knows of the detector after ``result`` (a new state;
    ``state`` is not changed), and what is to be done, in order. ``record``
    and ``broken_alert`` are the doer's: set when it has done the actions."""
    s = replace(state, checks=state.checks + 1, last_check=result.started_at or now, last_duration=result.duration)
    retries = s.schedule.retries
    if result.error is not None:
        s.errors += 1
        s.last_error = result.error
        if s.errors > retries and s.status != "broken":
            s.status = "broken"
            return s, [Broken(result.error)]
        return s, []
    actions: list[Action] = []
    if s.status == "broken" or s.errors:
        if s.broken_alert is not None:
            actions.append(Mended())
        s.errors, s.last_error = 0, None
        s.status = "fault" if s.record is not None else "ok"
    if result.fault is None:
        s.failures, s.last_fault = 0, None
        if s.record is not None:
            actions.append(Resolve())
        s.status = "ok"
        return s, actions
    s.failures += 1
    s.last_fault = result.fault
    if s.record is not None:
        actions.append(Reassess(result.fault))
    elif s.failures > retries:
        actions.append(Declare(result.fault))
        s.status = "fault"
    else:
        s.status = "failing"
    return s, actions
