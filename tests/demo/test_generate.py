"""The data generator writes exactly what it is asked for, through the
store's write paths, the same data for the same parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowsight.demo.generate import DATASET_STATE, Params, dataset_of, generate, holds, main
from flowsight.model.runs.state import WorkflowState
from flowsight.store import SqlStore, open_store

NOW = 1_750_000_000.0
SMALL = Params(runs=300, events=12_000, logs=2_000, workflows=8, days=2.0, seed=7, now=NOW)


def _dump(store: SqlStore) -> tuple[list[tuple[object, ...]], ...]:
    events = store.db.read("SELECT id, ts, kind, workflow, run_id, step, attrs FROM events ORDER BY seq")
    runs = store.db.read(
        "SELECT run_id, workflow, state, start_time, end_time, completed_steps FROM runs ORDER BY run_id"
    )
    logs = store.db.read("SELECT id, ts, level, message, run_id, step, template_id FROM logs ORDER BY seq")
    return ([tuple(r) for r in events], [tuple(r) for r in runs], [tuple(r) for r in logs])


def test_generate_writes_exactly_the_counts_asked_for(store: SqlStore) -> None:
    summary = generate(store, SMALL, batch=1_000)
    assert (summary.runs, summary.events, summary.logs) == (300, 12_000, 2_000)
    assert store.runs.count_events() == 12_000
    assert store.logs.count_logs() == 2_000
    assert int(store.db.read("SELECT COUNT(*) FROM runs")[0][0]) == 300
    assert len(store.runs.workflows()) == 8
    assert sum(summary.by_state.values()) == 300


def test_generated_runs_are_a_realistic_mix(store: SqlStore) -> None:
    generate(store, SMALL, batch=1_000)
    by_state: dict[str, int] = {}
    for wf in store.stats.workflow_stats():
        for state, n in wf["by_state"].items():
            by_state[state] = by_state.get(state, 0) + n
    assert by_state["completed"] > 0.7 * 300
    assert by_state.get("failed", 0) > 0
    assert set(by_state) <= {s.value for s in WorkflowState}
    failed = store.runs.list_runs(states=[WorkflowState.FAILED], limit=1).runs[0]
    steps = store.runs.run_steps(failed.run_id)
    assert steps and steps[-1].status == "failed" and failed.error
    assert store.runs.run_transitions(failed.run_id)[-1].new_state is WorkflowState.FAILED
    # nothing after the end of the history; every log line of a run has a template
    assert float(store.db.read("SELECT MAX(ts) FROM events")[0][0]) <= NOW
    assert int(store.db.read("SELECT COUNT(*) FROM logs WHERE template_id IS NULL")[0][0]) == 0
    assert store.faults.list_faults(limit=1000)


def test_the_same_parameters_give_the_same_data(tmp_path: Path) -> None:
    dumps = []
    for name in ("a.db", "b.db"):
        with open_store(str(tmp_path / name)) as store:
            generate(store, SMALL, batch=777 if name == "a.db" else 5_000)
            dumps.append(_dump(store))
    assert dumps[0] == dumps[1]
    with open_store(str(tmp_path / "c.db")) as store:
        generate(store, Params(**{**SMALL.__dict__, "seed": 8}), batch=1_000)
        assert _dump(store)[0] != dumps[0][0]


def test_a_finished_data_set_is_recorded_and_recognised(sqlite_store: SqlStore) -> None:
    assert dataset_of(sqlite_store) is None and not holds(sqlite_store, SMALL)
    generate(sqlite_store, SMALL)
    kept = sqlite_store.kept.load(DATASET_STATE)
    assert kept["runs"] == 300 and kept["now"] == NOW
    assert holds(sqlite_store, SMALL)
    assert holds(sqlite_store, Params(**{**SMALL.__dict__, "now": NOW + 3600}))  # a reused set ages
    assert not holds(sqlite_store, Params(**{**SMALL.__dict__, "events": 12_001}))


@pytest.mark.parametrize(
    "params, message",
    [
        (Params(runs=10, events=39), "fewer than 4 per run"),
        (Params(runs=0, events=100), "at least 1"),
        (Params(runs=10, events=100, logs=-1), "must not be negative"),
    ],
)
def test_parameters_no_data_set_fits_are_refused(params: Params, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        params.check()


def test_the_command_line_fills_a_new_store_and_refuses_a_used_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "gen.db")
    assert (
        main(["--db", db, "--runs", "50", "--events", "1000", "--logs", "100", "--workflows", "3", "--now", str(NOW)])
        == 0
    )
    assert "50 runs" in capsys.readouterr().out
    with open_store(db) as store:
        assert store.runs.count_events() == 1000
    with pytest.raises(SystemExit) as exc:
        main(["--db", db, "--runs", "50", "--events", "1000"])
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err
