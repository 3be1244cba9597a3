"""``flowsight schedules`` over a store with runs and expectations set by the
SDK: each workflow's last slot judged, its next start in its own zone, its
streak; ``--json`` as the API answers; and the SDK's ``expect`` checked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsight.model.runs.events import EventKind, make_event
from flowsight.model.schedules import ExpectationError
from flowsight.model.schedules.slots import CronGrid
from flowsight.sdk.client import Client
from flowsight.store import open_store


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowsight", "--db", db, *args], capture_output=True, text=True, timeout=60
    )


def test_schedules_judges_the_store_without_a_server(tmp_path: Path) -> None:
    db = str(tmp_path / "flowsight.db")
    client = Client(db)
    client.expect("hourly", schedule="0 * * * *", timezone="Europe/Copenhagen", start_grace="10m")
    with pytest.raises(ExpectationError, match="schedule: invalid cron expression"):
        client.expect("broken", schedule="0 99 * * *")
    client.close()
    now = time.time()
    grid = CronGrid("0 * * * *", "Europe/Copenhagen")
    with open_store(db) as store:
        # known since 6 hours ago; the runs of every slot came, but the one 3 slots back
        store.db.write("UPDATE schedules SET since = ?", (now - 6 * 3600,))
        slot = grid.after(now - 6 * 3600)
        slots = []
        while slot <= now - 3600:
            slots.append(slot)
            slot = grid.after(slot)
        events = []
        for k, s in enumerate(slots):
            if k == len(slots) - 3:
                continue
            events += [
                make_event(EventKind.STARTED, "hourly", f"r{k}", ts=s + 30),
                make_event(EventKind.COMPLETED, "hourly", f"r{k}", ts=s + 90),
            ]
        store.runs.write_events(events)
        assert not store.schedules.ever_watched()

    out = cli(db, "schedules", "--json")
    assert out.returncode == 0, out.stderr
    [view] = json.loads(out.stdout)["schedules"]
    judged = [s for s in view["slots"] if s["at"] <= now - 3600]
    assert [s["status"] for s in judged] == ["ok"] * (len(slots) - 3) + ["missed", "ok", "ok"]
    assert view["source"] == "api" and view["schedule"] == "0 * * * * (Europe/Copenhagen)"
    assert view["next_local"].endswith(("CET", "CEST")) and view["next_at"] > now

    shown = cli(db, "schedules")
    assert shown.returncode == 0, shown.stderr
    assert "no server has watched this store" in shown.stdout
    assert "hourly" in shown.stdout and "✕" in shown.stdout
    with open_store(db) as store:  # a command judges, it does not write
        assert store.schedules.recent_slots(["hourly"]) == {} and not store.schedules.ever_watched()


def test_no_expectations_says_how_to_give_some(tmp_path: Path) -> None:
    db = str(tmp_path / "flowsight.db")
    assert cli(db, "init").returncode == 0
    out = cli(db, "schedules")
    assert out.returncode == 0 and "no workflow has expectations" in out.stdout and "[workflows.NAME]" in out.stdout
