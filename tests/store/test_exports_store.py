"""Ended runs handed to an exporter (``store.exports``), on both backends:
the runs that ended are read from the transitions after a cursor; a run is
handed over once, whatever is read twice, in one outbox item due when asked;
the alerts' dispatcher does not see an exporter's items."""

from __future__ import annotations

from flowsight.model.runs.events import Event, EventKind
from flowsight.store import SqlStore
from flowsight.store.exports import decode_runs

K = EventKind


def _events(run_id: str, end: EventKind | None) -> list[Event]:
    evs = [Event(id=f"{run_id}-s", ts=1.0, kind=K.STARTED, workflow="etl", run_id=run_id)]
    if end is not None:
        attrs = {"error": "boom"} if end is K.FAILED else {}
        evs.append(Event(id=f"{run_id}-e", ts=2.0, kind=end, workflow="etl", run_id=run_id, attrs=attrs))
    return evs


def test_each_ended_run_is_handed_over_once_in_an_outbox_item_due_later(store: SqlStore) -> None:
    start = store.exports.last_transition()
    store.runs.write_events([*_events("a", K.COMPLETED), *_events("b", None), *_events("c", K.FAILED)])
    runs, last = store.exports.ended_after(start)
    assert runs == ["a", "c"] and last > start
    assert store.exports.ended_after(last) == ([], last)
    assert store.exports.ended_after(start, upto=start) == ([], start)
    assert store.exports.hand_over("export.otlp", runs, now=10.0, due_at=15.0) == ["a", "c"]
    assert store.exports.hand_over("export.otlp", ["a", "c"], now=11.0, due_at=16.0) == []  # read again: nothing new
    assert store.exports.hand_over("export.other", ["a"], now=11.0, due_at=16.0) == ["a"]  # another exporter's own
    assert store.alerts.due_notifications(14.0, receiver="export.otlp") == []
    [item] = store.alerts.due_notifications(15.0, receiver="export.otlp")
    assert decode_runs(item.body) == ["a", "c"]
    # the alerts' dispatcher asks past the exporters' names
    assert store.alerts.due_notifications(20.0, skip_prefix="export.") == []
    assert store.exports.purge(before_ts=10.5) == 2  # export.otlp's two; export.other's kept
