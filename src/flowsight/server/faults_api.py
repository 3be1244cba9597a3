"""``GET /api/v1/faults`` (read), and the fault monitor the server runs when
``flowsight.toml`` has ``[[detectors]]``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from flowsight.config import Config
from flowsight.errors import FlowsightError
from flowsight.model.faults import FaultKind, FaultStatus
from flowsight.monitors.fault import FaultMonitor
from flowsight.monitors.sink import AlertSink
from flowsight.server.params import int_param, text_param, time_param
from flowsight.store.interface import Store
from flowsight.server.http import error, json, route
from flowsight.server import schemas as S
from flowsight.server.views import detector_view, fault_view
from starlette.routing import Route

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

FAULT_STATUSES = tuple(s.value for s in FaultStatus)
FAULT_KINDS = tuple(k.value for k in FaultKind)
_BY_ALERTNAME = {k.alertname: k.value for k in FaultKind}


def make_fault_monitor(config: Config, store: Store, alerts: AlertSink) -> FaultMonitor | None:
    """The monitor of the configuration's detectors (None without any);
    its faults go to ``store`` and its alerts to ``alerts``."""
    if not config.detectors:
        return None
    from flowsight.config.detectors import build_detector

    return FaultMonitor(
        [build_detector(dc, store) for dc in config.detectors],
        alerts,
        store=store,
        schedules={dc.name: dc.schedule for dc in config.detectors},
        dependencies=config.dependencies(),
        external_url=config.external_url,
    )


async def get_faults(request: Request, st: ServerContext) -> Response:
    status = text_param(request, "status")
    if status is not None and status not in FAULT_STATUSES:
        raise FlowsightError(f"query parameter 'status': {status!r} is not one of {', '.join(FAULT_STATUSES)}")
    kind = text_param(request, "kind")
    kind = _BY_ALERTNAME.get(kind, kind) if kind is not None else None  # ServiceUnavailable as well
    if kind is not None and kind not in FAULT_KINDS:
        raise FlowsightError(f"query parameter 'kind': {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    now = time.time()
    since = time_param(request, "since", now)
    detector, run_id = text_param(request, "detector"), text_param(request, "run_id")
    limit = int_param(request, "limit", 100, 1, 1000)
    records = await asyncio.to_thread(
        st.store.faults.list_faults,
        status=FaultStatus(status) if status else None,
        since=since,
        detector=detector,
        kind=kind,
        run_id=run_id,
        limit=limit,
    )
    monitor = st.fault_monitor
    detectors = [] if monitor is None else [detector_view(s) for s in monitor.states.values()]
    return json(S.FaultList(faults=[fault_view(r, now) for r in records], detectors=detectors))


async def get_fault(request: Request, st: ServerContext) -> Response:
    """One fault by its id (the link of its alert: ``/faults/ID``)."""
    raw = request.path_params["fault_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return error(404, f"no fault {raw!r}: a fault's id is a whole number (GET /api/v1/faults lists them)")
    record = await asyncio.to_thread(st.store.faults.get_fault, int(raw))
    if record is None:
        return error(404, f"no fault {raw!r}")
    return json(fault_view(record, time.time()))


def routes() -> list[Route]:
    return [
        route("/api/v1/faults", GET=("read", get_faults)),
        route("/api/v1/faults/{fault_id}", GET=("read", get_fault)),
    ]
