"""A full disk is said once per episode, and once when it clears."""

from __future__ import annotations

import logging

import pytest

from flowsight.store.diskfull import DiskFull


def test_an_episode_is_said_at_its_start_and_its_end_only(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    full = DiskFull(lambda: "sqlite store /srv/fs.db", clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="flowsight.store")
    full.wrote()  # nothing to end
    for what in ("write of events", "write of logs", "write of events"):
        full.failed(what, "database or disk is full")
    now[0] = 142.4
    full.wrote()
    full.wrote()
    full.failed("write of events", "could not extend file\nHINT:  Check free disk space.")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "ERROR",
            "sqlite store /srv/fs.db: the disk is full: nothing can be written until space is freed "
            "(write of events failed: database or disk is full)",
        ),
        ("INFO", "sqlite store /srv/fs.db: writes succeed again; the disk was full for 42 s"),
        (
            "ERROR",
            "sqlite store /srv/fs.db: the disk is full: nothing can be written until space is freed "
            "(write of events failed: could not extend file HINT: Check free disk space.)",
        ),
    ]
