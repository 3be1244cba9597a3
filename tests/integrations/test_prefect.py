"""Prefect flow runs in flowsight, with the real Prefect 3 in its own venv: a
flow of two tasks, one failing (after a retry), run against Prefect's own
ephemeral server with the state hooks, and against a Prefect server that
``flowsight prefect watch`` follows with no flow edited (started after the
flow ended: what it missed is replayed, and replayed again counts once)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from flowsight.store import open_store
from tests.integrations.engines import engine_python
from tests.sdk.serving import free_port
from tests.helpers import wait_for

# one Prefect server for the module (scripts/test runs --dist loadgroup)
pytestmark = pytest.mark.xdist_group("prefect")

FLOW = """
from prefect import flow, task
{setup}


@task({task_hooks})
def extract():
    return [1, 2, 3]


@task(retries=1, retry_delay_seconds=0{more_task_hooks})
def transform(rows):
    raise ValueError(f"bad row {{rows[-1]}}")


@flow(name="{name}"{flow_hooks})
def nightly():
    transform(extract())


if __name__ == "__main__":
    try:
        nightly()
    except ValueError:
        pass  # the flow failed, as it should
"""
HOOKED = {
    "setup": "from flowsight.integrations.prefect import flow_hooks, task_hooks",
    "task_hooks": "**task_hooks()",
    "more_task_hooks": ", **task_hooks()",
    "flow_hooks": ", **flow_hooks()",
}
PLAIN = dict.fromkeys(HOOKED, "")
# a quiet, quick Prefect: no telemetry, no UI, events written to its database within half a second
QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}
STEPS = [("extract", 1, "completed"), ("transform", 1, "failed"), ("transform", 2, "failed")]


class Prefect:
    def __init__(self, tmp: Path) -> None:
        self.python = engine_python("prefect")
        self.dir = tmp
        self.db = str(tmp / "flowsight.db")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FLOWSIGHT_", "PREFECT_"))},
            **QUIET,
            "PREFECT_HOME": str(tmp / "prefect"),
            "FLOWSIGHT_DATABASE_URL": self.db,
        }

    def run_flow(self, parts: dict[str, str], name: str = "nightly", **env: str) -> None:
        (self.dir / "etl.py").write_text(textwrap.dedent(FLOW.format(name=name, **parts)))
        out = subprocess.run(
            [self.python, "etl.py"], cwd=self.dir, env={**self.env, **env}, capture_output=True, text=True, timeout=180
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    def steps(self) -> tuple[str, str, str | None, list[tuple[str, int, str]]]:
        """The one run's workflow, state, error, and its steps (task runs named without their suffix)."""
        with open_store(self.db) as store:
            [run] = store.runs.list_runs().runs
            steps = store.runs.run_steps(run.workflow_id)
        named = [(s.step.rsplit("-", 1)[0], s.attempt, s.status) for s in steps]
        return run.workflow, run.state.value, run.error, named


def test_a_flow_with_the_state_hooks_on_the_ephemeral_server_is_a_run_with_its_tasks_as_steps(
    tmp_path: Path, server: Server
) -> None:
    p = Prefect(tmp_path)
    (tmp_path / "prefect").mkdir()
    with sqlite3.connect(server.db) as src, sqlite3.connect(tmp_path / "prefect" / "prefect.db") as dst:
        src.backup(dst)  # a database Prefect made already: the ephemeral server starts sooner
    p.run_flow(HOOKED)  # no PREFECT_API_URL: Prefect starts its own ephemeral server
    workflow, state, error, steps = p.steps()
    assert (workflow, state) == ("nightly", "failed")
    assert "bad row 3" in (error or "")
    assert steps == STEPS


class Server(NamedTuple):
    url: str  # its API's
    db: Path  # its database (made at its start, before any flow ran)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``prefect server start`` on a free port, for the module."""
    python = engine_python("prefect")
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}, **QUIET, "PREFECT_HOME": str(home)}
    with (home / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [python, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for("the Prefect server", lambda: _healthy(url) or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, (home / "server.log").read_text()
        yield Server(url, home / "prefect.db")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def watch_once(p: Prefect, api: str, runs: int, workflow: str) -> None:
    """``flowsight prefect watch`` until ``runs`` runs of ``workflow`` have failed, then stopped as a
    service is (SIGTERM). (It replays the module's other runs of the last 15 minutes too.)"""
    with (p.dir / "watch.log").open("ab") as log:
        proc = subprocess.Popen(
            [p.python, "-m", "flowsight", "--db", p.db, "prefect", "watch", "--api", api],
            env=p.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(f"{runs} failed runs", lambda: _failed(p.db, workflow) == runs, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, (p.dir / "watch.log").read_text()


def _failed(db: str, workflow: str) -> int:
    if not Path(db).exists():
        return 0
    with open_store(db) as store:
        return len([r for r in store.runs.list_runs().runs if r.state.value == "failed" and r.workflow == workflow])


def test_prefect_watch_follows_a_servers_events_replaying_what_it_missed_once(tmp_path: Path, server: Server) -> None:
    p, api, name = Prefect(tmp_path), server.url, "nightly-replayed"
    p.run_flow(PLAIN, name, PREFECT_API_URL=api)  # no flow edited, and no watcher yet
    watch_once(p, api, 1, name)  # replayed from the server
    with open_store(p.db) as store:
        [first] = [r for r in store.runs.list_runs().runs if r.workflow == name]
        before = store.runs.run_events(first.workflow_id)
        steps = [(s.step.rsplit("-", 1)[0], s.attempt, s.status) for s in store.runs.run_steps(first.workflow_id)]
    assert first.state.value == "failed" and "bad row 3" in (first.error or "")
    assert steps == STEPS
    p.run_flow(PLAIN, name, PREFECT_API_URL=api)  # a second run while no watcher runs
    watch_once(p, api, 2, name)  # the restarted watcher replays both runs' events, in order
    with open_store(p.db) as store:
        assert store.runs.run_events(first.workflow_id) == before  # the first run's, replayed again: once each
        ours = [r for r in store.runs.list_runs().runs if r.workflow == name]
        [second] = [r for r in ours if r.workflow_id != first.workflow_id]
        assert [
            (s.step.rsplit("-", 1)[0], s.attempt, s.status) for s in store.runs.run_steps(second.workflow_id)
        ] == STEPS


def test_a_flowsight_server_restarted_while_the_watcher_follows_loses_nothing_and_doubles_nothing(
    tmp_path: Path, server: Server
) -> None:
    from tests.sdk.serving import ServerProcess

    flow_name = "nightly-beside-a-restart"
    p, api = Prefect(tmp_path), server.url
    fs = ServerProcess(tmp_path / "fs.db", log_dir=tmp_path).start()
    env = {**p.env, "FLOWSIGHT_SPOOL_DIR": str(tmp_path / "spool")}
    argv = [p.python, "-m", "flowsight", "prefect", "watch", "--api", api, "--url", fs.url]
    with (tmp_path / "watch.log").open("wb") as log:
        watcher = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def failed_runs() -> dict[str, int]:
            """Each failed run's number of events, as the flowsight server stored them (the runs of
            this test's flow: the watcher replays the module's earlier ones too)."""
            done = {r for (r,) in fs.rows("SELECT run_id FROM runs WHERE state = 'failed' AND workflow = ?", flow_name)}
            return {r: n for r, n in fs.rows("SELECT run_id, COUNT(*) FROM events GROUP BY run_id") if r in done}

        def both_runs() -> dict[str, int] | None:
            got = failed_runs()
            return got if len(got) == 2 else None

        p.run_flow(PLAIN, flow_name, PREFECT_API_URL=api)
        wait_for("the first run", failed_runs, timeout=60)
        fs.stop()  # down while Prefect runs on: the watcher's events wait in its spool
        p.run_flow(PLAIN, flow_name, PREFECT_API_URL=api)
        fs.start()
        # each run: pending, started, three step starts, one completed and two failed, failed
        wait_for("both runs whole", lambda: list((both_runs() or {}).values()) == [9, 9], timeout=60)
        time.sleep(1.0)  # anything doubled would come now
        assert list(failed_runs().values()) == [9, 9]
    finally:
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(30) == 0, (tmp_path / "watch.log").read_text()
        fs.stop()


def test_reconcile_reads_every_task_run_of_a_flow_run_page_after_page(server: Server) -> None:
    """A flow run with more task runs than Prefect's API answers at once (200), made through the real
    server's REST API: the watcher's reconcile says the state of each one."""
    import asyncio
    import uuid

    import httpx

    from flowsight.integrations.adapter import EngineAdapter
    from flowsight.integrations.prefect_events import PAGE, PrefectMapper
    from flowsight.model import Event

    n = PAGE + 5
    sent: list[Event] = []
    mapper = PrefectMapper(EngineAdapter("prefect", send=sent.append))
    with httpx.Client(base_url=server.url + "/", timeout=30) as http:

        def post(path: str, body: dict[str, object]) -> dict[str, str]:
            """POST, again while the server answers 503 (busy: SQLite), as Prefect's own client does."""
            for _ in range(20):
                r = http.post(path, json=body)
                if r.status_code != 503:
                    break
                time.sleep(0.5)
            assert r.status_code in (200, 201), r.text
            made: dict[str, str] = r.json()
            return made

        flow = post("flows/", {"name": f"wide-{uuid.uuid4().hex[:6]}"})
        run_id = post("flow_runs/", {"flow_id": flow["id"], "name": "wide", "state": {"type": "RUNNING"}})["id"]
        done = {"type": "COMPLETED", "name": "Completed"}
        for i in range(n):
            post("task_runs/", {"flow_run_id": run_id, "task_key": "part", "dynamic_key": str(i), "state": done})
    mapper.open[run_id] = "wide"

    async def check() -> None:
        async with httpx.AsyncClient(base_url=server.url + "/", timeout=30) as http:
            await mapper.reconcile(http)

    asyncio.run(check())
    completed = {e.step for e in sent if e.kind.value == "step_completed"}
    assert len(completed) == n


@pytest.mark.parametrize(
    ("setting", "header"),
    [
        ({"PREFECT_API_KEY": "pnu_abc"}, "Bearer pnu_abc"),
        ({"PREFECT_API_AUTH_STRING": "admin:s3cret"}, "Basic YWRtaW46czNjcmV0"),
        ({}, None),
    ],
)
def test_the_watcher_reads_prefects_api_with_prefects_own_credentials(
    tmp_path: Path, setting: dict[str, str], header: str | None
) -> None:
    p = Prefect(tmp_path)
    code = "from flowsight.integrations.prefect_events import auth_headers; print(auth_headers().get('Authorization'))"
    out = subprocess.run([p.python, "-c", code], env={**p.env, **setting}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(header)


OTEL = {
    **PLAIN,
    "setup": textwrap.dedent("""
        import os
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        # what `opentelemetry-instrument` would set up from OTEL_* variables: Prefect makes the spans
        _provider = TracerProvider(resource=Resource.create({"service.name": "nightly-flows"}))
        _provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=os.environ["TRACES_URL"])))
        trace.set_tracer_provider(_provider)
    """),
}


def test_prefects_own_opentelemetry_spans_sent_to_flowsight_are_its_flow_run_and_task_runs(
    tmp_path: Path, server: Server
) -> None:
    """Prefect 3 makes a span per flow run and task run; exported with OpenTelemetry's SDK to
    ``/v1/traces`` of a real flowsight server, the flow run is a run of the service, failed by
    its last state, its task runs the steps."""
    from tests.sdk.serving import ServerProcess

    p = Prefect(tmp_path)
    fs = ServerProcess(tmp_path / "fs.db", log_dir=tmp_path).start()
    try:
        p.run_flow(OTEL, "nightly-traced", PREFECT_API_URL=server.url, TRACES_URL=f"{fs.url}/v1/traces")

        def ended() -> list[tuple[str, str, str | None]] | None:
            rows = fs.rows("SELECT run_id, state, error FROM runs WHERE workflow = 'nightly-flows'")
            return rows if rows and rows[0][1] != "running" else None

        [(run_id, state, error)] = wait_for("the flow run's trace", ended, timeout=60)
        with open_store(str(tmp_path / "fs.db")) as store:
            steps = sorted((s.step.rsplit("-", 1)[0], s.status) for s in store.runs.run_steps(run_id))
        assert state == "failed"
        assert steps == [("extract", "completed"), ("transform", "failed")]
    finally:
        fs.stop()
