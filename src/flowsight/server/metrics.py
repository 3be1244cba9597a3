"""``/metrics``: the Prometheus text format, built at scrape time.

A custom collector reads the live state (runs by workflow and state from the
store; counters and histograms this server keeps since it started) and
prometheus-client's exposition code renders it.
"""

from __future__ import annotations

import asyncio

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.server.cluster_api import cluster_view
from flowsight.server.http import route
from flowsight.server.schemas import Cluster
from flowsight.server.stream import STREAM_END_REASONS

if TYPE_CHECKING:
    from flowsight.alerting.manager import AlertManager
    from flowsight.server.context import ServerContext


class FlowsightCollector(Collector):
    def __init__(self, st: ServerContext, alerts: dict[tuple[str, str], int] | None = None) -> None:
        self.st = st
        # (status, severity) -> count, taken on the event loop (the manager lives there)
        self.alerts = alerts or {}

    def collect(self) -> Iterator[Metric]:
        st = self.st
        runs = GaugeMetricFamily(
            "flowsight_runs", "Runs in the store by workflow and state", labels=["workflow", "state"]
        )
        for wf in st.store.stats.workflow_stats():
            for state, n in sorted(wf["by_state"].items()):
                runs.add_metric([wf["workflow"], state], n)
        yield runs
        stats = st.counters
        with stats.lock:
            events = CounterMetricFamily(
                "flowsight_events", "Events received by this server, by outcome", labels=["outcome"]
            )
            events.add_metric(["accepted"], stats.accepted)
            events.add_metric(["duplicate"], stats.duplicates)
            events.add_metric(["rejected"], st.events_rejected)
            yield events
            steps = HistogramMetricFamily(
                "flowsight_step_duration_seconds", "Duration of completed step attempts", labels=["workflow", "step"]
            )
            for (wf_name, step), h in sorted(stats.steps.items()):
                steps.add_metric([wf_name, step], h.buckets(), h.sum)
            yield steps
            rd = HistogramMetricFamily(
                "flowsight_run_duration_seconds", "Duration of ended runs", labels=["workflow", "state"]
            )
            for (wf_name, state), h in sorted(stats.runs.items()):
                rd.add_metric([wf_name, state], h.buckets(), h.sum)
            yield rd
            writes = HistogramMetricFamily(
                "flowsight_store_write_seconds", "Latency of one group commit to the store", labels=[]
            )
            writes.add_metric([], stats.writes.buckets(), stats.writes.sum)
            yield writes
        yield GaugeMetricFamily(
            "flowsight_stream_subscribers", "Live stream (SSE) clients connected", value=st.hub.stream.subscribers
        )
        yield CounterMetricFamily(
            "flowsight_stream_dropped",
            "Events a slow stream client missed live (it then resumes from the store)",
            value=st.hub.stream.dropped,
        )
        disconnects = CounterMetricFamily(
            "flowsight_stream_disconnects",
            "Live stream clients gone, by reason: "
            "client (it left), slow (dropped: it did not read while its queue "
            "filled), shutdown",
            labels=["reason"],
        )
        closed = st.hub.stream.closed
        for reason in STREAM_END_REASONS:
            disconnects.add_metric([reason], closed.get(reason, 0))
        yield disconnects
        alerts = GaugeMetricFamily(
            "flowsight_alerts",
            "Alerts held by the alert manager, by status "
            "(firing, silenced, inhibited, flapping, resolved) and severity",
            labels=["status", "severity"],
        )
        for (status, severity), n in sorted(self.alerts.items()):
            alerts.add_metric([status, severity], n)
        yield alerts
        pending = GaugeMetricFamily(
            "flowsight_notifications_pending", "Notifications in the outbox, not yet delivered", labels=["receiver"]
        )
        broken = st.store.alerts.broken_receivers()
        for receiver in sorted(st.alerting.notifiers):
            pending.add_metric([receiver], st.store.alerts.pending_count(receiver))
        yield pending
        yield GaugeMetricFamily(
            "flowsight_receivers_broken", "Receivers whose last delivery failed for good", value=len(broken)
        )
        yield from _cluster_metrics(cluster_view(st))


def _cluster_metrics(view: Cluster) -> Iterator[Metric]:
    mine = next((r.leads for r in view.replicas if r.this), [])
    leader = GaugeMetricFamily("flowsight_leader", "1 where this replica leads the duty, else 0", labels=["duty"])
    epoch = GaugeMetricFamily(
        "flowsight_lease_epoch", "The duty's lease epoch (the fencing token: one more at every change of leader)",
        labels=["duty"],
    )  # fmt: skip
    expires = GaugeMetricFamily(
        "flowsight_lease_expires_timestamp_seconds", "When the duty's lease ends unless its leader renews it",
        labels=["duty"],
    )  # fmt: skip
    for d in view.duties:
        leader.add_metric([d.duty], 1.0 if d.duty in mine else 0.0)
        epoch.add_metric([d.duty], d.epoch)
        if d.expires_at is not None:
            expires.add_metric([d.duty], d.expires_at)
    yield leader
    yield epoch
    yield expires
    yield GaugeMetricFamily(
        "flowsight_replicas",
        "Replicas on this store heard from within two leases",
        value=sum(r.alive for r in view.replicas),
    )


def alert_counts(am: AlertManager) -> dict[tuple[str, str], int]:
    """Alerts by (status, severity); call it on the manager's thread (``AlertingService.read``)."""
    counts: dict[tuple[str, str], int] = {}
    for fp, entry in am.alerts.items():
        key = (am.status_of(fp), entry.alert.severity.value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def render_metrics(
    st: ServerContext, accept: str | None, alerts: dict[tuple[str, str], int] | None = None
) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowsightCollector(st, alerts))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


async def get_metrics(request: Request, st: ServerContext) -> Response:
    counts = await st.alerting.read(alert_counts)
    body, ctype = await asyncio.to_thread(render_metrics, st, request.headers.get("accept"), counts)
    return Response(body, media_type=ctype)


def routes() -> list[Route]:
    return [route("/metrics", GET=("read", get_metrics))]
