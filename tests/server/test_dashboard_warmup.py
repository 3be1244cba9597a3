"""What the overview reads is made once when the server starts
(:class:`flowsight.server.dashboard_api.OverviewWarmer`), on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import httpx

from flowsight.model import make_event
from flowsight.server.app import create_app
from flowsight.server.dashboard_api import OverviewWarmer
from flowsight.store import SqlStore


def seed(store: SqlStore) -> None:
    events = []
    for i, wf in enumerate(["etl", "report", "idle"]):
        done = f"{wf}-done"
        events += [
            make_event("started", wf, done, None, None, ts=100.0 + i),
            make_event("step_started", wf, done, "load", None, ts=101.0 + i),
            make_event("step_completed", wf, done, "load", None, ts=105.0 + i),
            make_event("completed", wf, done, None, None, ts=106.0 + i),
        ]
        if wf != "idle":  # a live run: its workflow's history is needed for its ETA and stall flag
            events.append(make_event("started", wf, f"{wf}-live", None, None, ts=200.0 + i))
    store.runs.write_events(events)


def test_the_warmer_makes_the_histories_of_workflows_with_live_runs(store: SqlStore) -> None:
    seed(store)

    OverviewWarmer(store).warm()

    assert {wf for (wf, _) in store.stats._histories} == {"etl", "report"}
    assert store.stats.histories(["etl"])["etl"].step_durations == {"load": (4.0,)}


def test_the_server_warms_at_start_and_stops_the_warmer_with_it(store: SqlStore) -> None:
    seed(store)
    app = create_app(store, log_retention=None)

    async def run() -> httpx.Response:
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 10
            while len(store.stats._histories) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get("/api/v1/overview")

    r = asyncio.run(run())
    assert {wf for (wf, _) in store.stats._histories} == {"etl", "report"}
    assert r.status_code == 200 and r.json()["by_state"] == {"completed": 3, "running": 2}


def test_a_warmer_stopped_at_once_stops_without_error(store: SqlStore) -> None:
    seed(store)
    warmer = OverviewWarmer(store)

    async def start_stop_stop() -> None:
        await warmer.start()
        await warmer.stop()
        await warmer.stop()  # twice: nothing more

    asyncio.run(start_stop_stop())
