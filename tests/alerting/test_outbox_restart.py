"""A server killed with notifications in its outbox sends them after restart.

A real process opens the store (a SQLite file, or PostgreSQL), enqueues
notifications and is killed with SIGKILL, either before sending anything or
in the middle of its first send. A new process's dispatcher on the same
store delivers every one of them to a real webhook receiver, in order, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from flowsight.alerting.delivery import Dispatcher
from flowsight.store import open_store
from tests.alerting.test_delivery import Hook, hooks, webhook
from tests.helpers import run

__all__ = ["hooks"]  # the fixture, shared

SERVER = r"""
import asyncio, sys
from flowsight.alerting.delivery import Dispatcher
from flowsight.alerting.manager import Notification
from flowsight.model.alerts import Alert
from flowsight.store import open_store

url, mode = sys.argv[1], sys.argv[2]

class Hang:
    "A receiver that takes the notification and never answers."
    async def send(self, note):
        print("sending", note.idempotency_key, flush=True)
        await asyncio.Event().wait()

notes = [Notification("team", "g", "firing", (Alert({"alertname": "RunFailed", "run_id": f"r{i}"}, starts_at=1.0),),
                      "group", "root", 1000.0 + i) for i in range(5)]
d = Dispatcher(open_store(url), {"team": Hang()})
d.enqueue(notes)
print("enqueued", *[n.idempotency_key for n in notes], flush=True)
if mode == "mid-send":
    asyncio.run(d.run_once())
else:
    sys.stdin.read()  # until killed
"""


def line(proc: subprocess.Popen[str], word: str) -> list[str]:
    assert proc.stdout is not None
    got = proc.stdout.readline().split()
    if not got or got[0] != word:
        proc.kill()
        _, err = proc.communicate()  # reaped, its pipes closed
        pytest.fail(f"the server said {got!r}, not {word!r}: {err}")
    return got[1:]


@pytest.mark.parametrize("killed", ["before sending", "mid-send"])
def test_a_server_killed_with_notifications_in_its_outbox_sends_them_after_restart(
    store_url: str, hooks: Callable[..., Hook], killed: str
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, store_url, killed.split()[0]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    keys = line(proc, "enqueued")
    if killed == "mid-send":
        assert line(proc, "sending") == keys[:1]
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        assert stream is not None
        stream.close()

    hook = hooks()
    with open_store(store_url) as store:  # the restarted server
        assert store.alerts.pending_count("team") == 5
        d = Dispatcher(store, {"team": webhook(hook.url)})
        try:
            now = time.time()
            if killed == "mid-send":
                # the first one was claimed by the dead process: nobody's until its lease ends,
                # and the others wait behind it, so the order holds
                assert run(lambda: d.run_once(now)) == 0 and hook.keys() == []
                now += d.lease + 1
            assert run(lambda: d.run_once(now)) == 5
        finally:
            d.close()
        assert hook.keys() == keys  # every one, in order, once
        assert store.alerts.pending_count() == 0
        log = list(reversed(store.alerts.notification_log()))
        # the attempt the dead process started counts: its notification went out on attempt 2
        first_attempt = 2 if killed == "mid-send" else 1
        assert [(r.attempt, r.result) for r in log] == [(first_attempt, "ok")] + [(1, "ok")] * 4
