"""``[otlp]``: how the OTLP ingest (``POST /v1/traces``) maps each service's
spans (:mod:`flowsight.integrations.otlp`)::

    [otlp.services.Airflow]        # the service.name of the spans
    mapping = "airflow"            # auto (the default), cicd, airflow, prefect, generic, ignore
"""

from __future__ import annotations

from flowsight.options.fields import Table, choice

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
