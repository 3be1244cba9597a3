"""The fault monitor's decisions as a pure function: a detector's state, one
check's result and the time in; its next state and what is to be done out."""

from __future__ import annotations

from collections.abc import Sequence

from flowsight.detectors.base import Schedule
from flowsight.model.alerts import Alert, Severity
from flowsight.model.faults import Fault, FaultRecord, fault_type
from flowsight.monitors.fault_decide import (
    Action,
    Broken,
    CheckResult,
    Declare,
    DetectorState,
    Mended,
    Reassess,
    Resolve,
    decide,
)

DOWN = Fault(fault_type("service_unavailable", "db"), "db down", "db-check")
SLOW = Fault(fault_type("service_unavailable", "db"), "db slow to answer", "db-check")


def run(checks: Sequence[CheckResult], *, retries: int = 1) -> list[tuple[str, list[Action]]]:
    """Each check's status and actions, doing what a doer would (a record
    for a declared fault, an alert for a broken detector)."""
    state = DetectorState("db-check", Schedule(retries=retries))
    out = []
    for i, result in enumerate(checks):
        before = state
        state, actions = decide(state, result, 100.0 + i)
        assert before is not state and before.checks == i  # the given state is left as it was
        for a in actions:
            if isinstance(a, Declare):
                state.record = FaultRecord(a.fault, 100.0 + i, Severity.ERROR, id=1)
            elif isinstance(a, Resolve):
                state.record = None
            elif isinstance(a, Broken):
                state.broken_alert = Alert(labels={"alertname": "DetectorBroken"}, starts_at=100.0 + i)
            elif isinstance(a, Mended):
                state.broken_alert = None
        out.append((state.status, actions))
    return out


def ok() -> CheckResult:
    return CheckResult("db-check")


def failed(fault: Fault = DOWN) -> CheckResult:
    return CheckResult("db-check", fault=fault)


def cannot(error: str = "TimeoutError") -> CheckResult:
    return CheckResult("db-check", error=error)


def test_a_failure_within_the_retries_is_not_yet_a_fault_and_the_next_declares_it() -> None:
    assert run([failed(), failed(), failed(SLOW), ok()]) == [
        ("failing", []),
        ("fault", [Declare(DOWN)]),
        ("fault", [Reassess(SLOW)]),
        ("ok", [Resolve()]),
    ]


def test_with_no_retries_the_first_failure_declares_and_a_pass_in_between_starts_the_count_again() -> None:
    assert run([failed(), ok()], retries=0) == [("fault", [Declare(DOWN)]), ("ok", [Resolve()])]
    assert run([failed(), ok(), failed(), failed()]) == [
        ("failing", []),
        ("ok", []),
        ("failing", []),
        ("fault", [Declare(DOWN)]),
    ]


def test_a_detector_that_cannot_look_is_broken_after_the_retries_and_said_once_never_a_fault() -> None:
    assert run([cannot(), cannot(), cannot(), ok()]) == [
        ("pending", []),
        ("broken", [Broken("TimeoutError")]),
        ("broken", []),
        ("ok", [Mended()]),
    ]


def test_a_broken_detector_that_finds_the_fault_open_keeps_it_and_is_mended() -> None:
    assert run([failed(), failed(), cannot(), cannot(), failed(SLOW), ok()]) == [
        ("failing", []),
        ("fault", [Declare(DOWN)]),
        ("fault", []),
        ("broken", [Broken("TimeoutError")]),
        ("fault", [Mended(), Reassess(SLOW)]),
        ("ok", [Resolve()]),
    ]


def test_a_mended_detector_that_passes_resolves_the_fault_opened_before_it_broke() -> None:
    assert run([failed(), failed(), cannot(), cannot(), ok()]) == [
        ("failing", []),
        ("fault", [Declare(DOWN)]),
        ("fault", []),
        ("broken", [Broken("TimeoutError")]),
        ("ok", [Mended(), Resolve()]),
    ]


def test_the_counts_and_times_of_each_check_are_kept() -> None:
    state = DetectorState("db-check", Schedule())
    state, _ = decide(state, CheckResult("db-check", error="boom", started_at=50.0, duration=0.25), 51.0)
    state, _ = decide(state, CheckResult("db-check", fault=DOWN, duration=0.5), 60.0)
    assert (state.checks, state.last_check, state.last_duration, state.errors, state.last_error) == (
        2,
        60.0,
        0.5,
        0,
        None,
    )
    assert (state.failures, state.last_fault, state.status) == (1, DOWN, "failing")
