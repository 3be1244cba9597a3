"""``[otlp]``: how the OTLP ingest (``POST /v1/traces``) maps each service's
spans (:mod:`flowsight.integrations.otlp`)::

    [otlp.services.Airflow]        # the service.name of the spans
    mapping = "airflow"            # auto (the default), cicd, airflow, prefect, generic, ignore

``[export.otlp]``: each ended run sent as a trace, its log entries as log
records, to an OTLP/HTTP endpoint (:mod:`flowsight.integrations.otlp_export`)::

    [export.otlp]
    endpoint = "http://collector:4318"   # /v1/traces and /v1/logs are added
    headers = { Authorization = "Bearer ..." }
    timeout = "10s"                      # one request's
    logs = true                          # the runs' log entries too
    delay = "5s"                         # after a run ends, for its last log lines to come
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowsight.options.fields import Table, boolean, choice, duration, string_table, url

#: the rules a service's spans may be held to; ``auto`` tries cicd, airflow, prefect, then generic
MAPPINGS = ("auto", "cicd", "airflow", "prefect", "generic", "ignore")


def read_otlp(top: Table) -> dict[str, str]:
    """``[otlp.services.NAME] mapping``: service -> its rule."""
    t = top.sub("otlp", ("services",))
    if t is None or "services" not in t:
        return {}
    services = t.data["services"]
    table = t.reader.table(t.at("services"), services, services.keys() if isinstance(services, dict) else ())
    if table is None:
        return {}
    out: dict[str, str] = {}
    for name in table.data:
        service = table.sub(name, ("mapping",))
        if service is not None:
            mapping = service.get("mapping", choice(MAPPINGS), required=True)
            if mapping is not None:
                out[name] = mapping
    return out


@dataclass(frozen=True)
class OtlpExport:
    """``[export.otlp]``."""

    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    logs: bool = True
    delay: float = 5.0


EXPORT_OTLP = ("endpoint", "headers", "timeout", "logs", "delay")


def read_export(top: Table) -> OtlpExport | None:
    """``[export.otlp]``; None when absent (or wrong: the problems are the reader's)."""
    export = top.sub("export", ("otlp",))
    t = export.sub("otlp", EXPORT_OTLP) if export is not None else None
    if t is None:
        return None
    endpoint = t.get("endpoint", url, required=True)
    headers = t.get("headers", string_table, secret=True)
    timeout = t.get("timeout", duration(positive=True))
    logs = t.get("logs", boolean)
    delay = t.get("delay", duration())
    if endpoint is None:
        return None
    d = OtlpExport(endpoint)
    return OtlpExport(
        endpoint,
        headers if headers is not None else d.headers,
        timeout if timeout is not None else d.timeout,
        logs if logs is not None else d.logs,
        delay if delay is not None else d.delay,
    )
