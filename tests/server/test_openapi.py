"""The OpenAPI document, and Schemathesis generating requests from it against
a live server: no server error, and every answer as the document says.

Schemathesis runs as its CLI (``st run``), as a user would run it, with every
check on every operation, in all its phases (coverage, fuzzing, stateful
through the document's links), over a store that holds runs, log entries and
a fault, so the links from lists to details have something to follow. One
setting says what the API means by 422: a request as the document describes
it, refused by a rule its description states in words that no schema can
(a log entry's time more than a day ahead of the server's clock, a silence
that would end before it starts or has ended already, JSON nested deeper
than 64 levels); every other refusal of what the document allows is a
failure. The SSE stream and /metrics are not JSON and are left out.
``FLOWSIGHT_ST_SEED`` picks another seed (default: a fixed one, so a failure
is reproducible with the command it prints).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import Serve, Server, event, free_port, post
from tests.server.test_faults_e2e import faults
from tests.helpers import wait_for

CONFIG = """
[checks]
enabled = true

# 422: as the document describes it, refused by a rule its description states
# in words (see the module's docstring); Schemathesis' default list otherwise.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""
EXAMPLES_PER_OPERATION = 25
SEED = os.environ.get("FLOWSIGHT_ST_SEED", "20261128")
DETECTOR = """
[[detectors]]
name = "warehouse"
kind = "tcp"
host = "127.0.0.1"
port = {port}
interval = "0.2s"
timeout = "1s"
retries = 1
"""


@pytest.fixture
def server(serve: Serve, tmp_path: Path) -> Server:
    """A server over a store with two runs, their log entries and an open fault."""
    config = tmp_path / "flowsight.toml"
    config.write_text(DETECTOR.format(port=free_port()))  # nothing listens there: a fault
    s = serve("--config", str(config))
    c = s.client()
    post(
        c,
        [
            event("started", "etl", "run-a"),
            event("step_started", "etl", "run-a", "extract"),
            event("step_completed", "etl", "run-a", "extract"),
            event("completed", "etl", "run-a"),
            event("started", "report", "run-b"),
        ],
    )
    r = c.post(
        "/api/v1/logs",
        json=[
            {"message": "extracting 5 rows", "workflow": "etl", "run_id": "run-a"},
            {"line": "ERROR report failed", "workflow": "report", "run_id": "run-b"},
        ],
    )
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    wait_for("the detector's fault", lambda: faults(c, status="open"))
    return s


def st_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    if st.exists():
        return [str(st)]
    found = shutil.which("st")
    if found is None:
        pytest.fail("schemathesis' `st` is not installed (pip install -e '.[test]')")
    return [found]


@pytest.mark.timeout(900)  # about a minute on a quiet machine; several on one that is busy
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        *st_command(),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--exclude-path",
        "/api/v1/stream",
        "--exclude-path",
        "/metrics",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--no-color",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, timeout=840, env={**os.environ, "NO_COLOR": "1"}
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, f"{' '.join(cmd)}\n{report[-6000:]}\n--- server log ---\n{server.output()[-3000:]}"
    generated = re.search(r"(\d+) generated", report)
    assert generated is not None and int(generated.group(1)) >= 200, report[-2000:]
    assert "Operations:       29 selected" in report
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}\b", report), report[-3000:]
    # the stateful phase ran over the document's links (how many it follows depends on what the
    # generated filters of a list leave in it)
    assert re.search(r"API Links:\s+\d+ covered / 22 selected", report), report[-3000:]
    assert "Exception in ASGI application" not in server.output(), server.output()[-3000:]


def test_the_document_describes_every_route(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ops == {
        ("POST", "/api/v1/events"),
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/runs/{run_id}"),
        ("GET", "/api/v1/runs/{run_id}/events"),
        ("GET", "/api/v1/workflows"),
        ("GET", "/api/v1/stream"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/api/v1/alerts"),
        ("POST", "/api/v1/alerts"),
        ("GET", "/api/v1/silences"),
        ("POST", "/api/v1/silences"),
        ("DELETE", "/api/v1/silences/{silence_id}"),
        ("POST", "/api/v1/logs"),
        ("GET", "/api/v1/logs"),
        ("GET", "/api/v1/runs/{run_id}/logs"),
        ("GET", "/api/v1/logs/templates"),
        ("GET", "/api/v1/faults"),
        ("GET", "/api/v1/faults/{fault_id}"),
        ("GET", "/api/v1/schedules"),
        ("GET", "/api/v1/schedules/{workflow}"),
        ("PUT", "/api/v1/schedules/{workflow}"),
        ("DELETE", "/api/v1/schedules/{workflow}"),
        ("POST", "/api/v1/ping/{workflow}"),
        ("POST", "/api/v1/ping/{workflow}/{action}"),
        ("GET", "/api/v1/metrics"),
        ("GET", "/api/v1/metrics/summary"),
        ("GET", "/api/v1/metrics/series"),
        ("GET", "/api/v1/overview"),
        ("GET", "/api/v1/performance"),
        ("GET", "/api/v1/cluster"),
    }
    text = httpx.get(f"{server.url}/openapi.json").text
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path != "/healthz":
                assert {"400", "401", "403", "503"} <= set(op["responses"]), (method, path)
