"""The server's shared HTTP pieces: the route table and the services' order."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.server.http import mount, route
from flowsight.server.services import start_all, stop_all
from flowsight.server.context import ServerContext


async def _handler(request: Request, st: ServerContext) -> Response:
    return Response("")


def test_a_path_route_mounted_before_a_route_it_would_take_is_refused_by_name() -> None:
    runs = [route("/api/v1/runs/{run_id:path}", GET=("read", _handler))]
    logs = [route("/api/v1/runs/{run_id:path}/logs", GET=("read", _handler))]
    with pytest.raises(
        RuntimeError, match=r"'/api/v1/runs/\{run_id:path\}/logs' is hidden by '/api/v1/runs/\{run_id:path\}'"
    ):
        mount(runs, logs)
    assert [r.path for r in mount(logs, runs) if isinstance(r, Route)] == [
        "/api/v1/runs/{run_id:path}/logs",
        "/api/v1/runs/{run_id:path}",
    ]


def test_routes_of_other_methods_or_other_paths_do_not_hide_each_other() -> None:
    table = mount(
        [route("/api/v1/silences/{silence_id}", DELETE=("admin", _handler))],
        [route("/api/v1/silences/{silence_id}", GET=("read", _handler))],  # another method: both reached
        [route("/api/v1/silences", GET=("read", _handler), POST=("admin", _handler))],
        [route("/api/v1/silences/{silence_id}/x", GET=("read", _handler))],  # {silence_id} takes one segment
    )
    assert len(table) == 4


def test_the_app_mounts_every_route_of_its_modules() -> None:
    from flowsight.server.app import create_app
    from flowsight.store import open_store

    with open_store(":memory:") as store:
        paths = {r.path for r in create_app(store).routes if isinstance(r, Route)}
    assert {"/api/v1/events", "/api/v1/runs/{run_id:path}/logs", "/api/v1/runs/{run_id:path}", "/metrics"} <= paths


class _Recorder:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


def test_services_start_in_order_and_stop_in_reverse_each_one_whatever_the_others_do() -> None:
    log: list[str] = []
    services = [_Recorder("a", log), _Recorder("b", log, fail_stop=True), _Recorder("c", log)]

    async def run() -> None:
        started = await start_all(services)
        with pytest.raises(RuntimeError, match="b cannot stop"):
            await stop_all(started)

    asyncio.run(run())
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_a_service_that_cannot_start_stops_those_started_before_it() -> None:
    log: list[str] = []
    services = [_Recorder("a", log), _Recorder("b", log, fail_start=True), _Recorder("c", log)]
    with pytest.raises(RuntimeError, match="b cannot start"):
        asyncio.run(start_all(services))
    assert log == ["start a", "stop a"]
