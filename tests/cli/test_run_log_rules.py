"""``flowsight run`` with log rules: a real command's lines checked as they
come, alerts delivered to a real webhook (local store, both backends) or
to a real ``flowsight serve`` (``--url``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from flowsight.model.runs.state import WorkflowState
from flowsight.store import open_store
from tests.helpers import recording
from tests.server.conftest import start_server
from tests.server.test_alerting_e2e import config
from tests.helpers import wait_for

FLOWSIGHT = [sys.executable, "-m", "flowsight"]

RULE = """
[[log_rules]]
name = "DatabaseUnreachable"
kind = "match"
pattern = 'connection (refused|reset)'
level = "error"
severity = "critical"
group_by = ["run_id"]
"""

SCRIPT = "echo '::step load::'; echo 'loading 10 rows'; echo 'ERROR connection refused by db:5432' >&2; exit 1"


def _run(*options: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLOWSIGHT, "run", "--workflow", "etl", "--run-id", "r-1", *options, "--", "bash", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def _firing(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for b in bodies if b.get("status") == "firing" for a in b.get("alerts", [])]


def test_a_matching_line_alerts_the_rules_receivers_and_the_run_is_stored_on_either_backend(
    store_url: str, tmp_path: Path
) -> None:
    with recording() as rec:
        rules = config(tmp_path, rec.server_address[1], RULE)
        done = _run("--db", store_url, "--rules", str(rules))
        assert done.returncode == 1, done.stderr
        firing = _firing(rec.bodies)  # sent before flowsight exited: the command may end any moment
    assert [a["labels"]["alertname"] for a in firing] == ["DatabaseUnreachable"]
    assert firing[0]["labels"]["run_id"] == "r-1"
    with open_store(store_url) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.FAILED
        assert [(s.step, s.status) for s in store.runs.run_steps("r-1")] == [("load", "failed")]
        messages = sorted(r.entry.message for r in store.logs.query_logs(run_id="r-1", limit=100))
        assert messages == ["connection refused by db:5432", "loading 10 rows"]
        kept = [s.alert.labels["alertname"] for s in store.alerts.load_alerts()]
    assert kept == ["DatabaseUnreachable"]  # `flowsight alerts` lists it


def test_without_rules_a_local_run_is_checked_against_flowsight_toml_here(tmp_path: Path) -> None:
    with recording() as rec:
        config(tmp_path, rec.server_address[1], RULE)  # ./flowsight.toml
        done = _run("--db", str(tmp_path / "f.db"), cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert [a["labels"]["alertname"] for a in _firing(rec.bodies)] == ["DatabaseUnreachable"]


def test_a_line_no_rule_matches_raises_nothing(tmp_path: Path) -> None:
    with recording() as rec:
        rules = config(tmp_path, rec.server_address[1], RULE.replace("refused|reset", "timed out"))
        done = _run("--db", str(tmp_path / "f.db"), "--rules", str(rules))
        assert done.returncode == 1, done.stderr
        assert rec.bodies == []


def test_with_a_server_the_alerts_go_to_its_alert_manager(tmp_path: Path) -> None:
    db = str(tmp_path / "server.db")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE)
    server = start_server(db, log_dir=tmp_path)
    try:
        done = _run("--url", server.url, "--rules", str(rules))
        assert done.returncode == 1, done.stderr
        client = server.client()

        def alerts() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = client.get("/api/v1/alerts").json()["alerts"]
            return [a for a in got if a["labels"].get("alertname") == "DatabaseUnreachable"]

        [alert] = wait_for("the alert on the server", alerts)
        assert alert["labels"]["run_id"] == "r-1" and alert["severity"] == "critical"
        run = wait_for("the run on the server", lambda: client.get("/api/v1/runs/r-1").json())
        assert run["state"] == "failed"
    finally:
        server.stop()


def test_a_bad_rules_file_is_refused_with_its_line_before_the_command_runs(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[log_rules]]\nname = "x"\nkind = "match"\npattern = "(unclosed"\n')
    marker = tmp_path / "ran"
    done = subprocess.run(
        [*FLOWSIGHT, "run", "--db", str(tmp_path / "f.db"), "--rules", str(rules), "--", "touch", str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "rules.toml:4: log_rules[0].pattern: rule 'x': invalid regex" in done.stderr, done.stderr
    assert not marker.exists()


BROKEN = '[[log_rules]]\nname = "x"\nkind = "match"\npattern = "(unclosed"\n'


def test_a_broken_flowsight_toml_here_warns_and_the_command_still_runs(tmp_path: Path) -> None:
    (tmp_path / "flowsight.toml").write_text(BROKEN)
    marker = tmp_path / "ran"
    done = subprocess.run(
        [*FLOWSIGHT, "run", "--db", str(tmp_path / "f.db"), "--", "touch", str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and marker.exists(), done.stderr  # a config typo never stops a cron job
    assert "warning: flowsight.toml cannot be used; going on without its log rules" in done.stderr
    assert "flowsight.toml:4: log_rules[0].pattern: rule 'x': invalid regex" in done.stderr
    assert "--rules" not in done.stderr  # no --rules was given
    with open_store(str(tmp_path / "f.db")) as store:
        assert [r.state for r in store.runs.list_runs().runs] == [WorkflowState.COMPLETED]


def test_a_broken_flowsight_toml_here_warns_in_alerts_and_logs_watch_too(tmp_path: Path) -> None:
    (tmp_path / "flowsight.toml").write_text(BROKEN)
    (tmp_path / "app.log").write_text("hello\n")
    db = str(tmp_path / "f.db")
    subprocess.run([*FLOWSIGHT, "--db", db, "init"], check=True, capture_output=True, timeout=60)
    alerts = subprocess.run(
        [*FLOWSIGHT, "--db", db, "alerts"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert alerts.returncode == 0 and f"no alerts in sqlite store {db}" in alerts.stdout, alerts.stdout
    assert "flowsight serve" in alerts.stdout  # what raises them
    assert "warning: flowsight.toml cannot be used" in alerts.stderr
    watch = subprocess.run(
        [*FLOWSIGHT, "--db", db, "logs", "watch", "--once", "--from-beginning", "app.log"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert watch.returncode == 0 and "warning: flowsight.toml cannot be used" in watch.stderr, watch.stderr
    with open_store(db) as store:
        assert [r.entry.message for r in store.logs.query_logs(limit=10)] == ["hello"]
    # named on the command line, the same file is refused
    named = subprocess.run(
        [*FLOWSIGHT, "--db", db, "alerts", "--config", "flowsight.toml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert named.returncode == 2 and "invalid regex" in named.stderr


def test_alerts_a_local_run_raises_beside_a_server_on_that_store_are_the_servers_too(
    store_url: str, tmp_path: Path
) -> None:
    """One alert state per store: `flowsight run --rules --db` stores its alert,
    and the server on that store lists it (API, dashboard, `flowsight alerts`)
    without telling the receiver that was told already."""
    server = start_server(store_url, log_dir=tmp_path)
    try:
        with recording() as rec:
            rules = config(tmp_path, rec.server_address[1], RULE)
            done = _run("--db", store_url, "--rules", str(rules))
            assert done.returncode == 1, done.stderr
            assert [a["labels"]["alertname"] for a in _firing(rec.bodies)] == ["DatabaseUnreachable"]
            client = server.client()

            def alerts() -> list[dict[str, Any]]:
                got: list[dict[str, Any]] = client.get("/api/v1/alerts").json()["alerts"]
                return [a for a in got if a["labels"].get("alertname") == "DatabaseUnreachable"]

            [alert] = wait_for("the run's alert on the server", alerts)
            assert alert["labels"]["run_id"] == "r-1" and alert["status"] == "firing"
            listed = subprocess.run(
                [*FLOWSIGHT, "--db", store_url, "alerts", "--json"], capture_output=True, text=True, timeout=60
            )
            assert "DatabaseUnreachable" in listed.stdout, listed.stderr
            assert len(_firing(rec.bodies)) == 1  # the rules' receiver was told once, by the run
    finally:
        server.stop()
