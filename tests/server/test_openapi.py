"""The OpenAPI document, and Schemathesis generating requests from it against
a live server: no server error, and every answer as the document says.

Schemathesis runs as its CLI (``st run``), as a user would run it. Two of its
checks do not apply to one operation each, by design, and are switched off
there only (see ``CONFIG``). The SSE stream and /metrics are not JSON and are
left out. ``FLOWSIGHT_ST_SEED`` picks another seed (default: a fixed one, so a
failure is reproducible with the command it prints).
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

from tests.server.conftest import Server

CONFIG = """
[checks]
enabled = true

# The cursor is opaque: only cursors this server made are valid, which no
# schema can say; a made-up one is a 400.
[[operations]]
include-path = "/api/v1/runs"
include-method = "GET"
checks.positive_data_acceptance.enabled = false

# A bad event in a batch is answered per event in a 200 (rejected, with the
# field and the reason), so that the good ones around it are stored.
[[operations]]
include-path = "/api/v1/events"
include-method = "POST"
checks.negative_data_rejection.enabled = false

# The same for log entries.
[[operations]]
include-path = "/api/v1/logs"
include-method = "POST"
checks.negative_data_rejection.enabled = false

# And for alerts.
[[operations]]
include-path = "/api/v1/alerts"
include-method = "POST"
checks.negative_data_rejection.enabled = false

# Logs: the cursor is opaque (as for runs), and a level filter is read like
# a level word in a log line, any spelling (WARNING, Err, E), which the
# document's enum of the six level names does not list.
[[operations]]
include-path = "/api/v1/logs"
include-method = "GET"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false

[[operations]]
include-path = "/api/v1/runs/{run_id}/logs"
include-method = "GET"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false

# A silence's regex matcher must compile and its end must come after its
# start: rules no schema can say, answered with a 400 that names them.
[[operations]]
include-path = "/api/v1/silences"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"""
EXAMPLES_PER_OPERATION = 25
SEED = os.environ.get("FLOWSIGHT_ST_SEED", "20261128")


def st_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    if st.exists():
        return [str(st)]
    found = shutil.which("st")
    if found is None:
        pytest.fail("schemathesis' `st` is not installed (pip install -e '.[test]')")
    return [found]


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [*st_command(), "--config-file", str(config), "run", f"{server.url}/openapi.json",
           "--exclude-path", "/api/v1/stream", "--exclude-path", "/metrics",
           "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", SEED,
           "--generation-database", "none", "--request-timeout", "10", "--no-color"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "NO_COLOR": "1"})
    report = out.stdout + out.stderr
    assert out.returncode == 0, f"{' '.join(cmd)}\n{report[-6000:]}\n--- server log ---\n{server.output()[-3000:]}"
    generated = re.search(r"(\d+) generated", report)
    assert generated is not None and int(generated.group(1)) >= 200, report[-2000:]
    assert "Operations:       22 selected" in report
    assert "Exception in ASGI application" not in server.output(), server.output()[-3000:]


def test_the_document_describes_every_route(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ops == {
        ("POST", "/api/v1/events"), ("GET", "/api/v1/runs"), ("GET", "/api/v1/runs/{run_id}"),
        ("GET", "/api/v1/runs/{run_id}/events"), ("GET", "/api/v1/workflows"), ("GET", "/api/v1/stream"),
        ("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/api/v1/alerts"), ("POST", "/api/v1/alerts"),
        ("GET", "/api/v1/silences"), ("POST", "/api/v1/silences"), ("DELETE", "/api/v1/silences/{silence_id}"),
        ("POST", "/api/v1/logs"), ("GET", "/api/v1/logs"), ("GET", "/api/v1/runs/{run_id}/logs"),
        ("GET", "/api/v1/logs/templates"),
        ("GET", "/api/v1/faults"), ("GET", "/api/v1/faults/{fault_id}"), ("GET", "/api/v1/metrics"),
        ("GET", "/api/v1/metrics/summary"),
        ("GET", "/api/v1/metrics/series"), ("GET", "/api/v1/overview"), ("GET", "/api/v1/performance"),
    }
    text = httpx.get(f"{server.url}/openapi.json").text
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path != "/healthz":
                assert {"400", "401", "403", "503"} <= set(op["responses"]), (method, path)
