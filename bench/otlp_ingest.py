"""OTLP/HTTP trace ingest: spans/s through ``POST /v1/traces`` of a real
``flowsight serve`` (SQLite), against decoding the same requests with
``opentelemetry-proto`` alone, in the same run.

The requests are protobuf ``ExportTraceServiceRequest`` bodies of 512 spans
(pipelines of 8 spans: a root and 7 steps, each span a run's or a step's
start and end), sent by ``--procs`` load processes, one keep-alive
connection each. The server maps every span to events and commits them
before it answers. The peer decodes each body with
``ExportTraceServiceRequest.FromString`` and walks its spans (the least any
receiver does). Goals: >= 0.3x the decode-only rate and >= 20,000 spans/s.

Run: ``.venv/bin/python bench/otlp_ingest.py`` (``--spans``, ``--procs``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from ingest_http import free_port, post_all, run_loaders, start_server, stop  # noqa: E402 - the sibling benchmark's helpers
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402

from flowsight.store import open_store  # noqa: E402

BATCH = 512
PIPELINE = 8  # spans a trace: its root and 7 steps


def body(proc: int, index: int) -> bytes:
    """Request ``index`` of load process ``proc``: 512 spans, 64 pipelines."""
    spans = []
    t0 = 1_700_000_000 * 10**9 + index * 10**9
    for i in range(BATCH):
        pipeline, place = divmod(index * BATCH + i, PIPELINE)
        trace = (proc * 10**9 + pipeline + 1).to_bytes(16, "big")
        root = (1).to_bytes(8, "big")
        spans.append(
            Span(
                trace_id=trace,
                span_id=(place + 1).to_bytes(8, "big"),
                parent_span_id=b"" if place == 0 else root,
                name="pipeline" if place == 0 else f"step-{place}",
                start_time_unix_nano=t0 + place * 1000,
                end_time_unix_nano=t0 + 10**6 + place * 1000,
            )
        )
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    req.resource_spans[0].resource.attributes.add(key="service.name").value.string_value = f"etl-{proc}"
    return req.SerializeToString()


def loader(port: int, proc: int, n: int, go: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    post_all(port, "/v1/traces", [body(proc, i) for i in range(n // BATCH)], "application/x-protobuf", go, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=200_704, help="spans in all (rounded to batches of 512)")
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    per = args.spans // args.procs // BATCH * BATCH
    total = per * args.procs

    bodies = [body(p, i) for p in range(args.procs) for i in range(per // BATCH)]
    t = time.perf_counter()
    decoded = 0
    for b in bodies:
        req = ExportTraceServiceRequest.FromString(b)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    decoded += bool(span.span_id)
    decode_rate = decoded / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "otlp.db"
        port = free_port()
        server = start_server(
            [sys.executable, "-m", "flowsight.cli.main", "--db", str(db), "serve", "--port", str(port)], port
        )
        try:
            ends, start = run_loaders(loader, [(port, p, per) for p in range(args.procs)])
            rate = total / (max(ends) - start)  # type: ignore[type-var, operator]
        finally:
            stop(server)
        with open_store(str(db)) as store:
            stored = store.runs.count_events()
    assert stored == 2 * total, f"{stored} events stored for {total} spans (two each)"
    print(f"{total:,} spans, batches of {BATCH} (protobuf), {args.procs} load processes, SQLite")
    print(f"decode only (opentelemetry-proto FromString, every span read): {decode_rate:,.0f} spans/s")
    print(f"POST /v1/traces (decoded, mapped, committed, answered): {rate:,.0f} spans/s ({2 * rate:,.0f} events/s)")
    print(f"ratio ingest/decode-only = {rate / decode_rate:.2f}")


if __name__ == "__main__":
    main()
