"""The alerting tables (migration 3) on both backends: alerts with who is
owed "resolved", silences, the outbox, the notification log, broken receivers."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.errors import ConfigError
from flowsight.model.alerts import Alert, AlertState, AlertStatus, Matcher, Severity, Silence, parse_matcher
from flowsight.store import SqlStore, open_store
from flowsight.store.alerting import About, Outgoing, matcher_text
from flowsight.store.migrations import LATEST

NOW = 1_700_000_000.0


@pytest.fixture
def other(store: SqlStore) -> Iterator[SqlStore]:
    """A second store on the same database: another server, or the CLI."""
    s = open_store(store.url)
    yield s
    s.close()


def out(receiver: str, key: str) -> Outgoing:
    return Outgoing(receiver, key, f'{{"key": "{key}"}}'.encode())


def silence(sid: str, start: float, end: float, *matchers: str) -> Silence:
    return Silence(
        sid, tuple(parse_matcher(m) for m in matchers or ("workflow=etl",)), start, end, "ana", "maintenance"
    )


# ---- schema -------------------------------------------------------------------------
def test_a_new_store_is_at_the_latest_schema_with_the_alerting_tables(store: SqlStore) -> None:
    assert store.schema_version() == LATEST >= 3
    assert store.alerts.load_alerts() == [] and store.alerts.list_silences() == [] and store.alerts.pending_count() == 0
    assert store.alerts.notification_log() == [] and store.alerts.broken_receivers() == {}


# ---- alerts -------------------------------------------------------------------------
def test_alerts_come_back_exactly_with_the_receivers_still_owed_resolved(store: SqlStore) -> None:
    firing = AlertState(
        Alert(
            {"alertname": "RunFailed", "workflow": "nightly-etl", "run_id": "r1"},
            {"summary": "run r1 failed", "description": "disk full\nline 2 ✓"},
            Severity.CRITICAL,
            "execution",
            NOW - 60.25,
            None,
            AlertStatus.FIRING,
            "http://flowsight/runs/r1",
        ),
        ("ops", "team"),
    )
    resolved = AlertState(
        Alert(
            {"alertname": "Stalled", "workflow": "sync"},
            {},
            Severity.WARNING,
            "state",
            NOW - 600,
            NOW - 1.5,
            AlertStatus.RESOLVED,
            None,
        ),
        ("team",),
    )
    store.alerts.save_alerts([firing, resolved], NOW)
    assert sorted(store.alerts.load_alerts(), key=lambda s: s.alert.starts_at) == [resolved, firing]
    assert store.alerts.list_alerts("firing") == [firing]
    assert store.alerts.list_alerts(AlertStatus.RESOLVED) == [resolved]
    assert store.alerts.list_alerts("pending") == []


def test_saving_a_snapshot_replaces_the_stored_set_and_an_upsert_only_adds(store: SqlStore) -> None:
    a, b, c = (AlertState(Alert({"alertname": n}, starts_at=NOW)) for n in "abc")
    store.alerts.save_alerts([a, b], NOW)
    told = AlertState(b.alert, ("team",))
    store.alerts.save_alerts([told], NOW + 1)  # the manager forgot a; b now owes team a "resolved"
    assert store.alerts.load_alerts() == [told]
    store.alerts.save_alerts([c], NOW + 2, replace=False)
    assert {s.alert.name for s in store.alerts.load_alerts()} == {"b", "c"}
    assert store.alerts.delete_alerts([c.alert.fingerprint, "not-there"]) == 1
    assert store.alerts.load_alerts() == [told]
    store.alerts.save_alerts([], NOW + 3)
    assert store.alerts.load_alerts() == []


def test_asking_for_alerts_in_a_status_that_does_not_exist_says_which_do(store: SqlStore) -> None:
    with pytest.raises(ConfigError, match="alert status 'fring': use one of pending, firing, resolved"):
        store.alerts.list_alerts("fring")


def test_free_text_with_a_nul_character_is_kept_readable_on_both_backends(store: SqlStore) -> None:
    # PostgreSQL text cannot hold NUL; labels and annotations are JSON and keep it exactly
    a = AlertState(
        Alert(
            {"alertname": "x", "k": "a\x00b"},
            {"description": "c\x00d"},
            Severity.INFO,
            "lo\x00g",
            NOW,
            None,
            AlertStatus.FIRING,
            "http://x/\x00",
        ),
        ("team",),
    )
    store.alerts.save_alerts([a], NOW)
    (back,) = store.alerts.load_alerts()
    assert back.alert.labels == a.alert.labels and back.alert.annotations == a.alert.annotations
    assert (back.alert.source, back.alert.link) == ("lo\ufffdg", "http://x/\ufffd")
    s = Silence("s", (Matcher("k", "=", "a\x00b"),), NOW, NOW + 60, "an\x00a", "why\x00not")
    store.alerts.add_silence(s, NOW)
    (sb,) = store.alerts.list_silences()
    assert sb.matchers == s.matchers and (sb.created_by, sb.comment) == ("an\ufffda", "why\ufffdnot")
    assert store.alerts.set_receiver_broken("team", "HTTP 400: \x00", NOW)
    assert store.alerts.broken_receivers() == {"team": (NOW, "HTTP 400: \ufffd")}


# ---- silences -----------------------------------------------------------------------
def test_silences_round_trip_and_are_listed_when_active(store: SqlStore) -> None:
    now_one = silence("now", NOW - 10, NOW + 3600, 'workflow="nightly-etl"', "severity!=info", "alertname=~Run.*")
    later = silence("later", NOW + 600, NOW + 1200)
    old = silence("old", NOW - 7200, NOW - 3600)
    for s in (now_one, later, old):
        store.alerts.add_silence(s, NOW)
    assert store.alerts.list_silences() == [old, now_one, later]
    assert store.alerts.list_silences(active_at=NOW) == [now_one]
    assert store.alerts.list_silences(active_at=NOW + 700) == [now_one, later]
    assert store.alerts.list_silences()[1].matchers[0] == Matcher("workflow", "=", "nightly-etl")
    replaced = silence("later", NOW + 600, NOW + 1800, "workflow=other")
    store.alerts.add_silence(replaced, NOW + 1)
    assert store.alerts.list_silences(active_at=NOW + 700) == [now_one, replaced]


def test_a_stored_silence_re2_refuses_is_left_out_with_a_warning_and_the_others_kept(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    # as a silence made before regexes were RE2's could have been stored: a lookahead
    for s in (silence("good", NOW - 10, NOW + 3600), silence("bad", NOW - 10, NOW + 3600, "alertname=~Disk.*")):
        store.alerts.add_silence(s, NOW)
    with store.db.write_txn() as cur:
        cur.execute(
            store.db.sql("UPDATE silences SET matchers = ? WHERE id = 'bad'"), ('["alertname=~Disk(?!Full).*"]',)
        )
    assert [s.id for s in store.alerts.list_silences()] == ["good"]
    assert [s.id for s in store.alerts.silences_changed_since(NOW)] == ["good"]
    assert [s.id for s in store.alerts.list_silences(active_at=NOW)] == ["good"]
    warned = [r.getMessage() for r in caplog.records if "silence bad is left out" in r.getMessage()]
    assert warned and "lookahead assertions are not supported" in warned[0]
    assert store.alerts.expire_silence("bad", NOW)  # and it can still be ended


def test_expiring_an_active_silence_ends_it_now(store: SqlStore) -> None:
    store.alerts.add_silence(silence("s", NOW - 10, NOW + 3600), NOW - 10)
    assert store.alerts.expire_silence("s", NOW)
    (s,) = store.alerts.list_silences()
    assert (s.starts_at, s.ends_at) == (NOW - 10, NOW) and not s.active(NOW)
    assert store.alerts.list_silences(active_at=NOW) == []
    assert not store.alerts.expire_silence("s", NOW + 1)  # ended already


def test_expiring_a_pending_silence_keeps_it_but_it_never_mutes(store: SqlStore) -> None:
    store.alerts.add_silence(silence("s", NOW + 600, NOW + 3600), NOW - 10)
    assert store.alerts.expire_silence("s", NOW)
    (s,) = store.alerts.list_silences()
    assert s.starts_at == s.ends_at == NOW
    assert not any(s.mutes({"workflow": "etl"}, t) for t in (NOW, NOW + 600, NOW + 1000))
    assert store.alerts.silences_changed_since(NOW) == [s]  # a running server hears of it


def test_expiring_an_unknown_silence_says_so(store: SqlStore) -> None:
    assert not store.alerts.expire_silence("nope", NOW)


def test_a_server_sees_the_silences_another_process_changed_since_it_last_looked(
    store: SqlStore, other: SqlStore
) -> None:
    store.alerts.add_silence(silence("a", NOW, NOW + 60), NOW)
    other.alerts.add_silence(silence("b", NOW, NOW + 60), NOW + 5)  # the CLI
    assert [s.id for s in store.alerts.silences_changed_since(NOW + 1)] == ["b"]
    other.alerts.expire_silence("a", NOW + 10)
    changed = store.alerts.silences_changed_since(NOW + 6)
    assert [(s.id, s.ends_at) for s in changed] == [("a", NOW + 10)]
    assert store.alerts.silences_changed_since(NOW + 11) == []


_VALUE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=12)


@given(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True), st.sampled_from(["=", "!="]), _VALUE)
def test_a_matcher_written_for_the_store_reads_back_equal(name: str, op: str, value: str) -> None:
    m = Matcher(name, op, value)
    assert parse_matcher(matcher_text(m)) == m


@pytest.mark.parametrize(
    "text",
    [
        'workflow="nightly-etl"',
        "run=~r[0-9]+\\.x",
        "a=~x",
        "a=~~x",
        "a='~x'",
        'a=" padded "',
        "a=",
        'a="',
        "a=\"'",
        "a!~",
        "a!=~b",
    ],
)
def test_matchers_people_write_survive_the_store(text: str) -> None:
    m = parse_matcher(text)
    assert parse_matcher(matcher_text(m)) == m


_REGEX_WITH_QUOTES = [
    'msg=~".*can\'t.*"',
    "msg=~'say \"hi\".*'",
    'msg!~"\\"quoted\\""',
    "a=~'\"'",
    'a=~.*"',
    "a=~\"x|'y'\"",
    'a!~"~x"',
    "a=~'\\s+'",
]


@pytest.mark.parametrize("text", _REGEX_WITH_QUOTES)
def test_a_silence_whose_regex_has_quotes_comes_back_from_the_store_equal(store: SqlStore, text: str) -> None:
    s = silence("s", NOW, NOW + 60, text, 'workflow="nightly-etl"')
    store.alerts.add_silence(s, NOW)
    (back,) = store.alerts.list_silences()
    assert back == s and back.matchers[0] == parse_matcher(text)


@given(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True), st.sampled_from(["=~", "!~"]), _VALUE)
def test_a_regex_matcher_written_for_the_store_reads_back_equal(name: str, op: str, text: str) -> None:
    m = Matcher(name, op, re.escape(text))  # any text made a valid regex: quotes, ~, spaces and all
    assert parse_matcher(matcher_text(m)) == m


# ---- receivers ----------------------------------------------------------------------
def test_a_receiver_breaks_once_keeps_its_first_time_and_recovers(store: SqlStore, other: SqlStore) -> None:
    assert store.alerts.set_receiver_broken("team", "HTTP 401: bad token", NOW)
    assert not other.alerts.set_receiver_broken("team", "HTTP 404: no such hook", NOW + 5)
    assert store.alerts.broken_receivers() == {"team": (NOW, "HTTP 404: no such hook")}
    assert other.alerts.clear_receiver_broken("team")
    assert not store.alerts.clear_receiver_broken("team")
    assert store.alerts.broken_receivers() == {}


# ---- outbox -------------------------------------------------------------------------
def test_the_same_notification_enqueued_twice_is_one_row(store: SqlStore) -> None:
    ids = store.alerts.enqueue_notifications([out("team", "k1"), out("team", "k2"), out("team", "k1")], NOW)
    assert ids[0] == ids[2] != ids[1]
    assert store.alerts.enqueue_notifications([out("team", "k2")], NOW + 5) == [ids[1]]
    assert store.alerts.pending_count() == 2 and len(store.alerts.outbox_items()) == 2
    assert store.alerts.outbox_items()[0].body == b'{"key": "k1"}'


def test_only_the_oldest_pending_notification_of_each_receiver_is_due(store: SqlStore) -> None:
    t1, t2, o1 = store.alerts.enqueue_notifications([out("team", "t1"), out("team", "t2"), out("ops", "o1")], NOW)
    assert [i.id for i in store.alerts.due_notifications(NOW)] == [t1, o1]
    assert store.alerts.due_notifications(NOW - 1) == []  # not due before it was written
    assert [i.id for i in store.alerts.due_notifications(NOW, receiver="ops")] == [o1]
    head = store.alerts.claim_notification(store.alerts.due_notifications(NOW, receiver="team")[0], NOW, NOW + 60)
    assert head is not None and head.attempts == 1
    store.alerts.mark_retry(head, NOW, NOW + 8, "HTTP 503", About("g", ("f1",)))
    # the failing head holds back t2 until it is due again
    assert [i.id for i in store.alerts.due_notifications(NOW + 7)] == [o1]
    assert [i.id for i in store.alerts.due_notifications(NOW + 8)] == [t1, o1]
    assert store.alerts.pending_count("team") == 2 and store.alerts.pending_count("ops") == 1
    again = store.alerts.claim_notification(
        store.alerts.due_notifications(NOW + 8, receiver="team")[0], NOW + 8, NOW + 68
    )
    assert again is not None and again.attempts == 2
    assert store.alerts.mark_sent(again, NOW + 8, About("g", ("f1",))).moved
    assert [i.id for i in store.alerts.due_notifications(NOW + 8)] == [t2, o1]
    assert [i.state for i in store.alerts.outbox_items(receiver="team")] == ["sent", "pending"]


def test_a_claimed_notification_is_nobody_elses_until_its_lease_ends(store: SqlStore, other: SqlStore) -> None:
    (i,) = store.alerts.enqueue_notifications([out("team", "k")], NOW)
    (due,) = store.alerts.due_notifications(NOW)
    (seen_by_other,) = other.alerts.due_notifications(NOW)
    mine = store.alerts.claim_notification(due, NOW, NOW + 60)
    assert mine is not None
    assert other.alerts.claim_notification(seen_by_other, NOW, NOW + 60) is None
    assert other.alerts.due_notifications(NOW + 59) == []
    # the claimant died: after the lease the notification is due again, as attempt 2
    (expired,) = other.alerts.due_notifications(NOW + 60)
    theirs = other.alerts.claim_notification(expired, NOW + 60, NOW + 120)
    assert theirs is not None and theirs.attempts == 2
    # the first claimant's late failure is logged but changes nothing: the newer claim decides
    assert not store.alerts.mark_retry(mine, NOW + 61, NOW + 62, "timeout", About("g")).moved
    assert other.alerts.mark_sent(theirs, NOW + 61, About("g")).moved
    assert not store.alerts.mark_sent(mine, NOW + 62, About("g")).moved  # sent already: counted once
    assert [(r.attempt, r.result) for r in reversed(store.alerts.notification_log())] == [
        (1, "temporary"),
        (2, "ok"),
        (1, "ok"),
    ]
    assert store.alerts.outbox_items()[0].state == "sent" and i == theirs.id


def test_racing_claimants_in_threads_get_each_attempt_once(store: SqlStore, other: SqlStore) -> None:
    store.alerts.enqueue_notifications([out("team", f"k{i}") for i in range(20)], NOW)
    wins: list[int] = []
    lock = threading.Lock()

    def worker(s: SqlStore) -> None:
        for item in s.alerts.outbox_items():
            got = s.alerts.claim_notification(item, NOW, NOW + 60)
            if got is not None:
                with lock:
                    wins.append(got.id)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [i.id for i in store.alerts.outbox_items()]


def test_a_permanent_failure_breaks_the_receiver_once_and_a_success_mends_it(store: SqlStore) -> None:
    store.alerts.enqueue_notifications([out("team", "a"), out("team", "b"), out("team", "c")], NOW)
    results = []
    for t in range(3):
        (due,) = store.alerts.due_notifications(NOW + t)
        item = store.alerts.claim_notification(due, NOW + t, NOW + t + 60)
        assert item is not None
        if t < 2:
            results.append(store.alerts.mark_failed(item, NOW + t, "HTTP 400: bad payload", About("g", ("fp",))))
        else:
            results.append(store.alerts.mark_sent(item, NOW + t, About("g", ("fp",))))
    assert [(r.moved, r.broke, r.recovered) for r in results] == [
        (True, True, False),
        (True, False, False),
        (True, False, True),
    ]
    assert store.alerts.broken_receivers() == {}
    assert [i.state for i in store.alerts.outbox_items()] == ["failed", "failed", "sent"]
    assert store.alerts.outbox_items()[0].last_error == "HTTP 400: bad payload"


def test_a_failure_that_does_not_break_the_receiver(store: SqlStore) -> None:
    store.alerts.enqueue_notifications([out("gone", "a")], NOW)
    item = store.alerts.claim_notification(store.alerts.due_notifications(NOW)[0], NOW, NOW + 60)
    assert item is not None
    settled = store.alerts.mark_failed(item, NOW, "no receiver named 'gone'", About(""), break_receiver=False)
    assert settled.moved and not settled.broke and store.alerts.broken_receivers() == {}


def test_the_log_keeps_every_attempt_newest_first(store: SqlStore) -> None:
    store.alerts.enqueue_notifications([out("team", "a"), out("ops", "b")], NOW)
    for t, (due) in enumerate(store.alerts.due_notifications(NOW)):
        item = store.alerts.claim_notification(due, NOW, NOW + 60)
        assert item is not None
        store.alerts.mark_sent(item, NOW + t, About(f"group-{due.receiver}", ("f1", "f2")))
    log = store.alerts.notification_log()
    assert [(r.receiver, r.result, r.attempt, r.at) for r in log] == [("ops", "ok", 1, NOW + 1), ("team", "ok", 1, NOW)]
    assert log[0].group_key == "group-ops" and log[0].fingerprints == ("f1", "f2") and log[0].error is None
    assert [r.receiver for r in store.alerts.notification_log(receiver="team")] == ["team"]
    assert len(store.alerts.notification_log(limit=1)) == 1


def test_pruning_keeps_what_is_still_to_be_sent(store: SqlStore) -> None:
    store.alerts.enqueue_notifications([out("team", "a"), out("ops", "b")], NOW)
    item = store.alerts.claim_notification(store.alerts.due_notifications(NOW, receiver="team")[0], NOW, NOW + 60)
    assert item is not None
    store.alerts.mark_sent(item, NOW, About("g"))
    assert store.alerts.prune_alerting(NOW + 1) == 2  # the sent row and its log row
    assert [i.idempotency_key for i in store.alerts.outbox_items()] == ["b"] and store.alerts.notification_log() == []
    # ids are never reused: order and log references stay right
    (new,) = store.alerts.enqueue_notifications([out("team", "c")], NOW + 2)
    assert new > item.id
