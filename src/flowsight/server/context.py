"""What every handler of the server reads: :class:`ServerContext`, one per app
(``request.app.state.flowsight``), assembled by :func:`flowsight.server.app.create_app`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flowsight.server.counters import Counters
from flowsight.server.stream import Streams

if TYPE_CHECKING:
    from flowsight.hub import Hub
    from flowsight.logs.records import StoredLog
    from flowsight.monitors.fault import FaultMonitor
    from flowsight.monitors.performance import PerformanceMonitor
    from flowsight.server.alerting import AlertingService
    from flowsight.server.auth import Authenticator
    from flowsight.server.ingest import Committer, Limits
    from flowsight.server.leadership import Alone, Leadership
    from flowsight.server.retention import LogRetention
    from flowsight.store.interface import Store

#: told of the log entries each POST /api/v1/logs stored (see flowsight.server.logs_api)
OnLogs = Callable[[Sequence["StoredLog"]], "None | Awaitable[None]"]


@dataclass
class ServerContext:
    store: Store
    hub: Hub
    committer: Committer
    auth: Authenticator
    limits: Limits
    stall_timeout: float
    alerting: AlertingService
    counters: Counters = field(default_factory=Counters)
    streams: Streams = field(default_factory=Streams)
    events_rejected: int = 0
    logs_rejected: int = 0
    on_logs: OnLogs | None = None
    log_retention: LogRetention | None = None
    #: the [[detectors]] of the configuration at work (None without any)
    fault_monitor: FaultMonitor | None = None
    #: throughput, latency and the [[thresholds]] of the configuration
    performance: PerformanceMonitor | None = None
    #: how long every resource sample is kept (older ranges are read from the 1-minute rollups)
    performance_raw_retention: float = 6 * 3600.0
    started_at: float = field(default_factory=time.time)
    #: [otlp.services.NAME] mapping: the rule each service's spans are held to (POST /v1/traces)
    otlp_services: dict[str, str] = field(default_factory=dict)
    #: this server's part in a group of replicas (Alone: it does every duty itself)
    cluster: Leadership | Alone | None = None
