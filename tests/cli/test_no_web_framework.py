"""The CLI prints alerts, silences and faults from the same structs the API
answers with (flowsight.server.views), without loading the web framework."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SNIPPET = """
import io, sys, contextlib
from flowsight.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    codes = [main(["--db", sys.argv[1], *cmd.split()]) for cmd in ("alerts --json", "silence ls --json", "faults --json")]
print(codes, sorted(m for m in sys.modules if m.split(".")[0] == "starlette"), file=sys.stderr)
"""


def test_alerts_silences_and_faults_print_without_starlette(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    subprocess.run([sys.executable, "-m", "flowsight", "--db", db, "init"], check=True, capture_output=True)
    silence = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowsight",
            "--db",
            db,
            "silence",
            "add",
            "workflow=etl",
            "--for",
            "1h",
            "-c",
            "deploy",
        ],
        capture_output=True,
        text=True,
    )
    assert silence.returncode == 0, silence.stderr
    done = subprocess.run([sys.executable, "-c", SNIPPET, db], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "[0, 0, 0] []"
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "flowsight", "--db", db, "silence", "ls", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    [s] = listed["silences"]
    assert (s["matchers"], s["state"], s["created_by"] != "") == (["workflow=etl"], "active", True)
