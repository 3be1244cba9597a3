"""The built-in rules' decisions with injected ``now``: each rule fires, stays
quiet below its bound, is turned off, is overridden per workflow, resolves."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.model.runs.execution import ExecutionMetrics, apply_event, new_metrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.alerts.builtin_rules import (
    RuleSettings,
    RunFailed,
    RunSlow,
    RunStalled,
    StepFailed,
    StepFailure,
    StepFailures,
    WorkflowSettings,
    alert_key,
    answered_by,
    error_line,
    evaluate_run,
    evaluate_step,
    expire_failures,
    green_again,
    rules_for,
    step_failure,
)
from flowsight.model.runs.state import WorkflowState

K, S = EventKind, WorkflowState
T0 = 1_700_000_000.0
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
RULES = RuleSettings()
TB = 'Traceback (most recent call last):\n  File "etl.py", line 3, in load\nValueError: bad row 17\n'


def ev(
    kind: EventKind,
    step: str | None = None,
    attrs: dict[str, Any] | None = None,
    *,
    t: float,
    run: str = "r-1",
    workflow: str = "etl",
) -> Event:
    return make_event(kind, workflow, run, step, attrs, ts=T0 + t)


def run_of(*events: Event) -> ExecutionMetrics:
    m = new_metrics(events[0])
    for e in events:
        apply_event(m, e)
    return m


def failed_run(run: str = "r-1", workflow: str = "etl", at: float = 250.0) -> ExecutionMetrics:
    return run_of(
        ev(K.STARTED, attrs={"total_steps": 3}, t=0, run=run, workflow=workflow),
        ev(K.STEP_STARTED, "extract", t=0, run=run, workflow=workflow),
        ev(K.STEP_COMPLETED, "extract", t=10, run=run, workflow=workflow),
        ev(K.STEP_STARTED, "load", t=10, run=run, workflow=workflow),
        ev(
            K.STEP_FAILED,
            "load",
            {"error": "bad row 17", "error_type": "ValueError", "traceback": TB},
            t=at,
            run=run,
            workflow=workflow,
        ),
        ev(K.FAILED, attrs={"error": "bad row 17", "error_type": "ValueError"}, t=at, run=run, workflow=workflow),
    )


def completed_run(run: str = "r-2", workflow: str = "etl", start: float = 0.0, end: float = 100.0) -> ExecutionMetrics:
    return run_of(
        ev(K.STARTED, t=start, run=run, workflow=workflow), ev(K.COMPLETED, t=end, run=run, workflow=workflow)
    )


def running(attrs: dict[str, Any] | None = None, *extra: Event, run: str = "r-1") -> ExecutionMetrics:
    """Running since T0; in step 'transform' since T0 + 10, nothing since (unless ``extra``)."""
    return run_of(
        ev(K.STARTED, attrs=attrs, t=0, run=run),
        ev(K.STEP_STARTED, "extract", t=0, run=run),
        ev(K.STEP_COMPLETED, "extract", t=10, run=run),
        ev(K.STEP_STARTED, "transform", t=10, run=run),
        *extra,
    )


def names(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.labels["alertname"], a.status.value) for a in alerts]


def only(settings: RuleSettings, **changes: Any) -> RuleSettings:
    return replace(settings, **changes)


# ---- settings ---------------------------------------------------------------------------
def test_a_workflows_own_rules_win_over_the_global_ones_and_others_keep_the_globals() -> None:
    own = RuleSettings(run_failed=RunFailed(enabled=False))
    wfs = {"etl": WorkflowSettings("etl", rules=own), "report": WorkflowSettings("report", depends_on=("db",))}
    assert rules_for("etl", RULES, wfs) is own
    assert rules_for("report", RULES, wfs) is RULES  # settings without rules: the globals
    assert rules_for("other", RULES, wfs) is RULES
    assert rules_for("etl", RULES) is RULES


@pytest.mark.parametrize(
    ("error", "traceback", "line"),
    [
        ("ValueError: bad row 17\nmore detail", None, "ValueError: bad row 17"),
        (None, TB, "ValueError: bad row 17"),
        ("  ", TB, "ValueError: bad row 17"),
        (None, None, None),
        (None, "\n\n", None),
    ],
)
def test_the_error_line_is_the_errors_first_line_else_the_tracebacks_exception(
    error: str | None, traceback: str | None, line: str | None
) -> None:
    assert error_line(error, traceback) == line


# ---- RunFailed ------------------------------------------------------------------------
def test_a_failed_run_fires_run_failed_with_the_conventional_labels_and_the_error_first() -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300, external_url="https://fs.example/")
    assert a.status is FIRING
    assert dict(a.labels) == {
        "alertname": "RunFailed",
        "workflow": "etl",
        "run_id": "r-1",
        "step": "load",
        "severity": "error",
    }
    assert a.severity is Severity.ERROR and a.source == "state"
    assert a.starts_at == T0 + 250
    assert a.link == "https://fs.example/runs/r-1"
    assert a.annotations["summary"] == "etl: run r-1 failed in step 'load'"
    first, rest = a.annotations["description"].split("\n")
    assert first == "ValueError: bad row 17"
    assert "after 4m 10s" in rest and "failed steps: load" in rest and "1/3 steps completed" in rest


def test_without_an_external_url_an_alert_has_no_link() -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    assert a.link is None


@pytest.mark.parametrize(
    ("state", "fires"),
    [
        (S.FAILED, True),
        (S.RUNNING, False),
        (S.COMPLETED, False),
        (S.CANCELLED, False),
        (S.SUSPENDED, False),
        (S.PENDING, False),
    ],
)
def test_run_failed_fires_only_for_a_failed_run(state: WorkflowState, fires: bool) -> None:
    m = failed_run()
    m.state = state
    got = [a for a in evaluate_run(m, None, RULES, T0 + 300) if a.labels["alertname"] == "RunFailed"]
    assert bool(got) is fires


def test_a_turned_off_run_failed_rule_never_fires() -> None:
    off = only(RULES, run_failed=RunFailed(enabled=False))
    assert evaluate_run(failed_run(), None, off, T0 + 300) == []


def test_a_workflows_override_changes_run_failed_for_that_workflow_only() -> None:
    wfs = {
        "etl": WorkflowSettings("etl", rules=only(RULES, run_failed=RunFailed(severity=Severity.CRITICAL))),
        "quiet": WorkflowSettings("quiet", rules=only(RULES, run_failed=RunFailed(enabled=False))),
    }
    [etl] = evaluate_run(failed_run(), None, rules_for("etl", RULES, wfs), T0 + 300)
    assert etl.severity is Severity.CRITICAL and etl.labels["severity"] == "critical"
    quiet = failed_run(workflow="quiet")
    assert evaluate_run(quiet, None, rules_for("quiet", RULES, wfs), T0 + 300) == []
    [other] = evaluate_run(failed_run(workflow="other"), None, rules_for("other", RULES, wfs), T0 + 300)
    assert other.severity is Severity.ERROR


def test_a_firing_run_failed_is_not_fired_again() -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    assert evaluate_run(failed_run(), None, RULES, T0 + 400, [a]) == []


@pytest.mark.parametrize("state", [S.RUNNING, S.COMPLETED])
def test_run_failed_resolves_when_the_same_run_is_running_or_completed_again(state: WorkflowState) -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    m = failed_run()
    m.state = state
    [r] = [x for x in evaluate_run(m, None, RULES, T0 + 400, [a]) if x.labels["alertname"] == "RunFailed"]
    assert r.status is RESOLVED and r.ends_at == T0 + 400
    assert r.labels == a.labels and r.fingerprint == a.fingerprint
    assert r.annotations["resolution"] == f"run is {state.value} again"


def test_turning_run_failed_off_resolves_what_it_fired() -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    [r] = evaluate_run(failed_run(), None, only(RULES, run_failed=RunFailed(enabled=False)), T0 + 400, [a])
    assert r.status is RESOLVED and "turned off" in r.annotations["resolution"]


def test_firing_alerts_of_other_runs_are_left_alone() -> None:
    [a] = evaluate_run(failed_run(run="r-9"), None, RULES, T0 + 300)
    assert names(evaluate_run(completed_run(run="r-1"), None, RULES, T0 + 400, [a])) == []


@pytest.mark.parametrize(
    ("workflow", "run", "start", "end", "resolves"),
    [
        ("etl", "r-2", 260.0, 400.0, True),  # a later run completes: green again
        ("etl", "r-2", 100.0, 400.0, True),  # overlapping, but it completed after the failure
        ("etl", "r-2", 0.0, 200.0, False),  # it completed before the failure: says nothing about it
        ("etl", "r-2", 0.0, 250.0, False),  # at the same instant: not after
        ("other", "r-2", 260.0, 400.0, False),  # another workflow
    ],
)
def test_a_newer_completed_run_of_the_same_workflow_resolves_run_failed(
    workflow: str, run: str, start: float, end: float, resolves: bool
) -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    got = green_again(completed_run(run=run, workflow=workflow, start=start, end=end), [a], T0 + 500)
    assert names(got) == ([("RunFailed", "resolved")] if resolves else [])
    if resolves:
        assert got[0].annotations["resolution"] == "etl is green again: run r-2 completed"
        assert got[0].ends_at == T0 + 500


def test_only_a_completed_run_makes_its_workflow_green_again() -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    still = run_of(ev(K.STARTED, t=260, run="r-2"))
    also_failed = failed_run(run="r-3", at=400)
    assert green_again(still, [a], T0 + 500) == []
    assert green_again(also_failed, [a], T0 + 500) == []


@pytest.mark.parametrize(
    ("other", "answers"),
    [
        (completed_run(run="r-2", start=260.0, end=400.0), True),
        (completed_run(run="r-2", start=0.0, end=250.0), False),  # not after the failure
        (completed_run(run="r-2", workflow="other", end=400.0), False),
        (completed_run(run="r-1", start=0.0, end=400.0), False),  # the failed run itself
        (run_of(ev(K.STARTED, t=260, run="r-2")), False),  # still running
        (failed_run(run="r-2", at=400.0), False),
    ],
)
def test_only_a_later_completion_of_the_workflow_answers_a_failure(other: ExecutionMetrics, answers: bool) -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    assert answered_by(a, other) is answers


@pytest.mark.parametrize(
    ("age", "expires"),
    [(0.0, False), (86_400.0, False), (7 * 86_400.0, False), (7 * 86_400.0 + 0.1, True), (30 * 86_400.0, True)],
)
def test_run_failed_expires_max_age_after_the_failure(age: float, expires: bool) -> None:
    [a] = evaluate_run(failed_run(), None, RULES, T0 + 300)  # failed at +250
    got = expire_failures([a], T0 + 250 + age, 7 * 86_400.0)
    assert names(got) == ([("RunFailed", "resolved")] if expires else [])
    if expires:
        assert got[0].annotations["resolution"] == (
            "expired: failed more than 7d 00h ago and no later run of etl has completed since"
        )


def test_only_firing_run_failed_alerts_expire() -> None:
    [failed] = evaluate_run(failed_run(), None, RULES, T0 + 300)
    [stalled] = evaluate_run(running({"stall_timeout": 60}), None, RULES, T0 + 400)
    long_ago = T0 + 100 * 86_400.0
    assert expire_failures([stalled, replace(failed, status=RESOLVED)], long_ago, 86_400.0) == []


# ---- RunStalled ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("idle", "fires"),
    [(0.0, False), (59.9, False), (60.0, False), (60.1, True), (3600.0, True)],
)
def test_run_stalled_fires_only_once_idle_beyond_the_bound(idle: float, fires: bool) -> None:
    m = running({"stall_timeout": 60})
    got = evaluate_run(m, None, RULES, T0 + 10 + idle)
    assert names(got) == ([("RunStalled", "firing")] if fires else [])
    if fires:
        a = got[0]
        assert dict(a.labels) == {
            "alertname": "RunStalled",
            "workflow": "etl",
            "run_id": "r-1",
            "step": "transform",
            "severity": "warning",
        }
        assert a.source == "execution" and a.starts_at == T0 + 70
        assert a.annotations["summary"] == "etl: run r-1 is stalled in step 'transform'"
        assert "bound of 1m 00s (the run's stall_timeout)" in a.annotations["description"]


def test_the_stall_bound_comes_from_history_when_there_is_some() -> None:
    # transform's p95 over (10, 10, 10, 10, 20) is 18: the bound is 3 x 18 = 54 s
    h = WorkflowHistory(
        "etl",
        5,
        (60.0,) * 5,
        ("extract", "transform"),
        {"extract": (10.0,) * 5, "transform": (10.0, 10.0, 10.0, 10.0, 20.0)},
    )
    assert evaluate_run(running(), h, RULES, T0 + 10 + 54) == []
    [a] = evaluate_run(running(), h, RULES, T0 + 10 + 55)
    assert "54.0s (3x the p95 duration of the step in past runs)" in a.annotations["description"]


def test_without_history_or_stall_timeout_the_given_timeout_bounds_a_stall() -> None:
    assert evaluate_run(running(), None, RULES, T0 + 10 + 100, timeout=100) == []
    assert names(evaluate_run(running(), None, RULES, T0 + 10 + 101, timeout=100)) == [("RunStalled", "firing")]


def test_a_turned_off_run_stalled_rule_never_fires_and_resolves_what_it_fired() -> None:
    m = running({"stall_timeout": 60})
    off = only(RULES, run_stalled=RunStalled(enabled=False))
    assert evaluate_run(m, None, off, T0 + 1000) == []
    [a] = evaluate_run(m, None, RULES, T0 + 1000)
    assert names(evaluate_run(m, None, off, T0 + 1001, [a])) == [("RunStalled", "resolved")]


def test_a_workflows_override_changes_run_stalled() -> None:
    wfs = {"etl": WorkflowSettings("etl", rules=only(RULES, run_stalled=RunStalled(severity=Severity.CRITICAL)))}
    [a] = evaluate_run(running({"stall_timeout": 60}), None, rules_for("etl", RULES, wfs), T0 + 1000)
    assert a.severity is Severity.CRITICAL and a.labels["severity"] == "critical"


@pytest.mark.parametrize(
    ("then", "why"),
    [
        (ev(K.HEARTBEAT, t=500), "the run shows activity again"),
        (ev(K.PROGRESS, attrs={"done": 1, "total": 2}, t=500), "the run shows activity again"),
        (ev(K.STEP_COMPLETED, "transform", t=500), "the run shows activity again"),
        (ev(K.SUSPENDED, attrs={"reason": "approval"}, t=500), "run is suspended"),
        (ev(K.COMPLETED, t=500), "run is completed"),
        (ev(K.CANCELLED, t=500), "run is cancelled"),
    ],
)
def test_run_stalled_resolves_on_activity_or_when_the_run_stops_running(then: Event, why: str) -> None:
    [a] = evaluate_run(running({"stall_timeout": 60}), None, RULES, T0 + 400)
    got = evaluate_run(running({"stall_timeout": 60}, then), None, RULES, T0 + 501, [a])
    assert names(got) == [("RunStalled", "resolved")]
    assert got[0].annotations["resolution"] == why and got[0].ends_at == T0 + 501


# ---- RunSlow -------------------------------------------------------------------------------
def history(*durations: float) -> WorkflowHistory:
    return WorkflowHistory("etl", len(durations), tuple(durations))


FIVE = history(90.0, 100.0, 100.0, 110.0, 400.0)  # median 100: the bound is 2 x 100 = 200 s


@pytest.mark.parametrize(
    ("elapsed", "fires"),
    [(100.0, False), (199.9, False), (200.0, False), (200.1, True), (5000.0, True)],
)
def test_run_slow_fires_once_a_run_exceeds_factor_times_the_median_duration(elapsed: float, fires: bool) -> None:
    m = running(None, ev(K.HEARTBEAT, t=elapsed))  # active: not stalled
    got = evaluate_run(m, FIVE, RULES, T0 + elapsed)
    assert names(got) == ([("RunSlow", "firing")] if fires else [])
    if fires:
        a = got[0]
        assert dict(a.labels) == {"alertname": "RunSlow", "workflow": "etl", "run_id": "r-1", "severity": "warning"}
        assert a.source == "execution" and a.starts_at == T0 + 200
        assert (
            "bound of 3m 20s (2x the usual 1m 40s, the median of the last 5 completed runs)"
            in a.annotations["description"]
        )


@pytest.mark.parametrize(("runs", "min_runs", "fires"), [(4, 5, False), (5, 5, True), (2, 2, True), (0, 0, False)])
def test_run_slow_needs_min_runs_completed_runs(runs: int, min_runs: int, fires: bool) -> None:
    rules = only(RULES, run_slow=RunSlow(min_runs=min_runs))
    m = running(None, ev(K.HEARTBEAT, t=1000))
    got = evaluate_run(m, history(*[100.0] * runs), rules, T0 + 1000)
    assert names(got) == ([("RunSlow", "firing")] if fires else [])
    assert evaluate_run(m, None, rules, T0 + 1000) == []


def test_run_slow_bound_is_never_under_five_seconds() -> None:
    fast = history(*[0.01] * 5)
    assert evaluate_run(running(None, ev(K.HEARTBEAT, t=5)), fast, RULES, T0 + 5) == []
    assert names(evaluate_run(running(None, ev(K.HEARTBEAT, t=5.1)), fast, RULES, T0 + 5.1)) == [("RunSlow", "firing")]


@pytest.mark.parametrize("state", [S.SUSPENDED, S.COMPLETED, S.PENDING])
def test_run_slow_fires_only_for_a_running_run(state: WorkflowState) -> None:
    m = running(None, ev(K.HEARTBEAT, t=1000))
    m.state = state
    assert [a for a in evaluate_run(m, FIVE, RULES, T0 + 1000) if a.name == "RunSlow"] == []


def test_a_turned_off_or_overridden_run_slow_rule() -> None:
    m = running(None, ev(K.HEARTBEAT, t=300))
    assert evaluate_run(m, FIVE, only(RULES, run_slow=RunSlow(enabled=False)), T0 + 300) == []
    wfs = {"etl": WorkflowSettings("etl", rules=only(RULES, run_slow=RunSlow(factor=4.0)))}
    assert evaluate_run(m, FIVE, rules_for("etl", RULES, wfs), T0 + 300) == []  # bound 400 s
    assert names(evaluate_run(m, FIVE, rules_for("other", RULES, wfs), T0 + 300)) == [("RunSlow", "firing")]


def test_run_slow_stays_firing_until_the_run_ends_then_resolves() -> None:
    m = running(None, ev(K.HEARTBEAT, t=300))
    [a] = evaluate_run(m, FIVE, RULES, T0 + 300)
    # the bound moved past the elapsed time, the run is suspended: still late
    assert evaluate_run(m, history(*[1000.0] * 5), RULES, T0 + 310, [a]) == []
    paused = running(None, ev(K.HEARTBEAT, t=300), ev(K.SUSPENDED, t=320))
    assert evaluate_run(paused, FIVE, RULES, T0 + 330, [a]) == []
    done = running(None, ev(K.HEARTBEAT, t=300), ev(K.COMPLETED, t=400))
    [r] = evaluate_run(done, FIVE, RULES, T0 + 401, [a])
    assert r.status is RESOLVED and r.annotations["resolution"] == "run completed after 6m 40s"
    [r] = evaluate_run(m, FIVE, only(RULES, run_slow=RunSlow(enabled=False)), T0 + 401, [a])
    assert r.annotations["resolution"] == "the RunSlow rule was turned off"


# ---- StepFailedRepeatedly --------------------------------------------------------------
def fail(t: float, run: str = "r-1", error: str = "ValueError: bad row") -> StepFailure:
    return StepFailure(T0 + t, run, f"{run}-{t}", error)


def known(*failures: StepFailure, completed: float | None = None) -> StepFailures:
    k = StepFailures()
    for f in failures:
        k.failed(f)
    if completed is not None:
        k.completed(T0 + completed)
    return k


@pytest.mark.parametrize(
    ("times", "at", "now", "fires"),
    [
        (3, (0, 10, 20), 20, True),
        (3, (0, 10), 20, False),  # below the bound
        (3, (0, 10, 20), 3600, True),  # the first exactly `window` ago still counts
        (3, (0, 10, 20), 3600.1, False),  # the first has left the window
        (3, (0, 1000, 4000), 4000, False),  # never three within an hour
        (1, (0,), 0, True),
        (5, (0, 1, 2, 3, 4), 4, True),
    ],
)
def test_step_failed_repeatedly_fires_at_times_failures_within_the_window(
    times: int, at: tuple[float, ...], now: float, fires: bool
) -> None:
    rule = StepFailed(times=times, window=3600)
    got = evaluate_step("etl", "load", known(*(fail(t) for t in at)), rule, T0 + now)
    assert names(got) == ([("StepFailedRepeatedly", "firing")] if fires else [])


def test_step_failed_repeatedly_counts_across_runs_and_has_no_run_id_label() -> None:
    k = known(fail(0, "r-1"), fail(10, "r-2", "KeyError: 'id'"), fail(20, "r-3", "OSError: disk full"))
    [a] = evaluate_step("etl", "load", k, StepFailed(), T0 + 30, external_url="https://fs")
    assert dict(a.labels) == {
        "alertname": "StepFailedRepeatedly",
        "workflow": "etl",
        "step": "load",
        "severity": "warning",
    }
    assert alert_key(a) == ("StepFailedRepeatedly", "etl", "load")
    assert a.source == "execution" and a.starts_at == T0 + 20 and a.link == "https://fs/runs/r-3"
    assert a.annotations["summary"] == "etl: step 'load' failed 3 times within 1h 00m"
    first, rest = a.annotations["description"].split("\n")
    assert first == "OSError: disk full"  # the latest error first
    assert "across 3 runs" in rest and "the bound is 3" in rest and "10.0s ago in run r-3" in rest


def test_a_completion_of_the_step_starts_the_count_again() -> None:
    k = known(fail(0), fail(10), completed=15)
    k.failed(fail(20))
    assert evaluate_step("etl", "load", k, StepFailed(), T0 + 30) == []
    k.failed(fail(30))
    k.failed(fail(40))
    assert names(evaluate_step("etl", "load", k, StepFailed(), T0 + 40)) == [("StepFailedRepeatedly", "firing")]


def test_a_failure_seen_twice_or_from_before_the_last_completion_is_not_counted() -> None:
    k = known(fail(0), completed=5)
    assert k.failed(fail(3)) is False  # came before the completion, arrived late
    assert k.failed(fail(10)) is True
    assert k.failed(fail(10)) is False  # the same event again
    assert len(k.failures) == 1


def test_a_turned_off_or_overridden_step_rule() -> None:
    k = known(fail(0), fail(10), fail(20))
    assert evaluate_step("etl", "load", k, StepFailed(enabled=False), T0 + 20) == []
    wfs = {"etl": WorkflowSettings("etl", rules=only(RULES, step_failed=StepFailed(times=5)))}
    assert evaluate_step("etl", "load", k, rules_for("etl", RULES, wfs).step_failed, T0 + 20) == []
    assert len(evaluate_step("report", "load", k, rules_for("report", RULES, wfs).step_failed, T0 + 20)) == 1


def test_step_failed_repeatedly_resolves_when_the_step_later_completes() -> None:
    k = known(fail(0), fail(10), fail(20))
    [a] = evaluate_step("etl", "load", k, StepFailed(), T0 + 20)
    assert evaluate_step("etl", "load", k, StepFailed(), T0 + 30, a) == []  # firing: not again
    k.failed(fail(40))
    k.completed(T0 + 15)  # a completion before the alert began (arrived late): not a fix
    assert evaluate_step("etl", "load", k, StepFailed(), T0 + 50, a) == []
    k.completed(T0 + 60)
    [r] = evaluate_step("etl", "load", k, StepFailed(), T0 + 61, a)
    assert r.status is RESOLVED and r.annotations["resolution"] == "step 'load' completed again"
    assert r.fingerprint == a.fingerprint
    [r] = evaluate_step("etl", "load", known(), StepFailed(enabled=False), T0 + 61, a)
    assert r.annotations["resolution"] == "the StepFailedRepeatedly rule was turned off"


def test_pruning_drops_failures_out_of_the_window() -> None:
    k = known(fail(0), fail(100), fail(200))
    k.prune(T0 + 3700, 3600)
    assert [f.ts for f in k.failures] == [T0 + 100, T0 + 200]


def test_a_step_failure_is_read_from_its_event() -> None:
    e = ev(K.STEP_FAILED, "load", {"error": "bad row", "error_type": "ValueError", "traceback": TB}, t=5)
    f = step_failure(e)
    assert (f.ts, f.run_id, f.event_id, f.error, f.traceback) == (T0 + 5, "r-1", e.id, "ValueError: bad row", TB)
    with pytest.raises(ValueError, match="step_failed"):
        step_failure(ev(K.STEP_COMPLETED, "load", t=5))
