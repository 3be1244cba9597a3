"""A wrong token through the real commands: ``flowsight run --url`` keeps the
run's events and log lines in the spool with one clear error, and
``flowsight spool send`` delivers them once the token is right."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk.serving import ServerProcess

FLOWSIGHT = [sys.executable, "-m", "flowsight.cli.main"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server.db", log_dir=tmp_path).start()
    yield s
    s.stop()


def test_a_wrong_token_keeps_the_run_in_the_spool_until_spool_send_with_the_right_one(
    server: ServerProcess, tmp_path: Path
) -> None:
    good = server.token("ingest", "ci")
    env = {**os.environ, "FLOWSIGHT_SPOOL_DIR": str(tmp_path / "spool"), "FLOWSIGHT_TOKEN": "wrong"}
    done = subprocess.run(
        [*FLOWSIGHT, "run", "--url", server.url, "--workflow", "nightly", "--run-id", "r-1", "--", "echo", "hello"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0 and done.stdout == "hello\n"  # the command's own status and output
    errors = [line for line in done.stderr.splitlines() if "refuses the token" in line]
    assert len(errors) == 1, done.stderr  # one error for the outage
    assert "401" in errors[0] and "flowsight spool send" in errors[0]
    assert "was dropped" not in done.stderr
    assert server.rows("SELECT COUNT(*) FROM events") == [(0,)]

    still_wrong = subprocess.run(
        [*FLOWSIGHT, "spool", "send", "--url", server.url, "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert still_wrong.returncode == 1 and "left" in still_wrong.stderr and "401" in still_wrong.stderr

    sent = subprocess.run(
        [*FLOWSIGHT, "spool", "send", "--url", server.url, "--token", good],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert sent.returncode == 0, sent.stderr
    assert "events sent" in sent.stdout and "log entries sent" in sent.stdout
    assert server.rows("SELECT state FROM runs WHERE run_id = 'r-1'") == [("completed",)]
    assert server.rows("SELECT message FROM logs") == [("hello",)]
    again = subprocess.run(
        [*FLOWSIGHT, "spool", "send", "--url", server.url, "--token", good],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert again.returncode == 0 and "0 of 0 events sent" in again.stdout
