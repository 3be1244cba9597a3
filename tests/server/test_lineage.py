"""OpenLineage at ``POST /api/v1/lineage`` of a real ``flowsight serve`` (both
stores), sent by ``openlineage-python``'s own client through its HTTP
transport: START/COMPLETE is a completed run, START/FAIL with an error
message facet a failed run with the message, a job with a parent run facet a
step of its parent's run; an event sent again is stored once; bad events are
refused with the field, the good ones beside them kept."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.parent_run import Job as ParentJob
from openlineage.client.generated.parent_run import ParentRunFacet
from openlineage.client.generated.parent_run import Run as ParentRun
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpCompression, HttpConfig, HttpTransport

from tests.server.conftest import Serve, Server, create_token

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)


def client(server: Server, token: str | None = None) -> OpenLineageClient:
    auth = ApiKeyTokenProvider({"apiKey": token}) if token else None
    config = HttpConfig(url=server.url, compression=HttpCompression.GZIP, **({"auth": auth} if auth else {}))
    return OpenLineageClient(transport=HttpTransport(config))


def event(state: RunState, run_id: str, job: str, at: float, **more: Any) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=(T0 + timedelta(seconds=at)).isoformat(),
        run=Run(runId=run_id, facets=more.pop("facets", {})),
        job=Job(namespace="warehouse", name=job),
        producer="https://example.com/etl",
        **more,
    )


def run_of(server: Server, run_id: str, token: str | None = None) -> dict[str, Any]:
    r = server.client(token).get(f"/api/v1/runs/{run_id}")
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


def test_start_and_complete_make_a_completed_run_with_its_datasets(server: Server) -> None:
    rid = str(uuid.uuid4())
    ol = client(server)
    ol.emit(event(RunState.START, rid, "daily_orders", 0, inputs=[InputDataset(namespace="pg", name="raw.orders")]))
    ol.emit(event(RunState.RUNNING, rid, "daily_orders", 5))
    done = event(
        RunState.COMPLETE, rid, "daily_orders", 60, outputs=[OutputDataset(namespace="pg", name="mart.orders")]
    )
    ol.emit(done)
    ol.emit(done)  # sent again: stored once
    run = run_of(server, rid)
    assert (run["workflow"], run["state"], run["duration_seconds"]) == ("daily_orders", "completed", 60.0)
    events = server.client().get(f"/api/v1/runs/{rid}/events").json()["events"]
    assert [e["kind"] for e in events] == ["started", "completed"]
    assert events[0]["attrs"]["lineage_inputs"] == ["pg/raw.orders"]
    assert events[1]["attrs"]["lineage_outputs"] == ["pg/mart.orders"]
    # the run keeps every event's datasets (what the run page shows)
    assert (run["attrs"]["lineage_inputs"], run["attrs"]["lineage_outputs"]) == (["pg/raw.orders"], ["pg/mart.orders"])


def test_a_run_keeps_the_datasets_of_its_steps_too(server: Server) -> None:
    dag_run, task_run = str(uuid.uuid4()), str(uuid.uuid4())
    ol = client(server)
    ol.emit(event(RunState.START, dag_run, "nightly", 0, inputs=[InputDataset(namespace="pg", name="raw.a")]))
    parent = ParentRunFacet(run=ParentRun(runId=dag_run), job=ParentJob(namespace="warehouse", name="nightly"))
    step_io = {"inputs": [InputDataset(namespace="pg", name="raw.b"), InputDataset(namespace="pg", name="raw.a")]}
    ol.emit(event(RunState.START, task_run, "nightly.load", 1, facets={"parent": parent}, **step_io))
    out = [OutputDataset(namespace="s3://lake", name="mart/orders")]
    ol.emit(event(RunState.COMPLETE, task_run, "nightly.load", 4, facets={"parent": parent}, outputs=out))
    ol.emit(event(RunState.COMPLETE, dag_run, "nightly", 5))
    attrs = run_of(server, dag_run)["attrs"]
    assert attrs["lineage_inputs"] == ["pg/raw.a", "pg/raw.b"]
    assert attrs["lineage_outputs"] == ["s3://lake/mart/orders"]


def test_start_and_fail_with_an_error_facet_make_a_failed_run_with_the_message(server: Server) -> None:
    rid = str(uuid.uuid4())
    ol = client(server)
    ol.emit(event(RunState.START, rid, "spark_join", 0))
    error = ErrorMessageRunFacet(message="Table or view not found: wrong_table", programmingLanguage="JAVA")
    ol.emit(event(RunState.FAIL, rid, "spark_join", 9, facets={"errorMessage": error}))
    run = run_of(server, rid)
    assert run["state"] == "failed" and run["error"] == "Table or view not found: wrong_table"


def test_a_job_with_a_parent_run_facet_is_a_step_of_its_parents_run(server: Server) -> None:
    dag_run, task_run = str(uuid.uuid4()), str(uuid.uuid4())
    ol = client(server)
    ol.emit(event(RunState.START, dag_run, "nightly", 0))
    parent = ParentRunFacet(run=ParentRun(runId=dag_run), job=ParentJob(namespace="warehouse", name="nightly"))
    ol.emit(event(RunState.START, task_run, "nightly.extract", 1, facets={"parent": parent}))
    fail = ErrorMessageRunFacet(message="bad row 17", programmingLanguage="PYTHON", stackTrace="Traceback ...")
    ol.emit(event(RunState.FAIL, task_run, "nightly.extract", 4, facets={"parent": parent, "errorMessage": fail}))
    ol.emit(event(RunState.FAIL, dag_run, "nightly", 5))
    run = run_of(server, dag_run)
    assert (run["workflow"], run["state"]) == ("nightly", "failed")
    [step] = run["steps"]
    assert (step["step"], step["status"], step["error"], step["traceback"]) == (
        "nightly.extract",
        "failed",
        "bad row 17",
        "Traceback ...",
    )
    assert (step["started_at"], step["ended_at"]) == (
        (T0 + timedelta(seconds=1)).timestamp(),
        (T0 + timedelta(seconds=4)).timestamp(),
    )


def test_bad_events_are_refused_with_the_field_and_the_good_ones_beside_them_kept(server: Server) -> None:
    rid = str(uuid.uuid4())
    good = {
        "eventType": "START",
        "eventTime": "2026-12-07T02:00:00Z",
        "run": {"runId": rid},
        "job": {"namespace": "n", "name": "ok"},
        "producer": "p",
    }
    parent = {"run": {"runId": rid}, "job": {"namespace": "n"}}
    batch = [
        good,
        {**good, "run": {"runId": "not-a-uuid"}},
        {**good, "eventTime": "2026-12-07"},
        {**good, "job": {"namespace": "n"}},
        {**good, "eventType": "EXPLODED"},
        "START",
        {**good, "run": {"runId": str(uuid.uuid4()), "facets": {"parent": parent}}},
        {**good, "inputs": [{"namespace": "s3://b"}]},
        {**good, "run": {"runId": str(uuid.uuid4())}, "eventTime": "2026-12-07t02:00:01z"},  # RFC 3339 allows it
    ]
    r = server.client().post("/api/v1/lineage", json=batch)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted"] + ["rejected"] * 7 + ["accepted"]
    assert "badly formed hexadecimal UUID string" in results[1]["error"] and results[1]["field"] == "run.runId"
    assert "has to contain time" in results[2]["error"] and results[2]["field"] == "eventTime"
    assert results[3]["error"] == "event 3: field 'job.name': missing" and results[3]["field"] == "job.name"
    assert "'EXPLODED' is not one of START" in results[4]["error"]
    assert results[6]["field"] == "run.facets.parent.job.name"
    assert results[7]["error"] == "event 7: field 'inputs[0].name': missing"
    assert run_of(server, rid)["state"] == "running"
    alone = server.client().post("/api/v1/lineage", json=batch[3])
    assert alone.status_code == 400 and alone.json()["error"] == "event 0: field 'job.name': missing"
    assert (
        server.client()
        .post("/api/v1/lineage", content=b"{oops", headers={"Content-Type": "application/json"})
        .status_code
        == 400
    )
    assert server.proc.poll() is None


def test_the_ingest_token_is_required_where_the_server_asks_for_one(serve: Serve, store_url: str) -> None:
    token, reader = create_token(store_url, "ingest", "lineage"), create_token(store_url, "read", "viewer")
    server = serve()
    rid = str(uuid.uuid4())
    with pytest.raises(Exception, match="401"):  # the transport raises on what the server refuses
        client(server).emit(event(RunState.START, rid, "secured", 0))
    client(server, token).emit(event(RunState.START, rid, "secured", 0))
    assert run_of(server, rid, reader)["workflow"] == "secured"
    assert httpx.get(f"{server.url}/api/v1/runs/{rid}").status_code == 401
