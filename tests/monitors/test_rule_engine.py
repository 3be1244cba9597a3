"""RuleEngine against real stores (SQLite and PostgreSQL): real events written
with ``store.runs.write_events``, the alerts handed to ``send`` collected, time
injected (nothing sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.hub import Hub
from flowsight.model.alerts.builtin_rules import (
    RuleSettings,
    RunFailed,
    RunSlow,
    StepFailed,
    WorkflowSettings,
    alert_key,
)
from flowsight.monitors.rule_engine import RuleEngine
from flowsight.store import SqlStore

K = EventKind
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Rig:
    """A store, an engine on it, the alerts it sent, and the clock."""

    def __init__(
        self,
        store: SqlStore,
        settings: RuleSettings = RuleSettings(),
        workflows: dict[str, WorkflowSettings] | None = None,
        **kw: Any,
    ) -> None:
        self.store = store
        self.clock = Clock(T0)
        self.sent: list[Alert] = []
        self.engine = RuleEngine(
            store,
            self.sent.append,
            settings,
            workflows or {},
            clock=self.clock,
            external_url="https://fs.example",
            **kw,
        )

    def write(self, *events: Event, at: float | None = None) -> None:
        """Store a batch, then let the engine observe it (as the hub does)."""
        self.clock.t = max(e.ts for e in events) if at is None else at
        self.store.runs.write_events(list(events))
        self.engine.observe(list(events))

    def tick(self, t: float) -> None:
        self.clock.t = T0 + t
        self.engine.tick()

    def got(self) -> list[tuple[str, str, str]]:
        """(alertname, run_id or step, status) of each alert sent, in order; then forgets them."""
        out = [
            (a.labels["alertname"], a.labels.get("run_id") or a.labels.get("step", ""), a.status.value)
            for a in self.sent
        ]
        self.sent.clear()
        return out


def e(kind: K, run: str, t: float, step: str | None = None, workflow: str = "etl", **attrs: Any) -> Event:
    return make_event(kind, workflow, run, step, attrs or None, ts=T0 + t)


def failing_run(run: str, t: float, workflow: str = "etl") -> list[Event]:
    return [
        e(K.STARTED, run, t, workflow=workflow, total_steps=2),
        e(K.STEP_STARTED, run, t, "load", workflow),
        e(
            K.STEP_FAILED,
            run,
            t + 5,
            "load",
            workflow,
            error="bad row",
            error_type="ValueError",
            traceback="Traceback (most recent call last):\nValueError: bad row\n",
        ),
        e(K.FAILED, run, t + 5, workflow=workflow, error="bad row", error_type="ValueError"),
    ]


def ok_run(run: str, t: float, took: float = 100.0, workflow: str = "etl") -> list[Event]:
    return [
        e(K.STARTED, run, t, workflow=workflow, total_steps=1),
        e(K.STEP_STARTED, run, t, "load", workflow),
        e(K.STEP_COMPLETED, run, t + took, "load", workflow),
        e(K.COMPLETED, run, t + took, workflow=workflow),
    ]


@pytest.fixture
def rig(store: SqlStore) -> Rig:
    return Rig(store)


def count_calls(repository: object, name: str) -> list[tuple[Any, ...]]:
    """Record each call of ``repository.name`` (the real method still runs)."""
    calls: list[tuple[Any, ...]] = []
    real: Callable[..., Any] = getattr(repository, name)

    def spy(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real(*args, **kw)

    setattr(repository, name, spy)
    return calls


# ---- RunFailed -------------------------------------------------------------------------
def test_a_failed_run_fires_once_and_a_newer_completed_run_resolves_it(rig: Rig) -> None:
    batch = failing_run("r-1", 0)
    rig.write(*batch)
    [a] = rig.sent
    assert dict(a.labels) == {
        "alertname": "RunFailed",
        "workflow": "etl",
        "run_id": "r-1",
        "step": "load",
        "severity": "error",
    }
    assert a.source == "state" and a.link == "https://fs.example/runs/r-1"
    assert a.annotations["description"].startswith("ValueError: bad row\n")
    rig.got()
    rig.engine.observe(batch)  # the same batch again (a retry): nothing new
    rig.tick(10)
    assert rig.got() == []
    rig.write(*ok_run("r-2", 20))
    assert rig.got() == [("RunFailed", "r-1", "resolved")]
    rig.write(*ok_run("r-3", 200))  # resolved once only
    assert rig.got() == []


def test_a_run_that_completed_before_the_failure_does_not_resolve_it(rig: Rig) -> None:
    rig.write(*ok_run("r-0", 0, took=10)[:3])  # r-0 still running when r-1 fails
    rig.write(*failing_run("r-1", 5))
    rig.write(e(K.COMPLETED, "r-0", 8), at=T0 + 20)  # arrived late: completed at +8, before the failure at +10
    assert rig.got() == [("RunFailed", "r-1", "firing")]
    rig.write(*ok_run("r-2", 30, workflow="other"))  # another workflow says nothing
    assert rig.got() == []


def test_a_rule_turned_off_for_one_workflow_stays_on_for_the_others(store: SqlStore) -> None:
    off = RuleSettings(run_failed=RunFailed(enabled=False))
    rig = Rig(store, workflows={"etl": WorkflowSettings("etl", rules=off)})
    rig.write(*failing_run("r-1", 0), *failing_run("r-2", 0, workflow="report"))
    assert [(a.labels["workflow"], a.labels["run_id"]) for a in rig.sent] == [("report", "r-2")]

    everywhere = Rig(store, settings=off)
    everywhere.write(*failing_run("r-3", 50, workflow="report"))
    everywhere.tick(100)
    assert everywhere.got() == []


# ---- RunStalled ------------------------------------------------------------------------
def test_tick_fires_run_stalled_past_the_bound_and_resolves_it_on_activity(rig: Rig) -> None:
    rig.write(e(K.STARTED, "r-1", 0, stall_timeout=60), e(K.STEP_STARTED, "r-1", 0, "load"))
    rig.tick(60)
    assert rig.got() == []
    rig.tick(61)
    [a] = rig.sent
    assert a.labels["step"] == "load" and "bound of 1m 00s" in a.annotations["description"]
    assert rig.got() == [("RunStalled", "r-1", "firing")]
    rig.tick(90)
    assert rig.got() == []
    rig.write(e(K.HEARTBEAT, "r-1", 100))  # not a kind observe reads the run for: the next tick resolves
    assert rig.got() == []
    rig.tick(101)
    assert rig.got() == [("RunStalled", "r-1", "resolved")]


def test_a_stalled_run_that_ends_is_resolved_by_observe(rig: Rig) -> None:
    rig.write(e(K.STARTED, "r-1", 0, stall_timeout=60))
    rig.tick(100)
    rig.write(e(K.COMPLETED, "r-1", 120))
    assert rig.got() == [("RunStalled", "r-1", "firing"), ("RunStalled", "r-1", "resolved")]


def test_a_stalled_run_suspended_then_cancelled_between_ticks_is_resolved(rig: Rig) -> None:
    rig.write(e(K.STARTED, "r-1", 0, stall_timeout=60))
    rig.tick(100)
    rig.store.runs.write_events([e(K.CANCELLED, "r-1", 110)])  # written by someone the engine does not hear
    rig.tick(120)
    assert rig.got() == [("RunStalled", "r-1", "firing"), ("RunStalled", "r-1", "resolved")]


# ---- RunSlow ----------------------------------------------------------------------------
def test_run_slow_fires_past_factor_times_the_median_and_resolves_when_the_run_ends(store: SqlStore) -> None:
    rig = Rig(store, settings=RuleSettings(run_slow=RunSlow(factor=2.0, min_runs=5)))
    for i in range(4):
        rig.write(*ok_run(f"old-{i}", i * 200, took=100))
    rig.write(e(K.STARTED, "r-new", 1000, stall_timeout=10_000))
    rig.tick(1000 + 190)
    assert rig.got() == []  # only 4 completed runs
    rig.write(*ok_run("old-4", 1100, took=100))
    rig.tick(1000 + 200)  # history is re-read after a completion (5 s on); exactly 2 x the median is not over
    assert rig.got() == []
    rig.tick(1000 + 201)
    [a] = rig.sent
    assert dict(a.labels) == {"alertname": "RunSlow", "workflow": "etl", "run_id": "r-new", "severity": "warning"}
    assert "2x the usual 1m 40s" in a.annotations["description"]
    rig.got()
    rig.tick(1000 + 900)
    assert rig.got() == []
    rig.write(e(K.COMPLETED, "r-new", 1000 + 950))
    assert rig.got() == [("RunSlow", "r-new", "resolved")]


def test_history_is_read_once_per_workflow_while_cached(store: SqlStore) -> None:
    rig = Rig(store, history_ttl=30.0)
    calls = count_calls(store.stats, "history")
    rig.write(e(K.STARTED, "r-1", 0), e(K.STARTED, "r-2", 0), e(K.STARTED, "r-3", 0, workflow="report"))
    for t in (1, 10, 20, 29):
        rig.tick(t)
    assert sorted(c[0] for c in calls) == ["etl", "report"]  # read at the first call (t=0), then cached
    rig.tick(31)
    assert len(calls) == 4


def test_runs_completing_all_the_time_refresh_their_workflows_history_at_most_every_few_seconds(
    store: SqlStore,
) -> None:
    rig = Rig(store, history_ttl=30.0, history_refresh=5.0)
    calls = count_calls(store.stats, "history")
    rig.write(e(K.STARTED, "live", 0))
    rig.tick(0)
    assert len(calls) == 1
    for i in range(1, 9):  # a run of the workflow completes every second
        rig.write(*ok_run(f"done-{i}", i - 0.5, took=0.4))
        rig.tick(i)
    assert len(calls) == 2  # read at 0, then again at 5 (not at each completion)
    rig.tick(9.5)
    assert len(calls) == 2
    rig.tick(10)
    assert len(calls) == 3


# ---- StepFailedRepeatedly ---------------------------------------------------------------
def step_fail(run: str, t: float, step: str = "load", workflow: str = "etl") -> Event:
    return e(K.STEP_FAILED, run, t, step, workflow, error=f"boom at {t:g}", error_type="RuntimeError")


def test_step_failures_across_runs_fire_once_and_a_later_completion_resolves(store: SqlStore) -> None:
    rig = Rig(store, settings=RuleSettings(step_failed=StepFailed(times=3, window=600)))
    rig.write(e(K.STARTED, "r-1", 0), step_fail("r-1", 1), step_fail("r-1", 2))
    assert rig.got() == []
    rig.write(e(K.STARTED, "r-2", 100), step_fail("r-2", 101))
    [a] = rig.sent
    assert dict(a.labels) == {
        "alertname": "StepFailedRepeatedly",
        "workflow": "etl",
        "step": "load",
        "severity": "warning",
    }
    assert a.annotations["description"].startswith("RuntimeError: boom at 101\n")
    assert a.link == "https://fs.example/runs/r-2"
    rig.got()
    rig.write(step_fail("r-2", 102))
    rig.write(e(K.STEP_COMPLETED, "r-2", 103, "other-step"))
    assert rig.got() == []
    rig.write(e(K.STEP_COMPLETED, "r-2", 110, "load"))
    assert rig.got() == [("StepFailedRepeatedly", "load", "resolved")]


def test_step_failures_spread_wider_than_the_window_do_not_fire(store: SqlStore) -> None:
    rig = Rig(store, settings=RuleSettings(step_failed=StepFailed(times=3, window=60)))
    rig.write(e(K.STARTED, "r-1", 0), step_fail("r-1", 0), step_fail("r-1", 50))
    rig.tick(100)
    rig.write(step_fail("r-1", 100))
    assert rig.got() == []


# ---- keeping it cheap ---------------------------------------------------------------------
def test_observe_reads_a_run_only_when_its_events_can_change_a_verdict(rig: Rig) -> None:
    calls = count_calls(rig.store.runs, "get_run")
    rig.write(
        e(K.STARTED, "r-1", 0),
        e(K.STEP_STARTED, "r-1", 0, "a"),
        e(K.STEP_COMPLETED, "r-1", 1, "a"),
        e(K.PROGRESS, "r-1", 2, done=1, total=2),
        e(K.HEARTBEAT, "r-1", 3),
    )
    assert calls == []  # nothing fires for it and none of these can fire
    rig.write(*failing_run("r-2", 10), *failing_run("r-3", 10), e(K.HEARTBEAT, "r-1", 20))
    assert sorted(c[0] for c in calls) == ["r-2", "r-3"]  # once per run, for the batch
    calls.clear()
    rig.write(*ok_run("r-4", 30))  # etl has failures firing: the completion is read
    assert calls == [("r-4",)]


# ---- after a restart -------------------------------------------------------------------------
def test_a_new_engine_rebuilds_what_fires_from_the_store(store: SqlStore) -> None:
    before = Rig(store, settings=RuleSettings(step_failed=StepFailed(times=2, window=600)))
    before.write(*failing_run("green", 0))
    before.write(*ok_run("ok", 10))  # etl green again after "green" failed
    before.write(*failing_run("red", 0, workflow="report"))
    before.write(e(K.STARTED, "quiet", 0, stall_timeout=60))
    before.write(
        e(K.STARTED, "flaky", 0, workflow="sync"),
        step_fail("flaky", 1, workflow="sync"),
        step_fail("flaky", 2, workflow="sync"),
    )
    assert len(before.sent) == 4  # RunFailed green (then resolved), RunFailed red, StepFailedRepeatedly

    after = Rig(store, settings=RuleSettings(step_failed=StepFailed(times=2, window=600)))
    after.tick(100)
    assert sorted(after.got()) == [
        ("RunFailed", "red", "firing"),
        ("RunStalled", "quiet", "firing"),
        ("StepFailedRepeatedly", "load", "firing"),
    ]
    # and it resolves them as the old one would have
    after.write(
        *ok_run("ok2", 200, workflow="report"),
        e(K.HEARTBEAT, "quiet", 200),
        e(K.STEP_COMPLETED, "flaky", 200, "load", "sync"),
    )
    after.tick(201)
    assert sorted(after.got()) == [
        ("RunFailed", "red", "resolved"),
        ("RunStalled", "quiet", "resolved"),
        ("StepFailedRepeatedly", "load", "resolved"),
    ]


def test_failures_the_step_recovered_from_before_a_restart_are_not_fired_again(store: SqlStore) -> None:
    before = Rig(store)
    before.write(e(K.STARTED, "r-1", 0), *(step_fail("r-1", t) for t in (1, 2, 3)))
    before.write(e(K.STARTED, "r-2", 10), e(K.STEP_COMPLETED, "r-2", 11, "load"), e(K.COMPLETED, "r-2", 12))
    assert before.got() == [("StepFailedRepeatedly", "load", "firing"), ("StepFailedRepeatedly", "load", "resolved")]
    after = Rig(store)
    after.tick(20)
    assert after.got() == []


def test_alerts_restored_from_before_a_restart_are_resolved_when_their_condition_ended(store: SqlStore) -> None:
    before = Rig(store)
    before.write(e(K.STARTED, "r-1", 0, stall_timeout=60))
    before.tick(100)
    fired = list(before.sent)
    store.runs.write_events([e(K.COMPLETED, "r-1", 150)])  # while no engine runs

    after = Rig(store)
    other = Alert({"alertname": "DiskFull", "host": "a"})
    after.engine.restore([*fired, other, replace(fired[0], status=AlertStatus.RESOLVED)])
    after.tick(200)
    assert after.got() == [("RunStalled", "r-1", "resolved")]
    assert after.engine.firing == {}


def test_severity_and_link_follow_the_settings(store: SqlStore) -> None:
    rig = Rig(store, settings=RuleSettings(run_failed=RunFailed(severity=Severity.CRITICAL)))
    rig.write(*failing_run("r-1", 0))
    [a] = rig.sent
    assert a.severity is Severity.CRITICAL and a.labels["severity"] == "critical"


# ---- alerts handed over after a restart, whose condition ended while no engine ran -------------
def fired_before(store: SqlStore, *batches: list[Event], settings: RuleSettings = RuleSettings()) -> list[Alert]:
    """The alerts an engine fired for ``batches`` (and did not resolve)."""
    before = Rig(store, settings)
    for batch in batches:
        before.write(*batch)
    return list(before.engine.firing.values())


def test_a_restored_run_failed_is_resolved_when_its_workflow_went_green_meanwhile(store: SqlStore) -> None:
    fired = fired_before(store, failing_run("r-1", 0), failing_run("r-9", 0, workflow="report"))
    store.runs.write_events(ok_run("r-2", 100))  # while no engine runs
    after = Rig(store)
    after.engine.restore(fired)
    after.tick(300)
    [r] = after.sent
    assert r.annotations["resolution"] == "etl is green again: run r-2 completed"
    assert after.got() == [("RunFailed", "r-1", "resolved")]  # report's r-9 still fires
    assert set(after.engine.firing) == {("RunFailed", "report", "r-9")}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("rule turned off", "the RunFailed rule was turned off"),
        ("run pruned", "the run is no longer in the store"),
    ],
)
def test_a_restored_run_failed_is_resolved_when_it_no_longer_holds(store: SqlStore, change: str, why: str) -> None:
    fired = fired_before(store, failing_run("r-1", 0))
    settings = RuleSettings()
    if change == "rule turned off":
        settings = RuleSettings(run_failed=RunFailed(enabled=False))
    else:
        store.runs.prune(T0 + 1000)
    after = Rig(store, settings)
    after.engine.restore(fired)
    after.write(e(K.HEARTBEAT, "other", 1000))  # the first call of any kind checks them
    assert after.got() == [("RunFailed", "r-1", "resolved")]
    assert after.engine.firing == {}


def test_a_restored_run_failed_still_failing_stays_firing_and_is_not_sent_again(store: SqlStore) -> None:
    fired = fired_before(store, failing_run("r-1", 0))
    store.runs.write_events(ok_run("r-0", -500, took=10))  # completed before the failure: not green again
    after = Rig(store)
    after.engine.restore(fired)
    after.tick(300)
    assert after.got() == []
    after.write(*ok_run("r-2", 400))
    assert after.got() == [("RunFailed", "r-1", "resolved")]


def test_a_restored_step_alert_is_resolved_when_the_step_completed_meanwhile(store: SqlStore) -> None:
    rules = RuleSettings(step_failed=StepFailed(times=2, window=600))
    fired = fired_before(
        store, [e(K.STARTED, "r-1", 0), step_fail("r-1", 1), step_fail("r-1", 2), e(K.FAILED, "r-1", 3)], settings=rules
    )
    assert ("StepFailedRepeatedly", "etl", "load") in {alert_key(a) for a in fired}
    store.runs.write_events(ok_run("r-2", 2000))  # long after the window: the failures alone are not read again
    after = Rig(store, rules)
    after.engine.restore(fired)
    after.tick(2500)
    assert sorted(after.got()) == [("RunFailed", "r-1", "resolved"), ("StepFailedRepeatedly", "load", "resolved")]


def test_a_restored_step_alert_whose_step_did_not_complete_stays_firing(store: SqlStore) -> None:
    rules = RuleSettings(step_failed=StepFailed(times=2, window=600))
    # live runs, with a stall_timeout long enough not to stall
    fired = fired_before(
        store, [e(K.STARTED, "r-1", 0, stall_timeout=86_400), step_fail("r-1", 1), step_fail("r-1", 2)], settings=rules
    )
    store.runs.write_events(
        [
            e(K.STEP_COMPLETED, "r-1", 5, "other"),
            e(K.STARTED, "r-2", 100, stall_timeout=86_400),
            e(K.STEP_COMPLETED, "r-2", 101, "extract"),
        ]
    )
    after = Rig(store, rules)
    after.engine.restore(fired)
    after.tick(2000)
    assert after.got() == []
    after.write(e(K.STEP_COMPLETED, "r-2", 2100, "load"))
    assert after.got() == [("StepFailedRepeatedly", "load", "resolved")]


def test_a_restored_step_alert_is_resolved_when_its_rule_was_turned_off(store: SqlStore) -> None:
    fired = fired_before(
        store,
        [e(K.STARTED, "r-1", 0), step_fail("r-1", 1), step_fail("r-1", 2)],
        settings=RuleSettings(step_failed=StepFailed(times=2)),
    )
    after = Rig(store, RuleSettings(step_failed=StepFailed(enabled=False)))
    after.engine.restore(fired)
    after.tick(10)
    assert after.got() == [("StepFailedRepeatedly", "load", "resolved")]


# ---- old news ---------------------------------------------------------------------------------
def test_a_failure_arriving_after_a_later_run_completed_does_not_fire(rig: Rig) -> None:
    rig.write(*ok_run("r-2", 100))
    rig.write(*failing_run("r-1", 0), at=T0 + 300)  # failed at +5, delivered late
    assert rig.got() == []
    rig.write(*failing_run("r-3", 400))  # a failure after the completion is news
    assert rig.got() == [("RunFailed", "r-3", "firing")]


def test_a_failed_batch_seen_again_after_its_workflow_went_green_does_not_fire_again(rig: Rig) -> None:
    batch = failing_run("r-1", 0)
    rig.write(*batch)
    rig.write(*ok_run("r-2", 20))
    assert rig.got() == [("RunFailed", "r-1", "firing"), ("RunFailed", "r-1", "resolved")]
    rig.engine.observe(batch)
    assert rig.got() == []


@pytest.mark.parametrize(("age", "expired"), [(86_400.0, False), (7 * 86_400.0 - 5, False), (7 * 86_400.0 + 1, True)])
def test_run_failed_expires_lookback_after_the_failure_and_a_restart_does_not_revive_it(
    store: SqlStore, age: float, expired: bool
) -> None:
    rig = Rig(store, lookback=7 * 86_400.0)
    rig.write(*failing_run("r-1", 0))  # failed at +5
    rig.got()
    rig.tick(5 + age)
    assert rig.got() == ([("RunFailed", "r-1", "resolved")] if expired else [])
    again = Rig(store, lookback=7 * 86_400.0)
    again.tick(5 + age)
    assert again.got() == ([] if expired else [("RunFailed", "r-1", "firing")])


# ---- through the hub --------------------------------------------------------------------------
def test_the_engine_on_the_hubs_hook_alerts_on_what_the_hub_stored(store: SqlStore) -> None:
    rig = Rig(store)
    hub = Hub(store)
    hub.hooks.append(lambda events, seqs: rig.engine.observe([ev for ev in events if ev.id in seqs]))
    batch = failing_run("r-1", 0)
    rig.clock.t = T0 + 10
    asyncio.run(hub.publish(batch))
    asyncio.run(hub.publish(batch))  # a retry: all duplicates, the hook is not even called
    asyncio.run(hub.publish(ok_run("r-2", 20)))
    assert rig.got() == [("RunFailed", "r-1", "firing"), ("RunFailed", "r-1", "resolved")]
