"""An instrumented program whose store cannot be used says so, loudly, and
does not hang its exit retrying."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import flowsight, sys
flowsight.configure(db=sys.argv[1])
with flowsight.workflow("x") as run:
    with run.step("a"):
        pass
print("workflow done")
"""


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://db/x", "the store cannot be used"),
        ("postgresql://postgres@127.0.0.1:1/test", "still failing at exit"),
    ],
)
def test_events_that_cannot_be_stored_are_reported_as_lost(url: str, why: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM, url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "workflow done" in out.stdout
    assert "4 events NOT stored" in out.stderr and why in out.stderr and "4 lost in all" in out.stderr
    assert "Traceback" not in out.stderr
