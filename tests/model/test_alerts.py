"""Alerts, matchers, silences, inhibition, routing and flapping: the pure core
of the alert manager, with Alertmanager's meanings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.errors import ConfigError
from flowsight.model.alerts import Alert, InhibitRule, Matcher, Severity, Silence, fingerprint, parse_matcher
from flowsight.model.alerts.flapping import FlapPolicy, FlapState, on_change, on_tick
from flowsight.model.alerts.routing import GroupTimer, Route, due, group_key, match_routes, next_send

label_dicts = st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=5)


@given(label_dicts)
def test_the_fingerprint_depends_on_the_labels_not_their_order(labels: dict[str, str]) -> None:
    assert fingerprint(labels) == fingerprint(dict(reversed(list(labels.items()))))


def test_different_labels_give_different_fingerprints() -> None:
    assert fingerprint({"a": "b"}) != fingerprint({"a": "c"}) != fingerprint({"ab": ""})
    assert Alert({"alertname": "RunFailed", "run": "1"}).fingerprint == fingerprint(
        {"run": "1", "alertname": "RunFailed"}
    )


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ("workflow=nightly-etl", {"workflow": "nightly-etl"}, True),
        ("workflow=nightly-etl", {"workflow": "nightly-etl-2"}, False),
        ("workflow!=nightly-etl", {"workflow": "other"}, True),
        ("workflow!=nightly-etl", {}, True),
        ("workflow=~nightly-.*", {"workflow": "nightly-etl"}, True),
        ("workflow=~nightly", {"workflow": "nightly-etl"}, False),  # anchored, as in Alertmanager
        ("workflow!~nightly-.*", {"workflow": "daily"}, True),
        ("workflow=~etl|report", {"workflow": "etlreport"}, False),  # the whole pattern is anchored, not each side
        ("workflow=~etl|report", {"workflow": "report"}, True),
        ("workflow=~", {}, True),
        ("workflow=~.+", {"workflow": "half a pair \ud800"}, True),  # JSON can carry one; UTF-8 strictly cannot
        ("alertname=~(a+)+", {"alertname": "a" * 64 + "!"}, False),  # linear time: a backtracking engine never ends
        ("alertname=~(a+)+", {"alertname": "a" * 64}, True),
        ("severity=", {}, True),  # a missing label is the empty string
        ('workflow="nightly etl"', {"workflow": "nightly etl"}, True),
        ("  env = prod ", {"env": "prod"}, True),
    ],
)
def test_matchers_match_as_in_alertmanager(text: str, labels: dict[str, str], hit: bool) -> None:
    assert parse_matcher(text).matches(labels) is hit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workflow", "write name=value"),
        ("=x", "write name=value"),
        ("w=~(", "invalid regex"),
        ("w=~(a)\\1", r"matcher w=~'\(a\)\\\\1': invalid regex .*: backreferences are not supported"),
        ("w=~etl(?=-)", r"invalid regex 'etl\(\?=-\)': .*lookahead assertions are not supported"),
        ("w=~(?!etl)", r"lookahead assertions are not supported"),
        ("w=~(?<=x)etl", r"lookbehind assertions are not supported"),
        ("w=~(?<!x)etl", r"lookbehind assertions are not supported"),
    ],
)
def test_bad_matchers_are_refused_saying_what_a_matcher_looks_like(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_matcher(text)


def test_a_silence_mutes_only_while_active_and_only_what_it_matches() -> None:
    s = Silence(
        "s1", (parse_matcher("workflow=etl"),), starts_at=100, ends_at=200, created_by="ana", comment="maintenance"
    )
    assert not s.mutes({"workflow": "etl"}, 99)
    assert s.mutes({"workflow": "etl"}, 100)
    assert not s.mutes({"workflow": "other"}, 150)
    assert not s.mutes({"workflow": "etl"}, 200)  # expired by itself


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"matchers": ()}, "at least one matcher"),
        ({"ends_at": 50.0}, "must end after it starts"),
    ],
)
def test_bad_silences_are_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "id": "s",
        "matchers": (Matcher("a", "=", "b"),),
        "starts_at": 100.0,
        "ends_at": 200.0,
        "created_by": "x",
        "comment": "",
    }
    with pytest.raises(ConfigError, match=message):
        Silence(**{**base, **kwargs})  # type: ignore[arg-type]


def test_an_inhibit_rule_mutes_targets_with_equal_labels_while_a_source_fires() -> None:
    rule = InhibitRule(
        source=(parse_matcher("alertname=ServiceUnavailable"),),
        target=(parse_matcher("alertname=StepFailed"),),
        equal=("service",),
    )
    down = Alert({"alertname": "ServiceUnavailable", "service": "postgres-main"})
    assert rule.inhibits({"alertname": "StepFailed", "service": "postgres-main"}, [down])
    assert not rule.inhibits({"alertname": "StepFailed", "service": "redis"}, [down])
    assert not rule.inhibits({"alertname": "RunSlow", "service": "postgres-main"}, [down])
    assert not rule.inhibits({"alertname": "StepFailed", "service": "postgres-main"}, [])


def test_severities_are_ordered() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.ERROR < Severity.CRITICAL
    assert max([Severity.ERROR, Severity.CRITICAL, Severity.INFO]) is Severity.CRITICAL


TREE = Route(
    "default",
    routes=(
        Route("db-team", matchers=(parse_matcher("service=~postgres.*"),)),
        Route(
            "etl-team",
            matchers=(parse_matcher("workflow=nightly-etl"),),
            continue_=True,
            routes=(Route("etl-pager", matchers=(parse_matcher("severity=critical"),)),),
        ),
        Route("audit", matchers=(parse_matcher("workflow=~.+"),)),
    ),
).named()


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"service": "postgres-main", "workflow": "nightly-etl"}, ["db-team"]),  # first match stops
        ({"workflow": "nightly-etl"}, ["etl-team", "audit"]),  # continue: siblings after it too
        ({"workflow": "nightly-etl", "severity": "critical"}, ["etl-pager", "audit"]),
        ({"workflow": "report"}, ["audit"]),
        ({"alertname": "x"}, ["default"]),  # no child takes it: the root keeps it
    ],
)
def test_the_routing_tree_descends_as_in_alertmanager(labels: dict[str, str], receivers: list[str]) -> None:
    assert [r.receiver for r in match_routes(TREE, labels)] == receivers


def test_group_keys_use_the_group_by_labels_only() -> None:
    route = Route("r", group_by=("workflow",)).named()
    assert group_key(route, {"workflow": "a", "run": "1"}) == group_key(route, {"workflow": "a", "run": "2"})
    assert group_key(route, {"workflow": "a"}) != group_key(route, {"workflow": "b"})
    every = Route("r", group_by=("...",)).named()
    assert group_key(every, {"workflow": "a", "run": "1"}) != group_key(every, {"workflow": "a", "run": "2"})


def test_group_timing_waits_then_batches_changes_then_repeats() -> None:
    route = Route("r", group_wait=30, group_interval=300, repeat_interval=3600)
    g = GroupTimer(created_at=1000)
    assert next_send(route, g) == 1030 and not due(route, g, 1029) and due(route, g, 1030)
    g.last_sent_at, g.changed_since_sent = 1030, False
    assert next_send(route, g) == 1030 + 3600  # unchanged and firing: repeat
    g.changed_since_sent = True
    assert next_send(route, g) == 1030 + 300  # changed: the next group_interval
    g.changed_since_sent, g.firing = False, False
    assert next_send(route, g) is None  # all resolved and told: nothing more


def test_a_flapping_alert_notifies_once_then_once_when_it_settles() -> None:
    policy = FlapPolicy(max_changes=4, window=600, settle=300)
    s = FlapState()
    said = [on_change(policy, s, t) for t in (0, 60, 120, 180, 240, 300, 360)]
    assert said == [None, None, None, None, "flapping", None, None]
    assert s.flapping
    assert on_tick(policy, s, 360 + 299) is None
    assert on_tick(policy, s, 360 + 300) == "settled" and not s.flapping


def test_changes_spread_beyond_the_window_are_not_flapping() -> None:
    policy = FlapPolicy(max_changes=2, window=100, settle=50)
    s = FlapState()
    assert [on_change(policy, s, t) for t in (0, 60, 120, 180, 240)] == [None] * 5


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "service": st.sampled_from(["postgres-main", "redis"]),
            "workflow": st.sampled_from(["nightly-etl", "report", ""]),
            "severity": st.sampled_from(["critical", "info"]),
        },
    )
)
def test_the_compiled_router_routes_exactly_as_the_reference_descent(labels: dict[str, str]) -> None:
    from flowsight.model.alerts.routing import Router

    assert [r.name for r in Router(TREE).match(labels)] == [r.name for r in match_routes(TREE, labels)]
