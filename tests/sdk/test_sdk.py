"""The SDK end to end: instrumented code writes through its client, the test
reads back with a store of its own, on both backends.

Subprocess tests run real interpreters (``sys.executable``, no PYTHONPATH)
that exit without flushing, to show the SDK stores what was queued anyway.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowsight
from flowsight.errors import EventError
from flowsight.model import EventKind, WorkflowState
from flowsight.sdk import client as sdk_client
from flowsight.sdk.client import Client, Run, workflow
from flowsight.store import SqlStore, open_store

S = WorkflowState


class EmptyError(Exception):
    """An exception without a message."""


@pytest.fixture
def client(store_url: str) -> Iterator[Client]:
    c = Client(db=store_url)
    yield c
    c.close()


@pytest.fixture
def configured(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The module-level default client, pointed at the test's store and put back afterwards."""
    monkeypatch.setattr(sdk_client, "_default", None)
    c = flowsight.configure(store_url)
    yield c
    c.close()


def kinds(store: SqlStore, run_id: str) -> list[tuple[str, str | None]]:
    return [(e.kind.value, e.step) for e in store.runs.run_events(run_id)]


def only_run(store: SqlStore, workflow_name: str) -> Any:
    runs = store.runs.list_runs(workflow=workflow_name).runs
    assert len(runs) == 1, [r.run_id for r in runs]
    return runs[0]


def steps_of(name_a: str, name_b: str) -> list[tuple[str, str | None]]:
    return [("step_started", name_a), ("step_completed", name_a), ("step_started", name_b), ("step_completed", name_b)]


# ---- runs and steps ---------------------------------------------------------


def test_a_run_used_as_a_context_manager_stores_its_steps_and_completes(client: Client, store: SqlStore) -> None:
    with workflow("etl", total_steps=2, client=client, owner="ana") as run:
        assert flowsight.current_run() is run
        with run.step("extract"):
            pass
        with flowsight.step("load"):  # the module-level step belongs to the current run
            assert run.current_step == "load"
    assert client.flush() is True

    assert flowsight.current_run() is None
    assert kinds(store, run.run_id) == [("started", None), *steps_of("extract", "load"), ("completed", None)]
    m = store.runs.get_run(run.run_id)
    assert m is not None
    assert (m.workflow, m.state, m.total_steps, m.completed_steps, m.failed_steps) == ("etl", S.COMPLETED, 2, 2, 0)
    assert m.attrs["owner"] == "ana"
    assert m.attrs["pid"] == os.getpid()
    assert [s.step for s in store.runs.run_steps(run.run_id)] == ["extract", "load"]


def test_an_async_run_used_as_a_context_manager_stores_its_steps_and_completes(client: Client, store: SqlStore) -> None:
    async def main() -> str:
        async with workflow("etl", client=client) as run:
            async with run.step("extract"):
                await asyncio.sleep(0)
            async with flowsight.step("load"):
                await asyncio.sleep(0)
        return run.run_id

    run_id = asyncio.run(main())
    assert client.flush() is True

    assert kinds(store, run_id) == [("started", None), *steps_of("extract", "load"), ("completed", None)]
    m = store.runs.get_run(run_id)
    assert m is not None
    assert (m.state, m.completed_steps) == (S.COMPLETED, 2)


def test_decorated_sync_functions_make_a_run_per_call_with_their_steps(client: Client, store: SqlStore) -> None:
    @flowsight.step()
    def extract(n: int) -> list[int]:
        return list(range(n))

    @flowsight.step("sum-up")
    def total(xs: list[int]) -> int:
        return sum(xs)

    @workflow("etl", client=client)
    def job(n: int) -> int:
        return total(extract(n))

    assert (job(4), job(3)) == (6, 3)
    assert job.__name__ == "job"
    assert client.flush() is True

    runs = store.runs.list_runs(workflow="etl").runs
    assert len(runs) == 2
    for m in runs:
        assert (m.state, m.completed_steps) == (S.COMPLETED, 2)
        assert kinds(store, m.run_id) == [("started", None), *steps_of("extract", "sum-up"), ("completed", None)]


def test_decorated_async_functions_running_at_once_keep_their_steps_apart(client: Client, store: SqlStore) -> None:
    @flowsight.step()
    async def fetch(n: int) -> list[int]:
        await asyncio.sleep(0)  # let the other run interleave
        return list(range(n))

    @flowsight.step()
    async def count(xs: list[int]) -> int:
        await asyncio.sleep(0)
        return len(xs)

    @workflow("crawl", client=client)
    async def job(n: int) -> tuple[str, int]:
        run = flowsight.current_run()
        assert run is not None
        return run.run_id, await count(await fetch(n))

    async def main() -> list[tuple[str, int]]:
        return list(await asyncio.gather(job(2), job(5)))

    results = asyncio.run(main())
    assert client.flush() is True

    assert [n for _, n in results] == [2, 5]
    assert len({rid for rid, _ in results}) == 2
    for run_id, _ in results:
        assert kinds(store, run_id) == [("started", None), *steps_of("fetch", "count"), ("completed", None)]


def _with_step() -> None:
    with flowsight.step("orphan"):
        pass


def _decorated_step() -> None:
    flowsight.step()(lambda: None)()


def _async_with_step() -> None:
    async def main() -> None:
        async with flowsight.step("orphan"):
            pass

    asyncio.run(main())


def _decorated_async_step() -> None:
    @flowsight.step("orphan")
    async def orphan() -> None:
        pass

    asyncio.run(orphan())


@pytest.mark.parametrize(
    "use",
    [_with_step, _decorated_step, _async_with_step, _decorated_async_step],
    ids=["with", "decorator", "async-with", "async-decorator"],
)
def test_a_module_level_step_outside_a_run_raises_runtime_error(use: Callable[[], None]) -> None:
    assert flowsight.current_run() is None

    with pytest.raises(RuntimeError, match=r"used outside a run: wrap the code in flowsight\.workflow"):
        use()


# ---- failures and cancellation ------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "error", "error_type"),
    [
        pytest.param(ValueError("bad row 7"), "bad row 7", "ValueError", id="value-error"),
        pytest.param(KeyError("id"), "'id'", "KeyError", id="key-error"),
        pytest.param(EmptyError(), "EmptyError", "EmptyError", id="no-message"),
    ],
)
def test_an_exception_in_a_step_fails_the_step_and_the_run_and_is_reraised(
    client: Client, store: SqlStore, exc: Exception, error: str, error_type: str
) -> None:
    with pytest.raises(type(exc)) as raised:
        with workflow("etl", client=client) as run:
            with run.step("extract"):
                pass
            with run.step("parse"):
                raise exc
    assert raised.value is exc
    assert client.flush() is True

    events = store.runs.run_events(run.run_id)
    assert [(e.kind.value, e.step) for e in events] == [
        ("started", None),
        ("step_started", "extract"),
        ("step_completed", "extract"),
        ("step_started", "parse"),
        ("step_failed", "parse"),
        ("failed", None),
    ]
    for failure in (events[4], events[5]):
        assert (failure.attrs["error"], failure.attrs["error_type"]) == (error, error_type)
        assert "Traceback (most recent call last)" in failure.attrs["traceback"]
        assert "raise exc" in failure.attrs["traceback"]
    m = store.runs.get_run(run.run_id)
    assert m is not None
    # an exception without a message is named once, not "EmptyError: EmptyError"
    shown = error if error == error_type else f"{error_type}: {error}"
    assert (m.state, m.completed_steps, m.failed_steps, m.error) == (S.FAILED, 1, 1, shown)
    assert [(s.step, s.status) for s in store.runs.run_steps(run.run_id)] == [
        ("extract", "completed"),
        ("parse", "failed"),
    ]


def test_keyboard_interrupt_in_a_step_cancels_the_run(client: Client, store: SqlStore) -> None:
    with pytest.raises(KeyboardInterrupt):
        with workflow("etl", client=client) as run:
            with run.step("long"):
                raise KeyboardInterrupt
    assert client.flush() is True

    events = store.runs.run_events(run.run_id)
    assert [(e.kind.value, e.step) for e in events] == [
        ("started", None),
        ("step_started", "long"),
        ("step_failed", "long"),
        ("cancelled", None),
    ]
    assert events[-1].attrs == {"reason": "KeyboardInterrupt"}
    m = store.runs.get_run(run.run_id)
    assert m is not None
    assert m.state is S.CANCELLED
    assert m.end_time is not None


def test_cancelling_the_task_of_an_async_run_cancels_the_run(client: Client, store: SqlStore) -> None:
    runs: list[Run] = []

    async def main() -> None:
        inside = asyncio.Event()

        async def job() -> None:
            async with workflow("etl", client=client) as run:
                runs.append(run)
                async with run.step("wait"):
                    inside.set()
                    await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(job())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert client.flush() is True

    (run,) = runs
    assert kinds(store, run.run_id) == [
        ("started", None),
        ("step_started", "wait"),
        ("step_failed", "wait"),
        ("cancelled", None),
    ]
    m = store.runs.get_run(run.run_id)
    assert m is not None
    assert m.state is S.CANCELLED


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        pytest.param(KeyboardInterrupt(), S.CANCELLED, id="keyboard-interrupt"),
        pytest.param(asyncio.CancelledError(), S.CANCELLED, id="cancelled-error"),
        pytest.param(SystemExit(0), S.COMPLETED, id="exit-0"),
        pytest.param(SystemExit(None), S.COMPLETED, id="exit-none"),
        pytest.param(SystemExit(3), S.FAILED, id="exit-3"),
        pytest.param(RuntimeError("x"), S.FAILED, id="error"),
    ],
)
def test_how_a_run_ends_follows_what_left_it(client: Client, store: SqlStore, exc: BaseException, state: S) -> None:
    with pytest.raises(type(exc)):
        with workflow("etl", client=client) as run:
            raise exc
    assert client.flush() is True

    m = store.runs.get_run(run.run_id)
    assert m is not None
    assert m.state is state
    assert kinds(store, run.run_id)[-1] == (state.value, None)


# ---- inside a run ------------------------------------------------------------


def test_progress_and_heartbeats_are_stored_with_the_current_step(client: Client, store: SqlStore) -> None:
    with workflow("etl", total_steps=2, client=client) as run:
        with run.step("download"):
            run.progress(40, 100)
            run.heartbeat()
            assert client.flush() is True
            live = store.runs.get_run(run.run_id)
        run.progress(1)
        run.heartbeat()
    assert client.flush() is True

    assert live is not None
    assert (live.current_step, live.progress_done, live.progress_total) == ("download", 40.0, 100.0)
    assert live.percent_done == 20.0
    events = store.runs.run_events(run.run_id)
    assert [(e.kind.value, e.step, e.attrs) for e in events[2:4]] == [
        ("progress", "download", {"done": 40, "total": 100}),
        ("heartbeat", "download", {}),
    ]
    assert [(e.kind.value, e.step, e.attrs) for e in events[5:7]] == [
        ("progress", None, {"done": 1}),
        ("heartbeat", None, {}),
    ]
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:]))


def test_suspend_and_resume_move_the_stored_state(client: Client, store: SqlStore) -> None:
    states: list[S] = []

    def stored_state() -> None:
        assert client.flush() is True
        m = store.runs.get_run(run.run_id)
        assert m is not None
        states.append(m.state)

    with workflow("approval", client=client) as run:
        run.suspend("waiting for approval")
        stored_state()
        run.resume()
        stored_state()
    stored_state()

    assert states == [S.SUSPENDED, S.RUNNING, S.COMPLETED]
    events = store.runs.run_events(run.run_id)
    assert [(e.kind.value, e.attrs.get("reason")) for e in events[1:3]] == [
        ("suspended", "waiting for approval"),
        ("resumed", None),
    ]


def test_run_event_stores_any_kind_with_its_attributes(client: Client, store: SqlStore) -> None:
    with workflow("etl", client=client) as run:
        run.event(EventKind.HEARTBEAT, "poll", queue_depth=3, hosts=["a", "b"])
        run.event("progress", done=2, total=8)
    assert client.flush() is True

    events = store.runs.run_events(run.run_id)
    assert [(e.kind.value, e.step, e.attrs) for e in events[1:3]] == [
        ("heartbeat", "poll", {"queue_depth": 3, "hosts": ["a", "b"]}),
        ("progress", None, {"done": 2, "total": 8}),
    ]


# ---- attributes JSON cannot carry ----------------------------------------------


@pytest.mark.parametrize(
    ("make", "key"),
    [
        pytest.param(lambda c: workflow("etl", client=c, payload=object()), "payload", id="workflow-object"),
        pytest.param(lambda c: workflow("etl", client=c, ratio=float("nan")), "ratio", id="workflow-nan"),
        pytest.param(lambda c: workflow("etl", client=c, deep={"x": {1j}}), "deep", id="workflow-nested-complex"),
        pytest.param(lambda c: Run("etl", attrs={"when": lambda: 0}, client=c), "when", id="run-function"),
    ],
)
def test_a_run_attribute_json_cannot_carry_is_refused_by_name(
    client: Client, store: SqlStore, make: Callable[[Client], object], key: str
) -> None:
    with pytest.raises(EventError, match=rf"field 'attrs\.{key}'") as raised:
        make(client)

    assert raised.value.field == f"attrs.{key}"
    assert client.flush() is True
    assert store.runs.count_events() == 0


@pytest.mark.parametrize(
    ("attrs", "key"),
    [
        pytest.param({"blob": 1j}, "blob", id="complex"),
        pytest.param({"ok": 1, "rate": float("inf")}, "rate", id="infinity"),
        pytest.param({"conn": object()}, "conn", id="object"),
    ],
)
def test_an_event_attribute_json_cannot_carry_is_refused_by_name_and_the_run_goes_on(
    client: Client, store: SqlStore, attrs: dict[str, Any], key: str
) -> None:
    with workflow("etl", client=client) as run:
        with pytest.raises(EventError, match=rf"field 'attrs\.{key}'") as raised:
            run.event("heartbeat", **attrs)
        with run.step("after"):
            pass
    assert client.flush() is True

    assert raised.value.field == f"attrs.{key}"
    assert kinds(store, run.run_id) == [
        ("started", None),
        ("step_started", "after"),
        ("step_completed", "after"),
        ("completed", None),
    ]


# ---- flushing ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_flush_returns_true_once_everything_emitted_is_stored(store_url: str, store: SqlStore, batch_size: int) -> None:
    c = Client(db=store_url, batch_size=batch_size)
    try:
        run_ids = []
        for r in range(3):
            with workflow("etl", client=c) as run:
                for i in range(40):
                    with run.step(f"s{i}"):
                        pass
            run_ids.append(run.run_id)

        assert c.flush() is True

        assert store.runs.count_events() == 3 * (2 + 2 * 40)
        for run_id in run_ids:
            m = store.runs.get_run(run_id)
            assert m is not None
            assert (m.state, m.completed_steps) == (S.COMPLETED, 40)
    finally:
        c.close()


def test_flush_with_nothing_emitted_returns_true(client: Client) -> None:
    assert client.flush() is True


def test_configure_points_the_default_client_and_flush_stores_its_runs(configured: Client, store: SqlStore) -> None:
    with flowsight.workflow("etl") as run:
        with flowsight.step("load"):
            pass

    assert flowsight.flush() is True

    assert run._client is configured
    assert kinds(store, run.run_id) == [
        ("started", None),
        ("step_started", "load"),
        ("step_completed", "load"),
        ("completed", None),
    ]


# ---- at interpreter exit ------------------------------------------------------

BULK = r"""
import sys
import flowsight
from flowsight.sdk.client import Client

how, url = sys.argv[1], sys.argv[2]
kw = {}
if how == "configure":
    flowsight.configure(url)
elif how == "client":
    kw["client"] = Client(db=url)
with flowsight.workflow("bulk", run_id="bulk-1", **kw) as run:
    for i in range(5000):
        with run.step(f"s{i}"):
            pass
print("exiting without a flush", flush=True)
"""

CRASH = r"""
import sys
import flowsight

flowsight.configure(sys.argv[1])
with flowsight.workflow("crash", run_id="crash-1") as run:
    with run.step("s1"):
        pass
    with run.step("s2"):
        raise RuntimeError("disk on fire")
"""


def run_child(script: str, args: list[str], cwd: Path, env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter, in ``cwd`` (where a default ./flowsight.db would appear)."""
    cwd.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLOWSIGHT_DATABASE_URL")}
    if env_url is not None:
        env["FLOWSIGHT_DATABASE_URL"] = env_url
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=100
    )


@pytest.mark.parametrize(
    "how",
    [
        "configure",
        "env",
        pytest.param("client"),
    ],
)
def test_nothing_is_lost_at_normal_interpreter_exit_without_a_flush(
    store_url: str, store: SqlStore, tmp_path: Path, how: str
) -> None:
    cwd = tmp_path / "child"
    done = run_child(BULK, [how, store_url], cwd, env_url=store_url if how == "env" else None)

    assert (done.returncode, done.stdout) == (0, "exiting without a flush\n"), done.stderr
    assert store.runs.count_events() == 10_002
    m = store.runs.get_run("bulk-1")
    assert m is not None
    assert (m.state, m.completed_steps) == (S.COMPLETED, 5000)
    assert not (cwd / "flowsight.db").exists()


def test_nothing_is_lost_when_the_interpreter_exits_on_an_uncaught_exception(
    store_url: str, store: SqlStore, tmp_path: Path
) -> None:
    done = run_child(CRASH, [store_url], tmp_path / "child")

    assert done.returncode == 1
    assert "RuntimeError: disk on fire" in done.stderr
    assert kinds(store, "crash-1") == [
        ("started", None),
        *[("step_started", "s1"), ("step_completed", "s1")],
        ("step_started", "s2"),
        ("step_failed", "s2"),
        ("failed", None),
    ]
    m = store.runs.get_run("crash-1")
    assert m is not None
    assert (m.state, m.error) == (S.FAILED, "RuntimeError: disk on fire")


def test_a_forked_child_reports_to_the_same_place_through_a_client_of_its_own(tmp_path: Path) -> None:
    """A worker's task process (Celery's prefork, Airflow's task runner) is a fork: the parent's
    writer thread is not in it, so the child gets the same client anew, and its events arrive."""
    db = tmp_path / "f.db"
    code = f"""
import os
from flowsight.model.runs.events import EventKind
from flowsight.sdk.client import configure, get_client
parent = configure({str(db)!r})
parent.start()
parent.emit(EventKind.STARTED, "parent", "p-1")
parent.flush(10)
pid = os.fork()
if pid == 0:
    child = get_client()
    assert child is not parent and child.db == parent.db
    child.start()
    child.emit(EventKind.STARTED, "child", "c-1")
    os._exit(0 if child.flush(10, spooled=True) else 1)  # a task process ends with no exit handlers
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with open_store(str(db)) as store:
        assert sorted(r.workflow_id for r in store.runs.list_runs().runs) == ["c-1", "p-1"]
