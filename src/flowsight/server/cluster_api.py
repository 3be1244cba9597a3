"""``GET /api/v1/cluster``: the replicas on the store (from their heartbeats)
and, for each singleton duty, the replica leading it, since when, and its
lease's epoch (see :mod:`flowsight.server.leadership`). A server alone (an
app made in-process) answers with itself leading every duty, no lease."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.server import schemas as S
from flowsight.server.http import json, route
from flowsight.server.leadership import DUTIES, Leadership

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext


def cluster_view(st: ServerContext) -> S.Cluster:
    """What the store says of the replicas and the leases (reads the store: call it off the loop)."""
    cluster = st.cluster
    if not isinstance(cluster, Leadership):
        now = time.time()
        me = S.ClusterReplica(
            replica_id="local", host="", pid=0, version="", started_at=st.started_at, seen_at=now,
            alive=True, stopped=False, this=True, leads=list(DUTIES),
        )  # fmt: skip
        duties = [S.ClusterDuty(duty=d, leader="local", epoch=0, since=st.started_at, expires_at=None) for d in DUTIES]
        return S.Cluster(
            replica_id="local", store=st.store.dialect, lease_seconds=None, now=now, replicas=[me], duties=duties
        )
    leases = st.store.leases
    now = leases.now()
    every = {ls.duty: ls for ls in leases.leases()}
    held = {d: ls for d, ls in every.items() if ls.token and ls.expires_at > now}
    leads: dict[str, list[str]] = {}
    for ls in held.values():
        leads.setdefault(ls.token, []).append(ls.duty)
    replicas = [
        S.ClusterReplica(
            replica_id=r.replica_id,
            host=r.host,
            pid=r.pid,
            version=r.version,
            started_at=r.started_at,
            seen_at=r.seen_at,
            alive=r.stopped_at is None and r.seen_at >= now - 2 * cluster.ttl,
            stopped=r.stopped_at is not None,
            this=r.token == cluster.token,
            leads=sorted(leads.get(r.token, [])),
        )  # fmt: skip
        for r in leases.replicas(now - 10 * cluster.ttl)
        if r.stopped_at is None or r.seen_at >= now - cluster.ttl  # one that stopped: listed a lease long
    ]
    duties = []
    for d in DUTIES:
        lease = every.get(d)
        live = held.get(d)
        duties.append(
            S.ClusterDuty(
                duty=d,
                leader=live.holder if live is not None else None,
                epoch=lease.epoch if lease is not None else 0,
                since=live.since if live is not None else None,
                expires_at=live.expires_at if live is not None else None,
            )
        )
    return S.Cluster(
        replica_id=cluster.replica_id, store=st.store.dialect, lease_seconds=cluster.ttl, now=now,
        replicas=replicas, duties=duties,
    )  # fmt: skip


async def get_cluster(request: Request, st: ServerContext) -> Response:
    return json(await asyncio.to_thread(cluster_view, st))


def routes() -> list[Route]:
    return [route("/api/v1/cluster", GET=("read", get_cluster))]
